"""Explanation.save / load_explanation: exact round trip, no pickle, clear errors."""

import numpy as np
import pytest

import seggradcam as sgc


def test_round_trip_is_exact(unet_softmax, images, tmp_path):
    mask = np.zeros((32, 32), bool)
    mask[3:9, 4:20] = True
    targets = [
        sgc.ClassTarget(1, region="all"),
        sgc.PixelTarget(4, 5, class_index=2),
        sgc.RegionTarget(mask=mask, reduction="mean"),
        sgc.RegionTarget(box=(0, 0, 8, 8), ground_truth=np.ones((32, 32), int)),
        sgc.RegionTarget(polygon=[(0, 0), (0, 10), (10, 0)]),
    ]
    explainer = sgc.SegGradCAM(unet_softmax, layers=["bottleneck_conv2", "dec1_conv2:pre"])
    expl = explainer.explain(images[:2], targets, guided=True)
    path = expl.save(tmp_path / "expl.npz")
    back = sgc.load_explanation(path)
    for name in ("heatmaps", "scores", "masks", "classes", "prediction", "images", "guided_gradients"):
        np.testing.assert_array_equal(getattr(back, name), getattr(expl, name))
        assert getattr(back, name).dtype == getattr(expl, name).dtype
    assert back.layers == expl.layers and back.explained == expl.explained and back.method == expl.method
    for layer in expl.layers:
        np.testing.assert_array_equal(back.raw[layer], expl.raw[layer])
        np.testing.assert_array_equal(back.weights[layer], expl.weights[layer])
    assert [t.describe() for t in back.targets] == [t.describe() for t in expl.targets]
    np.testing.assert_array_equal(back.targets[2].mask, targets[2].mask.astype(np.float32))
    assert back.targets[3].box == (0, 0, 8, 8)
    with np.load(path, allow_pickle=False) as bundle:  # readable without pickle
        assert "meta" in bundle.files


def test_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        sgc.load_explanation(tmp_path / "none.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="not a readable seggradcam explanation"):
        sgc.load_explanation(broken)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(ValueError, match="not a readable seggradcam explanation"):
        sgc.load_explanation(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(ValueError, match="not a readable"):
        sgc.load_explanation(pickled)


def test_heatmaps_are_rendered_on_first_use_and_one_map_alone_is_the_same(unet_softmax, images):
    explainer = sgc.SegGradCAM(unet_softmax, layers=["enc1_conv1", "bottleneck_conv2"])
    expl = explainer.explain(images[:2], [0, 1])
    assert expl.__dict__.get("_heatmaps") is None  # explain() hands back raw maps only
    one = expl.heatmap(1, 0, "bottleneck_conv2")  # renders this map alone
    assert expl.__dict__.get("_heatmaps") is None
    every = expl.heatmaps  # renders and keeps the whole (N, T, L, H, W) array
    assert every.shape == (2, 2, 2, 32, 32) and every is expl.heatmaps
    # the same compiled resize and scaling on a (1, 1) slice or on the batch: equal to float32 rounding
    np.testing.assert_allclose(one, every[1, 0, 1], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(expl.heatmap(1, 0, 1), every[1, 0, 1])


def test_every_array_a_user_gets_is_writable(unet_softmax, images):
    # results are read from tensors as views and copied once; what the user holds must be their own
    expl = sgc.SegGradCAM(unet_softmax, layers=["enc1_conv2", "dec1_conv2"]).explain(images[:2], [0, 1])
    arrays = [expl.heatmaps, expl.signed, expl.counterfactual, expl.scores, expl.masks, expl.classes, expl.prediction]
    arrays += list(expl.raw.values()) + list(expl.weights.values())
    for array in arrays:
        assert array.flags.writeable and array.flags.owndata
