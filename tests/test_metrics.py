"""Metrics against hand-computed values on tiny arrays; a deletion curve that must fall."""

import keras
import numpy as np
import pytest

import seggradcam as sgc
from seggradcam import metrics


def one(array):
    """Wrap a 2-D map as (N=1, T=1, L=1, H, W)."""
    return np.asarray(array, np.float64)[np.newaxis, np.newaxis, np.newaxis]


def test_energy_inside_by_hand():
    heat = one([[0.5, 1.0], [0.0, 0.5]])
    mask = np.array([[[[1, 1], [0, 0]]]])
    assert metrics.energy_inside(heat, mask)[0, 0, 0] == pytest.approx(1.5 / 2.0)
    assert np.isnan(metrics.energy_inside(one(np.zeros((2, 2))), mask)[0, 0, 0])


def test_pointing_game_by_hand():
    heat = one([[0.1, 0.2, 0.9], [0.0, 0.3, 0.2]])
    assert metrics.pointing_game(heat, np.array([[0, 0, 1], [0, 0, 0]]))[0, 0, 0] == 1.0
    assert metrics.pointing_game(heat, np.array([[1, 1, 0], [1, 1, 1]]))[0, 0, 0] == 0.0


def test_map_iou_by_hand():
    heat = one([[0.9, 0.6, 0.1], [0.4, 0.7, 0.0]])  # >= 0.5: (0,0), (0,1), (1,1)
    mask = np.array([[1, 0, 0], [1, 1, 0]])  # (0,0), (1,0), (1,1)
    assert metrics.map_iou(heat, mask)[0, 0, 0] == pytest.approx(2 / 4)
    assert metrics.map_iou(heat, mask, threshold=0.8)[0, 0, 0] == pytest.approx(1 / 3)


def test_bias_share_by_hand():
    heat = one([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    tile = np.zeros((2, 4), bool)
    tile[:, :2] = True  # half the area, holds 2 of 4 units of mass
    assert metrics.bias_share(heat, tile)[0, 0, 0] == pytest.approx((2 / 4) / (4 / 8))
    tile = np.zeros((2, 4), bool)
    tile[0, 0] = True  # 1/8 of the area, 1/4 of the mass
    assert metrics.bias_share(heat, tile)[0, 0, 0] == pytest.approx((1 / 4) / (1 / 8))


def test_metric_masks_broadcast_over_targets_and_check_size():
    heat = np.ones((2, 3, 1, 4, 4))
    truth = np.zeros((2, 4, 4))
    truth[:, :2] = 1
    assert metrics.energy_inside(heat, truth).shape == (2, 3, 1)
    with pytest.raises(ValueError, match="does not match"):
        metrics.energy_inside(heat, np.ones((3, 3)))


def additive_model():
    """logit_0 = sum of the input channels at each pixel (1x1 conv with unit weights)."""
    inputs = keras.Input((8, 8, 1))
    feat = keras.layers.Activation("linear", name="feat")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="logits")(feat))
    model.get_layer("logits").set_weights([np.array([[[[1.0, -1.0]]]], np.float32), np.zeros(2, np.float32)])
    return model


def test_deletion_curve_falls_and_insertion_rises_on_additive_model():
    model = additive_model()
    image = np.random.default_rng(0).uniform(0.1, 1.0, (8, 8, 1)).astype(np.float32)
    explainer = sgc.SegGradCAM(model, layers="feat")
    expl = explainer.explain(image, sgc.ClassTarget(0, region="all"))
    # the map of an additive model at its input is the image itself: a perfect ranking
    np.testing.assert_allclose(expl.heatmaps[0, 0, 0], image[..., 0] / image.max(), rtol=1e-5)
    deletion = metrics.faithfulness(explainer, expl, "deletion", steps=8, baseline="zero")
    curve = deletion["curves"][0, 0, 0]
    assert curve[0] == pytest.approx(image.sum(), rel=1e-5) and curve[-1] == pytest.approx(0, abs=1e-5)
    assert np.all(np.diff(curve) < 0)
    # the best ranking removes the most mass first: its curve is convex, below the straight line
    assert deletion["auc"][0, 0, 0] < 0.5 * image.sum()
    insertion = metrics.faithfulness(explainer, expl, "insertion", steps=8, baseline="zero")
    assert np.all(np.diff(insertion["curves"][0, 0, 0]) > 0)
    assert insertion["auc"][0, 0, 0] > 0.5 * image.sum()
    np.testing.assert_allclose(deletion["normalised_auc"], deletion["auc"] / image.sum(), rtol=1e-5)


def test_faithfulness_arguments():
    model = additive_model()
    explainer = sgc.SegGradCAM(model, layers="feat")
    expl = explainer.explain(np.ones((8, 8, 1)), sgc.ClassTarget(0, region="all"))
    with pytest.raises(ValueError, match="'sideways'"):
        metrics.faithfulness(explainer, expl, "sideways")
    with pytest.raises(ValueError, match="'noise'"):
        metrics.faithfulness(explainer, expl, baseline="noise")
    with pytest.raises(ValueError, match="steps"):
        metrics.faithfulness(explainer, expl, steps=0)


@pytest.mark.parametrize("baseline", ["blur", "mean", "zero"])
def test_baselines_keep_shape(baseline):
    image = np.random.default_rng(1).uniform(size=(16, 12, 3)).astype(np.float32)
    base = metrics.baseline_image(image, baseline)
    assert base.shape == image.shape
    if baseline == "mean":
        np.testing.assert_allclose(base[3, 4], image.mean(axis=(0, 1)), rtol=1e-6)


def test_metrics_are_per_layer():
    heat = np.zeros((1, 1, 2, 2, 2))
    heat[0, 0, 0, 0, 0] = 1.0  # layer 0 peaks inside the mask
    heat[0, 0, 1, 1, 1] = 1.0  # layer 1 peaks outside
    mask = np.array([[1, 0], [0, 0]])
    np.testing.assert_array_equal(metrics.pointing_game(heat, mask)[0, 0], [1.0, 0.0])
    np.testing.assert_array_equal(metrics.energy_inside(heat, mask)[0, 0], [1.0, 0.0])
