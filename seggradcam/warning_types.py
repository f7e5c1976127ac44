"""The warnings seggradcam emits, in one place every module can import.

Example:
    >>> issubclass(EmptyMapWarning, SegGradCAMWarning)
    True
"""

from __future__ import annotations

__all__ = ["EmptyMapWarning", "ProbabilityWarning", "SegGradCAMWarning"]


class SegGradCAMWarning(UserWarning):
    """Base class of every warning seggradcam emits."""


class ProbabilityWarning(SegGradCAMWarning):
    """The explained scores are probabilities (after a softmax/sigmoid), not logits."""


class EmptyMapWarning(SegGradCAMWarning):
    """Some heatmaps are all zeros after the ReLU."""
