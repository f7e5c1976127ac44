"""Targets: validation on construction, checks against the output map, what they say of themselves."""

import json

import numpy as np
import pytest

import seggradcam as sgc
from seggradcam.encoding import encode_targets
from seggradcam.targets import as_target_list, target_from_record


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


def test_numpy_integers_become_python_ints_and_records_are_json():
    targets = [
        sgc.ClassTarget(np.int64(2)),
        sgc.PixelTarget(np.int32(3), np.uint8(4), class_index=np.int64(1)),
        sgc.RegionTarget(box=np.array([0, 1, 5, 6]), class_index=np.int16(0)),
        sgc.ComponentTarget(np.int64(1), which=np.int64(0)),
    ]
    for target in targets:
        record, arrays = target.to_record()
        assert not arrays
        text = json.dumps(record)  # numpy integers would make this fail
        rebuilt = target_from_record(json.loads(text), {})
        assert rebuilt.describe() == target.describe() and type(rebuilt) is type(target)


def test_titles_and_markers_come_from_the_target():
    truth = np.zeros((4, 4), int)
    assert sgc.ClassTarget(1).title("disk") == "disk, predicted pixels"
    assert sgc.ClassTarget(1, region="all").title("disk") == "disk, all pixels"
    assert sgc.PixelTarget(2, 3).title("disk") == "disk at (2, 3)" and sgc.PixelTarget(2, 3).marker == (2, 3)
    assert sgc.ComponentTarget(1, which=2).title("disk") == "disk, object 2" and sgc.ComponentTarget(1).marker is None
    assert sgc.RegionTarget(box=(0, 0, 2, 2), ground_truth=truth).title("disk") == "disk, box (0, 0, 2, 2), loss"


def test_repr_names_the_fields_users_gave():
    assert (
        repr(sgc.RegionTarget(box=(0, 0, 2, 2), reduction="mean"))
        == "RegionTarget(mask=None, box=(0, 0, 2, 2), polygon=None, class_index=None, reduction='mean')"
    )
    assert (
        repr(sgc.PixelTarget(1, 2, ground_truth=np.zeros((3, 5), int)))
        == "PixelTarget(row=1, col=2, class_index=None, ground_truth=<3x5 labels>)"
    )
