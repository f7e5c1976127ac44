"""Exact gradients that XLA runs fast on CPU, for ops whose own XLA gradient is slow.

XLA lowers the gradient of a max pool to a select-and-scatter loop: on the 2-core project
machine it took 34 to 38 ms for one 2x2 pool of a (8, 128, 128, 16) map, three times a
3x3 convolution on the same map, and a U-Net backward pass has one per pool. A
non-overlapping max pool (window = stride) routes each window's gradient to the first
maximum of the window in row-major order (TensorFlow's rule, eager, graph and XLA alike);
written as comparisons and products on the reshaped windows it is the same gradient, bit
for bit, and fuses into one loop (6 ms on that map).

:func:`reroute` gives such an output that gradient and leaves every other output as it
is. The forward values are never touched: the rerouted tensor is an identity of the op's
own output. The engine uses it only in its XLA-compiled passes (TensorFlow's own kernel
for the pool gradient is faster than these element-wise ops without XLA).

Example:
    >>> x = tf.constant([[[[1.0], [3.0]], [[3.0], [0.0]]]])        # one 2x2 window, tied maxima
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = reroute(tf.nn.max_pool2d(x, 2, 2, "VALID"))
    >>> tape.gradient(y, x)[0, :, :, 0].numpy().tolist()           # the first maximum gets it
    [[0.0, 1.0], [0.0, 0.0]]
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["first_maximum_mask", "reroute", "route", "MAX_WINDOW"]

MAX_WINDOW = 16  # windows with more positions keep XLA's own gradient (the unrolled rule grows with the window)


def reroute(output):
    """``output`` with a fast exact gradient if its op is a non-overlapping NHWC max pool; else unchanged.

    Only meaningful inside a ``tf.function`` graph (eager tensors carry no op).
    """
    window = _pool_window(output)
    if window is None:
        return output
    return _first_maximum_routed(output.op.inputs[0], output, window)


def _pool_window(output) -> tuple[int, int] | None:
    """(height, width) of a max pool whose window equals its stride and tiles its input; else None."""
    op = getattr(output, "op", None)
    if not tf.is_tensor(output) or op is None or getattr(op, "type", None) != "MaxPool":
        return None
    if op.get_attr("data_format") != b"NHWC":
        return None
    ksize, strides, padding = list(op.get_attr("ksize")), list(op.get_attr("strides")), op.get_attr("padding")
    if ksize != strides or ksize[0] != 1 or ksize[3] != 1 or ksize[1] * ksize[2] > MAX_WINDOW:
        return None
    shape = op.inputs[0].shape
    if shape.rank != 4 or None in shape[1:3]:
        return None
    if padding == b"SAME" and (shape[1] % ksize[1] or shape[2] % ksize[2]):
        return None  # SAME with a partial window at the edge: keep the op's own gradient
    if padding not in (b"VALID", b"SAME"):
        return None
    return ksize[1], ksize[2]


def _first_maximum_routed(pooled_input, output, window: tuple[int, int]):
    # the routing depends on the forward values only: built once, shared by every backward pass
    chosen = first_maximum_mask(pooled_input, output, window)

    @tf.custom_gradient
    def routed(x):
        def gradient(upstream):
            return route(chosen, upstream, x.shape)

        return tf.identity(output), gradient

    return routed(pooled_input)


def first_maximum_mask(inputs, output, window: tuple[int, int]):
    """1 at the first maximum of each window (row-major order), else 0.

    Args:
        inputs: (N, H, W, k) the pool's input.
        output: (N, H // ph, W // pw, k) the pool's output.
        window: (ph, pw), equal to the stride.

    Returns:
        (N, H // ph, ph, W // pw, pw, k), the dtype of ``inputs``.
    """
    height, width = window
    _, rows, columns, channels = output.shape
    cropped = inputs[:, : rows * height, : columns * width]
    windows = tf.reshape(cropped, (-1, rows, height, columns, width, channels))
    taken = None  # a maximum already met earlier in the window
    window_rows = []
    for i in range(height):
        row = []
        for j in range(width):
            is_max = tf.equal(windows[:, :, i, :, j], output)
            row.append(is_max if taken is None else tf.logical_and(is_max, tf.logical_not(taken)))
            taken = is_max if taken is None else tf.logical_or(taken, is_max)
        window_rows.append(tf.stack(row, axis=3))  # (N, rows, columns, pw, k)
    return tf.cast(tf.stack(window_rows, axis=2), inputs.dtype)


def route(chosen, upstream, input_shape):
    """The pool's gradient: each window's ``upstream`` value at its chosen position.

    Returns:
        ``input_shape``, zero elsewhere and in rows or columns the pool dropped.
    """
    _, rows, height, columns, width, channels = chosen.shape
    routed = tf.cast(chosen, upstream.dtype) * upstream[:, :, tf.newaxis, :, tf.newaxis, :]
    grads = tf.reshape(routed, (-1, rows * height, columns * width, channels))
    missing_h = input_shape[1] - rows * height
    missing_w = input_shape[2] - columns * width
    if missing_h or missing_w:
        grads = tf.pad(grads, [[0, 0], [0, missing_h], [0, missing_w], [0, 0]])
    return grads
