"""Numbers about explanations (more in a later issue): how much of a map lies where."""

from __future__ import annotations

import numpy as np


def energy_inside(heatmaps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each heatmap's mass inside a mask.

    Args:
        heatmaps: (N, T, L, H, W) non-negative maps.
        masks: (N, T, H, W) weights; pixels with weight > 0 count as inside.

    Returns:
        (N, T, L) shares in [0, 1]; NaN where a map is all zero.

    Example:
        >>> energy_inside(np.ones((1, 1, 1, 2, 2)), np.array([[[[1, 0], [0, 0]]]]))[0, 0, 0]
        0.25
    """
    inside = (np.asarray(masks) > 0)[:, :, np.newaxis]
    total = heatmaps.sum(axis=(-2, -1))
    within = (heatmaps * inside).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, within / np.where(total > 0, total, 1), np.nan)
