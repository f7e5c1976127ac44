"""The public entry points: :class:`SegGradCAM` and the :func:`seg_grad_cam` shortcut."""

from __future__ import annotations

import bisect
import functools
import threading
import warnings
import weakref

import keras
import numpy as np

from .diagnostics import empty_map_summary, empty_maps
from .encoding import EncodedTargets, Restriction, encode_targets
from .engine import Engine
from .explanation import Explanation
from .inputs import as_image_batch
from .methods import get_method
from .model_access import ModelAccess
from .targets import Target, as_target_list
from .warning_types import EmptyMapWarning

__all__ = ["SegGradCAM", "seg_grad_cam", "DEFAULT_MAX_MEMORY", "TARGET_BUCKETS"]

DEFAULT_MAX_MEMORY = 4 * 2**30  # bytes one chunk's pass may add (the planner's estimate, below)
# Numbers of targets a pass is compiled for: a call with T targets runs at the smallest
# bucket >= T (the last target repeated, results dropped), so a new T rarely recompiles.
TARGET_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)
# The planner's estimate of one pass, in multiples of the bytes of all layer outputs of the
# chunk's images (measured with benchmarks/bench_memory.py and a 256x256 U-Net at batch 8,
# see benchmarks/README.md): the forward pass kept for the backward passes, plus the
# backward passes in flight: one at a time for the loop strategies, all T at once for pfor.
FORWARD_COPIES = 2
BACKWARD_COPIES = 2  # one backward pass ("loop", "loop-xla", "auto")
PFOR_COPIES_PER_TARGET = 1  # "pfor", "pfor-xla": per target, vectorised
BYTES_PER_MAP_VALUE = 8  # a raw map value: float32 in the pass plus its numpy copy


def bucket_size(count: int) -> int:
    """The number of targets a pass with ``count`` targets is compiled for.

    Example:
        >>> [bucket_size(n) for n in (1, 5, 7, 13, 200)]
        [1, 6, 8, 16, 200]
    """
    position = bisect.bisect_left(TARGET_BUCKETS, count)
    return TARGET_BUCKETS[position] if position < len(TARGET_BUCKETS) else count


