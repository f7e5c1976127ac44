"""Masks built inside the compiled pass, against numpy and scikit-image."""

import numpy as np
import pytest
import tensorflow as tf
from skimage.measure import label

import seggradcam as sgc
from seggradcam.encoding import EncodedTargets, encode_targets
from seggradcam.masks import build_masks, predicted_labels
from seggradcam.scores import Decision

from .reference import predicted_map, reference_mask


def built(logits, targets, out_shape, decision=Decision.ARGMAX):
    encoded = encode_targets(targets, out_shape, logits.shape[-1])
    tensors = EncodedTargets(*(tf.constant(array) for array in encoded))
    return build_masks(tf.constant(logits), tensors, decision, with_components=encoded.any_components)


def make_logits(rng, shape=(2, 12, 10, 3)):
    """Logits whose argmax has several objects per class."""
    labels = rng.integers(0, 3, size=(shape[0], 4, 3))
    labels = labels.repeat(3, axis=1).repeat(4, axis=2)[:, : shape[1], : shape[2]]
    logits = np.eye(3, dtype=np.float32)[labels] * 2.0 + rng.normal(0, 0.1, shape).astype(np.float32)
    return logits


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_in_graph_masks_match_numpy(seed):
    rng = np.random.default_rng(seed)
    logits = make_logits(rng)
    targets = [
        sgc.ClassTarget(1),
        sgc.ClassTarget(2, region="all", reduction="mean"),
        sgc.PixelTarget(5, 7),
        sgc.RegionTarget(box=(2, 2, 9, 8)),
        sgc.RegionTarget(polygon=[(0, 0), (0, 9), (11, 0)], class_index=0),
        sgc.ComponentTarget(0, which="largest"),
        sgc.ComponentTarget(1, which="smallest"),
        sgc.ComponentTarget(2, which=0),
    ]
    result = built(logits, targets, (12, 10))
    for n in range(2):
        predicted = predicted_map(logits[n])
        for t, target in enumerate(targets):
            if isinstance(target, sgc.RegionTarget) and target.polygon is not None:
                mask = target.region((12, 10))
                cls = 0
            else:
                mask, cls = reference_mask(target, predicted, (12, 10))
            assert result.class_index[n, t] == cls
            np.testing.assert_array_equal(result.masks[n, t].numpy(), mask)  # 0/1 masks, or one division: exact


def test_component_index_follows_scikit_image_label_order():
    logits = np.zeros((1, 6, 6, 2), np.float32)
    logits[..., 0] = 1.0
    logits[0, 0, 4, 1] = logits[0, 0, 5, 1] = 5.0  # object 0: first in raster order
    logits[0, 3:6, 0:3, 1] = 5.0  # object 1: larger, later in raster order
    result = built(logits, [sgc.ComponentTarget(1, which=0), sgc.ComponentTarget(1, which=1)], (6, 6))
    labels = label(logits[0].argmax(-1) == 1, connectivity=2)
    np.testing.assert_array_equal(result.masks[0, 0].numpy(), labels == 1)
    np.testing.assert_array_equal(result.masks[0, 1].numpy(), labels == 2)
    assert result.components.numpy().tolist() == [[2, 2]]


def test_diagonal_pixels_are_one_object_under_8_connectivity():
    logits = np.zeros((1, 4, 4, 2), np.float32)
    logits[..., 0] = 1.0
    for i in range(4):
        logits[0, i, i, 1] = 5.0
    result = built(logits, [sgc.ComponentTarget(1)], (4, 4))
    assert result.masks[0, 0].numpy().sum() == 4
    assert result.components.numpy()[0, 0] == 1


def test_only_component_targets_are_labelled():
    logits = np.zeros((1, 4, 4, 2), np.float32)
    logits[0, :2, :2, 1] = 5.0
    result = built(logits, [sgc.ClassTarget(1), sgc.ComponentTarget(1)], (4, 4))
    assert result.components.numpy().tolist() == [[0, 1]]  # the class target is never labelled


@pytest.mark.parametrize("decision, expected", [(Decision.POSITIVE, [[0, 1, 1]]), (Decision.HALF, [[0, 0, 1]])])
def test_one_channel_predictions(decision, expected):
    scores = tf.constant([[[[-1.0], [0.3], [0.9]]]])  # (1, 1, 3, 1)
    assert predicted_labels(scores, decision).numpy().tolist() == [expected]
