"""Encoding targets into typed arrays: fields, padding, selection."""

import numpy as np

import seggradcam as sgc
from seggradcam.encoding import ComponentRule, Restriction, encode_targets


def test_each_kind_encodes_its_rule():
    truth = np.ones((4, 5), int)
    targets = [
        sgc.ClassTarget(2),
        sgc.ClassTarget(1, region="all", reduction="mean"),
        sgc.PixelTarget(1, 3),
        sgc.RegionTarget(box=(0, 0, 2, 2), class_index=1, ground_truth=truth),
        sgc.ComponentTarget(1, which="smallest"),
        sgc.ComponentTarget(2, which=3),
    ]
    encoded = encode_targets(targets, (4, 5), 3)
    assert encoded.num_targets == 6 and encoded.region.shape == (6, 4, 5)
    assert encoded.restriction.tolist() == [
        Restriction.PREDICTED,
        Restriction.NONE,
        Restriction.NONE,
        Restriction.NONE,
        Restriction.COMPONENT,
        Restriction.COMPONENT,
    ]
    assert encoded.infer_class.tolist() == [False, False, True, False, False, False]
    assert encoded.class_index.tolist() == [2, 1, 0, 1, 1, 2]
    assert encoded.component_rule[4:].tolist() == [ComponentRule.SMALLEST, ComponentRule.INDEX]
    assert encoded.component_index[5] == 3
    assert encoded.mean.tolist() == [False, True, False, False, False, False]
    assert encoded.has_truth.tolist() == [False, False, False, True, False, False]
    np.testing.assert_array_equal(encoded.truth[3], truth)
    assert encoded.region[2].sum() == 1 and encoded.region[2, 1, 3] == 1
    assert encoded.any_loss and encoded.any_components


def test_take_and_padding_keep_fields_aligned():
    encoded = encode_targets([sgc.ClassTarget(0), sgc.PixelTarget(0, 1), sgc.ComponentTarget(1)], (3, 3), 2)
    part = encoded.take(slice(1, 3))
    assert part.num_targets == 2 and part.restriction.tolist() == [Restriction.NONE, Restriction.COMPONENT]
    padded = part.padded(4)
    assert padded.num_targets == 4
    for array in padded:
        np.testing.assert_array_equal(array[2], array[1])  # padding repeats the last target
        np.testing.assert_array_equal(array[3], array[1])
    assert encoded.padded(2) is encoded  # never shrinks
    assert not encode_targets([sgc.ClassTarget(0)], (3, 3), 2).any_components
