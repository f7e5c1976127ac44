"""How gradients become maps: a method is one weighting function, registered with its options.

A method's function takes the gradients of one target's score with respect to one layer's
activations, ``grads`` (N, h, w, k), and the activations ``acts`` (N, h, w, k), and returns
the weights it puts on the activations: per channel, shaped (N, 1, 1, k), or per element,
shaped (N, h, w, k). The shared code (:meth:`BoundMethod.apply`) does this for every target
and turns the weights into the signed maps ``raw = sum_k weights * A_k`` and the reported
channel weights (for per-element methods, the spatial mean of the weights). Channel weights
of all targets multiply the activations in one product, so the activations are read once.

Registered methods:
    ``"seg-grad-cam"``: alpha_k = spatial mean of the gradient (Vinogradova et al. 2020).
    ``"seg-hires-grad-cam"``: the gradient itself, element by element (Rheude et al. 2024).
    ``"seg-xres-grad-cam"``: gradients pooled in p x p blocks (``pool="mean"`` or ``"max"``),
        repeated back to the layer size (Hasany et al. 2023). p = 1 is HiRes; p >= the
        layer size with mean pooling is Seg-Grad-CAM.
    ``"seg-grad-cam++"``: Grad-CAM++ weights (Chattopadhay et al. 2018) in the closed form
        for an exponential score, alpha_ij = 1 / (2 + S_k g_ij) with S_k = sum_ab A_k(a, b):
        no exponentials and no cubes, so large scores cannot overflow.

A new method is one function and one decorator line::

    @register("my-method")
    def my_weights(grads, acts):
        return tf.reduce_max(grads, axis=[1, 2], keepdims=True)

Example:
    >>> method = get_method("seg-grad-cam")
    >>> weights, raw = method.apply([tf.ones((1, 2, 2, 3))], tf.ones((1, 2, 2, 3)))
    >>> weights.shape, float(raw[0, 0, 0, 0])
    (TensorShape([1, 1, 3]), 3.0)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import tensorflow as tf

__all__ = ["METHODS", "BoundMethod", "Method", "Option", "get_method", "pool_gradients", "register", "spatial_mean", "spatial_sum"]

POOLS = ("mean", "max")
SAFE_DENOMINATOR = 1e-12  # Grad-CAM++: |2 + S g| below this is treated as zero
SUM_BLOCK = 8  # spatial_mean: pixels summed in float32 in row blocks of at most this many; blocks in float64


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a method: its default and a check that returns an error text or None."""

    default: Any
    check: Callable[[Any], str | None]


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered method: its name, weighting function and options.

    ``mean_gradient``: the weights are the spatial mean of the gradient, per channel, and
    nothing else, so a pass may hand over that mean instead (``seggradcam.conv_sums``).
    """

    name: str
    weigh: Callable
    options: dict
    mean_gradient: bool = False


@dataclasses.dataclass(frozen=True)
class BoundMethod:
    """A method with its options bound, ready to run inside the compiled pass."""

    method: Method
    options: dict

    @property
    def name(self) -> str:
        return self.method.name

    def apply(
        self, grads: list | None, acts: tf.Tensor, fused: bool = False, channel_means: list | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """T gradients (N, h, w, k) and activations (N, h, w, k) -> weights (N, T, k), raw (N, T, h, w).

        Args:
            channel_means: for a ``mean_gradient`` method, the T gradients' spatial means,
                (N, 1, 1, k) each, given instead of ``grads``.
            fused: the pass is compiled with XLA, which fuses an element-wise product summed
                over channels with the layer's own computation; a matrix product would first
                materialise the activations again. Without XLA that product would be
                materialised (T times the layer's size), so the channels are contracted as
                (N, h*w, k) x (N, k, T) instead. Both give the same maps up to float32
                summation order.
        """
        acts = tf.cast(acts, tf.float32)
        if channel_means is not None:
            if not self.method.mean_gradient:
                raise ValueError(f"method {self.name!r} needs the gradients themselves, not their means")
            weights = [tf.cast(mean, tf.float32) for mean in channel_means]
        else:
            weights = [self.method.weigh(tf.cast(grad, tf.float32), acts, **self.options) for grad in grads]
        if all(weight.shape[1] == 1 and weight.shape[2] == 1 for weight in weights):
            channel = tf.stack([weight[:, 0, 0] for weight in weights], axis=1)  # (N, T, k)
            if fused:
                return channel, tf.reduce_sum(acts[:, tf.newaxis] * channel[:, :, tf.newaxis, tf.newaxis, :], axis=-1)
            # (N, h*w, k) x (N, k, T), the layout matrix kernels expect ("ntk,nhwk->nthw" ran slower)
            return channel, tf.transpose(tf.einsum("nhwk,ntk->nhwt", acts, channel), [0, 3, 1, 2])
        channel = tf.stack([spatial_mean(weight)[:, 0, 0] for weight in weights], axis=1)
        raw = tf.stack([tf.reduce_sum(weight * acts, axis=-1) for weight in weights], axis=1)
        return channel, raw


METHODS: dict[str, Method] = {}


def register(name: str, mean_gradient: bool = False, **options: Option) -> Callable:
    """Register a weighting function under ``name`` with its options (see the module docstring).

    ``mean_gradient=True`` declares that the function returns ``spatial_mean(grads)`` and
    uses nothing else (see :class:`Method`).
    """

    def add(weigh: Callable) -> Callable:
        METHODS[name] = Method(name, weigh, options, mean_gradient)
        return weigh

    return add


def get_method(name: str, options: dict | None = None) -> BoundMethod:
    """Look up a method by name and bind its options.

    Raises:
        TypeError: a method name that is not a string.
        ValueError: unknown method, unknown option, or a bad option value.
    """
    if not isinstance(name, str):
        raise TypeError(f"method must be a string, one of {sorted(METHODS)}; got {name!r}")
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods are {sorted(METHODS)}")
    method = METHODS[name]
    given = dict(options or {})
    unknown = sorted(set(given) - set(method.options))
    if unknown:
        raise ValueError(f"method {name!r} has no option(s) {unknown}; its options are {list(method.options)}")
    bound = {key: option.default for key, option in method.options.items()}
    bound.update(given)
    for key, value in given.items():
        problem = method.options[key].check(value)
        if problem:
            raise ValueError(f"{key} {problem}, got {value!r}")
    return BoundMethod(method, bound)


def spatial_mean(values: tf.Tensor) -> tf.Tensor:
    """Mean over the two spatial axes of (N, h, w, k), kept as (N, 1, 1, k).

    Channel weights are means of gradients that largely cancel, and a float32 sum over a
    128x128 map loses up to ~1e-5 of the result's scale when it runs sequentially (as XLA's
    loops do) instead of as a tree (as TensorFlow's kernels do), far more where large
    gradients of both signs cancel. So the sum is taken by :func:`spatial_sum`.

    Example:
        >>> float(spatial_mean(tf.reshape(tf.range(12.0), (1, 3, 4, 1)))[0, 0, 0, 0])
        5.5
    """
    height, width = values.shape[1], values.shape[2]
    if None in (height, width, values.shape[3]):
        return tf.cast(tf.reduce_mean(tf.cast(values, tf.float64), axis=[1, 2], keepdims=True), values.dtype)
    mean = spatial_sum(values) / (height * width)
    return tf.cast(mean, values.dtype)[:, tf.newaxis, tf.newaxis, :]


def spatial_sum(values: tf.Tensor) -> tf.Tensor:
    """Sum over the two spatial axes of (N, h, w, k) with static sizes, as (N, k) float64.

    Pixels are summed in float32 only within blocks of at most ``SUM_BLOCK`` neighbours of
    a row (at most 7 roundings each), and the blocks in float64 (a float64 sum over every
    pixel costs XLA on CPU about twice as much).

    Example:
        >>> spatial_sum(tf.ones((1, 3, 20, 2))).numpy().tolist()
        [[60.0, 60.0]]
    """
    height, width, channels = values.shape[1], values.shape[2], values.shape[3]
    block = max(size for size in range(1, SUM_BLOCK + 1) if width % size == 0)
    blocks = tf.reduce_sum(tf.reshape(tf.cast(values, tf.float32), (-1, height, width // block, block, channels)), axis=3)
    return tf.reduce_sum(tf.cast(blocks, tf.float64), axis=[1, 2])


def _positive_int(value) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else "must be an int >= 1"


def _pool_kind(value) -> str | None:
    return None if value in POOLS else f"must be one of {POOLS}"


@register("seg-grad-cam", mean_gradient=True)
def seg_grad_cam_weights(grads: tf.Tensor, acts: tf.Tensor) -> tf.Tensor:
    """Seg-Grad-CAM: alpha_k = mean_uv g_k(u, v), one weight per channel."""
    return spatial_mean(grads)


@register("seg-hires-grad-cam")
def seg_hires_weights(grads: tf.Tensor, acts: tf.Tensor) -> tf.Tensor:
    """Seg-HiRes-Grad-CAM: the gradient itself weighs each activation element."""
    return grads


def pool_gradients(grads: tf.Tensor, pool_size: int, pool: str = "mean") -> tf.Tensor:
    """Pool (..., h, w, k) gradients in blocks and repeat each block's value over the block.

    Blocks start at the top-left corner; edge blocks may be smaller and are pooled over
    the pixels they contain. A pool size larger than the layer is clipped to it.

    Example:
        >>> grads = tf.reshape(tf.range(9.0), (1, 3, 3, 1))
        >>> pool_gradients(grads, 2)[0, :, :, 0].numpy().tolist()
        [[2.0, 2.0, 3.5], [2.0, 2.0, 3.5], [6.5, 6.5, 8.0]]
    """
    shape = tf.shape(grads)
    height, width, channels = shape[-3], shape[-2], shape[-1]
    flat = tf.reshape(grads, tf.stack([-1, height, width, channels]))  # (everything else, h, w, k)
    size_h = tf.minimum(pool_size, height)
    size_w = tf.minimum(pool_size, width)
    blocks_h = (height + size_h - 1) // size_h
    blocks_w = (width + size_w - 1) // size_w
    pad = [[0, 0], [0, blocks_h * size_h - height], [0, blocks_w * size_w - width], [0, 0]]
    padded = tf.pad(flat, pad)
    valid = tf.pad(tf.ones_like(flat[..., :1]), pad)
    tiles = tf.reshape(padded, tf.stack([-1, blocks_h, size_h, blocks_w, size_w, channels]))
    count = tf.reshape(valid, tf.stack([-1, blocks_h, size_h, blocks_w, size_w, 1]))
    if pool == "mean":
        pooled = tf.reduce_sum(tiles, axis=[2, 4]) / tf.reduce_sum(count, axis=[2, 4])
    else:
        lowest = tf.fill(tf.shape(tiles), tf.constant(tiles.dtype.min, tiles.dtype))
        pooled = tf.reduce_max(tf.where(count > 0, tiles, lowest), axis=[2, 4])
    expanded = tf.repeat(tf.repeat(pooled, size_h, axis=1), size_w, axis=2)[:, :height, :width]
    return tf.reshape(expanded, shape)


@register("seg-xres-grad-cam", pool_size=Option(2, _positive_int), pool=Option("mean", _pool_kind))
def seg_xres_weights(grads: tf.Tensor, acts: tf.Tensor, pool_size: int = 2, pool: str = "mean") -> tf.Tensor:
    """Seg-XRes-Grad-CAM: gradients pooled in blocks, element by element."""
    return pool_gradients(grads, pool_size, pool)


@register("seg-grad-cam++")
def seg_grad_cam_plus_plus_weights(grads: tf.Tensor, acts: tf.Tensor) -> tf.Tensor:
    """Seg-Grad-CAM++: w_k = sum_ij alpha_ij ReLU(g_ij), alpha_ij = 1 / (2 + S_k g_ij)."""
    total = spatial_mean(acts) * float(acts.shape[1] * acts.shape[2])  # S_k, (N, 1, 1, k)
    denominator = 2.0 + total * grads
    safe = tf.abs(denominator) > SAFE_DENOMINATOR
    alpha = tf.where(safe & (grads != 0), 1.0 / tf.where(safe, denominator, 1.0), 0.0)
    return spatial_mean(alpha * tf.nn.relu(grads)) * float(grads.shape[1] * grads.shape[2])
