"""The one place where raw maps become heatmaps, in a fixed order.

1. upsample the signed raw map (N, T, h, w) bilinearly to the input size (H, W);
2. apply the view:
   - ``"positive"``: ReLU, the Grad-CAM map (``Explanation.heatmaps``);
   - ``"signed"``: no ReLU (``Explanation.signed``);
   - ``"counterfactual"``: ReLU of the negated map, i.e. the map the negated gradients give:
     where an increase of the features would *lower* the score (``Explanation.counterfactual``);
3. scale each map: by its maximum to [0, 1] (positive, counterfactual), or by its maximum
   absolute value to [-1, 1] (signed). An all-zero map stays zero (never NaN).

Upsampling comes first because it is linear: every view is then computed from one
upsampled signed map, so ``counterfactual == ReLU(-signed)`` up to the scaling.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["heatmap", "render", "scale", "upsample", "VIEWS"]

VIEWS = ("positive", "signed", "counterfactual")


def upsample(raw: tf.Tensor, size) -> tf.Tensor:
    """Bilinear resize of (N, T, h, w) maps to (N, T, H, W)."""
    raw = tf.convert_to_tensor(raw, tf.float32)
    shape = tf.shape(raw)
    flat = tf.reshape(raw, tf.concat([[-1], shape[2:4], [1]], axis=0))
    resized = tf.image.resize(flat, size, method="bilinear")
    return tf.reshape(resized, tf.concat([shape[:2], tf.cast(size, tf.int32)], axis=0))


def scale(maps: tf.Tensor, signed: bool = False) -> tf.Tensor:
    """Divide each (H, W) map of a (..., H, W) tensor by its max (or max |.|); zero stays zero."""
    peak = tf.reduce_max(tf.abs(maps) if signed else maps, axis=[-2, -1], keepdims=True)
    return tf.math.divide_no_nan(maps, peak)


def render(raw, size, view: str = "positive") -> tf.Tensor:
    """Raw signed maps (N, T, h, w) -> (N, T, H, W) maps of one view, scaled.

    Example:
        >>> render(np.ones((1, 1, 2, 2), np.float32), (4, 4), "signed").shape
        TensorShape([1, 1, 4, 4])
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; valid views are {VIEWS}")
    maps = upsample(raw, size)
    if view == "positive":
        return scale(tf.nn.relu(maps))
    if view == "counterfactual":
        return scale(tf.nn.relu(-maps))
    return scale(maps, signed=True)


def heatmap(raw: tf.Tensor, size) -> tf.Tensor:
    """Raw signed maps (N, T, h, w) -> ReLU'd heatmaps (N, T, H, W) scaled to [0, 1]."""
    return render(raw, size, "positive")
