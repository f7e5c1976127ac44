"""Methods: each against a textbook numpy version on reference gradients; limiting cases."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import seggradcam as sgc
from seggradcam.methods import get_method, pool_gradients

from .reference import Scores, Site, numpy_method, predicted_map, reference_gradients, reference_mask, relative_error

LAYERS = ["enc1_conv2", "bottleneck_conv2", "dec2_up", "dec1_conv2"]


@pytest.mark.parametrize(
    "method, options",
    [
        ("seg-grad-cam", {}),
        ("seg-hires-grad-cam", {}),
        ("seg-xres-grad-cam", {"pool_size": 3, "pool": "mean"}),
        ("seg-xres-grad-cam", {"pool_size": 4, "pool": "max"}),
        ("seg-grad-cam++", {}),
    ],
)
def test_methods_match_numpy_on_reference_gradients(unet_softmax, images, method, options):
    targets = [sgc.PixelTarget(6, 9), sgc.RegionTarget(box=(0, 0, 16, 32))]
    expl = sgc.SegGradCAM(unet_softmax, layers=LAYERS, method=method, method_options=options).explain(images[:2], targets)
    assert expl.method == method
    logits_model = keras.Model(unet_softmax.inputs[0], unet_softmax.get_layer("logits").output)
    for n in range(2):
        predicted = predicted_map(logits_model(images[n : n + 1]).numpy()[0])
        for t, target in enumerate(targets):
            mask, cls = reference_mask(target, predicted, (32, 32))
            for layer in LAYERS:
                scores = Scores(unet_softmax.get_layer("logits"))
                grads, acts, _ = reference_gradients(unet_softmax, images[n], Site(unet_softmax.get_layer(layer)), scores, mask, cls)
                expected = numpy_method(method, grads, acts, **options)
                # float64 textbook formulas against the float32 engine
                assert relative_error(expl.raw[layer][n, t], expected) < 1e-4, (method, layer)


def test_xres_limiting_cases(unet_softmax, images):
    targets = [sgc.ClassTarget(1, region="all"), sgc.PixelTarget(3, 30)]
    layers = ["bottleneck_conv2", "dec2_conv1"]

    def raw(method, **options):
        return sgc.SegGradCAM(unet_softmax, layers=layers, method=method, method_options=options).explain(images[:1], targets).raw

    hires, gradcam = raw("seg-hires-grad-cam"), raw("seg-grad-cam")
    xres_1 = raw("seg-xres-grad-cam", pool_size=1)
    xres_all = raw("seg-xres-grad-cam", pool_size=16)  # >= both layers' sizes (8 and 16)
    for layer in layers:
        np.testing.assert_allclose(xres_1[layer], hires[layer], rtol=1e-5, atol=1e-6)
        assert relative_error(xres_all[layer], gradcam[layer]) < 1e-5


def test_pool_gradients_uneven_blocks_by_hand():
    grads = np.arange(5 * 5, dtype=np.float32).reshape(1, 1, 5, 5, 1)
    pooled = pool_gradients(tf.constant(grads), 2, "mean").numpy()[0, 0, :, :, 0]
    g = grads[0, 0, :, :, 0]
    assert pooled[0, 0] == pytest.approx(g[:2, :2].mean())
    assert pooled[4, 4] == pytest.approx(g[4, 4])  # a 1x1 edge block
    assert pooled[4, 0] == pytest.approx(g[4, :2].mean())
    maxed = pool_gradients(tf.constant(grads), 2, "max").numpy()[0, 0, :, :, 0]
    assert maxed[1, 1] == g[1, 1] and maxed[2, 4] == g[3, 4]


def test_grad_cam_plus_plus_is_finite_for_huge_scores():
    inputs = keras.Input((16, 16, 2))
    feat = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="feat")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="logits")(feat))
    kernel, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([kernel * 1e6, bias])
    image = np.random.default_rng(0).uniform(0, 100, (16, 16, 2)).astype(np.float32)
    expl = sgc.SegGradCAM(model, layers="feat", method="seg-grad-cam++").explain(image, sgc.ClassTarget(0, region="all"))
    assert abs(expl.scores[0, 0]) > 1e8
    assert np.isfinite(expl.raw["feat"]).all() and np.isfinite(expl.weights["feat"]).all()
    assert np.isfinite(expl.heatmaps).all()


@pytest.mark.parametrize(
    "name, options, text",
    [
        ("grad-cam", None, "unknown method 'grad-cam'"),
        ("seg-grad-cam", {"pool_size": 2}, "has no option"),
        ("seg-xres-grad-cam", {"pool_size": 0}, "pool_size must be an int >= 1"),
        ("seg-xres-grad-cam", {"pool": "median"}, "pool must be one of"),
    ],
)
def test_bad_methods_and_options(name, options, text):
    with pytest.raises(ValueError, match=text):
        get_method(name, options)


def test_a_new_method_is_one_function_and_one_line(unet_softmax, images):
    from seggradcam.methods import METHODS, register

    @register("test-max-gradient")
    def max_gradient_weights(grads, acts):
        return tf.reduce_max(grads, axis=[1, 2], keepdims=True)

    try:
        target = sgc.PixelTarget(6, 9, class_index=1)
        expl = sgc.SegGradCAM(unet_softmax, layers="bottleneck_conv2", method="test-max-gradient").explain(images[:1], target)
    finally:
        del METHODS["test-max-gradient"]
    mask = np.zeros((32, 32))
    mask[6, 9] = 1.0
    layer = Site(unet_softmax.get_layer("bottleneck_conv2"))
    grads, acts, _ = reference_gradients(unet_softmax, images[0], layer, Scores(unet_softmax.get_layer("logits")), mask, 1)
    weights = grads.max(axis=(0, 1))
    assert relative_error(expl.weights["bottleneck_conv2"][0, 0], weights) < 1e-5  # float32 vs float64 order only
    assert relative_error(expl.raw["bottleneck_conv2"][0, 0], (acts * weights).sum(-1)) < 1e-5
    with pytest.raises(ValueError, match="unknown method 'test-max-gradient'"):
        get_method("test-max-gradient")


@pytest.mark.parametrize("name", ["seg-grad-cam", "seg-grad-cam++", "seg-hires-grad-cam"])
def test_fused_and_contracted_maps_agree(name):
    rng = np.random.default_rng(7)
    acts = tf.constant(rng.uniform(0, 2, (2, 6, 5, 8)).astype(np.float32))
    grads = [tf.constant(rng.normal(size=(2, 6, 5, 8)).astype(np.float32)) for _ in range(3)]
    method = get_method(name)
    plain_weights, plain_raw = method.apply(grads, acts)
    fused = tf.function(lambda g, a: method.apply(g, a, fused=True), jit_compile=True, autograph=False)
    fused_weights, fused_raw = fused(grads, acts)
    # XLA sums in another order (Grad-CAM++'s weights, the maps over 8 channels): a few float32 roundings apart
    np.testing.assert_allclose(fused_weights.numpy(), plain_weights.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fused_raw.numpy(), plain_raw.numpy(), rtol=1e-6, atol=1e-6 * float(np.abs(plain_raw).max()))