class SegGradCAM:
    """Explain a Keras segmentation model with Seg-Grad-CAM.

    Args:
        model: a functional or Sequential ``keras.Model`` whose output is a (H', W', C) score
            map per image. Nested sub-models, custom layers (their sub-layers included),
            shared layers, mixed precision and several outputs (with ``logits=NAME``) are
            supported.
        layers: ``"auto"`` (the bottleneck: the smallest informative feature map, ties to the
            last), ``"all"`` (every convolution, transposed convolution and activation on the
            path to the scores, nested ones included), a layer name (plain, a path
            ``"submodel/layer"``, ``"name@1"`` for a second call of a shared layer, or
            ``"name:pre"`` for the output before a fused activation), a keras Layer, or a list.
        logits: ``"auto"`` (explain the scores before a final softmax/sigmoid, separate or
            fused), a layer name whose output is the score map, or ``None`` (the output as is).
        method: ``"seg-grad-cam"`` (default), ``"seg-hires-grad-cam"``, ``"seg-xres-grad-cam"``
            or ``"seg-grad-cam++"`` (see ``seggradcam.methods``).
        method_options: options of the method, e.g. ``{"pool_size": 4, "pool": "max"}``.
        strategy: how gradients are taken (``seggradcam.engine.STRATEGIES``); ``"auto"`` is best.

    Example:
        >>> model = sgc.models.load_pretrained("shapes_unet")
        >>> explainer = SegGradCAM(model, layers=["bottleneck_conv2", "dec1_conv2"])
        >>> image = sgc.data.load_samples("shapes")["images"][0]
        >>> expl = explainer.explain(image, [1, sgc.PixelTarget(40, 17)])
        >>> expl.heatmaps.shape
        (1, 2, 2, 128, 128)
    """

    def __init__(
        self,
        model: keras.Model,
        layers="auto",
        logits="auto",
        method: str = "seg-grad-cam",
        method_options: dict | None = None,
        strategy: str = "auto",
    ):
        bound = get_method(method, method_options)
        self.access = ModelAccess(model, logits=logits)
        self.chosen = self.access.choose_layers(layers)
        self.engine = Engine(self.access, self.chosen, bound, strategy)

    @property
    def layers(self) -> list[str]:
        """The explained layers' names, in the order of the heatmaps' layer axis."""
        return [layer.name for layer in self.chosen]

    @property
    def explained(self) -> str:
        """Which tensor is explained, in words."""
        return self.access.scores.description

    @property
    def num_classes(self) -> int:
        """Number of channels of the explained score map."""
        return self.access.channels

    def predict(self, images) -> np.ndarray:
        """Predicted labels (N, H_out, W_out) as the targets read them: argmax over classes, or,
        for a one-channel head, 1 where the foreground score is positive.

        Example:
            >>> explainer = SegGradCAM(sgc.models.load_pretrained("shapes_unet"))
            >>> labels = explainer.predict(sgc.data.load_samples("shapes")["images"][:2])
            >>> labels.shape, sorted(np.unique(labels).tolist())
            ((2, 128, 128), [0, 1, 2, 3])
        """
        return self.engine.predict(as_image_batch(images, self.access.input_shape)).numpy()

    def explain(self, images, targets, guided: bool = False, max_memory: int | None = DEFAULT_MAX_MEMORY) -> Explanation:
        """Explain ``targets`` on ``images`` at every chosen layer in one compiled pass.

        Args:
            images: (N, H, W, C) or (H, W, C) array-like.
            targets: a Target, an int (shorthand for ``ClassTarget(c)``), or a list of them.
            guided: also compute guided-backpropagation gradients (a second compiled pass),
                for ``expl.guided_gradients`` and ``expl.guided_seg_grad_cam``.
            max_memory: bytes one chunk's pass may add, by the planner's estimate (default 4 GiB); None: one pass.
                Targets (and, if one target is too big, images) are split into chunks, each
                one compiled pass; ``None`` never splits.

        Returns:
            An :class:`Explanation`.

        Raises:
            ValueError: bad images, or a target that selects no pixel in some image (for
                example a class that is not predicted there).
        """
        batch = as_image_batch(images, self.access.input_shape)
        target_list = as_target_list(targets)
        out_size = self.access.output_size(batch.shape[1], batch.shape[2])
        encoded = encode_targets(target_list, out_size, self.num_classes)
        images_per_chunk, targets_per_chunk = self.plan_chunks(batch.shape, len(target_list), max_memory)
        result = _run_chunked(self.engine.run, batch, encoded, images_per_chunk, targets_per_chunk)
        _check_masks(result, encoded, target_list)
        raw = dict(zip(self.layers, result["raw"]))
        summary = empty_map_summary(empty_maps(raw, self.layers), self.layers, target_list)
        if summary:
            warnings.warn(summary, EmptyMapWarning, stacklevel=2)
        guided_gradients = None
        if guided:
            guided_gradients = _run_chunked(
                lambda x, c: {"guided": self.engine.guided_gradients(x, c)}, batch, encoded, images_per_chunk, targets_per_chunk
            )["guided"]
        return Explanation(
            raw=raw,
            weights=dict(zip(self.layers, result["weights"])),
            scores=result["scores"],
            masks=result["masks"],
            layers=list(self.layers),
            targets=target_list,
            classes=result["class_index"],
            prediction=result["prediction"],
            explained=self.explained,
            method=self.engine.method.name,
            images=batch,
            guided_gradients=guided_gradients,
        )

    def plan_chunks(self, batch_shape: tuple, num_targets: int, max_memory: int | None) -> tuple[int, int]:
        """(images per chunk, targets per chunk) that keep one pass under ``max_memory`` bytes.

        Every chunk runs its own forward pass, so the plan keeps all images together and
        splits targets first; images are split only when one target for all of them does not
        fit. The estimate is :meth:`estimate_pass_bytes`.
        """
        if max_memory is None:
            return batch_shape[0], num_targets
        if isinstance(max_memory, bool) or not isinstance(max_memory, (int, float)) or max_memory <= 0:
            raise ValueError(f"max_memory must be a positive number of bytes or None, got {max_memory!r}")
        height, width = batch_shape[1:3]
        fits = functools.partial(self._pass_bytes, *self._per_image_bytes(height, width))
        images = batch_shape[0]
        while images > 1 and fits(images, 1) > max_memory:
            images -= 1
        targets = 1
        while targets < num_targets and fits(images, targets + 1) <= max_memory:
            targets += 1
        return images, targets

    def estimate_pass_bytes(self, images: int, targets: int, height: int, width: int) -> int:
        """The planner's estimate of the memory one pass over ``images`` x ``targets`` adds.

        ``FORWARD_COPIES`` times the bytes of all layer outputs, plus the backward passes in
        flight (``BACKWARD_COPIES`` for the loop strategies, ``PFOR_COPIES_PER_TARGET`` per
        target for pfor), plus the raw maps (``BYTES_PER_MAP_VALUE`` per value).

        Example:
            >>> explainer = sgc.SegGradCAM(sgc.models.load_pretrained("shapes_unet"), strategy="loop")
            >>> explainer.estimate_pass_bytes(8, 4, 128, 128) < explainer.estimate_pass_bytes(8, 8, 128, 128)
            True
        """
        return self._pass_bytes(*self._per_image_bytes(height, width), images, targets)

    def _per_image_bytes(self, height: int, width: int) -> tuple[int, int]:
        """(bytes of all layer outputs, bytes of one target's raw maps) for one image."""
        return self.access.activation_bytes(height, width), BYTES_PER_MAP_VALUE * self.access.map_values(self.engine.layers, height, width)

    def _pass_bytes(self, activations: int, maps: int, images: int, targets: int) -> int:
        backward = PFOR_COPIES_PER_TARGET * targets if self.engine.strategy.startswith("pfor") else BACKWARD_COPIES
        return int(images * ((FORWARD_COPIES + backward) * activations + targets * maps))


