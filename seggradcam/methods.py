"""How gradients become channel weights and maps: one small function per method.

Each method takes the gradients of every target's score with respect to one layer's
activations and the activations themselves, and returns channel weights and signed
(pre-ReLU) maps, inside the compiled pass:

    grads: (T, N, h, w, k)   d y_t / d A for every target t and image n
    acts:  (N, h, w, k)      the layer's activations A
    returns weights (N, T, k) and raw maps (N, T, h, w)

Methods:
    ``"seg-grad-cam"``: alpha_k = spatial mean of the gradient; map = sum_k alpha_k A_k
        (Vinogradova et al. 2020).
    ``"seg-hires-grad-cam"``: map = sum_k g_k(u, v) A_k(u, v), no pooling (Rheude et al. 2024).
    ``"seg-xres-grad-cam"``: gradients pooled in p x p blocks (``pool="mean"`` or ``"max"``),
        repeated back to the layer size, times A (Hasany et al. 2023). p = 1 is HiRes;
        p >= the layer size with mean pooling is Seg-Grad-CAM.
    ``"seg-grad-cam++"``: Grad-CAM++ weights (Chattopadhay et al. 2018) in the closed form
        for an exponential score, written as alpha_ij = 1 / (2 + S_k g_ij) with
        S_k = sum_ab A_k(a, b): no exponentials and no cubes, so large scores cannot overflow.

For every method ``weights`` reports the channel weights the method applies; for the
element-wise methods (HiRes, XRes) it reports the spatial mean of the gradient, for comparison.
"""

from __future__ import annotations

import functools

import tensorflow as tf

POOLS = ("mean", "max")


def _mean_gradient(grads):
    return tf.transpose(tf.reduce_mean(grads, axis=[2, 3]), [1, 0, 2])  # (N, T, k)


def seg_grad_cam(grads: tf.Tensor, acts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Seg-Grad-CAM: alpha_k = mean_uv g_k(u, v); raw = sum_k alpha_k A_k.

    Example:
        >>> weights, raw = seg_grad_cam(tf.ones((1, 1, 2, 2, 3)), tf.ones((1, 2, 2, 3)))
        >>> float(raw[0, 0, 0, 0])
        3.0
    """
    alpha = _mean_gradient(grads)
    return alpha, tf.einsum("ntk,nhwk->nthw", alpha, acts)


def seg_hires_grad_cam(grads: tf.Tensor, acts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Seg-HiRes-Grad-CAM: raw(u, v) = sum_k g_k(u, v) A_k(u, v)."""
    raw = tf.einsum("tnhwk,nhwk->nthw", grads, acts)
    return _mean_gradient(grads), raw


def pool_gradients(grads: tf.Tensor, pool_size: int, pool: str = "mean") -> tf.Tensor:
    """Pool (T, N, h, w, k) gradients in blocks and repeat each block's value over the block.

    Blocks start at the top-left corner; edge blocks may be smaller and are pooled over
    the pixels they contain. A pool size larger than the layer is clipped to it.
    """
    shape = tf.shape(grads)
    height, width = shape[2], shape[3]
    flat = tf.reshape(grads, tf.concat([[-1], shape[2:]], axis=0))  # (T*N, h, w, k)
    size_h = tf.minimum(pool_size, height)
    size_w = tf.minimum(pool_size, width)
    blocks_h = (height + size_h - 1) // size_h
    blocks_w = (width + size_w - 1) // size_w
    pad = [[0, 0], [0, blocks_h * size_h - height], [0, blocks_w * size_w - width], [0, 0]]
    padded = tf.pad(flat, pad)
    valid = tf.pad(tf.ones_like(flat[..., :1]), pad)
    tiles = tf.reshape(padded, tf.stack([-1, blocks_h, size_h, blocks_w, size_w, shape[4]]))
    count = tf.reshape(valid, tf.stack([-1, blocks_h, size_h, blocks_w, size_w, 1]))
    if pool == "mean":
        pooled = tf.reduce_sum(tiles, axis=[2, 4]) / tf.reduce_sum(count, axis=[2, 4])
    else:
        lowest = tf.fill(tf.shape(tiles), tf.constant(tiles.dtype.min, tiles.dtype))
        pooled = tf.reduce_max(tf.where(count > 0, tiles, lowest), axis=[2, 4])
    expanded = tf.repeat(tf.repeat(pooled, size_h, axis=1), size_w, axis=2)[:, :height, :width]
    return tf.reshape(expanded, shape)


def seg_xres_grad_cam(grads: tf.Tensor, acts: tf.Tensor, pool_size: int = 2, pool: str = "mean") -> tuple[tf.Tensor, tf.Tensor]:
    """Seg-XRes-Grad-CAM: block-pooled gradients times activations, summed over channels."""
    pooled = pool_gradients(grads, pool_size, pool)
    return _mean_gradient(grads), tf.einsum("tnhwk,nhwk->nthw", pooled, acts)


def seg_grad_cam_plus_plus(grads: tf.Tensor, acts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Seg-Grad-CAM++: w_k = sum_ij alpha_ij ReLU(g_ij), alpha_ij = 1 / (2 + S_k g_ij)."""
    total = tf.reduce_sum(acts, axis=[1, 2])[tf.newaxis, :, tf.newaxis, tf.newaxis, :]  # (1, N, 1, 1, k)
    denominator = 2.0 + total * grads
    safe = tf.abs(denominator) > 1e-12
    alpha = tf.where(safe & (grads != 0), 1.0 / tf.where(safe, denominator, 1.0), 0.0)
    weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=[2, 3])  # (T, N, k)
    weights = tf.transpose(weights, [1, 0, 2])
    return weights, tf.einsum("ntk,nhwk->nthw", weights, acts)


METHODS = {
    "seg-grad-cam": seg_grad_cam,
    "seg-hires-grad-cam": seg_hires_grad_cam,
    "seg-xres-grad-cam": seg_xres_grad_cam,
    "seg-grad-cam++": seg_grad_cam_plus_plus,
}
OPTIONS = {"seg-xres-grad-cam": ("pool_size", "pool")}


def get_method(name: str, options: dict | None = None):
    """Look up a method by name, binding its options.

    Raises:
        ValueError: unknown method, unknown option, or a bad option value.
        TypeError: a method name that is not a string.
    """
    if not isinstance(name, str):
        raise TypeError(f"method must be a string, one of {sorted(METHODS)}; got {name!r}")
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods are {sorted(METHODS)}")
    options = dict(options or {})
    allowed = OPTIONS.get(name, ())
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"method {name!r} has no option(s) {unknown}; its options are {list(allowed)}")
    if "pool_size" in options:
        size = options["pool_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"pool_size must be an int >= 1, got {size!r}")
    if "pool" in options and options["pool"] not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {options['pool']!r}")
    return functools.partial(METHODS[name], **options) if options else METHODS[name]
