"""What to explain: small target objects that name output pixels and a class.

A target names a set of output pixels M (with weights) and a class c; Seg-Grad-CAM explains
the score ``y = sum_{(i, j) in M} w(i, j) * logit_c(i, j)``. Each target validates its own
fields once, here, and turns itself into a :class:`~seggradcam.encoding.TargetCode`
(``encode``); what pictures and files need from it is asked of the target too
(``describe``, ``title``, ``marker``, ``to_record``).

Every target takes two keyword options:
    reduction: ``"sum"`` (the paper) or ``"mean"`` (divide by the mask's total weight).
    ground_truth: optional (H_out, W_out) integer labels. When given, the target explains
        the cross-entropy loss against them summed over its mask instead of the logit sum.
        The positive map then shows what raises the loss; the counterfactual view what
        lowers it.

Example:
    >>> targets = [sgc.ClassTarget(1), sgc.PixelTarget(10, 20), sgc.RegionTarget(box=(0, 0, 8, 8))]
    >>> [target.describe() for target in targets]
    ['class 1', 'pixel (10, 20)', 'box (0, 0, 8, 8)']
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import ClassVar, Sequence

import numpy as np

from .encoding import ComponentRule, Restriction, TargetCode

__all__ = [
    "ClassTarget",
    "ComponentTarget",
    "PixelTarget",
    "RegionTarget",
    "Target",
    "as_target_list",
    "target_from_record",
    "REDUCTIONS",
]

REDUCTIONS = ("sum", "mean")
CLASS_REGIONS = ("predicted", "all")
COMPONENT_CHOICES = {"largest": ComponentRule.LARGEST, "smallest": ComponentRule.SMALLEST}
MIN_POLYGON_VERTICES = 3
_TYPES: dict[str, type] = {}


def _index(value, name: str, *, allow_none: bool = False) -> int | None:
    """A non-negative int (numpy integers become Python ints), or None when allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        allowed = "a non-negative int or None" if allow_none else "a non-negative int"
        raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def _weights(mask, name: str) -> np.ndarray:
    """A (H_out, W_out) float32 weight map: finite, non-negative, not all zero."""
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


def _labels(truth, name: str) -> np.ndarray:
    """A (H_out, W_out) int32 label map with labels >= 0."""
    array = np.asarray(truth)
    if array.dtype == np.bool_:
        array = array.astype(np.int32)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be an integer label map (H_out, W_out), got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H_out, W_out), got shape {array.shape}")
    if (array < 0).any():
        raise ValueError(f"{name} has negative labels (min {array.min()}); labels are class indices >= 0")
    return array.astype(np.int32)