def _run_chunked(run, batch: np.ndarray, encoded: EncodedTargets, images_per_chunk: int, targets_per_chunk: int) -> dict:
    """Run ``run(images, targets)`` over chunks of images and targets, writing each chunk's
    numpy results into arrays allocated once.

    Each chunk's targets are padded to a compiled bucket size; the padding is dropped.
    Tensors are read as numpy views and copied once, into the joined arrays.
    Arrays have a target axis at position 1, except ``prediction`` (N, H', W'); tuple-valued
    results (one array per layer) become lists of arrays.
    """
    num_images, num_targets = len(batch), encoded.num_targets
    joined: dict = {}
    for start in range(0, num_images, images_per_chunk):
        rows = slice(start, start + images_per_chunk)
        for first in range(0, num_targets, targets_per_chunk):
            columns = slice(first, min(first + targets_per_chunk, num_targets))
            count = columns.stop - columns.start
            chunk = encoded.take(columns).padded(bucket_size(count))
            output = run(batch[rows], chunk)
            items = output._asdict().items() if hasattr(output, "_asdict") else output.items()
            for key, value in items:
                if isinstance(value, tuple):
                    for index, item in enumerate(value):
                        _place(joined, (key, index), np.asarray(item)[:, :count], rows, columns, num_images, num_targets)
                elif key == "prediction":
                    array = np.asarray(value)
                    joined.setdefault(key, np.empty((num_images,) + array.shape[1:], array.dtype))[rows] = array
                else:
                    _place(joined, key, np.asarray(value)[:, :count], rows, columns, num_images, num_targets)
    layered = {}
    for key in list(joined):
        if isinstance(key, tuple):
            layered.setdefault(key[0], []).append(joined.pop(key))
    joined.update(layered)
    return joined


def _place(joined: dict, key, value: np.ndarray, rows: slice, columns: slice, num_images: int, num_targets: int) -> None:
    if key not in joined:
        joined[key] = np.empty((num_images, num_targets) + value.shape[2:], value.dtype)
    joined[key][rows, columns] = value


def _check_masks(result: dict, encoded: EncodedTargets, targets: list[Target]) -> None:
    """Raise a clear error for a target whose mask came out empty on some image."""
    empty = np.argwhere(result["masks"].sum(axis=(2, 3)) <= 0)
    if len(empty) == 0:
        return
    image, index = (int(i) for i in empty[0])
    target = targets[index]
    cls = int(result["class_index"][image, index])
    present = np.unique(result["prediction"][image]).tolist()
    where = f"target {index} ({target.describe()}) selects no output pixel in image {image}"
    if encoded.restriction[index] == Restriction.COMPONENT:
        found = int(result["components"][image, index])
        which = getattr(target, "which", None)
        if found and isinstance(which, int):
            raise ValueError(f"{where}: object index {which} is out of range, class {cls} has {found} object(s) (valid 0..{found - 1})")
    raise ValueError(
        f"{where}: class {cls} is not predicted there (predicted labels: {present}). "
        "Explain a predicted class, use ClassTarget(c, region='all'), or give a region."
    )


# One compiled explainer per (model, layer, logits, method) for the shortcut; entries go
# away with their model.
_SHORTCUT_CACHE: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()
_SHORTCUT_LOCK = threading.Lock()


def _cached_explainer(model: keras.Model, layer) -> SegGradCAM:
    key = layer if isinstance(layer, str) else ("layer", id(layer))
    with _SHORTCUT_LOCK:
        per_model = _SHORTCUT_CACHE.setdefault(model, {})
        if key not in per_model:
            per_model[key] = SegGradCAM(model, layers=layer)
        return per_model[key]


def seg_grad_cam(model: keras.Model, image, target, layer="auto") -> np.ndarray:
    """One heatmap in one call.

    The compiled explainer is kept for the model and layer, so repeated calls are fast.

    Args:
        model: the segmentation model.
        image: one (H, W, C) image (or a batch of one).
        target: a Target or an int class index.
        layer: a layer name, a keras Layer, or ``"auto"``.

    Returns:
        The (H, W) float32 heatmap in [0, 1].

    Example:
        >>> model = sgc.models.load_pretrained("shapes_unet")
        >>> image = sgc.data.load_samples("shapes")["images"][0]
        >>> heat = sgc.seg_grad_cam(model, image, 1, "bottleneck_conv2")
        >>> heat.shape, heat.dtype, float(heat.max())
        ((128, 128), dtype('float32'), 1.0)
    """
    batch = np.asarray(image)
    if batch.ndim == 4 and batch.shape[0] != 1:
        raise ValueError(f"seg_grad_cam explains one image; got a batch of {batch.shape[0]} (use SegGradCAM.explain)")
    if isinstance(target, (list, tuple)):
        raise TypeError("seg_grad_cam takes one target; use SegGradCAM.explain for several")
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    return _cached_explainer(model, layer).explain(batch, target).heatmaps[0, 0, 0]
