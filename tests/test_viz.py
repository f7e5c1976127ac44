"""Pictures: overlays, the grid's layout (wrapping, panels, titles, colour bar), and figures
that show in Jupyter and save from scripts."""

import matplotlib
import numpy as np
import pytest

import seggradcam as sgc
from seggradcam import viz


def fake_explanation(layers=("a", "b", "c"), targets=None, size=16, seed=0):
    """An Explanation built by hand (no model): one image, known maps."""
    rng = np.random.default_rng(seed)
    targets = targets or [sgc.ClassTarget(1), sgc.PixelTarget(3, 4)]
    n_t, n_l = len(targets), len(layers)
    heatmaps = rng.uniform(0, 1, (1, n_t, n_l, size, size)).astype(np.float32)
    heatmaps /= heatmaps.max(axis=(-2, -1), keepdims=True)
    masks = np.zeros((1, n_t, size, size), np.float32)
    masks[0, :, 2:8, 3:9] = 1
    prediction = np.zeros((1, size, size), np.int64)
    prediction[0, 2:8, 3:9] = 1
    return sgc.Explanation(
        heatmaps=heatmaps,
        raw={name: rng.normal(size=(1, n_t, 4, 4)).astype(np.float32) for name in layers},
        weights={name: rng.normal(size=(1, n_t, 5)).astype(np.float32) for name in layers},
        scores=np.full((1, n_t), 1234.5, np.float32),
        masks=masks,
        layers=list(layers),
        targets=targets,
        classes=np.ones((1, n_t), np.int64),
        prediction=prediction,
        explained="test scores",
        method="seg-grad-cam",
        images=rng.uniform(0, 1, (1, size, size, 3)).astype(np.float32),
    )


def map_axes(figure):
    """The axes that show a map: every image axis except the input and prediction panels."""
    return [axis for axis in figure.axes if axis.images and axis.get_title() not in ("input", "prediction")]


