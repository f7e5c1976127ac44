"""The public contract of DESIGN.md section 3."""

import keras
import numpy as np
import pytest

import seggradcam as sgc

from .reference import relative_error


def test_explanation_fields_have_contract_shapes(unet_softmax, images):
    explainer = sgc.SegGradCAM(unet_softmax, layers=["bottleneck_conv2", "dec1_up"])
    expl = explainer.explain(images, [sgc.ClassTarget(0, region="all"), sgc.PixelTarget(4, 4)])
    assert expl.heatmaps.shape == (3, 2, 2, 32, 32) and expl.heatmaps.dtype == np.float32
    assert expl.raw["bottleneck_conv2"].shape == (3, 2, 8, 8)
    assert expl.raw["dec1_up"].shape == (3, 2, 32, 32)
    assert expl.weights["bottleneck_conv2"].shape == (3, 2, 16)
    assert expl.scores.shape == (3, 2)
    assert expl.masks.shape == (3, 2, 32, 32)
    assert expl.layers == ["bottleneck_conv2", "dec1_up"]
    assert [t.describe() for t in expl.targets] == ["class 0 (all)", "pixel (4, 4)"]
    assert np.isfinite(expl.heatmaps).all()
    assert expl.heatmaps.min() >= 0 and expl.heatmaps.max() <= 1
    peaks = expl.heatmaps.max(axis=(3, 4))
    assert np.all((peaks == 0) | np.isclose(peaks, 1))


def test_heatmap_is_relu_of_upsampled_raw_scaled_by_max(unet_softmax, images):
    expl = sgc.SegGradCAM(unet_softmax, layers="dec1_conv2").explain(images[:1], sgc.PixelTarget(4, 4))
    raw = expl.raw["dec1_conv2"][0, 0]  # already at input resolution: no upsampling
    positive = np.maximum(raw, 0)
    expected = positive / positive.max() if positive.max() > 0 else positive
    np.testing.assert_allclose(expl.heatmaps[0, 0, 0], expected, atol=1e-6)


def test_all_negative_map_stays_zero_not_nan():
    inputs = keras.Input((4, 4, 1))
    feat = keras.layers.Activation("relu", name="feat")(inputs)
    logits = keras.layers.Conv2D(1, 1, name="logits", kernel_initializer="ones")(feat)
    model = keras.Model(inputs, logits)
    model.get_layer("logits").set_weights([-np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)])
    image = np.ones((4, 4, 1), np.float32)
    expl = sgc.SegGradCAM(model, layers="feat").explain(image, sgc.ClassTarget(0, region="all"))
    assert expl.weights["feat"][0, 0, 0] == pytest.approx(-1.0)
    assert (expl.raw["feat"] < 0).all()
    assert not np.isnan(expl.heatmaps).any() and (expl.heatmaps == 0).all()


def test_int_target_is_class_target(unet_softmax, images):
    explainer = sgc.SegGradCAM(unet_softmax)
    cls = int(np.bincount(explainer.explain(images[:1], sgc.PixelTarget(0, 0)).prediction.ravel()).argmax())
    by_int = explainer.explain(images[:1], cls)
    by_target = explainer.explain(images[:1], sgc.ClassTarget(cls))
    np.testing.assert_array_equal(by_int.heatmaps, by_target.heatmaps)


def biased_model():
    """Class 0 wins everywhere (bias 10 against 0 and -10); class 2 is never predicted."""
    inputs = keras.Input((6, 6, 1))
    feat = keras.layers.Activation("relu", name="feat")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, name="logits")(feat))
    model.get_layer("logits").set_weights([np.full((1, 1, 1, 3), 0.1, np.float32), np.array([10.0, 0.0, -10.0], np.float32)])
    return model


@pytest.mark.parametrize("target", [sgc.ClassTarget(2), sgc.ComponentTarget(2)])
def test_class_not_predicted_raises_clear_error(target):
    explainer = sgc.SegGradCAM(biased_model(), layers="feat")
    with pytest.raises(ValueError, match=r"target 1 .* in image 0: class 2 is not predicted there \(predicted labels: \[0\]\)"):
        explainer.explain(np.ones((2, 6, 6, 1), np.float32), [sgc.ClassTarget(0), target])
    assert explainer.explain(np.ones((6, 6, 1)), sgc.ClassTarget(2, region="all")).scores[0, 0] < 0


def test_component_index_out_of_range(unet_softmax, images):
    explainer = sgc.SegGradCAM(unet_softmax)
    cls = int(explainer.explain(images[:1], sgc.PixelTarget(0, 0)).classes[0, 0])
    with pytest.raises(ValueError, match=r"object index 999 is out of range, class \d has \d+ object"):
        explainer.explain(images[:1], sgc.ComponentTarget(cls, which=999))


