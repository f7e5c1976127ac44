"""The public entry points: :class:`SegGradCAM` and the :func:`seg_grad_cam` shortcut."""

from __future__ import annotations

import warnings

import keras
import numpy as np

from .diagnostics import EmptyMapWarning, empty_map_summary, empty_maps
from .engine import Engine
from .explanation import Explanation
from .inputs import as_image_batch
from .probe import ModelGraph
from .targets import (
    RESTRICT_COMPONENT,
    WHICH_LARGEST,
    WHICH_SMALLEST,
    Target,
    as_target_list,
    encode_targets,
)

DEFAULT_MAX_MEMORY = 3 * 2**30  # bytes for the vectorised backward pass of one chunk


class SegGradCAM:
    """Explain a Keras segmentation model with Seg-Grad-CAM.

    Args:
        model: a functional or Sequential ``keras.Model`` whose output is a (H', W', C)
            score map per image. Nested functional/Sequential sub-models are supported.
        layers: ``"auto"`` (the bottleneck: the smallest feature map, ties to the last in
            model order), ``"all"`` (every convolution, transposed convolution and
            activation layer on the path to the scores, nested ones included), a layer
            name (plain, or ``"submodel/layer"``), a keras Layer, or a list of those.
        logits: ``"auto"`` (explain the scores before a final softmax/sigmoid, whether it is
            a separate layer or fused into the last convolution), a layer name whose output
            is the score map, or ``None`` (explain the output as it is).
            A layer with a fused activation can be explained before it: ``"name:pre"``.
        method: how gradients become maps: ``"seg-grad-cam"`` (default),
            ``"seg-hires-grad-cam"``, ``"seg-xres-grad-cam"`` or ``"seg-grad-cam++"``
            (see ``seggradcam.methods``).
        method_options: options of the method, e.g. ``{"pool_size": 4, "pool": "max"}``
            for ``"seg-xres-grad-cam"``.

    Example:
        >>> explainer = SegGradCAM(model, layers="all")          # doctest: +SKIP
        >>> expl = explainer.explain(images, [1, PixelTarget(5, 9)])  # doctest: +SKIP
    """

    def __init__(self, model: keras.Model, layers="auto", logits="auto", method: str = "seg-grad-cam", method_options: dict | None = None):
        self.graph = ModelGraph(model, logits=logits)
        self.layers = [info.name for info in self.graph.resolve_layers(layers)]
        self.engine = Engine(self.graph, self.layers, method, method_options)

    @property
    def explained(self) -> str:
        """Which tensor is explained, in words."""
        return self.graph.logits.description

    @property
    def num_classes(self) -> int:
        """Number of channels of the explained score map."""
        return self.graph.output_channels

    def predict(self, images) -> np.ndarray:
        """Predicted labels (N, H_out, W_out) as the targets read them: argmax over classes, or,
        for a one-channel head, 1 where the foreground score is positive.

        Example:
            >>> classes = np.unique(explainer.predict(image))     # doctest: +SKIP
        """
        return self.engine.predict(as_image_batch(images, self.graph.input_shape)).numpy()

    def explain(self, images, targets, guided: bool = False, max_memory: int | None = DEFAULT_MAX_MEMORY) -> Explanation:
        """Explain ``targets`` on ``images`` at every chosen layer in one compiled pass.

        Args:
            images: (N, H, W, C) or (H, W, C) array-like.
            targets: a Target, an int (shorthand for ``ClassTarget(c)``), or a list of them.
            guided: also compute guided-backpropagation gradients (a second compiled pass),
                for ``expl.guided_gradients`` and ``expl.guided_seg_grad_cam``.
            max_memory: bytes the vectorised backward pass may use (default 3 GiB, which
                keeps the peak RSS of a 1024x2048, 19-class, ``layers="all"`` grid under
                8 GB). Targets (and, if one target is too big, images) are split into
                chunks, each one compiled pass; ``None`` never splits.

        Returns:
            An :class:`Explanation`.

        Raises:
            ValueError: bad images, or a target that selects no pixel in some image (for
                example a class that is not predicted there).
        """
        batch = as_image_batch(images, self.graph.input_shape)
        target_list = as_target_list(targets)
        out_size = self.graph.output_size(batch.shape[1], batch.shape[2])
        codes = encode_targets(target_list, out_size, self.num_classes)
        images_per_chunk, targets_per_chunk = self.plan_chunks(batch.shape, len(target_list), max_memory)
        result = _run_chunked(self.engine.run, batch, codes, images_per_chunk, targets_per_chunk)
        _check_masks(result, codes, target_list)
        raw = {name: result[f"raw/{name}"] for name in self.layers}
        summary = empty_map_summary(empty_maps(raw, self.layers), self.layers, target_list)
        if summary:
            warnings.warn(summary, EmptyMapWarning, stacklevel=2)
        guided_gradients = None
        if guided:
            guided_gradients = _run_chunked(
                lambda x, c: {"g": self.engine.guided_gradients(x, c)}, batch, codes, images_per_chunk, targets_per_chunk
            )["g"]
        return Explanation(
            heatmaps=result["heatmaps"].astype(np.float32),
            raw=raw,
            weights={name: result[f"weights/{name}"] for name in self.layers},
            scores=result["scores"],
            masks=result["masks"],
            layers=list(self.layers),
            targets=target_list,
            classes=result["class_index"],
            prediction=result["prediction"],
            explained=self.explained,
            method=self.engine.method,
            images=batch,
            guided_gradients=guided_gradients,
        )

    def plan_chunks(self, batch_shape: tuple, num_targets: int, max_memory: int | None) -> tuple[int, int]:
        """(images per chunk, targets per chunk) that keep the backward pass under ``max_memory``.

        The estimate per image and target is three times the bytes of all layer outputs
        (the vectorised backward pass keeps about that much per target) plus the maps.
        """
        if max_memory is None:
            return batch_shape[0], num_targets
        if isinstance(max_memory, bool) or not isinstance(max_memory, (int, float)) or max_memory <= 0:
            raise ValueError(f"max_memory must be a positive number of bytes or None, got {max_memory!r}")
        height, width = batch_shape[1:3]
        per_pair = 3 * self.graph.activation_bytes(height, width) + 8 * len(self.layers) * height * width
        pairs = max(1, int(max_memory // per_pair))
        if pairs >= batch_shape[0]:
            return batch_shape[0], max(1, min(num_targets, pairs // batch_shape[0]))
        return pairs, 1


def _run_chunked(run, batch: np.ndarray, codes: dict, images_per_chunk: int, targets_per_chunk: int) -> dict:
    """Run ``run(images, codes)`` over chunks of images and targets, writing each chunk's numpy
    results into arrays allocated once (no second copy of the outputs).

    Arrays have a target axis at position 1, except ``prediction`` (N, H', W').
    """
    num_images, num_targets = len(batch), len(codes["class_index"])
    joined = {}
    for start in range(0, num_images, images_per_chunk):
        rows = slice(start, start + images_per_chunk)
        for first in range(0, num_targets, targets_per_chunk):
            columns = slice(first, first + targets_per_chunk)
            chunk = {key: value[columns] for key, value in codes.items()}
            for key, tensor in run(batch[rows], chunk).items():
                value = tensor.numpy()
                if key not in joined:
                    shape = (num_images,) + value.shape[1:] if key == "prediction" else (num_images, num_targets) + value.shape[2:]
                    joined[key] = np.empty(shape, value.dtype)
                if key == "prediction":
                    joined[key][rows] = value
                else:
                    joined[key][rows, columns] = value
                del value
    return joined


def _check_masks(result: dict, codes: dict, targets: list[Target]) -> None:
    """Raise a clear error for a target whose mask came out empty on some image."""
    empty = np.argwhere(result["masks"].sum(axis=(2, 3)) <= 0)
    if len(empty) == 0:
        return
    image, index = (int(i) for i in empty[0])
    target = targets[index]
    cls = int(result["class_index"][image, index])
    present = np.unique(result["prediction"][image]).tolist()
    where = f"target {index} ({target.describe()}) selects no output pixel in image {image}"
    if codes["restrict"][index] == RESTRICT_COMPONENT:
        found = int(result["components"][image, index])
        which = int(codes["which"][index])
        if found and which not in (WHICH_LARGEST, WHICH_SMALLEST):
            raise ValueError(f"{where}: object index {which} is out of range, class {cls} has {found} object(s) (valid 0..{found - 1})")
    raise ValueError(
        f"{where}: class {cls} is not predicted there (predicted labels: {present}). "
        "Explain a predicted class, use ClassTarget(c, region='all'), or give a region."
    )


def seg_grad_cam(model: keras.Model, image, target, layer="auto") -> np.ndarray:
    """One heatmap in one call.

    Args:
        model: the segmentation model.
        image: one (H, W, C) image (or a batch of one).
        target: a Target or an int class index.
        layer: a layer name, a keras Layer, or ``"auto"``.

    Returns:
        The (H, W) float32 heatmap in [0, 1].

    Example:
        >>> heat = seg_grad_cam(model, image, 1, "bottleneck")   # doctest: +SKIP
    """
    batch = np.asarray(image)
    if batch.ndim == 4 and batch.shape[0] != 1:
        raise ValueError(f"seg_grad_cam explains one image; got a batch of {batch.shape[0]} (use SegGradCAM.explain)")
    if isinstance(target, (list, tuple)):
        raise TypeError("seg_grad_cam takes one target; use SegGradCAM.explain for several")
    explanation = SegGradCAM(model, layers=layer).explain(batch, target)
    return explanation.heatmaps[0, 0, 0]