def _fits(array: np.ndarray, out_shape: tuple, name: str) -> np.ndarray:
    if array.shape != tuple(out_shape):
        raise ValueError(f"{name} has shape {array.shape} but the model's output map is {tuple(out_shape)} (H_out, W_out)")
    return array


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Target:
    """Base class of all targets: the shared options and their one validation path.

    Subclasses validate their own fields in ``_validate`` and implement ``_code`` (their
    static region and class) and ``_label``.
    """

    reduction: str = dataclasses.field(default="sum", kw_only=True)
    ground_truth: object = dataclasses.field(default=None, kw_only=True, repr=False)

    needs_components: ClassVar[bool] = False  # selects one connected object at run time

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _TYPES[cls.__name__] = cls

    def __post_init__(self):
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        if self.ground_truth is not None:
            self._set("ground_truth", _labels(self.ground_truth, f"{type(self).__name__} ground_truth"))
        self._validate()

    def _set(self, name: str, value) -> None:
        object.__setattr__(self, name, value)

    def _validate(self) -> None:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def _code(self, out_shape: tuple) -> TargetCode:  # pragma: no cover
        raise NotImplementedError

    def _label(self) -> str:  # pragma: no cover
        raise NotImplementedError

    # -- what the compiled pass needs --------------------------------------------------------
    def encode(self, out_shape: tuple, num_classes: int) -> TargetCode:
        """Reduce the target to a :class:`TargetCode` for an output map of ``out_shape``.

        Raises:
            ValueError: the class or the region does not fit the model's score map.
        """
        out_shape = tuple(out_shape)
        class_index = getattr(self, "class_index", None)
        if class_index is not None and class_index >= num_classes:
            raise ValueError(
                f"class index {class_index} is out of range: the explained score map has "
                f"{num_classes} class(es), valid indices are 0..{num_classes - 1}"
            )
        code = self._code(out_shape)
        truth = None
        if self.ground_truth is not None:
            name = f"{type(self).__name__} ground_truth"
            truth = _fits(self.ground_truth, out_shape, name)
            top = max(num_classes, 2) - 1  # a one-channel head has labels 0 and 1
            if truth.max() > top:
                raise ValueError(f"{name} has label {truth.max()} but valid labels are 0..{top}")
        return dataclasses.replace(code, mean=self.reduction == "mean", truth=truth)

    # -- what people, pictures and files need --------------------------------------------------
    def describe(self) -> str:
        """A short human-readable label, used in titles and tables."""
        label = self._label()
        return f"{label}, loss" if self.ground_truth is not None else label

    def title(self, class_name: str) -> str:
        """A title for a picture: the explained class's name, then what it does not say.

        Example:
            >>> sgc.RegionTarget(box=(0, 0, 4, 4)).title("disk")
            'disk, box (0, 0, 4, 4)'
        """
        title = self._title(class_name)
        return f"{title}, loss" if self.ground_truth is not None else title

    def _title(self, class_name: str) -> str:  # pragma: no cover - every subclass overrides it
        return class_name

    def __repr__(self) -> str:
        own = [field for field in dataclasses.fields(self) if not field.kw_only]
        parts = [f"{field.name}={getattr(self, field.name)!r}" for field in own]
        if self.reduction != "sum":
            parts.append(f"reduction={self.reduction!r}")
        if self.ground_truth is not None:
            parts.append(f"ground_truth=<{self.ground_truth.shape[0]}x{self.ground_truth.shape[1]} labels>")
        return f"{type(self).__name__}({', '.join(parts)})"

    @property
    def marker(self) -> tuple | None:
        """An output pixel (row, col) to mark in pictures, or None (the mask's contour is drawn)."""
        return None

    def to_record(self) -> tuple[dict, dict]:
        """The target as ``(fields, arrays)``: JSON-ready fields and the array-valued ones.

        Example:
            >>> sgc.PixelTarget(3, 4).to_record()
            ({'type': 'PixelTarget', 'fields': {'row': 3, 'col': 4, 'class_index': None, 'reduction': 'sum'}}, {})
        """
        fields, arrays = {}, {}
        for field in sorted(dataclasses.fields(self), key=lambda field: field.kw_only):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                arrays[field.name] = value
            elif value is not None or field.name != "ground_truth":
                fields[field.name] = list(value) if isinstance(value, tuple) else value
        return {"type": type(self).__name__, "fields": fields}, arrays