def test_seg_grad_cam_shortcut_matches_explainer(unet_softmax, images):
    heat = sgc.seg_grad_cam(unet_softmax, images[0], sgc.PixelTarget(3, 3), "dec2_conv2")
    expl = sgc.SegGradCAM(unet_softmax, layers="dec2_conv2").explain(images[0], sgc.PixelTarget(3, 3))
    assert heat.shape == (32, 32) and heat.dtype == np.float32
    np.testing.assert_array_equal(heat, expl.heatmaps[0, 0, 0])
    with pytest.raises(ValueError, match="one image"):
        sgc.seg_grad_cam(unet_softmax, images, 0, "auto")


def test_explanation_heatmap_accessor(unet_softmax, images):
    expl = sgc.SegGradCAM(unet_softmax, layers=["enc1_conv1", "dec1_up"]).explain(images[:1], sgc.PixelTarget(1, 1))
    np.testing.assert_array_equal(expl.heatmap(0, 0, "dec1_up"), expl.heatmaps[0, 0, 1])
    with pytest.raises(KeyError, match="explained layers are"):
        expl.heatmap(0, 0, "nope")
    assert "1 image(s) x 1 target(s) x 2 layer(s)" in repr(expl)


def test_chunked_explanations_equal_one_pass(unet_softmax, images):
    explainer = sgc.SegGradCAM(unet_softmax, layers=["enc1_conv1", "bottleneck_conv2", "dec1_up"])
    targets = [sgc.ClassTarget(c, region="all") for c in range(3)] + [sgc.PixelTarget(2, 5)]
    whole = explainer.explain(images, targets, max_memory=None)
    estimate = explainer.estimate_pass_bytes
    all_images_two_targets = estimate(3, 2, 32, 32)
    two_images_one_target = estimate(2, 1, 32, 32)
    # targets are split before images (every chunk pays a forward pass); images only when needed
    assert explainer.plan_chunks(images.shape, 4, all_images_two_targets) == (3, 2)
    tight = estimate(3, 1, 32, 32) - 1  # one target for all three images does not fit
    two_images, targets_per_chunk = explainer.plan_chunks(images.shape, 4, tight)
    assert two_images == 2 and estimate(2, targets_per_chunk, 32, 32) <= tight
    assert explainer.plan_chunks(images.shape, 4, estimate(3, 4, 32, 32)) == (3, 4)
    # A chunk is a different batch size, so kernels may split and sum in another order: float32
    # results then differ by a few ulps of each map's largest value (2.6e-6 absolute was seen on
    # an AVX2 CPU for heatmaps in [0, 1]). Compare relative to each array's scale with 1e-5.
    for budget in (all_images_two_targets, two_images_one_target, 1):
        chunked = explainer.explain(images, targets, max_memory=budget)
        assert relative_error(chunked.heatmaps, whole.heatmaps) < 1e-5
        assert relative_error(chunked.scores, whole.scores) < 1e-5
        for layer in explainer.layers:
            assert relative_error(chunked.raw[layer], whole.raw[layer]) < 1e-5
        np.testing.assert_array_equal(chunked.prediction, whole.prediction)
    with pytest.raises(ValueError, match="max_memory"):
        explainer.explain(images, targets, max_memory=-5)


def test_predict_matches_explanation_prediction(unet_softmax, images):
    explainer = sgc.SegGradCAM(unet_softmax)
    labels = explainer.predict(images)
    assert labels.shape == (3, 32, 32)
    np.testing.assert_array_equal(labels, explainer.explain(images, sgc.PixelTarget(0, 0)).prediction)
    logits = keras.Model(unet_softmax.inputs[0], unet_softmax.get_layer("logits").output)(images).numpy()
    np.testing.assert_array_equal(labels, logits.argmax(-1))


def test_new_numbers_of_targets_reuse_compiled_buckets(unet_softmax, images):
    explainer = sgc.SegGradCAM(unet_softmax, layers="dec1_conv2")
    pixels = [sgc.PixelTarget(r, r) for r in range(8)]
    explainer.explain(images[:1], pixels[:5])  # compiled for 6 targets
    explainer.explain(images[:1], pixels[:6])
    assert explainer.engine.trace_count == 1
    five = explainer.explain(images[:1], pixels[:5])
    alone = sgc.SegGradCAM(unet_softmax, layers="dec1_conv2").explain(images[:1], pixels[4])
    # the padded copies of the last target change nothing (1e-5: a 6-target pass may sum in another order)
    assert relative_error(five.raw["dec1_conv2"][:, 4], alone.raw["dec1_conv2"][:, 0]) < 1e-5
    assert five.heatmaps.shape[1] == 5 and explainer.engine.trace_count == 1


def test_shortcut_reuses_its_compiled_explainer(unet_softmax, images):
    from seggradcam.explainer import _cached_explainer

    first = sgc.seg_grad_cam(unet_softmax, images[0], 1, "dec2_conv2")
    cached = _cached_explainer(unet_softmax, "dec2_conv2")
    traces = cached.engine.trace_count
    second = sgc.seg_grad_cam(unet_softmax, images[1], sgc.PixelTarget(3, 3), "dec2_conv2")
    assert _cached_explainer(unet_softmax, "dec2_conv2") is cached and cached.engine.trace_count == traces
    assert first.shape == second.shape == (32, 32)
