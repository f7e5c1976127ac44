"""Warnings the package emits, and (later) the analysis of empty and negative maps."""

from __future__ import annotations

import numpy as np


class SegGradCAMWarning(UserWarning):
    """Base class of every warning seggradcam emits."""


class ProbabilityWarning(SegGradCAMWarning):
    """The explained scores are probabilities (after a softmax/sigmoid), not logits."""


class EmptyMapWarning(SegGradCAMWarning):
    """Some heatmaps are all zeros after the ReLU."""


def negative_weight_share(weights: dict, layers: list) -> np.ndarray:
    """Share of negative channel weights alpha, as an (N, T, L) array.

    Example:
        >>> negative_weight_share({"a": np.array([[[1.0, -1.0]]])}, ["a"])[0, 0, 0]
        0.5
    """
    return np.stack([(weights[name] < 0).mean(axis=-1) for name in layers], axis=-1)
