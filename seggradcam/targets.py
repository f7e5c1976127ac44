"""What to explain: targets that turn a prediction into a weight mask over output pixels.

A target names a set of output pixels M and a class c; Seg-Grad-CAM explains the score
``y = sum_{(i, j) in M} w(i, j) * logit_c(i, j)``. Every target is *encoded* into the same
small record (a static spatial weight map, a class or "infer", and a rule that restricts the
map to the predicted pixels), so that any number of targets of any kind stack into tensors
and are explained together in one compiled pass. The data-dependent part (which pixels are
predicted as c, which connected object is the largest) is evaluated inside that pass by
:func:`build_masks`, from the same forward pass that yields the gradients.

Example:
    >>> import seggradcam as sgc
    >>> targets = [1, sgc.PixelTarget(10, 20), sgc.RegionTarget(box=(0, 0, 8, 8))]
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Sequence

import numpy as np
import tensorflow as tf

REDUCTIONS = ("sum", "mean")
CLASS_REGIONS = ("predicted", "all")
COMPONENT_CHOICES = ("largest", "smallest")

# Restriction rules applied to a target's static region inside the compiled pass.
RESTRICT_NONE = 0  # use the static region as it is
RESTRICT_PREDICTED = 1  # keep only pixels predicted as the target's class
RESTRICT_COMPONENT = 2  # keep one connected object of pixels predicted as the class

INFER_CLASS = -1  # "use the class predicted most often inside the region"
WHICH_LARGEST = -1
WHICH_SMALLEST = -2


def _check_index(value, name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        allowed = "a non-negative int or None" if allow_none else "a non-negative int"
        raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def _check_reduction(reduction) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _as_mask(mask, name: str) -> np.ndarray:
    array = np.asarray(mask)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(f"{name} must be a bool or float array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H_out, W_out), got shape {array.shape}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or Inf")
    if (array < 0).any():
        raise ValueError(f"{name} has negative weights (min {array.min():g}); weights must be >= 0")
    if not array.any():
        raise ValueError(f"{name} is empty (all zeros): it selects no output pixel to explain")
    return array


def _check_mask_shape(mask: np.ndarray, out_shape: tuple, name: str) -> None:
    if mask.shape != tuple(out_shape):
        raise ValueError(f"{name} has shape {mask.shape} but the model's output map is {tuple(out_shape)} (H_out, W_out)")


def _check_truth(target) -> None:
    """Validate and freeze a target's optional ground-truth label map (loss targets)."""
    if target.ground_truth is None:
        return
    truth = np.asarray(target.ground_truth)
    name = f"{type(target).__name__} ground_truth"
    if truth.dtype == np.bool_:
        truth = truth.astype(np.int32)
    if not np.issubdtype(truth.dtype, np.integer):
        raise TypeError(f"{name} must be an integer label map (H_out, W_out), got dtype {truth.dtype}")
    if truth.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H_out, W_out), got shape {truth.shape}")
    if (truth < 0).any():
        raise ValueError(f"{name} has negative labels (min {truth.min()}); labels are class indices >= 0")
    object.__setattr__(target, "ground_truth", truth.astype(np.int32))


def _encode_truth(target, out_shape: tuple, num_classes: int) -> np.ndarray | None:
    truth = target.ground_truth
    if truth is None:
        return None
    name = f"{type(target).__name__} ground_truth"
    _check_mask_shape(truth, out_shape, name)
    top = max(num_classes, 2) - 1  # a one-channel head has labels 0 and 1
    if truth.max() > top:
        raise ValueError(f"{name} has label {truth.max()} but valid labels are 0..{top}")
    return truth


@dataclasses.dataclass(frozen=True)
class TargetCode:
    """A target reduced to numbers the compiled pass understands.

    Attributes:
        region: (H_out, W_out) float32 static weights over output pixels.
        class_index: the class to explain, or ``INFER_CLASS``.
        restrict: one of ``RESTRICT_NONE``, ``RESTRICT_PREDICTED``, ``RESTRICT_COMPONENT``.
        which: component selector: ``WHICH_LARGEST``, ``WHICH_SMALLEST`` or an index >= 0.
        mean: divide the score by the mask's total weight.
    """

    region: np.ndarray
    class_index: int
    restrict: int = RESTRICT_NONE
    which: int = WHICH_LARGEST
    mean: bool = False


