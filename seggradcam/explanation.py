"""The result of an explanation: plain numpy arrays, their views, and their file format.

Files are ``.npz`` archives read with ``allow_pickle=False``, so a file can never run code:
arrays are stored as arrays; names, strings and target fields go into one JSON string
inside the archive; array-valued target fields (masks, ground truth) are arrays of their own.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import zipfile
from pathlib import Path

import numpy as np

from . import postprocess
from .diagnostics import Diagnosis, diagnose
from .targets import target_from_record

__all__ = ["Explanation", "load_explanation", "save_explanation", "FORMAT"]

FORMAT = "seggradcam-explanation-2"
RENDER_AT_ONCE = 256 * 2**20  # bytes of maps rendered in one call; larger results go layer by layer
BYTES_PER_VALUE = 4
ARRAYS = ("scores", "masks", "classes", "prediction", "images")  # heatmaps are rendered again from raw


class _RenderedOnFirstUse:
    """A field that, left unset, is rendered from the raw maps on first read (then kept)."""

    def __set_name__(self, owner, name):
        self._slot = f"_{name}"
        self._view = "positive"

    def __get__(self, instance, owner=None):
        if instance is None:
            return None  # the dataclass default: render on first use
        value = instance.__dict__.get(self._slot)
        if value is None:
            value = instance._render(self._view)
            instance.__dict__[self._slot] = value
        return value

    def __set__(self, instance, value):
        instance.__dict__[self._slot] = None if value is None else np.asarray(value, np.float32)


@dataclasses.dataclass
class Explanation:
    """Seg-Grad-CAM maps for N images, T targets and L layers.

    Attributes:
        heatmaps: float32 (N, T, L, H, W): ReLU, bilinearly upsampled to the input size,
            each map scaled to [0, 1] (an all-zero map stays zero). Rendered from ``raw`` on
            first use (``seggradcam.postprocess``), one layer at a time, and then kept.
        raw: layer name -> (N, T, h, w) signed maps before the ReLU, at layer resolution.
        weights: layer name -> (N, T, k) channel weights alpha.
        scores: (N, T) the explained scores y.
        masks: (N, T, H_out, W_out) weights over output pixels actually used.
        layers: layer names, in the order of axis L.
        targets: the targets, in the order of axis T.
        classes: (N, T) the class explained for each image and target.
        prediction: (N, H_out, W_out) predicted label map.
        explained: which tensor was explained, in words.
        method: the method that produced the maps.
        images: the (N, H, W, C) float32 images that were explained.
        guided_gradients: (N, T, H, W, C) guided-backpropagation gradients of each target's
            score, when ``explain(..., guided=True)``; else None.

    Views of the same raw maps (all (N, T, L, H, W), computed on first use):
        ``signed`` in [-1, 1], ``counterfactual`` in [0, 1] (ReLU of the negated map), and
        ``guided_seg_grad_cam`` (N, T, L, H, W, C) = guided gradients x heatmaps.

    Example:
        >>> explainer = sgc.SegGradCAM(sgc.models.load_pretrained("shapes_unet"))
        >>> images = sgc.data.load_samples("shapes")["images"][:3]
        >>> expl = explainer.explain(images, [sgc.ClassTarget(1, region="all"), sgc.PixelTarget(40, 17)])
        >>> expl.heatmaps.shape, expl.layers
        ((3, 2, 1, 128, 128), ['bottleneck_conv2'])
    """

    raw: dict
    weights: dict
    scores: np.ndarray
    masks: np.ndarray
    layers: list
    targets: list
    classes: np.ndarray
    prediction: np.ndarray
    explained: str
    method: str
    images: np.ndarray
    heatmaps: np.ndarray = _RenderedOnFirstUse()
    guided_gradients: np.ndarray | None = None

    def _render(self, view: str) -> np.ndarray:
        """Maps of one view for every layer, (N, T, L, H, W) float32.

        All layers in one compiled call when the result is small; otherwise layer by layer,
        so that no second full-size copy exists. Each layer's maps are copied once, straight
        into the result (no stacked tensor in between).
        """
        size = tuple(self.images.shape[1:3])
        shape = self.scores.shape + (len(self.layers),) + size
        raws = [self.raw[name] for name in self.layers]
        if np.prod(shape) * BYTES_PER_VALUE <= RENDER_AT_ONCE:
            rendered = postprocess.render_each(raws, size, view)
        else:
            rendered = (postprocess.render(raw, size, view) for raw in raws)
        maps = np.empty(shape, np.float32)
        for index, layer_maps in enumerate(rendered):
            maps[:, :, index] = np.asarray(layer_maps)  # a read-only view of the tensor, copied into place
        return maps

    def view(self, mode: str = "positive") -> np.ndarray:
        """The maps of one view: ``"positive"`` (= heatmaps), ``"signed"`` or ``"counterfactual"``.

        Returns:
            float32 (N, T, L, H, W); each map upsampled bilinearly to the input size, then
            scaled (see ``seggradcam.postprocess``).
        """
        if mode == "positive":
            return self.heatmaps
        if mode not in postprocess.VIEWS:
            raise ValueError(f"unknown view {mode!r}; valid views are {postprocess.VIEWS}")
        return self._render(mode)

    @functools.cached_property
    def signed(self) -> np.ndarray:
        """Signed maps (N, T, L, H, W) scaled to [-1, 1] by their maximum absolute value."""
        return self.view("signed")

    @functools.cached_property
    def counterfactual(self) -> np.ndarray:
        """Counterfactual maps (N, T, L, H, W) in [0, 1]: ReLU of minus the signed map."""
        return self.view("counterfactual")

    @property
    def guided_seg_grad_cam(self) -> np.ndarray:
        """Guided Seg-Grad-CAM (N, T, L, H, W, C): guided gradients times the heatmaps."""
        if self.guided_gradients is None:
            raise ValueError("no guided gradients: call explain(images, targets, guided=True)")
        return self.guided_gradients[:, :, np.newaxis] * self.heatmaps[..., np.newaxis]

    def save(self, path) -> Path:
        """Write this explanation to an .npz file (no pickle); read it with :func:`load_explanation`."""
        return save_explanation(self, path)

    def plot(self, image_index: int = 0, class_names=None, path=None, **options):
        """Draw the targets x layers grid (see ``seggradcam.viz.plot_grid``); returns the Figure."""
        from .viz import plot_grid

        return plot_grid(self, image_index=image_index, class_names=class_names, path=path, **options)

    def diagnose(self) -> Diagnosis:
        """Negative-gradient analysis per image, target and layer; ``print()`` it to read it.

        Example:
            >>> expl = sgc.SegGradCAM(sgc.models.load_pretrained("shapes_unet")).explain(
            ...     sgc.data.load_samples("shapes")["images"][0], 1)
            >>> print(expl.diagnose())     # doctest: +ELLIPSIS
            image 0, class 1, layer 'bottleneck_conv2': ...% of channel weights negative, ReLU removed ...% of the map's mass...
        """
        return diagnose(self.raw, self.weights, self.layers, self.targets)

    def heatmap(self, image_index: int = 0, target_index: int = 0, layer=0) -> np.ndarray:
        """One (H, W) heatmap; ``layer`` is an index into ``layers`` or a layer name.

        Example:
            >>> expl = sgc.SegGradCAM(sgc.models.load_pretrained("shapes_unet")).explain(
            ...     sgc.data.load_samples("shapes")["images"][0], 1)
            >>> expl.heatmap(0, 0, "bottleneck_conv2").shape
            (128, 128)
        """
        if isinstance(layer, str):
            if layer not in self.layers:
                raise KeyError(f"layer {layer!r} was not explained; explained layers are {self.layers}")
            layer = self.layers.index(layer)
        if self.__dict__.get("_heatmaps") is None:  # not rendered yet: render this one map only
            raw = self.raw[self.layers[layer]][image_index, target_index]
            return postprocess.render(raw[np.newaxis, np.newaxis], self.images.shape[1:3]).numpy()[0, 0]
        return self.heatmaps[image_index, target_index, layer]

    def __repr__(self) -> str:
        (n, t), (h, w) = self.scores.shape, self.images.shape[1:3]
        return (
            f"Explanation({n} image(s) x {t} target(s) x {len(self.layers)} layer(s), {h}x{w}, method={self.method!r}, "
            f"layers={self.layers}, explained={self.explained!r})"
        )


def save_explanation(expl: Explanation, path) -> Path:
    """Write ``expl`` to ``path`` (.npz, compressed). Returns the path written.

    Example:
        >>> import tempfile
        >>> expl = sgc.SegGradCAM(sgc.models.load_pretrained("shapes_unet")).explain(
        ...     sgc.data.load_samples("shapes")["images"][0], sgc.PixelTarget(40, 17))
        >>> path = save_explanation(expl, Path(tempfile.mkdtemp()) / "run1.npz")
        >>> load_explanation(path).targets
        [PixelTarget(row=40, col=17, class_index=None)]
    """
    path = Path(path)
    arrays = {name: getattr(expl, name) for name in ARRAYS}
    for index, layer in enumerate(expl.layers):
        arrays[f"raw.{index}"] = expl.raw[layer]
        arrays[f"weights.{index}"] = expl.weights[layer]
    if expl.guided_gradients is not None:
        arrays["guided_gradients"] = expl.guided_gradients
    records = []
    for index, target in enumerate(expl.targets):
        record, target_arrays = target.to_record()
        record["arrays"] = sorted(target_arrays)
        for name, value in target_arrays.items():
            arrays[f"target.{index}.{name}"] = value
        records.append(record)
    meta = {"format": FORMAT, "layers": list(expl.layers), "targets": records, "explained": expl.explained, "method": expl.method}
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(path, **arrays)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_explanation(path) -> Explanation:
    """Read an explanation written by :func:`save_explanation` (never unpickles).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable seggradcam explanation (corrupt, truncated,
            or another kind of npz).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"explanation file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as bundle:
            data = {key: bundle[key] for key in bundle.files}
        meta = json.loads(str(data["meta"]))
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as error:
        raise ValueError(f"{path} is not a readable seggradcam explanation: {type(error).__name__}: {error}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    targets = []
    for index, record in enumerate(meta["targets"]):
        arrays = {name: data[f"target.{index}.{name}"] for name in record.get("arrays", ())}
        targets.append(target_from_record(record, arrays))
    layers = meta["layers"]
    return Explanation(
        **{name: data[name] for name in ARRAYS},
        raw={layer: data[f"raw.{i}"] for i, layer in enumerate(layers)},
        weights={layer: data[f"weights.{i}"] for i, layer in enumerate(layers)},
        layers=layers,
        targets=targets,
        explained=meta["explained"],
        method=meta["method"],
        guided_gradients=data.get("guided_gradients"),
    )
