"""Property tests (hypothesis) over random small models and inputs."""

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seggradcam as sgc

SETTINGS = settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def random_model(seed, size, channels, classes, width):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Conv2DTranspose(width, 2, strides=2, name="up")(x)
    x = keras.layers.Conv2D(classes, 1, name="logits")(x)
    return keras.Model(inputs, keras.layers.Softmax(name="softmax")(x))


models = st.fixed_dictionaries(
    dict(
        seed=st.integers(0, 10_000),
        size=st.sampled_from([8, 12, 16]),
        channels=st.integers(1, 3),
        classes=st.integers(2, 4),
        width=st.integers(2, 6),
    )
)  # models are built in the test body (building seeds keras)


@SETTINGS
@given(params=models, data=st.data())
def test_heatmaps_in_unit_range_without_nan(params, data):
    model = random_model(**params)
    size, channels = model.input_shape[1], model.input_shape[3]
    scale = data.draw(st.sampled_from([1e-3, 1.0, 1e3]))
    images = np.random.default_rng(data.draw(st.integers(0, 99))).normal(0, scale, (2, size, size, channels)).astype(np.float32)
    targets = [sgc.ClassTarget(c, region="all") for c in range(model.output_shape[-1])] + [sgc.PixelTarget(1, 2)]
    expl = sgc.SegGradCAM(model, layers="all").explain(images, targets)
    assert np.isfinite(expl.heatmaps).all()
    assert expl.heatmaps.min() >= 0 and expl.heatmaps.max() <= 1
    assert np.isfinite(expl.signed).all() and np.abs(expl.signed).max() <= 1


@SETTINGS
@given(params=models, seed=st.integers(0, 99))
def test_permuting_the_batch_permutes_the_results(params, seed):
    model = random_model(**params)
    size, channels = model.input_shape[1], model.input_shape[3]
    images = np.random.default_rng(seed).uniform(0, 1, (3, size, size, channels)).astype(np.float32)
    targets = [sgc.ClassTarget(0, region="all"), sgc.RegionTarget(box=(0, 0, 4, 4))]
    explainer = sgc.SegGradCAM(model, layers=["c1", "up"])
    order = np.array([2, 0, 1])
    straight = explainer.explain(images, targets)
    permuted = explainer.explain(images[order], targets)
    np.testing.assert_allclose(permuted.heatmaps, straight.heatmaps[order], atol=1e-5)
    np.testing.assert_allclose(permuted.scores, straight.scores[order], rtol=1e-5, atol=1e-5)


@SETTINGS
@given(params=models, factor=st.floats(0.01, 100.0), seed=st.integers(0, 99))
def test_scaling_the_logits_layer_leaves_normalised_heatmaps_unchanged(params, factor, seed):
    model = random_model(**params)
    size, channels = model.input_shape[1], model.input_shape[3]
    images = np.random.default_rng(seed).uniform(0, 1, (1, size, size, channels)).astype(np.float32)
    targets = [sgc.ClassTarget(1, region="all"), sgc.PixelTarget(3, 3, class_index=0)]
    before = sgc.SegGradCAM(model, layers=["c1", "c2", "up"]).explain(images, targets)
    layer = model.get_layer("logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * factor, bias * factor])
    try:
        after = sgc.SegGradCAM(model, layers=["c1", "c2", "up"]).explain(images, targets)
    finally:
        layer.set_weights([kernel, bias])
    np.testing.assert_allclose(after.heatmaps, before.heatmaps, atol=2e-4)
    np.testing.assert_allclose(after.scores, before.scores * factor, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("method, options", [("seg-grad-cam", None), ("seg-hires-grad-cam", None), ("seg-xres-grad-cam", {"pool_size": 2})])
@settings(max_examples=4, deadline=None, derandomize=True)
@given(params=models, seed=st.integers(0, 99))
def test_region_raw_map_is_sum_of_pixel_raw_maps(method, options, params, seed):
    """Linearity in the mask: y_region = sum of y_pixel, and these methods are linear in y."""
    model = random_model(**params)
    size, channels = model.input_shape[1], model.input_shape[3]
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (1, size, size, channels)).astype(np.float32)
    pixels = [(int(r), int(c)) for r, c in rng.integers(0, size, (4, 2))]
    pixels = list(dict.fromkeys(pixels))
    mask = np.zeros((size, size), bool)
    for r, c in pixels:
        mask[r, c] = True
    targets = [sgc.RegionTarget(mask=mask, class_index=1)] + [sgc.PixelTarget(r, c, class_index=1) for r, c in pixels]
    expl = sgc.SegGradCAM(model, layers=["c1", "c2", "up"], method=method, method_options=options).explain(images, targets)
    for layer in expl.layers:
        summed = expl.raw[layer][0, 1:].sum(axis=0)
        scale = max(np.abs(summed).max(), 1e-12)
        assert np.abs(expl.raw[layer][0, 0] - summed).max() / scale < 1e-4
    np.testing.assert_allclose(expl.scores[0, 0], expl.scores[0, 1:].sum(), rtol=1e-4, atol=1e-5)


def test_same_inputs_give_bit_identical_heatmaps(unet_softmax, images):
    explainer = sgc.SegGradCAM(unet_softmax, layers="all")
    targets = [
        sgc.ClassTarget(0, region="all"),
        sgc.PixelTarget(9, 9),
        sgc.ComponentTarget(int(np.argmax(np.bincount(explainer.explain(images[:1], sgc.PixelTarget(0, 0)).prediction.ravel())))),
    ]
    first = explainer.explain(images[:1], targets)
    for _ in range(3):
        again = explainer.explain(images[:1], targets)
        assert np.array_equal(again.heatmaps, first.heatmaps)
        for layer in explainer.layers:
            assert np.array_equal(again.raw[layer], first.raw[layer])
