"""Empty maps: the warning, the diagnosis numbers, signed and counterfactual views."""

import keras
import numpy as np
import pytest

import seggradcam as sgc


def negative_model():
    """feat = ReLU(conv(x)) >= 0 and logits = feat @ w with w < 0: every alpha_k is negative."""
    inputs = keras.Input((8, 8, 2))
    feat = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="feat")(inputs)
    logits = keras.layers.Conv2D(1, 1, name="logits")(feat)
    model = keras.Model(inputs, logits)
    rng = np.random.default_rng(0)
    model.get_layer("feat").set_weights([rng.uniform(0.1, 1, (3, 3, 2, 3)).astype(np.float32), np.zeros(3, np.float32)])
    model.get_layer("logits").set_weights([-rng.uniform(0.5, 1, (1, 1, 3, 1)).astype(np.float32), np.zeros(1, np.float32)])
    return model


def test_all_negative_weights_warn_and_give_empty_map_with_counterfactual():
    model = negative_model()
    image = np.random.default_rng(1).uniform(0, 1, (8, 8, 2)).astype(np.float32)
    with pytest.warns(sgc.EmptyMapWarning, match=r"1 of 1 heatmap\(s\) are empty.*layer 'feat' for class 0 \(all\)"):
        expl = sgc.SegGradCAM(model, layers="feat").explain(image, sgc.ClassTarget(0, region="all"))
    assert (expl.weights["feat"] < 0).all()
    assert (expl.heatmaps == 0).all()
    assert expl.counterfactual.max() == pytest.approx(1.0)
    assert expl.signed.min() == pytest.approx(-1.0) and expl.signed.max() <= 0
    minus_signed = np.maximum(-expl.signed, 0)
    np.testing.assert_allclose(expl.counterfactual, minus_signed / minus_signed.max(), atol=1e-6)
    diagnosis = expl.diagnose()
    assert diagnosis.empty.all() and diagnosis.negative_share[0, 0, 0] == 1.0
    assert diagnosis.removed_share[0, 0, 0] == pytest.approx(1.0)
    assert "EMPTY" in str(diagnosis) and "expl.counterfactual" in str(diagnosis)


def test_no_warning_when_maps_are_not_empty(unet_softmax, images):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", sgc.EmptyMapWarning)
        expl = sgc.SegGradCAM(unet_softmax, layers="dec1_conv2").explain(images[:1], sgc.PixelTarget(1, 1))
    assert not expl.diagnose().empty.any()
    assert expl.heatmaps.max() == pytest.approx(1.0)


def test_diagnosis_numbers_match_closed_form():
    """logits = x @ w (1x1 conv) explained at the input: alpha = mean(M) w and raw = x @ alpha."""
    inputs = keras.Input((5, 4, 3))
    feat = keras.layers.Activation("linear", name="feat")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="logits")(feat))
    w = np.array([[0.5, -1.0], [-2.0, 0.3], [1.5, 0.2]], np.float32)
    model.get_layer("logits").set_weights([w.reshape(1, 1, 3, 2), np.zeros(2, np.float32)])
    x = np.random.default_rng(3).normal(size=(5, 4, 3)).astype(np.float32)
    mask = np.zeros((5, 4), bool)
    mask[1:3, :] = True
    expl = sgc.SegGradCAM(model, layers="feat").explain(x, sgc.RegionTarget(mask=mask, class_index=0))
    alpha = mask.mean() * w[:, 0]
    raw = x @ alpha
    d = expl.diagnose()
    assert d.negative_share[0, 0, 0] == pytest.approx((alpha < 0).mean())
    assert d.positive_energy[0, 0, 0] == pytest.approx(np.maximum(raw, 0).sum(), rel=1e-5)
    assert d.negative_energy[0, 0, 0] == pytest.approx(np.maximum(-raw, 0).sum(), rel=1e-5)
    expected_removed = np.maximum(-raw, 0).sum() / np.abs(raw).sum()
    assert d.removed_share[0, 0, 0] == pytest.approx(expected_removed, rel=1e-5)
    assert not d.empty[0, 0, 0]
    row = d.rows()[0]
    assert row["layer"] == "feat" and "33% of channel weights negative" in row["message"]


def test_signed_view_is_scaled_by_max_abs(unet_softmax, images):
    expl = sgc.SegGradCAM(unet_softmax, layers=["dec1_conv2", "bottleneck_conv2"]).explain(images[:1], sgc.PixelTarget(4, 4))
    raw = expl.raw["dec1_conv2"][0, 0]  # input resolution already: no upsampling
    np.testing.assert_allclose(expl.signed[0, 0, 0], raw / np.abs(raw).max(), atol=1e-6)
    assert np.abs(expl.signed).max(axis=(3, 4)) == pytest.approx(1.0)
    np.testing.assert_array_equal(expl.view("positive"), expl.heatmaps)
    with pytest.raises(ValueError, match="'negative'"):
        expl.view("negative")