def test_overlay_size_and_zero_map_leaves_image_unchanged():
    image = np.random.default_rng(0).uniform(size=(12, 9, 3)).astype(np.float32)
    out = viz.overlay(image, np.zeros((12, 9)))
    assert out.shape == (12, 9, 3)
    np.testing.assert_array_equal(out, image)
    hot = viz.overlay(image, np.ones((12, 9)), cmap="inferno", alpha=1.0)
    # float32 blending of float64 colormap values: a few ulps of 1.0
    np.testing.assert_allclose(hot[0, 0], matplotlib.colormaps["inferno"](1.0)[:3], atol=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        viz.overlay(image, np.zeros((3, 3)))


def test_gray_base_is_muted_luminance_so_any_colour_is_heat():
    image = np.zeros((2, 2, 3), np.float32)
    image[0, 0] = (0.0, 0.8, 0.8)  # teal: on a gray base it must not look like heat
    image[1, 1] = 1.0
    base = viz.overlay(image, np.zeros((2, 2)), base="gray")
    np.testing.assert_allclose(base[..., 0], base[..., 1], atol=1e-6)  # gray: R = G = B up to float32 rounding
    np.testing.assert_allclose(base[..., 1], base[..., 2], atol=1e-6)
    luminance = 0.587 * 0.8 + 0.114 * 0.8
    np.testing.assert_allclose(base[0, 0, 0], 0.15 + 0.6 * luminance, atol=1e-6)  # same formula as muted(), float32
    assert base.min() >= 0.15 - 1e-6 and base.max() <= 0.75 + 1e-6
    with pytest.raises(ValueError, match="base must be"):
        viz.overlay(image, np.zeros((2, 2)), base="colour")


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
    np.testing.assert_allclose(out[0, 1], cmap(1.0)[:3], atol=1e-6)  # +1: top of the map (float32 rounding)
    np.testing.assert_allclose(out[0, 2], cmap(0.0)[:3], atol=1e-6)  # -1: bottom
    assert out[0, 1, 0] > out[0, 1, 2] and out[0, 2, 2] > out[0, 2, 0]  # red vs blue
    centre = np.array(cmap(0.5)[:3])
    assert np.abs(centre - centre.mean()).max() < 0.05  # the diverging map's centre is neutral


def test_grid_has_input_and_prediction_panels_and_a_cell_per_target_and_layer():
    expl = fake_explanation()
    figure = viz.plot_grid(expl, class_names=["bg", "thing"])
    titles = [axis.get_title() for axis in figure.axes]
    assert "input" in titles and "prediction" in titles
    cells = map_axes(figure)
    assert len(cells) == 2 * 3
    assert [axis.get_title() for axis in cells] == ["a", "b", "c"] * 2
    # the prediction panel's legend names the predicted classes
    legend_texts = [text.get_text() for axis in figure.axes if axis.get_legend() for text in axis.get_legend().get_texts()]
    assert legend_texts == ["bg (0)", "thing (1)"]
    # each target block is titled with the class, what is explained and the score
    block_titles = [sub.get_suptitle() for sub in figure.subfigs[1:]]
    assert block_titles[0] == "thing (1), predicted pixels \u00b7 score y = 1,234"
    assert block_titles[1].startswith("thing (1) at (3, 4)")


def test_grid_wraps_many_layers_into_rows_of_at_most_columns():
    names = [f"layer_{i}" for i in range(13)]
    expl = fake_explanation(layers=names, targets=[sgc.ClassTarget(1)])
    figure = viz.plot_grid(expl, columns=5)
    cells = map_axes(figure)
    assert [axis.get_title() for axis in cells] == names
    # 13 cells at 5 a row: 3 rows, so the cells take three distinct vertical positions
    rows = sorted({round(axis.get_position().y0, 3) for axis in cells})
    columns = sorted({round(axis.get_position().x0, 3) for axis in cells})
    assert len(rows) == 3 and len(columns) == 5


def test_long_layer_names_are_shortened_to_fit_their_cell():
    long_name = "encoder/" + "very_long_block_name_" * 4 + "conv:pre"
    expl = fake_explanation(layers=("short", long_name), targets=[sgc.ClassTarget(1)])
    figure = viz.plot_grid(expl, cell=1.5)
    titles = [axis.get_title() for axis in map_axes(figure)]
    assert titles[0] == "short"
    limit = viz._chars_that_fit(1.5, 8)
    assert len(titles[1]) <= limit and "\u2026" in titles[1]
    assert titles[1].startswith("encoder/") and titles[1].endswith("conv:pre")


def test_layer_selection_by_name_and_index_in_the_order_given():
    expl = fake_explanation(layers=("a", "b", "c"), targets=[sgc.ClassTarget(1)])
    figure = viz.plot_grid(expl, layers=["c", 0])
    assert [axis.get_title() for axis in map_axes(figure)] == ["c", "a"]
    with pytest.raises(KeyError, match="was not explained"):
        viz.plot_grid(expl, layers=["nope"])
    with pytest.raises(ValueError, match="out of range"):
        viz.plot_grid(expl, layers=[7])


def test_colour_bar_says_each_map_is_scaled_to_its_own_maximum():
    expl = fake_explanation()
    for view, words in [("positive", "own maximum"), ("signed", "largest |value|"), ("counterfactual", "own maximum")]:
        figure = viz.plot_grid(expl, view=view)
        every = [inner for axis in figure.axes for inner in (axis, *axis.child_axes)]  # the bar is an inset
        labels = " ".join(axis.get_xlabel().replace("\n", " ") for axis in every)
        assert words in labels, (view, labels)


def test_an_all_zero_map_is_labelled_empty():
    expl = fake_explanation(targets=[sgc.ClassTarget(1)])
    expl.heatmaps[0, 0, 1] = 0
    figure = viz.plot_grid(expl)
    texts = {axis.get_title(): [text.get_text() for text in axis.texts] for axis in map_axes(figure)}
    assert texts == {"a": [], "b": ["empty"], "c": []}


def test_figures_show_in_jupyter_and_save_from_scripts(tmp_path):
    from IPython.core.formatters import DisplayFormatter

    expl = fake_explanation()
    for figure in (viz.plot_grid(expl), viz.plot_map(expl, target=1, layer="b"), expl.plot()):
        data, _ = DisplayFormatter().format(figure)  # what Jupyter does with a cell's result
        assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n"
        path = tmp_path / "figure.png"
        figure.savefig(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_map_draws_one_large_map_with_a_colour_bar(tmp_path):
    expl = fake_explanation()
    figure = viz.plot_map(expl, target=0, layer=2, path=tmp_path / "map.png")
    assert [axis.get_title() for axis in map_axes(figure)] == ["c"]
    assert any("own maximum" in axis.get_ylabel() for axis in figure.axes)
    assert (tmp_path / "map.png").stat().st_size > 1000


@pytest.mark.parametrize("view", ["positive", "signed", "counterfactual"])
def test_plot_grid_of_a_real_explanation_writes_png(unet_softmax, images, tmp_path, view):
    expl = sgc.SegGradCAM(unet_softmax, layers=["bottleneck_conv2", "dec1_up"]).explain(
        images[:1], [sgc.ClassTarget(0, region="all"), sgc.PixelTarget(4, 4), sgc.RegionTarget(box=(2, 2, 9, 9))]
    )
    figure = expl.plot(class_names=["a", "b", "c"], path=tmp_path / "grid.png", view=view)
    assert len(map_axes(figure)) == 3 * 2
    import cv2

    picture = cv2.imread(str(tmp_path / "grid.png"))
    assert picture is not None and picture.shape[0] > picture.shape[1] > 150  # header + 3 target rows, 4 cells wide
    assert picture.std() > 10  # not a blank page
