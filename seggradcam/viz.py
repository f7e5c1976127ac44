"""Pictures of explanations: overlays, one map, and the targets x layers grid.

Plotting lives at the edge: the core never imports this module, and this module imports
matplotlib only inside its functions. Figures are built without pyplot, so no backend is
chosen and nothing global changes. The figure functions return a :class:`matplotlib.figure.Figure`
that also shows itself in Jupyter (it renders to PNG when it is a cell's result) and saves
from a script with ``.savefig(path)`` or the ``path=`` argument.

How a map is drawn: the image is shown muted in gray, so that every colour in a map cell is
heat and never the colour of an object; the heat is laid over it with the ``inferno``
colormap, transparent where the heat is 0 and most opaque at 1. Each map is scaled to its
own maximum (1 = that map's peak), so cells show *where* a layer looks, not how strongly one
layer compares with another; the colour bar says so. The signed view uses a diverging map
(``RdBu_r``: red raises the score, blue lowers it) scaled by each map's largest absolute value.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np

__all__ = ["MAP_CMAP", "SIGNED_CMAP", "muted", "overlay", "overlay_signed", "plot_grid", "plot_map", "to_display"]

MAP_CMAP = "inferno"  # heat: dark (transparent) to light yellow
SIGNED_CMAP = "RdBu_r"  # signed: blue (lowers the score) - white - red (raises it)
OUTLINE = "#00e5ff"  # target outlines and markers: a cyan that inferno and RdBu_r never show
CLASS_COLOURS = "tab10"  # the prediction panel


def _colormap(cmap):
    import matplotlib

    return matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap


@functools.lru_cache(maxsize=None)
def _figure_class():
    """A Figure that renders itself as PNG when Jupyter displays it (built on first use)."""
    from matplotlib.figure import Figure

    class NotebookFigure(Figure):
        """A matplotlib Figure that shows in Jupyter without pyplot: ``_repr_png_`` renders it."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png")
            return buffer.getvalue()

    return NotebookFigure


def _new_figure(**options):
    return _figure_class()(**options)


def to_display(image: np.ndarray) -> np.ndarray:
    """An (H, W, C) or (H, W) image as float RGB in [0, 1] (grayscale repeated, range stretched if needed).

    Example:
        >>> to_display(np.full((2, 2, 1), 0.5)).shape
        (2, 2, 3)
    """
    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    image = image[..., :3]
    low, high = float(image.min()), float(image.max())
    if low < 0 or high > 1:
        image = (image - low) / max(high - low, 1e-12)
    return image


def muted(image: np.ndarray, low: float = 0.15, high: float = 0.75) -> np.ndarray:
    """The image in gray (luminance), its range mapped to [low, high]: a quiet background for colour.

    Example:
        >>> float(muted(np.ones((2, 2, 3))).max())
        0.75
    """
    rgb = to_display(image)
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat((low + (high - low) * gray)[..., np.newaxis], 3, axis=-1).astype(np.float32)


def _base(image: np.ndarray, base: str) -> np.ndarray:
    if base == "image":
        return to_display(image)
    if base == "gray":
        return muted(image)
    raise ValueError(f"base must be 'image' or 'gray', got {base!r}")


def overlay(image: np.ndarray, heatmap: np.ndarray, cmap=MAP_CMAP, alpha: float = 0.8, base: str = "image") -> np.ndarray:
    """Blend a [0, 1] heatmap onto an image; where the heatmap is 0 the image is unchanged.

    Args:
        image: (H, W, C) image (C = 1 or 3) or (H, W).
        heatmap: (H, W) values in [0, 1].
        cmap: a matplotlib colormap name or object.
        alpha: opacity of the colour where the heatmap is 1 (it falls linearly to 0).
        base: ``"image"`` (the image as it is) or ``"gray"`` (muted gray, see :func:`muted`).

    Returns:
        (H, W, 3) float32 RGB in [0, 1].

    Example:
        >>> float(overlay(np.zeros((4, 4, 3)), np.zeros((4, 4))).max())
        0.0
    """
    background = _base(image, base)
    heat = np.clip(np.asarray(heatmap, np.float32), 0, 1)
    if heat.shape != background.shape[:2]:
        raise ValueError(f"heatmap shape {heat.shape} does not match image size {background.shape[:2]}")
    colour = _colormap(cmap)(heat)[..., :3].astype(np.float32)
    weight = (alpha * heat)[..., np.newaxis]
    return background * (1 - weight) + colour * weight


