"""Pictures: sizes, an all-zero map leaves the image unchanged, diverging map centred on 0."""

import matplotlib
import numpy as np
import pytest

import seggradcam as sgc
from seggradcam import viz


def test_overlay_size_and_zero_map_leaves_image_unchanged():
    image = np.random.default_rng(0).uniform(size=(12, 9, 3)).astype(np.float32)
    out = viz.overlay(image, np.zeros((12, 9)))
    assert out.shape == (12, 9, 3)
    np.testing.assert_array_equal(out, image)
    hot = viz.overlay(image, np.ones((12, 9)), cmap="jet", alpha=1.0)
    np.testing.assert_allclose(hot[0, 0], matplotlib.colormaps["jet"](1.0)[:3], atol=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        viz.overlay(image, np.zeros((3, 3)))


def test_grayscale_and_out_of_range_images_are_displayable():
    gray = np.arange(16, dtype=np.float32).reshape(4, 4, 1) * 10
    shown = viz.to_display(gray)
    assert shown.shape == (4, 4, 3) and shown.min() == 0 and shown.max() == 1


def test_signed_overlay_zero_is_the_centre_colour_and_leaves_image():
    image = np.full((2, 3, 3), 0.5, np.float32)
    signed = np.array([[0.0, 1.0, -1.0], [0.0, 0.5, -0.5]], np.float32)
    out = viz.overlay_signed(image, signed, cmap="RdBu_r", alpha=1.0)
    np.testing.assert_allclose(out[0, 0], image[0, 0])  # zero: unchanged
    cmap = matplotlib.colormaps["RdBu_r"]
    np.testing.assert_allclose(out[0, 1], cmap(1.0)[:3], atol=1e-6)  # +1: top of the map
    np.testing.assert_allclose(out[0, 2], cmap(0.0)[:3], atol=1e-6)  # -1: bottom
    assert out[0, 1, 0] > out[0, 1, 2] and out[0, 2, 2] > out[0, 2, 0]  # red vs blue
    centre = np.array(cmap(0.5)[:3])
    assert np.abs(centre - centre.mean()).max() < 0.05  # the diverging map's centre is neutral


@pytest.mark.parametrize("view", ["positive", "signed", "counterfactual"])
def test_plot_grid_writes_png(unet_softmax, images, tmp_path, view):
    expl = sgc.SegGradCAM(unet_softmax, layers=["bottleneck_conv2", "dec1_up"]).explain(
        images[:1], [sgc.ClassTarget(0, region="all"), sgc.PixelTarget(4, 4), sgc.RegionTarget(box=(2, 2, 9, 9))]
    )
    figure = expl.plot(class_names=["a", "b", "c"], path=tmp_path / "grid.png", view=view)
    assert len(figure.axes) == 3 * 2 + 1  # the cells and the colour bar
    import cv2

    picture = cv2.imread(str(tmp_path / "grid.png"))
    assert picture is not None and picture.shape[0] > picture.shape[1] > 150  # 3 rows x 2 columns
    assert picture.std() > 10  # not a blank page