class Target:
    """Base class of all targets. Subclasses implement :meth:`encode` and ``_label``."""

    reduction: str = "sum"

    def encode(self, out_shape: tuple, num_classes: int) -> TargetCode:  # pragma: no cover
        """Reduce the target to a :class:`TargetCode` for an output map of ``out_shape``."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short human-readable label, used in titles and tables."""
        label = self._label()
        return f"{label}, loss" if getattr(self, "ground_truth", None) is not None else label

    def _label(self) -> str:  # pragma: no cover
        raise NotImplementedError

    def _check_class(self, class_index: int | None, num_classes: int) -> None:
        if class_index is not None and class_index >= num_classes:
            raise ValueError(
                f"class index {class_index} is out of range: the explained score map has "
                f"{num_classes} class(es), valid indices are 0..{num_classes - 1}"
            )


@dataclasses.dataclass(frozen=True, eq=False)
class ClassTarget(Target):
    """Every pixel of one class.

    Args:
        class_index: the class c to explain.
        region: ``"predicted"`` (pixels whose predicted class is c, the paper's choice),
            ``"all"`` (every output pixel), or a (H_out, W_out) bool/float mask.
        reduction: ``"sum"`` (the paper) or ``"mean"`` (divide by the mask's weight).
        ground_truth: optional (H_out, W_out) int labels. When given, the target explains
            the cross-entropy loss against them summed over its mask, instead of the logit
            sum (all target types accept it). The positive map then shows what raises the
            loss; the counterfactual view what lowers it.

    Example:
        >>> ClassTarget(2).describe()
        'class 2'
    """

    class_index: int
    region: object = "predicted"
    reduction: str = "sum"
    ground_truth: object = None

    def __post_init__(self):
        _check_truth(self)
        _check_index(self.class_index, "ClassTarget class_index")
        _check_reduction(self.reduction)
        if isinstance(self.region, str):
            if self.region not in CLASS_REGIONS:
                raise ValueError(f"ClassTarget region must be one of {CLASS_REGIONS} or a mask array, got {self.region!r}")
        else:
            object.__setattr__(self, "region", _as_mask(self.region, "ClassTarget region mask"))

    def encode(self, out_shape, num_classes):
        self._check_class(self.class_index, num_classes)
        mean = self.reduction == "mean"
        if isinstance(self.region, str):
            restrict = RESTRICT_PREDICTED if self.region == "predicted" else RESTRICT_NONE
            region = np.ones(out_shape, np.float32)
            return TargetCode(region, self.class_index, restrict, mean=mean)
        _check_mask_shape(self.region, out_shape, "ClassTarget region mask")
        return TargetCode(self.region, self.class_index, RESTRICT_NONE, mean=mean)

    def _label(self):
        where = self.region if isinstance(self.region, str) else "mask"
        suffix = "" if where == "predicted" else f" ({where})"
        return f"class {self.class_index}{suffix}"


@dataclasses.dataclass(frozen=True, eq=False)
class PixelTarget(Target):
    """One output pixel.

    Args:
        row, col: the pixel, in output-map coordinates.
        class_index: the class to explain; ``None`` explains the class predicted there.
        reduction, ground_truth: as for :class:`ClassTarget`.

    Example:
        >>> PixelTarget(3, 4).describe()
        'pixel (3, 4)'
    """

    row: int
    col: int
    class_index: int | None = None
    reduction: str = "sum"
    ground_truth: object = None

    def __post_init__(self):
        _check_truth(self)
        _check_index(self.row, "PixelTarget row")
        _check_index(self.col, "PixelTarget col")
        _check_index(self.class_index, "PixelTarget class_index", allow_none=True)
        _check_reduction(self.reduction)

    def encode(self, out_shape, num_classes):
        self._check_class(self.class_index, num_classes)
        height, width = out_shape
        if self.row >= height or self.col >= width:
            raise ValueError(
                f"PixelTarget ({self.row}, {self.col}) is outside the output map of size "
                f"{height}x{width}: row must be in 0..{height - 1}, col in 0..{width - 1}"
            )
        region = np.zeros(out_shape, np.float32)
        region[self.row, self.col] = 1.0
        cls = INFER_CLASS if self.class_index is None else self.class_index
        return TargetCode(region, cls, RESTRICT_NONE, mean=self.reduction == "mean")

    def _label(self):
        cls = "" if self.class_index is None else f", class {self.class_index}"
        return f"pixel ({self.row}, {self.col}{cls})"