def overlay_signed(image: np.ndarray, signed: np.ndarray, cmap=SIGNED_CMAP, alpha: float = 0.8, base: str = "image") -> np.ndarray:
    """Blend a signed map in [-1, 1] with a diverging colormap centred on zero.

    Zero leaves the image unchanged; positive values take the colormap's upper end (red
    for ``RdBu_r``), negative values its lower end (blue), with opacity ``alpha * |value|``.

    Returns:
        (H, W, 3) float32 RGB in [0, 1].

    Example:
        >>> float(overlay_signed(np.zeros((2, 2, 3)), np.zeros((2, 2))).max())
        0.0
    """
    background = _base(image, base)
    values = np.clip(np.asarray(signed, np.float32), -1, 1)
    if values.shape != background.shape[:2]:
        raise ValueError(f"map shape {values.shape} does not match image size {background.shape[:2]}")
    colour = _colormap(cmap)((values + 1) / 2)[..., :3].astype(np.float32)
    weight = (alpha * np.abs(values))[..., np.newaxis]
    return background * (1 - weight) + colour * weight


# --------------------------------------------------------------------------- grid helpers

VIEWS = ("positive", "signed", "counterfactual")
SCALE_NOTE = {
    "positive": "heat, each map scaled to its own maximum (1 = the map's peak)",
    "counterfactual": "counterfactual heat (what would lower the score), each map scaled to its own maximum",
    "signed": "signed map, each scaled by its own largest |value| (red raises the score, blue lowers it)",
}


