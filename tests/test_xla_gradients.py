"""The rerouted max-pool gradient equals TensorFlow's own, bit for bit, ties included."""

import numpy as np
import pytest
import tensorflow as tf

from seggradcam.xla_gradients import reroute

# (input height, width, window, stride, padding, rerouted?)
CASES = [
    (8, 10, (2, 2), (2, 2), "VALID", True),
    (9, 11, (2, 2), (2, 2), "VALID", True),  # last row and column dropped by the pool
    (9, 12, (3, 3), (3, 3), "VALID", True),
    (8, 9, (2, 3), (2, 3), "VALID", True),
    (8, 12, (2, 2), (2, 2), "SAME", True),
    (9, 12, (2, 2), (2, 2), "SAME", False),  # a padded edge window: TensorFlow's gradient kept
    (9, 9, (3, 3), (2, 2), "VALID", False),  # overlapping windows: kept
]


def pool_gradients(x, upstream, window, stride, padding, rerouted: bool):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.nn.max_pool2d(x, window, stride, padding)
        if rerouted:
            y = reroute(y)
    return tape.gradient(y, x, output_gradients=upstream)


@pytest.mark.parametrize("height, width, window, stride, padding, expect_rerouted", CASES)
@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_same_gradient_as_tensorflow(height, width, window, stride, padding, expect_rerouted, jit):
    rng = np.random.default_rng(height * width)
    # small integers: most windows hold tied maxima, where the routing rule matters
    x = tf.constant(rng.integers(0, 3, size=(2, height, width, 3)).astype(np.float32))
    shape = tf.nn.max_pool2d(x, window, stride, padding).shape
    upstream = tf.constant(rng.normal(size=shape).astype(np.float32))
    own = tf.function(lambda a, b: pool_gradients(a, b, window, stride, padding, False), jit_compile=jit, autograph=False)
    fast = tf.function(lambda a, b: pool_gradients(a, b, window, stride, padding, True), jit_compile=jit, autograph=False)
    np.testing.assert_array_equal(fast(x, upstream).numpy(), own(x, upstream).numpy())

    def op_types(a, b):
        return {op.type for op in fast.get_concrete_function(a, b).graph.get_operations()}

    assert ("IdentityN" in op_types(x, upstream)) == expect_rerouted


def test_forward_values_untouched():
    x = tf.constant(np.random.default_rng(0).normal(size=(1, 6, 6, 2)).astype(np.float32))
    traced = tf.function(lambda a: reroute(tf.nn.max_pool2d(a, 2, 2, "VALID")), autograph=False)
    np.testing.assert_array_equal(traced(x).numpy(), tf.nn.max_pool2d(x, 2, 2, "VALID").numpy())


def test_other_outputs_returned_as_they_are():
    traced = tf.function(lambda a: reroute(tf.nn.relu(a)), autograph=False)
    graph = traced.get_concrete_function(tf.TensorSpec((1, 4, 4, 1))).graph
    assert "IdentityN" not in {op.type for op in graph.get_operations()}
    assert reroute([1, 2]) == [1, 2]