def target_from_record(record: dict, arrays: dict) -> Target:
    """Rebuild a target from :meth:`Target.to_record`'s output.

    Raises:
        ValueError: an unknown target type.

    Example:
        >>> target_from_record(*sgc.RegionTarget(box=(0, 1, 2, 3), class_index=2).to_record()).describe()
        'box (0, 1, 2, 3), class 2'
    """
    kind = _TYPES.get(record.get("type"))
    if kind is None:
        raise ValueError(f"unknown target type {record.get('type')!r}; known types are {sorted(_TYPES)}")
    fields = dict(record["fields"])
    fields.update(arrays)
    return kind(**fields)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ClassTarget(Target):
    """Every pixel of one class.

    Args:
        class_index: the class c to explain.
        region: ``"predicted"`` (pixels whose predicted class is c, the paper's choice),
            ``"all"`` (every output pixel), or a (H_out, W_out) bool/float mask.
        reduction, ground_truth: see the module docstring.

    Example:
        >>> sgc.ClassTarget(2).describe(), sgc.ClassTarget(2, region="all").describe()
        ('class 2', 'class 2 (all)')
    """

    class_index: int
    region: object = "predicted"

    def _validate(self):
        self._set("class_index", _index(self.class_index, "ClassTarget class_index"))
        if isinstance(self.region, str):
            if self.region not in CLASS_REGIONS:
                raise ValueError(f"ClassTarget region must be one of {CLASS_REGIONS} or a mask array, got {self.region!r}")
        else:
            self._set("region", _weights(self.region, "ClassTarget region mask"))

    def _code(self, out_shape):
        if isinstance(self.region, str):
            restriction = Restriction.PREDICTED if self.region == "predicted" else Restriction.NONE
            return TargetCode(np.ones(out_shape, np.float32), self.class_index, restriction)
        return TargetCode(_fits(self.region, out_shape, "ClassTarget region mask"), self.class_index, Restriction.NONE)

    def _label(self):
        where = self.region if isinstance(self.region, str) else "mask"
        return f"class {self.class_index}" + ("" if where == "predicted" else f" ({where})")

    def _title(self, class_name):
        where = (
            {"predicted": "predicted pixels", "all": "all pixels"}.get(self.region, "mask region")
            if isinstance(self.region, str)
            else "mask region"
        )
        return f"{class_name}, {where}"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class PixelTarget(Target):
    """One output pixel.

    Args:
        row, col: the pixel, in output-map coordinates.
        class_index: the class to explain; ``None`` explains the class predicted there.
        reduction, ground_truth: see the module docstring.

    Example:
        >>> sgc.PixelTarget(3, 4).describe(), sgc.PixelTarget(3, 4).marker
        ('pixel (3, 4)', (3, 4))
    """

    row: int
    col: int
    class_index: int | None = None

    def _validate(self):
        self._set("row", _index(self.row, "PixelTarget row"))
        self._set("col", _index(self.col, "PixelTarget col"))
        self._set("class_index", _index(self.class_index, "PixelTarget class_index", allow_none=True))

    def _code(self, out_shape):
        height, width = out_shape
        if self.row >= height or self.col >= width:
            raise ValueError(
                f"PixelTarget ({self.row}, {self.col}) is outside the output map of size "
                f"{height}x{width}: row must be in 0..{height - 1}, col in 0..{width - 1}"
            )
        region = np.zeros(out_shape, np.float32)
        region[self.row, self.col] = 1.0
        return TargetCode(region, self.class_index, Restriction.NONE)

    def _label(self):
        cls = "" if self.class_index is None else f", class {self.class_index}"
        return f"pixel ({self.row}, {self.col}{cls})"

    def _title(self, class_name):
        return f"{class_name} at ({self.row}, {self.col})"

    @property
    def marker(self):
        return (self.row, self.col)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class RegionTarget(Target):
    """A region given as exactly one of a mask, a box or a polygon.

    Args:
        mask: (H_out, W_out) bool or float weights.
        box: ``(row0, col0, row1, col1)``, ends exclusive as in slicing.
        polygon: ``[(row, col), ...]`` with 3 or more vertices (filled, scikit-image rule).
        class_index: the class to explain; ``None`` takes the class predicted most often
            inside the region (ties go to the smaller index).
        reduction, ground_truth: see the module docstring.

    Example:
        >>> sgc.RegionTarget(box=(0, 0, 4, 4), class_index=1).describe()
        'box (0, 0, 4, 4), class 1'
    """

    mask: object = None
    box: tuple | None = None
    polygon: Sequence | None = None
    class_index: int | None = None

    def _validate(self):
        given = [name for name in ("mask", "box", "polygon") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"RegionTarget needs exactly one of mask=, box= or polygon=; got {given if given else 'none'}")
        self._set("class_index", _index(self.class_index, "RegionTarget class_index", allow_none=True))
        if self.mask is not None:
            self._set("mask", _weights(self.mask, "RegionTarget mask"))
        if self.box is not None:
            box = tuple(self.box)
            if len(box) != 4:
                raise ValueError(f"RegionTarget box must be (row0, col0, row1, col1), got {self.box!r}")
            box = tuple(_index(value, "RegionTarget box coordinate") for value in box)
            if box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"RegionTarget box {box} is empty or reversed: need row0 < row1 and col0 < col1 (ends are exclusive)")
            self._set("box", box)
        if self.polygon is not None:
            vertices = np.asarray(self.polygon, dtype=float)
            if vertices.ndim != 2 or vertices.shape[1] != 2 or len(vertices) < MIN_POLYGON_VERTICES:
                count = len(vertices) if vertices.ndim >= 1 else 0
                raise ValueError(
                    f"RegionTarget polygon must be a list of 3 or more (row, col) vertices, got {count} point(s) of shape {vertices.shape}"
                )
            if not np.isfinite(vertices).all():
                raise ValueError("RegionTarget polygon has NaN or Inf coordinates")
            self._set("polygon", [tuple(float(v) for v in vertex) for vertex in vertices])

    def region(self, out_shape: tuple) -> np.ndarray:
        """The static (H_out, W_out) float32 weights of this region.

        Example:
            >>> int(sgc.RegionTarget(polygon=[(0, 0), (0, 3), (3, 0)]).region((4, 4)).sum())
            10
        """
        out_shape = tuple(out_shape)
        if self.mask is not None:
            return _fits(self.mask, out_shape, "RegionTarget mask")
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

    def _code(self, out_shape):
        return TargetCode(self.region(out_shape), self.class_index, Restriction.NONE)

    def _what(self) -> str:
        if self.box is not None:
            return f"box {self.box}"
        if self.polygon is not None:
            return f"polygon ({len(self.polygon)} vertices)"
        return "region mask"

    def _label(self):
        return self._what() + ("" if self.class_index is None else f", class {self.class_index}")

    def _title(self, class_name):
        return f"{class_name}, {self._what()}"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ComponentTarget(Target):
    """One connected object (8-connectivity) of the pixels predicted as a class.

    Args:
        class_index: the class c.
        which: ``"largest"``, ``"smallest"`` or an int index in scikit-image label order
            (objects numbered by the raster position of their first pixel).
        reduction, ground_truth: see the module docstring.

    Example:
        >>> sgc.ComponentTarget(1, which=0).describe()
        'class 1 object 0'
    """

    class_index: int
    which: object = "largest"

    needs_components: ClassVar[bool] = True

    def _validate(self):
        self._set("class_index", _index(self.class_index, "ComponentTarget class_index"))
        if isinstance(self.which, str):
            if self.which not in COMPONENT_CHOICES:
                raise ValueError(f"ComponentTarget which must be one of {tuple(COMPONENT_CHOICES)} or an index >= 0, got {self.which!r}")
        else:
            self._set("which", _index(self.which, "ComponentTarget which"))

    def _code(self, out_shape):
        if isinstance(self.which, str):
            rule, index = COMPONENT_CHOICES[self.which], 0
        else:
            rule, index = ComponentRule.INDEX, self.which
        return TargetCode(np.ones(out_shape, np.float32), self.class_index, Restriction.COMPONENT, rule, index)

    def _label(self):
        which = self.which if isinstance(self.which, str) else f"object {self.which}"
        return f"class {self.class_index} {which}"

    def _title(self, class_name):
        which = f"{self.which} object" if isinstance(self.which, str) else f"object {self.which}"
        return f"{class_name}, {which}"


def as_target_list(targets) -> list[Target]:
    """Normalise a Target, an int or a list of them into a list of Targets.

    Example:
        >>> as_target_list(3)
        [ClassTarget(class_index=3, region='predicted')]
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