@dataclasses.dataclass(frozen=True, eq=False)
class RegionTarget(Target):
    """A region given as exactly one of a mask, a box or a polygon.

    Args:
        mask: (H_out, W_out) bool or float weights.
        box: ``(row0, col0, row1, col1)``, ends exclusive as in slicing.
        polygon: ``[(row, col), ...]`` with 3 or more vertices (filled, scikit-image rule).
        class_index: the class to explain; ``None`` takes the class predicted most often
            inside the region (ties go to the smaller index).
        reduction, ground_truth: as for :class:`ClassTarget`.

    Example:
        >>> RegionTarget(box=(0, 0, 4, 4), class_index=1).describe()
        'box (0, 0, 4, 4), class 1'
    """

    mask: object = None
    box: tuple | None = None
    polygon: Sequence | None = None
    class_index: int | None = None
    reduction: str = "sum"
    ground_truth: object = None

    def __post_init__(self):
        _check_truth(self)
        given = [name for name in ("mask", "box", "polygon") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"RegionTarget needs exactly one of mask=, box= or polygon=; got {given if given else 'none'}")
        _check_index(self.class_index, "RegionTarget class_index", allow_none=True)
        _check_reduction(self.reduction)
        if self.mask is not None:
            object.__setattr__(self, "mask", _as_mask(self.mask, "RegionTarget mask"))
        if self.box is not None:
            box = tuple(self.box)
            if len(box) != 4:
                raise ValueError(f"RegionTarget box must be (row0, col0, row1, col1), got {self.box!r}")
            for value in box:
                _check_index(value, "RegionTarget box coordinate")
            row0, col0, row1, col1 = box
            if row1 <= row0 or col1 <= col0:
                raise ValueError(f"RegionTarget box {box} is empty or reversed: need row0 < row1 and col0 < col1 (ends are exclusive)")
            object.__setattr__(self, "box", tuple(int(v) for v in box))
        if self.polygon is not None:
            vertices = np.asarray(self.polygon, dtype=float)
            if vertices.ndim != 2 or vertices.shape[1] != 2 or len(vertices) < 3:
                raise ValueError(
                    "RegionTarget polygon must be a list of 3 or more (row, col) vertices, "
                    f"got {len(vertices) if vertices.ndim >= 1 else 0} point(s) of shape "
                    f"{vertices.shape}"
                )
            if not np.isfinite(vertices).all():
                raise ValueError("RegionTarget polygon has NaN or Inf coordinates")

    def region(self, out_shape: tuple) -> np.ndarray:
        """The static (H_out, W_out) float32 weights of this region."""
        if self.mask is not None:
            _check_mask_shape(self.mask, out_shape, "RegionTarget mask")
            return self.mask
        height, width = out_shape
        region = np.zeros(out_shape, np.float32)
        if self.box is not None:
            row0, col0, row1, col1 = self.box
            if row1 > height or col1 > width:
                raise ValueError(
                    f"RegionTarget box {self.box} reaches outside the output map of size "
                    f"{height}x{width}: need row1 <= {height} and col1 <= {width}"
                )
            region[row0:row1, col0:col1] = 1.0
            return region
        from skimage.draw import polygon as fill_polygon

        vertices = np.asarray(self.polygon, dtype=float)
        rows, cols = fill_polygon(vertices[:, 0], vertices[:, 1], shape=out_shape)
        region[rows, cols] = 1.0
        if not region.any():
            raise ValueError(f"RegionTarget polygon {self.polygon!r} covers no pixel of the {height}x{width} output map")
        return region

    def encode(self, out_shape, num_classes):
        self._check_class(self.class_index, num_classes)
        cls = INFER_CLASS if self.class_index is None else self.class_index
        return TargetCode(self.region(out_shape), cls, RESTRICT_NONE, mean=self.reduction == "mean")

    def _label(self):
        if self.box is not None:
            what = f"box {self.box}"
        elif self.polygon is not None:
            what = f"polygon ({len(self.polygon)} vertices)"
        else:
            what = "region mask"
        cls = "" if self.class_index is None else f", class {self.class_index}"
        return what + cls


