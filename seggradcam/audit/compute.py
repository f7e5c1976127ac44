"""One batch of an audit: explain each image's targets and measure the maps.

Each image is explained in its own ``SegGradCAM.explain`` call with the targets that apply
to it, so an image's numbers do not depend on which images share its batch: the local and
the Ray backends, and a resumed run, give the same values. (The explainer reuses its
compiled pass across calls: one image, and target counts rounded up to a few buckets.)

The numbers come from the package's own functions on the :class:`~seggradcam.Explanation`:
``seggradcam.diagnostics.negative_weight_share`` and ``empty_maps``, ``expl.diagnose()``
(removed share) and, with ground truth, ``seggradcam.metrics.energy_inside``,
``pointing_game`` and ``map_iou`` against the label map of the explained class.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from ..diagnostics import empty_maps, negative_weight_share
from ..metrics import energy_inside, map_iou, pointing_game
from ..warning_types import EmptyMapWarning
from .selection import TargetPlan, class_pixels
from .sources import Batch

__all__ = ["BatchComputer", "BatchResult", "THUMBNAIL_SIDE", "IOU_THRESHOLD"]

THUMBNAIL_SIDE = 160  # longest side of the image thumbnails kept for the report
IOU_THRESHOLD = 0.5  # the heatmap threshold of the iou_at_0.5 column


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """What a batch produced, per image and slot (T slots, L layers); unused slots hold
    class -1 and NaN.

    Attributes:
        indices: (n,) int64 image positions in the source.
        keys: (n,) image names (str) or indices (int64).
        classes: (n, T) int32 the class explained, -1 where the slot does not apply.
        scores, pixels: (n, T) float64 the explained score and the target mask's weight.
        negative_share, removed_share, max_heat: (n, T, L) float64.
        empty: (n, T, L) bool.
        energy_inside, pointing_hit, iou: (n, T, L) float64, or None without ground truth.
        truth_pixels: (n, T) float64 true pixels of the explained class, or None.
        heatmaps: (n, T, L, H, W) float16.
        thumbnails: (n, h, w, 3) uint8.
    """

    indices: np.ndarray
    keys: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    pixels: np.ndarray
    negative_share: np.ndarray
    removed_share: np.ndarray
    max_heat: np.ndarray
    empty: np.ndarray
    energy_inside: np.ndarray | None
    pointing_hit: np.ndarray | None
    iou: np.ndarray | None
    truth_pixels: np.ndarray | None
    heatmaps: np.ndarray
    thumbnails: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    def to_columns(self) -> dict:
        """The fields as a dict of arrays with the image axis first (Ray Data's batch format)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self) if getattr(self, field.name) is not None}

    @classmethod
    def from_columns(cls, columns: dict) -> BatchResult:
        """The inverse of :meth:`to_columns`."""
        values = {field.name: columns.get(field.name) for field in dataclasses.fields(cls)}
        values["keys"] = np.asarray(values["keys"])
        return cls(**values)


class BatchComputer:
    """Explains and measures batches with one explainer.

    Args:
        explainer: a :class:`~seggradcam.SegGradCAM`.
        plan: the audit's :class:`~seggradcam.audit.selection.TargetPlan`.
        channels: the model's input channels (a one-channel image is repeated to fit three).
        thumbnail_side: longest side of the stored thumbnails.
    """

    def __init__(self, explainer, plan: TargetPlan, channels: int | None = None, thumbnail_side: int = THUMBNAIL_SIDE):
        self.explainer = explainer
        self.plan = plan
        self.channels = channels
        self.thumbnail_side = thumbnail_side

    def __call__(self, batch: Batch) -> BatchResult:
        n, height, width = batch.images.shape[:3]
        slots, layers = len(self.plan.names), len(self.explainer.layers)
        with_truth = batch.truth is not None
        nan = np.full((n, slots, layers), np.nan)
        result = {
            "classes": np.full((n, slots), -1, np.int32),
            "scores": np.full((n, slots), np.nan),
            "pixels": np.full((n, slots), np.nan),
            "negative_share": nan.copy(),
            "removed_share": nan.copy(),
            "max_heat": nan.copy(),
            "empty": np.zeros((n, slots, layers), bool),
            "energy_inside": nan.copy() if with_truth else None,
            "pointing_hit": nan.copy() if with_truth else None,
            "iou": nan.copy() if with_truth else None,
            "truth_pixels": np.full((n, slots), np.nan) if with_truth else None,
            "heatmaps": np.full((n, slots, layers, height, width), np.nan, np.float16),
        }
        for row in range(n):
            image = fit_channels(batch.images[row], self.channels)
            truth = None if batch.truth is None else batch.truth[row]
            self._explain_one(image, truth, row, result)
        thumbnails = np.stack([thumbnail(image, self.thumbnail_side) for image in batch.images])
        keys = np.asarray(batch.keys, dtype=object if isinstance(batch.keys[0], str) else np.int64)
        return BatchResult(indices=np.asarray(batch.indices, np.int64), keys=keys, thumbnails=thumbnails, **result)

    def _explain_one(self, image: np.ndarray, truth: np.ndarray | None, row: int, out: dict) -> None:
        prediction = self.explainer.predict(image[np.newaxis])[0]
        chosen = self.plan.per_image(prediction)
        if not chosen:
            return
        slots = [slot for slot, _ in chosen]
        with warnings.catch_warnings():  # the audit records empty maps in its table instead
            warnings.simplefilter("ignore", EmptyMapWarning)
            expl = self.explainer.explain(image[np.newaxis], [target for _, target in chosen])
        out["classes"][row, slots] = expl.classes[0]
        out["scores"][row, slots] = expl.scores[0]
        out["pixels"][row, slots] = expl.masks[0].sum(axis=(-2, -1))
        out["negative_share"][row, slots] = negative_weight_share(expl.weights, expl.layers)[0]
        out["removed_share"][row, slots] = expl.diagnose().removed_share[0]
        out["empty"][row, slots] = empty_maps(expl.raw, expl.layers)[0]
        out["max_heat"][row, slots] = np.stack([np.maximum(expl.raw[name][0], 0).max(axis=(-2, -1)) for name in expl.layers], axis=-1)
        out["heatmaps"][row, slots] = expl.heatmaps[0]
        if truth is not None:
            if truth.shape != expl.heatmaps.shape[-2:]:
                raise ValueError(f"a ground-truth mask of size {truth.shape} does not match its image's size {expl.heatmaps.shape[-2:]}")
            truth_masks = np.stack([class_pixels(truth, int(c), self.plan.num_classes) for c in expl.classes[0]])[np.newaxis]
            out["truth_pixels"][row, slots] = truth_masks[0].sum(axis=(-2, -1))
            out["energy_inside"][row, slots] = energy_inside(expl.heatmaps, truth_masks)[0]
            out["pointing_hit"][row, slots] = pointing_game(expl.heatmaps, truth_masks)[0]
            out["iou"][row, slots] = map_iou(expl.heatmaps, truth_masks, IOU_THRESHOLD)[0]


def fit_channels(image: np.ndarray, channels: int | None) -> np.ndarray:
    """Repeat a one-channel image to ``channels`` (gray files for an RGB model); else unchanged.

    Example:
        >>> fit_channels(np.zeros((2, 2, 1)), 3).shape
        (2, 2, 3)
    """
    if channels and image.shape[-1] == 1 and channels > 1:
        return np.repeat(image, channels, axis=-1)
    return image


def thumbnail(image: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """An RGB uint8 picture of an image for the report, longest side at most ``side``.

    Values in [0, 1] are shown as they are; any other range is stretched to its min..max.

    Example:
        >>> thumbnail(np.ones((400, 200, 1), np.float32), 100).shape
        (100, 50, 3)
    """
    import cv2

    picture = np.asarray(image, np.float32)
    if picture.shape[-1] == 1:
        picture = np.repeat(picture, 3, axis=-1)
    picture = picture[..., :3]
    low, high = float(np.nanmin(picture)), float(np.nanmax(picture))
    if low < 0 or high > 1:
        picture = (picture - low) / max(high - low, 1e-12)
    height, width = picture.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
    return np.clip(np.round(picture * 255), 0, 255).astype(np.uint8)
