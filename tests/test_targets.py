"""Targets: validation, encoding, and the in-graph masks against numpy."""

import numpy as np
import pytest
import tensorflow as tf
from skimage.measure import label

import seggradcam as sgc
from seggradcam.targets import as_target_list, build_masks, encode_targets

from .reference import predicted_map, reference_mask


@pytest.mark.parametrize(
    "make, error, text",
    [
        (lambda: sgc.ClassTarget(-1), ValueError, ">= 0, got -1"),
        (lambda: sgc.ClassTarget(1.5), TypeError, "got 1.5"),
        (lambda: sgc.ClassTarget(True), TypeError, "got True"),
        (lambda: sgc.ClassTarget(1, region="everywhere"), ValueError, "'everywhere'"),
        (lambda: sgc.ClassTarget(1, reduction="max"), ValueError, "'max'"),
        (lambda: sgc.PixelTarget(-2, 0), ValueError, "row must be >= 0"),
        (lambda: sgc.RegionTarget(), ValueError, "exactly one of"),
        (lambda: sgc.RegionTarget(box=(0, 0, 2, 2), mask=np.ones((2, 2))), ValueError, "exactly one of"),
        (lambda: sgc.RegionTarget(box=(5, 0, 2, 2)), ValueError, "reversed"),
        (lambda: sgc.RegionTarget(box=(0, 0, 2)), ValueError, "row0, col0, row1, col1"),
        (lambda: sgc.RegionTarget(mask=np.zeros((4, 4), bool)), ValueError, "empty"),
        (lambda: sgc.RegionTarget(mask=np.ones(4)), ValueError, "2-D"),
        (lambda: sgc.RegionTarget(polygon=[(0, 0), (3, 3)]), ValueError, "3 or more"),
        (lambda: sgc.ComponentTarget(1, which="biggest"), ValueError, "'biggest'"),
    ],
)
def test_bad_targets_are_refused_on_construction(make, error, text):
    with pytest.raises(error, match=text):
        make()


@pytest.mark.parametrize(
    "target, text",
    [
        (sgc.ClassTarget(3), "class index 3 is out of range.*0..2"),
        (sgc.PixelTarget(8, 1), r"outside the output map of size 8x6"),
        (sgc.RegionTarget(box=(0, 0, 9, 2)), "reaches outside"),
        (sgc.RegionTarget(mask=np.ones((4, 4))), r"shape \(4, 4\) but the model's output map is \(8, 6\)"),
        (sgc.RegionTarget(polygon=[(20, 20), (20, 30), (30, 30)]), "covers no pixel"),
    ],
)
def test_targets_checked_against_output_shape(target, text):
    with pytest.raises(ValueError, match=text):
        encode_targets([target], (8, 6), 3)


def test_int_and_list_shorthands():
    targets = as_target_list([2, sgc.PixelTarget(0, 1)])
    assert isinstance(targets[0], sgc.ClassTarget) and targets[0].class_index == 2
    with pytest.raises(TypeError, match="'two'"):
        as_target_list("two")
    with pytest.raises(ValueError, match="empty"):
        as_target_list([])


def test_polygon_region_is_filled():
    region = sgc.RegionTarget(polygon=[(0, 0), (0, 4), (4, 4), (4, 0)]).region((8, 8))
    assert region[1:4, 1:4].all() and not region[6:, :].any()


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
    codes = encode_targets(targets, (12, 10), 3)
    built = build_masks(tf.constant(logits), {k: tf.constant(v) for k, v in codes.items()}, "argmax")
    for n in range(2):
        predicted = predicted_map(logits[n])
        for t, target in enumerate(targets):
            if isinstance(target, sgc.RegionTarget) and target.polygon is not None:
                mask = target.region((12, 10))
                cls = 0
            else:
                mask, cls = reference_mask(target, predicted, (12, 10))
            assert built["class_index"][n, t] == cls
            np.testing.assert_allclose(built["masks"][n, t], mask, atol=1e-7)


def test_component_index_follows_scikit_image_label_order():
    logits = np.zeros((1, 6, 6, 2), np.float32)
    logits[..., 0] = 1.0
    logits[0, 0, 4, 1] = logits[0, 0, 5, 1] = 5.0  # object 0: first in raster order
    logits[0, 3:6, 0:3, 1] = 5.0  # object 1: larger, later in raster order
    codes = encode_targets([sgc.ComponentTarget(1, which=0), sgc.ComponentTarget(1, which=1)], (6, 6), 2)
    built = build_masks(tf.constant(logits), {k: tf.constant(v) for k, v in codes.items()}, "argmax")
    labels = label(logits[0].argmax(-1) == 1, connectivity=2)
    np.testing.assert_array_equal(built["masks"][0, 0].numpy(), labels == 1)
    np.testing.assert_array_equal(built["masks"][0, 1].numpy(), labels == 2)
    assert built["components"].numpy().tolist() == [[2, 2]]


def test_diagonal_pixels_are_one_object_under_8_connectivity():
    logits = np.zeros((1, 4, 4, 2), np.float32)
    logits[..., 0] = 1.0
    for i in range(4):
        logits[0, i, i, 1] = 5.0
    codes = encode_targets([sgc.ComponentTarget(1)], (4, 4), 2)
    built = build_masks(tf.constant(logits), {k: tf.constant(v) for k, v in codes.items()}, "argmax")
    assert built["masks"][0, 0].numpy().sum() == 4
    assert built["components"].numpy()[0, 0] == 1
