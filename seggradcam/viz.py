"""Pictures of explanations: overlays and the targets x layers grid.

Plotting lives at the edge: the core never imports this module. Figures are built with
``matplotlib.figure.Figure`` directly (no pyplot), so nothing global is touched.
"""

from __future__ import annotations

import numpy as np


def _colormap(cmap):
    import matplotlib

    return matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap


def to_display(image: np.ndarray) -> np.ndarray:
    """An (H, W, C) image as float RGB in [0, 1] (grayscale repeated, range stretched if needed)."""
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


def overlay(image: np.ndarray, heatmap: np.ndarray, cmap="jet", alpha: float = 0.5) -> np.ndarray:
    """Blend a [0, 1] heatmap onto an image; where the heatmap is 0 the image is unchanged.

    Args:
        image: (H, W, C) image (C = 1 or 3).
        heatmap: (H, W) values in [0, 1].
        cmap: a matplotlib colormap name or object.
        alpha: opacity of the colour where the heatmap is 1.

    Returns:
        (H, W, 3) float32 RGB in [0, 1].

    Example:
        >>> overlay(np.zeros((4, 4, 3)), np.zeros((4, 4))).max()
        0.0
    """
    base = to_display(image)
    heat = np.clip(np.asarray(heatmap, np.float32), 0, 1)
    if heat.shape != base.shape[:2]:
        raise ValueError(f"heatmap shape {heat.shape} does not match image size {base.shape[:2]}")
    colour = _colormap(cmap)(heat)[..., :3].astype(np.float32)
    weight = (alpha * heat)[..., np.newaxis]
    return base * (1 - weight) + colour * weight


def overlay_signed(image: np.ndarray, signed: np.ndarray, cmap="RdBu_r", alpha: float = 0.6) -> np.ndarray:
    """Blend a signed map in [-1, 1] with a diverging colormap centred on zero.

    Zero leaves the image unchanged; positive values take the colormap's upper end (red
    for ``RdBu_r``), negative values its lower end (blue), with opacity ``alpha * |value|``.

    Returns:
        (H, W, 3) float32 RGB in [0, 1].
    """
    base = to_display(image)
    values = np.clip(np.asarray(signed, np.float32), -1, 1)
    if values.shape != base.shape[:2]:
        raise ValueError(f"map shape {values.shape} does not match image size {base.shape[:2]}")
    colour = _colormap(cmap)((values + 1) / 2)[..., :3].astype(np.float32)
    weight = (alpha * np.abs(values))[..., np.newaxis]
    return base * (1 - weight) + colour * weight


def plot_grid(
    expl, image_index: int = 0, class_names=None, path=None, cmap=None, alpha: float = 0.5, cell: float = 2.0, view: str = "positive"
):
    """Draw every target (rows) at every layer (columns) for one image.

    Each cell shows the map over the image, the contour of the target's mask (a marker for
    a pixel target) and a title with the target, the layer and the score; one colour bar.

    Args:
        expl: an :class:`~seggradcam.Explanation`.
        image_index: which image of the batch.
        class_names: optional names indexed by class.
        path: if given, the figure is saved there (PNG).
        cmap: colormap; default ``"jet"``, or ``"RdBu_r"`` (centred on zero) for ``view="signed"``.
        view: ``"positive"`` (the heatmaps), ``"signed"`` or ``"counterfactual"``.

    Returns:
        The ``matplotlib.figure.Figure``.

    Example:
        >>> fig = plot_grid(expl, class_names=["bg", "disk", "rect", "tri"])   # doctest: +SKIP
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from .targets import PixelTarget

    signed = view == "signed"
    cmap = cmap or ("RdBu_r" if signed else "jet")
    maps = expl.view(view)
    n_targets, n_layers = maps.shape[1:3]
    figure = Figure(figsize=(cell * n_layers + 0.8, cell * n_targets + 0.4), layout="constrained")
    axes = figure.subplots(n_targets, n_layers, squeeze=False)
    image = expl.images[image_index]
    for t, target in enumerate(expl.targets):
        cls = int(expl.classes[image_index, t])
        label = class_names[cls] if class_names is not None else f"class {cls}"
        if not isinstance(target, PixelTarget) and not target.describe().startswith("class"):
            label = f"{label}, {target.describe()}"
        for l, layer in enumerate(expl.layers):
            axis = axes[t, l]
            cell_map = maps[image_index, t, l]
            axis.imshow(overlay_signed(image, cell_map, cmap=cmap) if signed else overlay(image, cell_map, cmap=cmap, alpha=alpha))
            mask = expl.masks[image_index, t]
            if isinstance(target, PixelTarget):
                axis.plot([target.col], [target.row], marker="+", color="white", markersize=10, markeredgewidth=2)
            elif mask.shape == image.shape[:2] and 0 < (mask > 0).sum() < mask.size:
                axis.contour(mask > 0, levels=[0.5], colors="white", linewidths=0.8)
            axis.set_title(f"{label} | {layer}\ny={expl.scores[image_index, t]:.3g}", fontsize=7)
            axis.set_xticks([])
            axis.set_yticks([])
    norm = Normalize(-1, 1) if signed else Normalize(0, 1)
    figure.colorbar(ScalarMappable(norm, _colormap(cmap)), ax=axes, shrink=0.6, label=f"{view} map")
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure
