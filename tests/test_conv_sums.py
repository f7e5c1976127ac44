"""Channel sums of a convolution's input gradient, read off its output gradient (seggradcam.conv_sums)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import seggradcam as sgc
from seggradcam import conv_sums

CASES = {  # name: (input shape, kernel shape, padding, dilations)
    "3x3 same": ((2, 9, 7, 3), (3, 3, 3, 5), "SAME", 1),
    "3x3 valid": ((2, 9, 7, 3), (3, 3, 3, 5), "VALID", 1),
    "3x3 same dilated 3": ((1, 13, 11, 2), (3, 3, 2, 4), "SAME", 3),
    "5x5 same": ((1, 9, 10, 2), (5, 5, 2, 4), "SAME", 1),
    "2x2 same (pad after only)": ((2, 8, 6, 3), (2, 2, 3, 4), "SAME", 1),
    "4x4 same (uneven pad)": ((1, 10, 9, 2), (4, 4, 2, 3), "SAME", 1),
    "1x7 same": ((1, 6, 12, 2), (1, 7, 2, 3), "SAME", 1),
    "1x1": ((2, 5, 5, 4), (1, 1, 4, 6), "VALID", 1),
    "explicit": ((1, 8, 8, 2), (3, 3, 2, 3), [[0, 0], [2, 0], [1, 3], [0, 0]], 1),
    # the kernel reaches past both borders: the rows left out at the top and at the bottom overlap
    "5x5 same on a 3x4 map": ((1, 3, 4, 2), (5, 5, 2, 3), "SAME", 1),
    "7x7 same on a 4x4 map": ((2, 4, 4, 2), (7, 7, 2, 3), "SAME", 1),
}


def _both(images, kernel, padding, dilations, gain):
    """(direct spatial mean of dS/dA, the same from conv_sums) for S = sum(Z * gain)."""

    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = tf.nn.conv2d(x, kernel, 1, padding, dilations=dilations)
            score = tf.reduce_sum(z * gain)
        plan = conv_sums.find(x)
        assert plan is not None
        from_output = plan.input_gradient_mean(tape.gradient(score, plan.output))[:, 0, 0]
        # the direct gradient from a graph of its own: TensorFlow's CPU kernel for the input
        # gradient of a dilated Conv2D is missing, tf.nn.convolution dilates by reshaping
        with tf.GradientTape() as tape:
            tape.watch(x)
            if dilations == 1:
                z = tf.nn.conv2d(x, kernel, 1, padding)
            else:
                z = tf.nn.convolution(x, kernel, padding=padding, dilations=dilations)
            score = tf.reduce_sum(z * gain)
        direct = tf.reduce_mean(tf.cast(tape.gradient(score, x), tf.float64), axis=[1, 2])
        return direct, from_output

    return run(images)


@pytest.mark.parametrize("case", sorted(CASES))
def test_sums_from_the_output_gradient_equal_the_input_gradient_mean(case):
    shape, kernel_shape, padding, dilations = CASES[case]
    rng = np.random.default_rng(len(case))
    images = tf.constant(rng.normal(size=shape).astype(np.float32))
    kernel = tf.constant(rng.normal(size=kernel_shape).astype(np.float32))
    out_shape = tf.nn.conv2d(images, kernel, 1, padding, dilations=dilations).shape
    # a gain that differs at every output position and is large at the borders, where
    # the padding makes the kernel taps see different sets of positions
    gain = rng.normal(size=out_shape).astype(np.float32)
    gain[:, [0, -1]] *= 50
    gain[:, :, [0, -1]] *= 50
    direct, from_output = _both(images, kernel, padding, dilations, tf.constant(gain))
    scale = float(np.abs(direct).max())
    # both are float32 gradients summed in float64: they differ by float32 roundings of
    # products and partial sums (about 1e-7 of the scale on any CPU), not by a border term
    # (a missing one moves the result by about 1e-1 of the scale here)
    np.testing.assert_allclose(from_output, direct, atol=1e-5 * scale)


def test_find_refuses_what_it_cannot_read_off():
    kernel = tf.ones((3, 3, 2, 2))

    found = {}

    def plans(x):
        shared = tf.identity(x)
        _ = tf.nn.conv2d(shared, kernel, 1, "SAME") + tf.reduce_sum(shared)  # a second use
        found["two uses"] = conv_sums.find(shared)
        strided = tf.identity(x)
        _ = tf.nn.conv2d(strided, kernel, 2, "SAME")
        found["stride 2"] = conv_sums.find(strided)
        grouped = tf.identity(x)
        _ = tf.nn.conv2d(grouped, tf.ones((3, 3, 1, 2)), 1, "SAME")  # groups=2
        found["grouped"] = conv_sums.find(grouped)
        depthwise = tf.identity(x)
        _ = tf.nn.depthwise_conv2d(depthwise, tf.ones((3, 3, 2, 1)), [1, 1, 1, 1], "SAME")
        found["depthwise"] = conv_sums.find(depthwise)
        padded = tf.identity(x)
        _ = tf.nn.conv2d(tf.pad(padded, [[0, 0], [1, 1], [1, 1], [0, 0]]), kernel, 1, "VALID")
        found["padded first"] = conv_sums.find(padded)
        wide = tf.identity(x)
        _ = tf.nn.conv2d(wide, tf.ones((9, 9, 2, 2)), 1, "SAME")  # 81 taps, pads of 4
        found["9x9 kernel"] = conv_sums.find(wide)
        half = tf.cast(x, tf.float16)
        _ = tf.nn.conv2d(half, tf.ones((3, 3, 2, 2), tf.float16), 1, "SAME")
        found["float16"] = conv_sums.find(half)
        plain = tf.identity(x)
        _ = tf.nn.conv2d(plain, kernel, 1, "SAME")
        found["plain"] = conv_sums.find(plain)
        return x

    tf.function(plans).get_concrete_function(tf.TensorSpec((1, 6, 6, 2), tf.float32))  # traced, not run
    assert {name: plan is not None for name, plan in found.items()} == {
        "two uses": False,
        "stride 2": False,
        "grouped": False,
        "depthwise": False,
        "padded first": False,
        "9x9 kernel": False,
        "float16": False,
        "plain": True,
    }
    assert conv_sums.find(tf.zeros((1, 6, 6, 2))) is None  # eager tensors have no graph uses


def test_an_explained_score_map_that_also_feeds_a_convolution_keeps_its_own_gradient():
    """Found in review: the scores' own uses of the map must count as uses (else weights were 0)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    seg = keras.layers.Conv2D(3, 3, padding="same", name="seg")(inputs)
    model = keras.Model(inputs, [seg, keras.layers.Conv2D(3, 3, padding="same", name="refine")(seg)])
    images = np.random.default_rng(1).uniform(size=(1, 8, 8, 3)).astype(np.float32)
    explainer = sgc.SegGradCAM(model, logits="seg", layers=["seg"])
    expl = explainer.explain(images, [sgc.ClassTarget(1, region="all")])
    assert explainer.engine.conv_sum_layers == ()
    # the score is the sum of class 1's logits over the map: d/d seg is 1 in channel 1, 0 elsewhere
    np.testing.assert_allclose(expl.weights["seg"][0, 0], [0.0, 1.0, 0.0], atol=1e-6)