@dataclasses.dataclass(frozen=True, eq=False)
class ComponentTarget(Target):
    """One connected object (8-connectivity) of the pixels predicted as a class.

    Args:
        class_index: the class c.
        which: ``"largest"``, ``"smallest"`` or an int index in scikit-image label order
            (objects numbered by the raster position of their first pixel).
        reduction, ground_truth: as for :class:`ClassTarget`.

    Example:
        >>> ComponentTarget(1, which=0).describe()
        'class 1 object 0'
    """

    class_index: int
    which: object = "largest"
    reduction: str = "sum"
    ground_truth: object = None

    def __post_init__(self):
        _check_truth(self)
        _check_index(self.class_index, "ComponentTarget class_index")
        _check_reduction(self.reduction)
        if isinstance(self.which, str):
            if self.which not in COMPONENT_CHOICES:
                raise ValueError(f"ComponentTarget which must be one of {COMPONENT_CHOICES} or an index >= 0, got {self.which!r}")
        else:
            _check_index(self.which, "ComponentTarget which")

    def encode(self, out_shape, num_classes):
        self._check_class(self.class_index, num_classes)
        which = {"largest": WHICH_LARGEST, "smallest": WHICH_SMALLEST}.get(self.which, self.which)
        region = np.ones(out_shape, np.float32)
        return TargetCode(region, self.class_index, RESTRICT_COMPONENT, int(which), self.reduction == "mean")

    def _label(self):
        which = self.which if isinstance(self.which, str) else f"object {self.which}"
        return f"class {self.class_index} {which}"


def as_target_list(targets) -> list[Target]:
    """Normalise a Target, an int or a list of them into a list of Targets.

    Example:
        >>> as_target_list(3)
        [ClassTarget(class_index=3, region='predicted', reduction='sum')]
    """
    items = list(targets) if isinstance(targets, (list, tuple)) else [targets]
    if not items:
        raise ValueError("targets is empty: pass a Target, an int class index, or a list of them")
    result = []
    for item in items:
        if isinstance(item, Target):
            result.append(item)
        elif isinstance(item, numbers.Integral) and not isinstance(item, (bool, np.bool_)):
            result.append(ClassTarget(int(item)))
        else:
            raise TypeError(
                "each target must be a Target (ClassTarget, PixelTarget, RegionTarget, "
                f"ComponentTarget) or an int class index, got {item!r} ({type(item).__name__})"
            )
    return result


def encode_targets(targets: Sequence[Target], out_shape: tuple, num_classes: int) -> dict:
    """Stack the codes of many targets into the arrays the compiled pass takes.

    Returns:
        A dict of numpy arrays: ``region`` (T, H_out, W_out) float32, ``class_index``,
        ``restrict``, ``which`` (T,) int32, ``mean`` (T,) float32, ``truth`` (T, H_out, W_out)
        int32 and ``loss`` (T,) float32 (1 where the target explains a loss).
    """
    codes = [target.encode(tuple(out_shape), num_classes) for target in targets]
    truths = [_encode_truth(target, tuple(out_shape), num_classes) for target in targets]
    return {
        "truth": np.stack([np.zeros(out_shape, np.int32) if t is None else t for t in truths]),
        "loss": np.array([t is not None for t in truths], np.float32),
        "region": np.stack([code.region for code in codes]).astype(np.float32),
        "class_index": np.array([code.class_index for code in codes], np.int32),
        "restrict": np.array([code.restrict for code in codes], np.int32),
        "which": np.array([code.which for code in codes], np.int32),
        "mean": np.array([code.mean for code in codes], np.float32),
    }


