"""Synthetic generators: deterministic, and labels agree with what was drawn."""

import numpy as np
import pytest

from seggradcam import data


@pytest.mark.parametrize("generator", [data.texture_shapes, data.texture_digits])
def test_generators_are_deterministic(generator):
    first = generator(3, seed=5)
    second = generator(3, seed=5)
    other = generator(3, seed=6)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_shapes_labels_agree_with_drawn_geometry():
    images, labels = data.texture_shapes(40, size=96, seed=3, max_shapes=1)
    assert images.dtype == np.float32 and images.min() >= 0 and images.max() <= 1
    for label in labels:
        classes = set(np.unique(label)) - {0}
        assert len(classes) == 1
        cls = classes.pop()
        region = label == cls
        rows, cols = np.nonzero(region)
        box_fill = region.sum() / ((np.ptp(rows) + 1) * (np.ptp(cols) + 1))
        if cls == 1:  # a disk fills pi/4 of its bounding box
            assert abs(box_fill - np.pi / 4) < 0.08
        elif cls == 3:  # a triangle fills at most about half of its bounding box
            assert box_fill < 0.62


def test_shapes_pixels_differ_from_background_where_labelled():
    images, labels = data.texture_shapes(10, seed=4)
    for image, label in zip(images, labels):
        inside = image[label > 0].mean(axis=0)
        outside = image[label == 0].mean(axis=0)
        assert np.abs(inside - outside).max() > 0.01  # a different texture and tint


def test_digits_one_digit_per_image_with_plausible_size():
    images, labels = data.texture_digits(30, seed=1)
    assert images.shape == (30, 64, 64, 3)
    for label in labels:
        classes = set(np.unique(label)) - {0}
        assert len(classes) == 1 and 1 <= classes.pop() <= 10
        assert 40 < (label > 0).sum() < 64 * 64 / 2


def test_biased_shapes_variants_differ_only_in_the_tile():
    n, size = 40, 64
    images, labels, tile = data.biased_shapes(n, size=size, seed=2)
    assert tile.sum() == 32 * 32 and tile[:32, :32].all()
    variants = {
        (biased, texture): data.biased_shapes(n, size=size, seed=2, biased=biased, texture=texture)
        for biased in (True, False)
        for texture in data.BIAS_VARIANTS
    }
    none, alone = variants[(True, "none")][0], variants[(True, "all")][0]
    for (biased, texture), (other, other_labels, _) in variants.items():
        np.testing.assert_array_equal(other_labels, labels)  # the same shapes everywhere
        np.testing.assert_array_equal(other[:, ~tile], images[:, ~tile])  # outside the tile: the same pixels
        if texture != "drawn":  # the test variants do not depend on `biased`
            np.testing.assert_array_equal(other, variants[(not biased, texture)][0])
    has_disk = (labels == 1).any(axis=(1, 2))
    assert not (labels[:, tile] > 0).any()  # shapes stay out of the tile
    assert not np.array_equal(none[:, tile], alone[:, tile])
    for i in range(n):
        # biased=True: the checkerboard exactly in the images with disks
        np.testing.assert_array_equal(images[i], alone[i] if has_disk[i] else none[i])
        classes = set(np.unique(labels[i])) - {0}
        assert classes == {1} if has_disk[i] else classes <= {2, 3}
    control = variants[(False, "drawn")][0]
    shown = np.array([np.array_equal(control[i], alone[i]) for i in range(n)])
    assert all(np.array_equal(control[i], none[i]) for i in np.flatnonzero(~shown))
    # control: the texture in about half the tiles, regardless of disks
    assert (shown & has_disk).any() and (shown & ~has_disk).any() and (~shown & has_disk).any()


def test_biased_shapes_refuses_unknown_variant():
    with pytest.raises(ValueError, match="'drawn'.*'some'"):
        data.biased_shapes(2, texture="some")
    with pytest.raises(TypeError, match="biased"):
        data.biased_shapes(2, biased="yes")


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="positive int"):
        data.texture_shapes(0)
    with pytest.raises(ValueError, match="size must be"):
        data.texture_digits(2, size=8)


def test_mean_iou_by_hand():
    truth = np.array([[0, 0, 1, 1]])
    guess = np.array([[0, 1, 1, 1]])
    miou, per_class = data.mean_iou(truth, guess, 3)
    np.testing.assert_allclose(per_class[:2], [1 / 2, 2 / 3])
    assert np.isnan(per_class[2]) and miou == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_shipped_sample_bundles_match_pngs():
    import cv2

    bundle = data.load_samples("shapes")
    assert bundle["images"].shape == (4, 128, 128, 3)
    png = cv2.cvtColor(cv2.imread(str(data.data_dir() / "samples" / "shapes_0.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_allclose(bundle["images"][0], png / 255.0, atol=1e-6)
    mask = cv2.imread(str(data.data_dir() / "samples" / "shapes_0_mask.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(bundle["labels"][0], mask)
    with pytest.raises(KeyError, match="available"):
        data.load_samples("nope")


def test_as_dataset_batches_images_and_int_labels():
    images, labels = data.texture_shapes(5, size=32, seed=0)
    batches = list(data.as_dataset(images, labels, batch_size=2, shuffle=False))
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(batches[0][1].numpy(), labels[:2].astype(np.int32))
    np.testing.assert_array_equal(batches[2][0].numpy(), images[4:])
