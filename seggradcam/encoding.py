"""Targets as numbers: the typed arrays the compiled pass takes.

Each target reduces to a :class:`TargetCode` (a static weight map over output pixels, a
class or "infer it", a restriction rule evaluated on the prediction, options). Many codes
stack into one :class:`EncodedTargets`, a NamedTuple of arrays with a leading target axis,
so targets of every kind are explained together in one pass.

Example:
    >>> batch = encode_targets([sgc.ClassTarget(1), sgc.PixelTarget(0, 2)], (4, 4), num_classes=3)
    >>> batch.num_targets, batch.class_index.tolist(), batch.infer_class.tolist()
    (2, [1, 0], [False, True])
"""

from __future__ import annotations

import dataclasses
import enum
from typing import NamedTuple, Sequence

import numpy as np

__all__ = ["ComponentRule", "EncodedTargets", "Restriction", "TargetCode", "encode_targets"]


class Restriction(enum.IntEnum):
    """How a target's static region is restricted by the prediction, inside the pass."""

    NONE = 0  # the static region as it is
    PREDICTED = 1  # only pixels predicted as the target's class
    COMPONENT = 2  # one connected object of the pixels predicted as the class


class ComponentRule(enum.IntEnum):
    """Which connected object a component target selects."""

    LARGEST = 0
    SMALLEST = 1
    INDEX = 2  # the object at ``component_index`` in scikit-image label order


@dataclasses.dataclass(frozen=True)
class TargetCode:
    """One target reduced to numbers.

    Attributes:
        region: (H_out, W_out) float32 static weights over output pixels.
        class_index: the class to explain, or None for "the class predicted most often
            inside the region".
        restriction: see :class:`Restriction`.
        component_rule, component_index: which object, for ``Restriction.COMPONENT``.
        mean: divide the score by the mask's total weight.
        truth: (H_out, W_out) int32 labels when the target explains a loss, else None.
    """

    region: np.ndarray
    class_index: int | None
    restriction: Restriction = Restriction.NONE
    component_rule: ComponentRule = ComponentRule.LARGEST
    component_index: int = 0
    mean: bool = False
    truth: np.ndarray | None = None


class EncodedTargets(NamedTuple):
    """T targets stacked for the compiled pass (numpy arrays, or tensors inside it).

    Attributes:
        region: (T, H_out, W_out) float32 static weights.
        class_index: (T,) int32 class (0 where ``infer_class``).
        infer_class: (T,) bool, take the class predicted most often in the region.
        restriction: (T,) int32 :class:`Restriction` values.
        component_rule: (T,) int32 :class:`ComponentRule` values.
        component_index: (T,) int32.
        mean: (T,) bool.
        truth: (T, H_out, W_out) int32 labels (zeros where ``has_truth`` is False).
        has_truth: (T,) bool, the target explains a loss.
    """

    region: np.ndarray
    class_index: np.ndarray
    infer_class: np.ndarray
    restriction: np.ndarray
    component_rule: np.ndarray
    component_index: np.ndarray
    mean: np.ndarray
    truth: np.ndarray
    has_truth: np.ndarray

    @property
    def num_targets(self) -> int:
        """T."""
        return int(self.class_index.shape[0])

    @property
    def any_loss(self) -> bool:
        """Whether some target explains a loss (the pass then computes pixel losses)."""
        return bool(np.any(self.has_truth))

    @property
    def any_components(self) -> bool:
        """Whether some target selects a connected object (the pass then labels objects)."""
        return bool(np.any(self.restriction == Restriction.COMPONENT))

    def take(self, selection) -> EncodedTargets:
        """The targets at ``selection`` (a slice or index array) along the target axis."""
        return EncodedTargets(*(np.asarray(array)[selection] for array in self))

    def padded(self, count: int) -> EncodedTargets:
        """The same targets followed by ``count - T`` copies of the last one (dropped later)."""
        extra = count - self.num_targets
        if extra <= 0:
            return self
        return EncodedTargets(*(np.concatenate([array, np.repeat(array[-1:], extra, axis=0)]) for array in self))


def encode_targets(targets: Sequence, out_shape: tuple, num_classes: int) -> EncodedTargets:
    """Encode and stack the targets for an output map of ``out_shape`` with ``num_classes``.

    Raises:
        ValueError: a target does not fit the output map or the classes.
    """
    codes = [target.encode(tuple(out_shape), num_classes) for target in targets]
    zeros = np.zeros(tuple(out_shape), np.int32)
    return EncodedTargets(
        region=np.stack([code.region for code in codes]).astype(np.float32),
        class_index=np.array([code.class_index or 0 for code in codes], np.int32),
        infer_class=np.array([code.class_index is None for code in codes], bool),
        restriction=np.array([code.restriction for code in codes], np.int32),
        component_rule=np.array([code.component_rule for code in codes], np.int32),
        component_index=np.array([code.component_index for code in codes], np.int32),
        mean=np.array([code.mean for code in codes], bool),
        truth=np.stack([zeros if code.truth is None else code.truth for code in codes]).astype(np.int32),
        has_truth=np.array([code.truth is not None for code in codes], bool),
    )