def _select_components(binary: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numpy side of the component rule: (N, T, H, W) bool -> selected object masks.

    Returns the (N, T, H, W) float32 masks and the (N, T) int32 number of objects found.
    A selector that does not exist (no object, or an index past the last) gives an empty
    mask; the caller turns that into an error that names the target.
    """
    from skimage.measure import label

    masks = np.zeros(binary.shape, np.float32)
    counts = np.zeros(binary.shape[:2], np.int32)
    for n in range(binary.shape[0]):
        for t in range(binary.shape[1]):
            if which[t] == 0 and not binary[n, t].any():
                continue
            labels, count = label(binary[n, t], connectivity=2, return_num=True)
            counts[n, t] = count
            if count == 0:
                continue
            sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
            if which[t] == WHICH_LARGEST:
                chosen = int(np.argmax(sizes)) + 1
            elif which[t] == WHICH_SMALLEST:
                chosen = int(np.argmin(sizes)) + 1
            elif which[t] < count:
                chosen = int(which[t]) + 1
            else:
                continue
            masks[n, t] = labels == chosen
    return masks, counts


def build_masks(logits: tf.Tensor, codes: dict, decision: str) -> dict:
    """Evaluate the targets on a prediction, inside the compiled pass.

    Args:
        logits: (N, H_out, W_out, C) the explained score map.
        codes: tensors with the entries of :func:`encode_targets`.
        decision: how a pixel's predicted classes are read from ``logits``: ``"argmax"``,
            ``"positive"`` (score > 0, for sigmoid logits) or ``"half"`` (score > 0.5, for
            sigmoid probabilities).

    Returns:
        A dict of tensors: ``masks`` (N, T, H_out, W_out) float32 weights, ``class_index``
        (N, T) int32 the class explained, ``components`` (N, T) int32 objects found.
    """
    num_classes = tf.shape(logits)[-1]
    if decision == "argmax":
        predicted = tf.one_hot(tf.argmax(logits, axis=-1), num_classes, dtype=tf.float32)
    else:
        threshold = 0.0 if decision == "positive" else 0.5
        predicted = tf.cast(logits > threshold, tf.float32)
    region = codes["region"]  # (T, H, W)
    votes = tf.einsum("thw,nhwc->ntc", region, predicted)
    inferred = tf.cast(tf.argmax(votes, axis=-1), tf.int32)
    fixed = tf.broadcast_to(codes["class_index"][tf.newaxis], tf.shape(inferred))
    class_index = tf.where(fixed >= 0, fixed, inferred)  # (N, T)
    # (N, T, H, W): is each pixel predicted as the target's class?
    class_map = tf.gather(tf.transpose(predicted, [0, 3, 1, 2]), class_index, axis=1, batch_dims=1)
    restrict = codes["restrict"][tf.newaxis, :, tf.newaxis, tf.newaxis]
    shape = tf.shape(class_map)

    def components():
        masks, counts = tf.numpy_function(_select_components, [class_map > 0.5, codes["which"]], [tf.float32, tf.int32])
        return tf.reshape(masks, shape), tf.reshape(counts, shape[:2])

    def no_components():
        return tf.zeros_like(class_map), tf.zeros(shape[:2], tf.int32)

    component_map, counts = tf.cond(tf.reduce_any(codes["restrict"] == RESTRICT_COMPONENT), components, no_components)
    keep = tf.where(
        restrict == RESTRICT_PREDICTED,
        class_map,
        tf.where(restrict == RESTRICT_COMPONENT, component_map, tf.ones_like(class_map)),
    )
    masks = region[tf.newaxis] * keep
    total = tf.reduce_sum(masks, axis=[2, 3], keepdims=True)
    divide = codes["mean"][tf.newaxis, :, tf.newaxis, tf.newaxis] > 0
    masks = tf.where(divide & (total > 0), masks / tf.maximum(total, 1e-12), masks)
    return {"masks": tf.stop_gradient(masks), "class_index": class_index, "components": counts}
