"""Warnings the package emits, and (later) the analysis of empty and negative maps."""

from __future__ import annotations


class SegGradCAMWarning(UserWarning):
    """Base class of every warning seggradcam emits."""


class ProbabilityWarning(SegGradCAMWarning):
    """The explained scores are probabilities (after a softmax/sigmoid), not logits."""


class EmptyMapWarning(SegGradCAMWarning):
    """Some heatmaps are all zeros after the ReLU."""
