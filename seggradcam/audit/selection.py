"""Which targets an audit explains in each image.

An audit has a fixed list of target *slots* (the target axis of ``heatmaps.zarr`` and the
``target_index`` column); each image explains the slots that apply to it:

- ``targets=None`` (default): one slot per class of the explained score map, slot c =
  ``ClassTarget(c)``; an image explains every class the model predicts in it (for a
  one-channel sigmoid head: class 0, the foreground, where any pixel is predicted).
- a list of ints and Targets: one slot per item, in order. A ``ClassTarget(c)`` (region
  ``"predicted"``) or ``ComponentTarget(c)`` applies to the images where class c is
  predicted (and, for an object index, where that many objects exist); ``ClassTarget(c,
  region="all" | mask)``, ``PixelTarget`` and ``RegionTarget`` apply to every image.

A slot that does not apply to an image has no rows for it in the table and NaN maps in
the store. So the table has one row per image x *applicable* target x layer.

Example:
    >>> plan = make_plan(None, num_classes=3)
    >>> plan.names
    ('class 0', 'class 1', 'class 2')
    >>> [slot for slot, _ in plan.per_image(np.array([[0, 2], [2, 2]]))]
    [0, 2]
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from ..targets import ClassTarget, ComponentTarget, Target

__all__ = ["TargetPlan", "make_plan", "class_pixels"]


@dataclasses.dataclass(frozen=True)
class TargetPlan:
    """The audit's target slots.

    Attributes:
        names: one name per slot (``"class 2"``, a class name, or ``Target.describe()``).
        targets: the slot's Target, in slot order.
        classes: the slot's class index where it is fixed, else -1 (class picked per image).
        num_classes: channels of the explained score map.
        per_class: True for the default plan (slot c is class c, used where predicted).
    """

    names: tuple
    targets: tuple
    classes: tuple
    num_classes: int
    per_class: bool

    def per_image(self, prediction: np.ndarray) -> list[tuple[int, Target]]:
        """The (slot, target) pairs that apply to an image with these predicted labels (H', W')."""
        present = set(np.unique(prediction).tolist())
        chosen = []
        for slot, target in enumerate(self.targets):
            if _applies(target, prediction, present, self.num_classes):
                chosen.append((slot, target))
        return chosen


def class_pixels(labels: np.ndarray, class_index: int, num_classes: int) -> np.ndarray:
    """Bool map of where ``labels`` are class ``class_index`` (a one-channel head's class 0 is
    label 1, the foreground).

    Example:
        >>> class_pixels(np.array([0, 1, 2]), 0, 1).tolist()
        [False, True, True]
    """
    if num_classes == 1:
        return labels > 0
    return labels == class_index


def _label_of(class_index: int, num_classes: int) -> int:
    return 1 if num_classes == 1 else class_index


def _applies(target: Target, prediction: np.ndarray, present: set, num_classes: int) -> bool:
    if isinstance(target, ClassTarget):
        if isinstance(target.region, str) and target.region == "predicted":
            return _label_of(target.class_index, num_classes) in present
        return True
    if isinstance(target, ComponentTarget):
        if _label_of(target.class_index, num_classes) not in present:
            return False
        if isinstance(target.which, str):
            return True
        from skimage.measure import label

        objects = label(class_pixels(prediction, target.class_index, num_classes), connectivity=2).max()
        return target.which < objects
    return True


def make_plan(targets, num_classes: int, class_names=None) -> TargetPlan:
    """The :class:`TargetPlan` for an audit's ``targets`` argument.

    Args:
        targets: None (every predicted class), an int, a Target, or a list of them.
        num_classes: channels of the explained score map.
        class_names: optional names of the classes, used for slot names.

    Raises:
        TypeError: an item that is not an int or a Target.
        ValueError: an empty list, a class index out of range, or class names of the wrong length.
    """
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if len(class_names) != max(num_classes, 1):
            raise ValueError(f"class_names has {len(class_names)} name(s) but the model explains {num_classes} class(es)")

    def class_label(index: int) -> str:
        return class_names[index] if class_names else f"class {index}"

    if targets is None:
        slots = tuple(ClassTarget(c) for c in range(num_classes))
        names = tuple(class_label(c) for c in range(num_classes))
        return TargetPlan(names, slots, tuple(range(num_classes)), num_classes, True)
    items = list(targets) if isinstance(targets, (list, tuple)) else [targets]
    if not items:
        raise ValueError("targets is an empty list: pass None (every predicted class), class indices or Targets")
    slots, names, classes = [], [], []
    for item in items:
        if isinstance(item, numbers.Integral) and not isinstance(item, (bool, np.bool_)):
            item = ClassTarget(int(item))
        if not isinstance(item, Target):
            raise TypeError(
                f"each target must be an int class index or a Target (ClassTarget, PixelTarget, RegionTarget, "
                f"ComponentTarget), got {item!r} ({type(item).__name__})"
            )
        class_index = getattr(item, "class_index", None)
        if class_index is not None and not 0 <= class_index < num_classes:
            raise ValueError(
                f"target {item.describe()!r}: class index {class_index} is out of range; the explained score map "
                f"has {num_classes} class(es), valid indices are 0..{num_classes - 1}"
            )
        name = item.describe()
        if isinstance(item, ClassTarget) and isinstance(item.region, str) and item.region == "predicted" and class_names:
            name = class_label(class_index)
        slots.append(item)
        names.append(_unique(name, names))
        classes.append(-1 if class_index is None else int(class_index))
    return TargetPlan(tuple(names), tuple(slots), tuple(classes), num_classes, False)


def _unique(name: str, taken: list) -> str:
    if name not in taken:
        return name
    copy = 2
    while f"{name} #{copy}" in taken:
        copy += 1
    return f"{name} #{copy}"
