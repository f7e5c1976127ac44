"""Channel sums of a convolution's input gradient, read off its output gradient.

Seg-Grad-CAM needs, per layer, only the spatial sum of the gradient dS/dA over each channel
of A. When A's one use is the input of a stride-1 convolution Z = conv(A, W), that sum
follows from dS/dZ without forming dS/dA: A[p] meets kernel tap (a, b) at every output
position q whose input position p = q + (a, b) * dilation - padding lies inside A, so

    sum_p dS/dA[p, k] = sum_(a, b, j) W[a, b, k, j] * S[a, b, j],
    S[a, b, j] = sum of dS/dZ[q, j] over those q,

and each S is the total sum of dS/dZ minus a few rows and columns at its border (the
padding's width). The engine uses this for the layers whose gradient nothing else needs
(the earliest explained layer of a pass): their backward pass through the convolution,
one layer of work per target, is skipped. Sums are taken as ``methods.spatial_sum`` takes
them (float32 within blocks of 8, float64 across), the rest in float64.

Example:
    >>> images = tf.random.stateless_normal((1, 6, 5, 2), seed=(1, 2))
    >>> kernel = tf.random.stateless_normal((3, 3, 2, 4), seed=(3, 4))
    >>> @tf.function
    ... def both(x):
    ...     with tf.GradientTape(persistent=True) as tape:
    ...         tape.watch(x)
    ...         z = tf.nn.conv2d(x, kernel, 1, "SAME")
    ...         score = tf.reduce_sum(z * tf.range(4.0))
    ...     plan = find(x)
    ...     direct = tf.reduce_sum(tape.gradient(score, x), axis=[1, 2])
    ...     return direct, plan.input_gradient_mean(tape.gradient(score, plan.output))[:, 0, 0] * 30
    >>> direct, from_output = both(images)
    >>> bool(np.allclose(direct, from_output, rtol=1e-5))
    True
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from .methods import spatial_sum

__all__ = ["ConvInput", "find", "MAX_BORDER", "MAX_TAPS"]

MAX_BORDER = 3  # padding rows/columns per side handled (7x7 SAME); wider ones keep the ordinary gradient
MAX_TAPS = 49  # kernel positions handled: each adds a few small ops to the traced graph


@dataclasses.dataclass(frozen=True)
class ConvInput:
    """A tensor used only as the input of one stride-1 NHWC convolution.

    Attributes:
        output: the convolution op's output Z (before any bias), (N, Ho, Wo, J).
        kernel: its kernel W, (kh, kw, k, J).
        rows: per kernel row a, the output rows [start, stop) whose input row lies inside A.
        columns: the same per kernel column b.
        size: (H, W) of A.
    """

    output: tf.Tensor
    kernel: tf.Tensor
    rows: tuple
    columns: tuple
    size: tuple

    def input_gradient_mean(self, output_gradient: tf.Tensor) -> tf.Tensor:
        """dS/dZ (N, Ho, Wo, J) -> the spatial mean of dS/dA per channel, (N, 1, 1, k) float32."""
        grads = output_gradient
        height, width = grads.shape[1], grads.shape[2]
        total = spatial_sum(grads)  # (N, J) float64
        head = max(start for start, _ in self.rows)
        tail = height - min(stop for _, stop in self.rows)
        left = max(start for start, _ in self.columns)
        right = width - min(stop for _, stop in self.columns)
        # the head and tail overlap when the kernel's extent exceeds the map: count each row once
        row_index = sorted(set(range(head)) | set(range(height - tail, height)))
        column_index = sorted(set(range(left)) | set(range(width - right, width)))
        row_sums = {i: spatial_sum(grads[:, i : i + 1]) for i in row_index}
        column_sums = {x: spatial_sum(grads[:, :, x : x + 1]) for x in column_index}
        cells = {(i, x): tf.cast(grads[:, i, x], tf.float64) for i in row_index for x in column_index}
        windows = []
        for start_r, stop_r in self.rows:
            dropped_rows = [i for i in row_index if i < start_r or i >= stop_r]
            for start_c, stop_c in self.columns:
                dropped_columns = [x for x in column_index if x < start_c or x >= stop_c]
                window = total
                for i in dropped_rows:
                    window -= row_sums[i]
                for x in dropped_columns:
                    window -= column_sums[x]
                for i in dropped_rows:
                    for x in dropped_columns:
                        window += cells[(i, x)]  # subtracted with its row and with its column
                windows.append(window)
        kh, kw = len(self.rows), len(self.columns)
        sums = tf.reshape(tf.stack(windows, axis=1), (-1, kh, kw, grads.shape[3]))  # (N, kh, kw, J)
        input_sums = tf.einsum("abkj,nabj->nk", tf.cast(self.kernel, tf.float64), sums)
        mean = input_sums / float(self.size[0] * self.size[1])
        return tf.cast(mean, tf.float32)[:, tf.newaxis, tf.newaxis, :]


def find(tensor) -> ConvInput | None:
    """The :class:`ConvInput` of ``tensor`` if its one use in the graph is a stride-1 NHWC Conv2D; else None.

    Only meaningful inside a ``tf.function`` graph, after the model has run (eager tensors
    carry no consumers).
    """
    if not tf.is_tensor(tensor) or tensor.shape.rank != 4:
        return None
    try:
        consumers = tensor.consumers()
    except (AttributeError, ValueError, NotImplementedError):  # eager tensors have no consumers
        return None
    if len(consumers) != 1 or consumers[0].type != "Conv2D":
        return None
    op = consumers[0]
    if op.inputs[0].name != tensor.name or op.get_attr("data_format") != b"NHWC":
        return None
    if list(op.get_attr("strides")) != [1, 1, 1, 1]:
        return None
    kernel = op.inputs[1]
    _, height, width, channels = tensor.shape
    output = op.outputs[0]
    if None in (height, width, channels) or None in tuple(output.shape[1:3]) or not kernel.shape.is_fully_defined():
        return None
    kh, kw, kernel_in, _ = kernel.shape
    if kernel_in != channels:
        return None  # grouped convolution
    if kh * kw > MAX_TAPS or output.dtype not in (tf.float32, tf.float64):
        # float16 (mixed precision): the engine's own path rounds dS/dA to float16, and the
        # float16 reference does too; summing from dS/dZ would skip that rounding
        return None
    dilations = list(op.get_attr("dilations"))
    padding = op.get_attr("padding")
    if padding == b"VALID":
        top = left = 0
    elif padding == b"SAME":
        top, left = (kh - 1) * dilations[1] // 2, (kw - 1) * dilations[2] // 2
    elif padding == b"EXPLICIT":
        explicit = list(op.get_attr("explicit_paddings"))
        top, left = explicit[2], explicit[4]
    else:
        return None
    out_h, out_w = output.shape[1], output.shape[2]
    rows = tuple(_inside(out_h, height, top, a * dilations[1]) for a in range(kh))
    columns = tuple(_inside(out_w, width, left, b * dilations[2]) for b in range(kw))
    borders = [start for start, _ in rows + columns] + [out_h - stop for _, stop in rows] + [out_w - stop for _, stop in columns]
    if max(borders) > MAX_BORDER or any(start >= stop for start, stop in rows + columns):
        return None
    return ConvInput(output, kernel, rows, columns, (height, width))


def _inside(outputs: int, inputs: int, pad: int, shift: int) -> tuple:
    """Output positions [start, stop) whose input position q + shift - pad lies in [0, inputs)."""
    return max(0, pad - shift), min(outputs, inputs + pad - shift)
