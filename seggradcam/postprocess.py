"""The one place where raw maps become heatmaps, in a fixed order.

1. upsample the signed raw map (N, T, h, w) bilinearly to the input size (H, W);
2. apply the view: ``"positive"`` = ReLU (the Grad-CAM map);
3. scale each map by its own maximum to [0, 1]; an all-zero map stays zero (never NaN).

Upsampling comes first because it is linear: every view is then computed from one
upsampled signed map, and views stay consistent with each other.
"""

from __future__ import annotations

import tensorflow as tf

VIEWS = ("positive",)


def upsample(raw: tf.Tensor, size: tuple) -> tf.Tensor:
    """Bilinear resize of (N, T, h, w) maps to (N, T, H, W)."""
    shape = tf.shape(raw)
    flat = tf.reshape(raw, tf.concat([[-1], shape[2:4], [1]], axis=0))
    resized = tf.image.resize(flat, size, method="bilinear")
    return tf.reshape(resized, tf.concat([shape[:2], size], axis=0))


def scale_to_unit(maps: tf.Tensor) -> tf.Tensor:
    """Divide each (H, W) map of a (..., H, W) tensor by its maximum; zero maps stay zero."""
    peak = tf.reduce_max(maps, axis=[-2, -1], keepdims=True)
    return tf.math.divide_no_nan(maps, peak)


def heatmap(raw: tf.Tensor, size: tuple) -> tf.Tensor:
    """Raw signed maps (N, T, h, w) -> ReLU'd heatmaps (N, T, H, W) scaled to [0, 1]."""
    return scale_to_unit(tf.nn.relu(upsample(raw, size)))
