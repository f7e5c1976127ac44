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

__all__ = ["render", "render_each", "render_layers", "scale", "upsample", "VIEWS"]

VIEWS = ("positive", "signed", "counterfactual")


def upsample(raw: tf.Tensor, size) -> tf.Tensor:
    """Bilinear resize of (N, T, h, w) maps to (N, T, H, W)."""
    raw = tf.convert_to_tensor(raw, tf.float32)
    if tuple(raw.shape[2:4]) == tuple(int(side) for side in size):
        return raw  # already at the input size (a full-resolution layer): nothing to interpolate
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
    return _render(tf.convert_to_tensor(raw, tf.float32), tuple(int(side) for side in size), view)


@tf.function(autograph=False, reduce_retracing=True)
def _render(raw, size: tuple, view: str) -> tf.Tensor:
    """The compiled body of :func:`render` (one trace per layer shape and view, reused)."""
    maps = upsample(raw, size)
    if view == "positive":
        return scale(tf.nn.relu(maps))
    if view == "counterfactual":
        return scale(tf.nn.relu(-maps))
    return scale(maps, signed=True)


@tf.function(autograph=False, reduce_retracing=True)
def _render_each(raws: tuple, size: tuple, view: str) -> list:
    return [_render(raw, size, view) for raw in raws]


def render_each(raws, size, view: str = "positive") -> list:
    """Several layers' raw maps, each (N, T, h_l, w_l), -> one (N, T, H, W) tensor per layer, in one call.

    Example:
        >>> maps = render_each([np.ones((1, 2, 2, 2), np.float32), -np.ones((1, 2, 4, 4), np.float32)], (4, 4))
        >>> [tuple(m.shape) for m in maps], float(np.max(maps[0])), float(np.max(maps[1]))
        ([(1, 2, 4, 4), (1, 2, 4, 4)], 1.0, 0.0)
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; valid views are {VIEWS}")
    return _render_each(tuple(tf.convert_to_tensor(raw, tf.float32) for raw in raws), tuple(int(side) for side in size), view)


def render_layers(raws, size, view: str = "positive") -> tf.Tensor:
    """Several layers' raw maps, each (N, T, h_l, w_l), -> (N, T, L, H, W) maps of one view.

    Example:
        >>> maps = render_layers([np.ones((1, 2, 2, 2), np.float32), -np.ones((1, 2, 4, 4), np.float32)], (4, 4))
        >>> maps.shape, float(np.max(maps[0, 0, 0])), float(np.max(maps[0, 0, 1]))
        (TensorShape([1, 2, 2, 4, 4]), 1.0, 0.0)
    """
    return tf.stack(render_each(raws, size, view), axis=2)