def _shorten(text: str, limit: int) -> str:
    """``text`` cut in the middle with an ellipsis so that it has at most ``limit`` characters."""
    if len(text) <= limit:
        return text
    keep = max(limit - 1, 2)
    return text[: (keep + 1) // 2] + "\u2026" + text[len(text) - keep // 2 :]


def _chars_that_fit(width_inches: float, fontsize: float) -> int:
    # an average character of DejaVu Sans is about 0.6 of the font size wide
    return max(6, int(width_inches * 72 / (0.6 * fontsize)))


def _class_label(cls: int, class_names) -> str:
    if class_names is not None and 0 <= cls < len(class_names):
        return f"{class_names[cls]} ({cls})"
    return f"class {cls}"


def _format_score(value: float) -> str:
    return f"{value:,.0f}" if 1e3 <= abs(value) < 1e9 else f"{value:.4g}"


def _target_label(expl, image_index: int, t: int, class_names) -> str:
    """E.g. "disk (1), box (0, 0, 8, 8) · score y = 42,774": the target titles itself."""
    title = expl.targets[t].title(_class_label(int(expl.classes[image_index, t]), class_names))
    return f"{title} \u00b7 score y = {_format_score(float(expl.scores[image_index, t]))}"


def _pick_layers(expl, layers) -> list[int]:
    if layers is None:
        return list(range(len(expl.layers)))
    picked = []
    for layer in [layers] if isinstance(layers, (str, int)) else layers:
        if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
            if not -len(expl.layers) <= layer < len(expl.layers):
                raise ValueError(f"layer index {layer} is out of range: the explanation has {len(expl.layers)} layer(s)")
            picked.append(int(layer) % len(expl.layers))
        elif layer in expl.layers:
            picked.append(expl.layers.index(layer))
        else:
            raise KeyError(f"layer {layer!r} was not explained; explained layers are {expl.layers}")
    return picked


def _draw_target(axis, target, mask: np.ndarray, image_shape: tuple) -> None:
    if target.marker is not None:
        scale_r, scale_c = image_shape[0] / mask.shape[0], image_shape[1] / mask.shape[1]
        row, col = (target.marker[0] + 0.5) * scale_r - 0.5, (target.marker[1] + 0.5) * scale_c - 0.5
        axis.plot([col], [row], marker="+", color=OUTLINE, markersize=11, markeredgewidth=2)
    elif 0 < (mask > 0).sum() < mask.size:
        # pad with zeros so that an outline along the border closes; the axis limits clip it
        step_y, step_x = image_shape[0] / mask.shape[0], image_shape[1] / mask.shape[1]
        xs = (np.arange(mask.shape[1] + 2) - 0.5) * step_x - 0.5  # centres of the padded cells
        ys = (np.arange(mask.shape[0] + 2) - 0.5) * step_y - 0.5
        axis.contour(xs, ys, np.pad((mask > 0).astype(np.float32), 1), levels=[0.5], colors=OUTLINE, linewidths=1.0)
    axis.set_xlim(-0.5, image_shape[1] - 0.5)
    axis.set_ylim(image_shape[0] - 0.5, -0.5)


def _plain(axis) -> None:
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_visible(False)


def _draw_prediction(axis, image: np.ndarray, prediction: np.ndarray, class_names, fontsize: float) -> list:
    """The predicted labels in class colours over the muted image; returns the legend handles."""
    from matplotlib.patches import Patch

    axis.imshow(muted(image))
    colours = _colormap(CLASS_COLOURS)
    labels = [int(c) for c in np.unique(prediction)]
    rgba = np.zeros(prediction.shape + (4,), np.float32)
    handles = []
    for cls in labels:
        if cls == 0:
            handles.append(Patch(facecolor="none", edgecolor="0.5", label=_class_label(cls, class_names)))
            continue
        colour = colours((cls - 1) % colours.N)
        rgba[prediction == cls] = (*colour[:3], 0.75)
        handles.append(Patch(facecolor=colour, label=_class_label(cls, class_names)))
    height, width = image.shape[:2]
    axis.imshow(rgba, extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="nearest")
    axis.set_xlim(-0.5, width - 0.5)
    axis.set_ylim(height - 0.5, -0.5)
    return handles


def _draw_map(axis, image, cell_map, signed: bool, cmap, alpha: float) -> None:
    if signed:
        axis.imshow(overlay_signed(image, cell_map, cmap=cmap, alpha=alpha, base="gray"))
    else:
        axis.imshow(overlay(image, cell_map, cmap=cmap, alpha=alpha, base="gray"))
    if not np.any(cell_map):
        axis.text(0.5, 0.5, "empty", transform=axis.transAxes, ha="center", va="center", color="white", fontsize=9, fontweight="bold")


# --------------------------------------------------------------------------- figures


def plot_grid(
    expl,
    image_index: int = 0,
    class_names=None,
    path=None,
    cmap=None,
    alpha: float = 0.8,
    cell: float = 1.8,
    view: str = "positive",
    layers=None,
    columns: int = 6,
    dpi: int = 100,
):
    """Draw every target at every layer for one image, with the input and the prediction.

    The top row shows the input image, the predicted labels (legend with class names) and
    the colour bar with what its scale means. Then one block per target, titled with the
    class, the target and its score: one cell per layer, ``columns`` cells a row (wrapped, so
    a 40-layer model stays readable), each the map over the muted image with the target's
    outline (a cross for a pixel target); layer names are shortened to fit their cell, and
    an all-zero map says "empty".

    Args:
        expl: an :class:`~seggradcam.Explanation`.
        image_index: which image of the batch.
        class_names: optional names indexed by class.
        path: if given, the figure is also saved there (PNG, at ``dpi``).
        cmap: colormap; default ``"inferno"``, or ``"RdBu_r"`` for ``view="signed"``.
        alpha: opacity of the colour where a map is at its maximum.
        cell: size of one cell in inches.
        view: ``"positive"`` (the heatmaps), ``"signed"`` or ``"counterfactual"``.
        layers: which explained layers to draw (names or indices, in the order given);
            default all of them.
        columns: cells per row before a target's layers wrap to the next row.
        dpi: resolution of the saved file and of the notebook picture.

    Returns:
        A ``matplotlib.figure.Figure`` (shown by Jupyter when it is a cell's result;
        ``.savefig(path)`` saves it).

    Example:
        >>> expl = sgc.SegGradCAM(sgc.models.load_pretrained("shapes_unet"), layers="auto").explain(
        ...     sgc.data.load_samples("shapes")["images"][:1], [1, 2])
        >>> fig = plot_grid(expl, class_names=["bg", "disk", "rect", "tri"])
        >>> fig.savefig is not None and len(fig.axes) > 2
        True
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"columns must be a positive int, got {columns!r}")
    if not 0 <= image_index < len(expl.images):
        raise ValueError(f"image_index {image_index} is out of range: the explanation has {len(expl.images)} image(s)")
    signed = view == "signed"
    cmap = _colormap(cmap or (SIGNED_CMAP if signed else MAP_CMAP))
    picked = _pick_layers(expl, layers)
    maps = expl.view(view)[image_index]
    image = expl.images[image_index]
    n_targets = len(expl.targets)
    n_columns = max(1, min(columns, len(picked)))
    n_rows = math.ceil(len(picked) / n_columns)
    fontsize = 8
    title_chars = _chars_that_fit(cell, fontsize)

    width = max(n_columns, 4) * cell + 0.4
    head = cell + 0.7
    block = n_rows * (cell + 0.3) + 0.4
    figure = _new_figure(figsize=(width, head + n_targets * block), dpi=dpi, layout="constrained")
    parts = figure.subfigures(1 + n_targets, 1, height_ratios=[head] + [block] * n_targets, squeeze=False)[:, 0]

    top = parts[0]
    top_axes = top.subplots(1, max(n_columns, 4), squeeze=True)
    for axis in top_axes:
        _plain(axis)
    top_axes[0].imshow(to_display(image))
    top_axes[0].set_title("input", fontsize=fontsize)
    legend = _draw_prediction(top_axes[1], image, expl.prediction[image_index], class_names, fontsize - 1)
    top_axes[1].set_title("prediction", fontsize=fontsize)
    for axis in top_axes[2:]:
        axis.axis("off")
    top_axes[2].legend(handles=legend, loc="center left", fontsize=fontsize - 1, frameon=False, borderaxespad=0)
    norm = Normalize(-1, 1) if signed else Normalize(0, 1)
    bar_axis = top_axes[3].inset_axes((0.05, 0.62, 0.9, 0.1))
    bar = top.colorbar(ScalarMappable(norm, cmap), cax=bar_axis, orientation="horizontal")
    bar.set_label("\n".join(_wrap(SCALE_NOTE[view], _chars_that_fit(cell, fontsize - 1))), fontsize=fontsize - 1)
    bar.ax.tick_params(labelsize=fontsize - 1)
    explained = _wrap(f"{expl.method}: {expl.explained}", 2 * _chars_that_fit(width, fontsize) // 2)
    top.suptitle("\n".join(explained[:2]), fontsize=fontsize, x=0.01, ha="left")

    for t in range(n_targets):
        part = parts[1 + t]
        part.suptitle(
            _shorten(_target_label(expl, image_index, t, class_names), 2 * title_chars + 10), fontsize=fontsize + 1, x=0.01, ha="left"
        )
        axes = part.subplots(n_rows, n_columns, squeeze=False)
        mask = expl.masks[image_index, t]
        for k, axis in enumerate(axes.ravel()):
            _plain(axis)
            if k >= len(picked):
                axis.axis("off")
                continue
            l = picked[k]
            _draw_map(axis, image, maps[t, l], signed, cmap, alpha)
            _draw_target(axis, expl.targets[t], mask, image.shape[:2])
            axis.set_title(_shorten(expl.layers[l], title_chars), fontsize=fontsize)
    if path is not None:
        figure.savefig(path, dpi=dpi)
    return figure


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=max(width, 10))


def plot_map(
    expl,
    image_index: int = 0,
    target: int = 0,
    layer=0,
    view: str = "positive",
    class_names=None,
    path=None,
    cmap=None,
    alpha: float = 0.8,
    size: float = 4.0,
):
    """One map, large: the input beside the map over the muted image, with a colour bar.

    Args:
        expl: an :class:`~seggradcam.Explanation`.
        image_index, target: which image and target.
        layer: a layer name or an index into ``expl.layers``.
        view: ``"positive"``, ``"signed"`` or ``"counterfactual"``.
        path: if given, the figure is also saved there (PNG).

    Returns:
        A ``matplotlib.figure.Figure`` that Jupyter shows.

    Example:
        >>> expl = sgc.SegGradCAM(sgc.models.load_pretrained("shapes_unet"), layers="bottleneck_conv2").explain(
        ...     sgc.data.load_samples("shapes")["images"][0], 1)
        >>> fig = plot_map(expl, target=0, layer="bottleneck_conv2")
        >>> len(fig.axes) >= 2
        True
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if not 0 <= target < len(expl.targets):
        raise ValueError(f"target {target} is out of range: the explanation has {len(expl.targets)} target(s)")
    (l,) = _pick_layers(expl, [layer])
    signed = view == "signed"
    cmap = _colormap(cmap or (SIGNED_CMAP if signed else MAP_CMAP))
    image = expl.images[image_index]
    figure = _new_figure(figsize=(2 * size + 0.8, size + 0.9), layout="constrained")
    left, right = figure.subplots(1, 2)
    left.imshow(to_display(image))
    left.set_title("input", fontsize=9)
    _draw_map(right, image, expl.view(view)[image_index, target, l], signed, cmap, alpha)
    _draw_target(right, expl.targets[target], expl.masks[image_index, target], image.shape[:2])
    right.set_title(expl.layers[l], fontsize=9)
    for axis in (left, right):
        _plain(axis)
    norm = Normalize(-1, 1) if signed else Normalize(0, 1)
    bar = figure.colorbar(ScalarMappable(norm, cmap), ax=right, shrink=0.8)
    bar.set_label("\n".join(_wrap(SCALE_NOTE[view], 40)), fontsize=8)
    figure.suptitle(_target_label(expl, image_index, target, class_names), fontsize=9)
    if path is not None:
        figure.savefig(path)
    return figure
