"""``report.html``: one self-contained page (pictures embedded) summarising an audit.

What is on it, top to bottom: the numbers at a glance; class x layer matrices of the mean
share of heat inside the object (with ground truth) and of the empty-map rate; how that
share changes from layer to layer, per class; the distribution of the explained scores per
class; the class x layer table; and, per class, the images whose maps are worst and best
(by the share of heat inside the true object, or without ground truth by empty maps and
negative channel weights), each drawn with its heatmap at the class's most telling layer.

The page is built from ``metrics.parquet`` and the thumbnails and heatmaps of the few
images it shows (read one chunk each from ``heatmaps.zarr``).

Example:
    >>> write_report("out/report.html", "out/metrics.parquet", "out/heatmaps.zarr", settings)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
from pathlib import Path

import numpy as np

from ._extras import require

__all__ = ["write_report", "Summary", "summarise", "rank_images", "SHOWN_IMAGES"]

SHOWN_IMAGES = 4  # worst and best images shown per class
OVERLAY_ALPHA = 0.5  # heatmap opacity over the image
MATRIX_CMAP = "viridis"
HEAT_CMAP = "jet"


@dataclasses.dataclass(frozen=True)
class Summary:
    """Per target slot x layer aggregates (arrays (T, L)); NaN where no map exists.

    Attributes:
        maps: number of maps.
        images: (T,) images the slot applies to.
        energy_inside, pointing_hit, iou: means over non-empty maps (None without ground truth).
        empty_rate: share of empty maps.
        negative_share: mean share of negative channel weights.
        scores: per slot, the explained scores (one per image).
    """

    maps: np.ndarray
    images: np.ndarray
    energy_inside: np.ndarray | None
    pointing_hit: np.ndarray | None
    iou: np.ndarray | None
    empty_rate: np.ndarray
    negative_share: np.ndarray
    scores: list


def summarise(table, num_targets: int, num_layers: int, with_truth: bool) -> Summary:
    """Aggregate a metrics table (pyarrow) per target slot and layer.

    Example:
        >>> import pyarrow as pa
        >>> t = pa.table({"target_index": [0, 0], "layer_index": [0, 0], "image_index": [0, 1],
        ...               "empty": [False, True], "negative_share": [0.5, 1.0], "score": [2.0, 3.0]})
        >>> summarise(t, 1, 1, with_truth=False).empty_rate
        array([[0.5]])
    """
    target = table["target_index"].to_numpy()
    layer = table["layer_index"].to_numpy()
    empty = table["empty"].to_numpy(zero_copy_only=False).astype(bool)
    shape = (num_targets, num_layers)
    maps = np.zeros(shape)
    np.add.at(maps, (target, layer), 1)

    def mean(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
        total, count = np.zeros(shape), np.zeros(shape)
        np.add.at(total, (target[keep], layer[keep]), values[keep])
        np.add.at(count, (target[keep], layer[keep]), 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)

    everything = np.ones(len(target), bool)
    truth = {}
    for name, column in (("energy_inside", "energy_inside"), ("pointing_hit", "pointing_hit"), ("iou", "iou_at_0.5")):
        if with_truth:
            values = table[column].to_numpy(zero_copy_only=False).astype(float)
            truth[name] = mean(values, np.isfinite(values))
        else:
            truth[name] = None
    first_layer = layer == 0
    scores = table["score"].to_numpy(zero_copy_only=False).astype(float)
    return Summary(
        maps=maps,
        images=maps[:, 0] if num_layers else np.zeros(num_targets),
        empty_rate=mean(empty.astype(float), everything),
        negative_share=mean(table["negative_share"].to_numpy(zero_copy_only=False).astype(float), everything),
        scores=[scores[first_layer & (target == t)] for t in range(num_targets)],
        **truth,
    )


def rank_images(table, slot: int, with_truth: bool) -> tuple[np.ndarray, np.ndarray]:
    """(image indices, badness) for one slot, worst first.

    With ground truth the badness is 1 - mean over layers of the share of heat inside the
    object (an empty map counts as 0 inside); without, it is the share of empty maps plus
    the mean share of negative channel weights.

    Example:
        >>> import pyarrow as pa
        >>> t = pa.table({"target_index": [0, 0], "image_index": [3, 5], "layer_index": [0, 0],
        ...               "empty": [False, False], "negative_share": [0.1, 0.2], "energy_inside": [0.9, 0.2]})
        >>> rank_images(t, 0, with_truth=True)[0].tolist()
        [5, 3]
    """
    keep = table["target_index"].to_numpy() == slot
    images = table["image_index"].to_numpy()[keep]
    if with_truth:
        inside = np.nan_to_num(table["energy_inside"].to_numpy(zero_copy_only=False).astype(float)[keep], nan=0.0)
        badness_per_row = 1.0 - inside
    else:
        empty = table["empty"].to_numpy(zero_copy_only=False).astype(float)[keep]
        badness_per_row = empty + table["negative_share"].to_numpy(zero_copy_only=False).astype(float)[keep]
    unique, position = np.unique(images, return_inverse=True)
    total = np.zeros(len(unique))
    count = np.zeros(len(unique))
    np.add.at(total, position, badness_per_row)
    np.add.at(count, position, 1)
    badness = total / count
    order = np.lexsort((unique, -badness))  # worst first; ties by image index
    return unique[order], badness[order]


def write_report(path, metrics_path, heatmaps_path, settings, title: str = "Seg-Grad-CAM audit", source: str = "") -> Path:
    """Write the report page for an audit folder; returns its path."""
    pq = require("pyarrow.parquet")
    zarr = require("zarr")
    table = pq.read_table(metrics_path)
    layers, targets = list(settings.layers), list(settings.targets)
    with_truth = settings.with_truth
    summary = summarise(table, len(targets), len(layers), with_truth)
    group = zarr.open_group(str(heatmaps_path), mode="r")
    images_total = int(group["heatmaps"].shape[0])
    keys = _keys_by_index(table)
    sections = [
        _header(title, settings, source, images_total, table.num_rows),
        _tiles(summary, table, images_total, with_truth),
        _figure_section(
            "Where the heat goes, per class and layer",
            _matrices(summary, layers, targets, with_truth),
            "Each cell is one class at one layer. "
            + (
                "Heat inside the object: the mean share of a heatmap's mass on the class's true pixels (higher is better). "
                if with_truth
                else ""
            )
            + "Empty maps: the share of maps left blank by the ReLU (every channel weight pushing the score down).",
        ),
    ]
    if len(layers) > 1:
        sections.append(
            _figure_section(
                "Layer by layer",
                _layer_curves(summary, layers, targets, with_truth),
                "How the measure changes from the first explained layer to the last, one line per class.",
            )
        )
    sections.append(
        _figure_section(
            "Explained scores",
            _score_plot(summary, targets),
            "The explained score y per image (sum of the class logit over the target's pixels).",
        )
    )
    sections.append(_table_section(summary, layers, targets, with_truth))
    sections.append(_gallery(table, group, summary, layers, targets, keys, with_truth))
    page = _PAGE.format(title=html.escape(title), style=_STYLE, body="\n".join(sections))
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(page, encoding="utf-8")
    temporary.replace(path)
    return path


def _keys_by_index(table) -> dict:
    index = table["image_index"].to_numpy()
    names = table["image"].to_pylist()
    return dict(zip(index.tolist(), names))


def _header(title, settings, source, images, rows) -> str:
    facts = [
        ("explained", settings.explained),
        ("source", source),
        ("images", f"{images:,}"),
        ("targets", ", ".join(settings.targets)),
        ("layers", ", ".join(settings.layers)),
        ("ground truth", "yes: localisation measured against the masks" if settings.with_truth else "no masks given"),
        ("table rows", f"{rows:,} (one per image x target x layer)"),
    ]
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts)
    return f"<header><h1>{html.escape(title)}</h1><dl class='facts'>{items}</dl></header>"


def _tiles(summary: Summary, table, images: int, with_truth: bool) -> str:
    maps = int(summary.maps.sum())
    empty = table["empty"].to_numpy(zero_copy_only=False).astype(bool)
    tiles = [(f"{images:,}", "images"), (f"{maps:,}", "heatmaps"), (_pct(empty.mean() if len(empty) else np.nan), "empty maps")]
    if with_truth:
        inside = table["energy_inside"].to_numpy(zero_copy_only=False).astype(float)
        hits = table["pointing_hit"].to_numpy(zero_copy_only=False).astype(float)
        tiles.append((_pct(np.nanmean(inside) if np.isfinite(inside).any() else np.nan), "heat inside the object"))
        tiles.append((_pct(np.nanmean(hits) if np.isfinite(hits).any() else np.nan), "peaks inside the object"))
    cells = "".join(f"<div class='tile'><b>{value}</b><span>{label}</span></div>" for value, label in tiles)
    return f"<section class='tiles'>{cells}</section>"


def _figure_section(heading: str, figure_html: str, caption: str) -> str:
    return f"<section><h2>{html.escape(heading)}</h2>{figure_html}<p class='caption'>{html.escape(caption)}</p></section>"


def _figure():
    from matplotlib.figure import Figure

    return Figure


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img class='plot' alt='' src='data:image/png;base64,{data}'>"


def _matrices(summary: Summary, layers, targets, with_truth: bool) -> str:
    panels = []
    if with_truth:
        panels.append(("Heat inside the object (mean share)", summary.energy_inside, "Greens"))
        panels.append(("Peak inside the object (hit rate)", summary.pointing_hit, "Greens"))
    panels.append(("Empty maps (share)", summary.empty_rate, "Reds"))
    panels.append(("Negative channel weights (mean share)", summary.negative_share, "Oranges"))
    Figure = _figure()
    width = max(3.4, 0.62 * len(layers) + 2.4)
    height = max(2.4, 0.5 * len(targets) + 1.9)
    pictures = []
    for name, values, cmap in panels:
        figure = Figure(figsize=(width, height), layout="constrained")
        axis = figure.subplots()
        image = axis.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=1, aspect="auto")
        axis.set_title(name, fontsize=12)
        axis.set_xticks(range(len(layers)), layers, rotation=55, ha="right", fontsize=9)
        axis.set_yticks(range(len(targets)), targets, fontsize=10)
        if len(layers) * len(targets) <= 160:
            for (row, col), value in np.ndenumerate(values):
                if np.isfinite(value):
                    axis.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=9, color="white" if value > 0.6 else "black")
        figure.colorbar(image, ax=axis, shrink=0.85)
        pictures.append(_png(figure))
    return "<div class='plots'>" + "".join(pictures) + "</div>"


def _layer_curves(summary: Summary, layers, targets, with_truth: bool) -> str:
    Figure = _figure()
    panels = [("Heat inside the object", summary.energy_inside)] if with_truth else []
    panels.append(("Empty maps", summary.empty_rate))
    figure = Figure(figsize=(max(5.0, 0.5 * len(layers) + 2) * len(panels), 3.6), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (name, values) in zip(axes, panels):
        for slot, label in enumerate(targets):
            axis.plot(range(len(layers)), values[slot], marker="o", label=label)
        axis.set_title(name, fontsize=11)
        axis.set_ylim(-0.02, 1.02)
        axis.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=8)
        axis.grid(alpha=0.3)
    axes[-1].legend(fontsize=8, loc="best")
    return _png(figure)


def _score_plot(summary: Summary, targets) -> str:
    Figure = _figure()
    figure = Figure(figsize=(max(4.5, 1.1 * len(targets) + 1.5), 3.4), layout="constrained")
    axis = figure.subplots()
    data = [scores if len(scores) else np.array([np.nan]) for scores in summary.scores]
    axis.boxplot(data, showfliers=True)
    axis.set_xticks(range(1, len(targets) + 1), [f"{name}\n({len(s)} images)" for name, s in zip(targets, summary.scores)], fontsize=8)
    axis.set_ylabel("explained score y")
    axis.grid(alpha=0.3, axis="y")
    return _png(figure)


def _table_section(summary: Summary, layers, targets, with_truth: bool) -> str:
    head = ["class / target", "layer", "maps", "empty"]
    if with_truth:
        head += ["heat inside", "peak inside", "IoU at 0.5"]
    head.append("negative weights")
    rows = []
    for slot, name in enumerate(targets):
        for index, layer in enumerate(layers):
            if not summary.maps[slot, index]:
                continue
            cells = [
                html.escape(name),
                html.escape(layer),
                f"{int(summary.maps[slot, index])}",
                _bar(summary.empty_rate[slot, index], "bad"),
            ]
            if with_truth:
                cells += [
                    _bar(summary.energy_inside[slot, index], "good"),
                    _bar(summary.pointing_hit[slot, index], "good"),
                    _bar(summary.iou[slot, index], "good"),
                ]
            cells.append(_bar(summary.negative_share[slot, index], "bad"))
            rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(rows) or f"<tr><td colspan='{len(head)}'>no maps</td></tr>"
    return (
        "<section><h2>Class x layer table</h2><div class='scroll'><table><thead><tr>"
        f"{header}</tr></thead><tbody>{body}</tbody></table></div>"
        "<p class='caption'>Shares are means over the maps of that class and layer; heat inside, peak inside and IoU "
        "leave out empty maps.</p></section>"
    )


def _bar(value: float, kind: str) -> str:
    if not np.isfinite(value):
        return "<span class='na'>n/a</span>"
    width = int(round(100 * min(max(value, 0.0), 1.0)))
    return f"<div class='bar {kind}'><i style='width:{width}%'></i><span>{value:.2f}</span></div>"


def _gallery(table, group, summary: Summary, layers, targets, keys, with_truth: bool) -> str:
    heatmaps, thumbnails = group["heatmaps"], group["thumbnails"]
    blocks = []
    for slot, name in enumerate(targets):
        ranked, badness = rank_images(table, slot, with_truth)
        absent = _absent_from_truth(table, slot) if with_truth else set()
        if len(ranked) == 0:
            continue
        layer = _showcase_layer(summary, slot, with_truth)
        count = min(SHOWN_IMAGES, (len(ranked) + 1) // 2)
        worst = list(zip(ranked[:count], badness[:count]))
        best = list(zip(ranked[::-1][:count], badness[::-1][:count]))
        what = "heat inside the object" if with_truth else "badness (empty share + negative weights)"
        rows = []
        for label, chosen in (("worst", worst), ("best", best)):
            cards = "".join(
                _card(heatmaps, thumbnails, int(index), slot, layer, keys.get(int(index), index), score, with_truth, int(index) in absent)
                for index, score in chosen
            )
            rows.append(f"<div class='row'><h4>{label}</h4><div class='cards'>{cards}</div></div>")
        blocks.append(
            f"<div class='class'><h3>{html.escape(name)} <small>{len(ranked)} images; heatmaps at layer "
            f"<code>{html.escape(layers[layer])}</code>; ranked by {what} over all layers</small></h3>{''.join(rows)}</div>"
        )
    return "<section><h2>Worst and best images per class</h2>" + "".join(blocks) + "</section>"


def _showcase_layer(summary: Summary, slot: int, with_truth: bool) -> int:
    values = summary.energy_inside[slot] if with_truth else -summary.empty_rate[slot]
    if not np.isfinite(values).any():
        return len(values) - 1
    best = np.nanmax(values)
    return int(np.nonzero(values == best)[0][-1])


def _absent_from_truth(table, slot: int) -> set:
    """Images where the slot's class is predicted but has no pixel in the mask."""
    keep = (table["target_index"].to_numpy() == slot) & (table["truth_pixels"].to_numpy(zero_copy_only=False) == 0)
    return set(table["image_index"].to_numpy()[keep].tolist())


def _card(heatmaps, thumbnails, index: int, slot: int, layer: int, key, badness: float, with_truth: bool, absent: bool = False) -> str:
    picture = np.asarray(thumbnails[index])
    heat = np.asarray(heatmaps[index, slot, layer], np.float32)
    overlay = _overlay(picture, heat)
    value = f"inside {1 - badness:.2f}" if with_truth else f"badness {badness:.2f}"
    if absent:
        value += " (class not in the mask)"
    return (
        "<figure>"
        f"<img alt='' src='{_png_bytes(picture)}'><img alt='' src='{_png_bytes(overlay)}'>"
        f"<figcaption>{html.escape(str(key))} · {value}</figcaption></figure>"
    )


def _overlay(picture: np.ndarray, heat: np.ndarray) -> np.ndarray:
    import cv2
    from matplotlib import colormaps

    heat = np.nan_to_num(heat, nan=0.0)
    heat = cv2.resize(heat, (picture.shape[1], picture.shape[0]), interpolation=cv2.INTER_AREA)
    colored = colormaps[HEAT_CMAP](np.clip(heat, 0, 1))[..., :3] * 255
    blended = (1 - OVERLAY_ALPHA) * picture.astype(np.float32) + OVERLAY_ALPHA * colored
    return np.clip(blended, 0, 255).astype(np.uint8)


def _png_bytes(picture: np.ndarray) -> str:
    import cv2

    ok, data = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode()


def _pct(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:.0f}%"


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1200px;margin:0 auto;padding:24px}
header h1{margin:0 0 8px;font-size:26px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:13px;color:#444;margin:0}
dl.facts dt{font-weight:600;color:#667}
dl.facts dd{margin:0}
section{background:#fff;border-radius:10px;padding:16px 20px;margin:18px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
section h2{margin:0 0 10px;font-size:19px}
.tiles{display:flex;gap:14px;flex-wrap:wrap;background:none;box-shadow:none;padding:0}
.tile{background:#fff;border-radius:10px;padding:14px 20px;min-width:150px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.tile b{display:block;font-size:28px}
.tile span{color:#667;font-size:13px}
img.plot{max-width:100%}
.plots{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}
.plots img.plot{max-width:49%}
.caption{color:#667;font-size:13px;margin:6px 0 0}
.scroll{max-height:520px;overflow:auto}
table{border-collapse:collapse;font-size:13px;width:100%}
th{position:sticky;top:0;background:#eef0f4;text-align:left;padding:6px}
td{padding:4px 6px;border-bottom:1px solid #eee}
.bar{position:relative;width:110px;height:16px;background:#eef0f4;border-radius:3px}
.bar i{position:absolute;left:0;top:0;bottom:0;border-radius:3px}
.bar.good i{background:#6cc08b}
.bar.bad i{background:#ec8c7c}
.bar span{position:relative;padding-left:4px;font-size:11px}
.na{color:#aaa}
.class h3{margin:14px 0 6px;font-size:16px}
.class h3 small{font-weight:normal;color:#667;font-size:12px}
.row{display:flex;align-items:flex-start;gap:10px}
.row h4{width:44px;margin:40px 0 0;font-size:13px;color:#667}
.cards{display:flex;gap:10px;flex-wrap:wrap}
figure{margin:0;background:#fafbfc;border:1px solid #e4e6ea;border-radius:6px;padding:5px}
figure img{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;margin-right:2px}
figcaption{font-size:11px;color:#445;max-width:200px;overflow-wrap:anywhere}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{style}</style></head>
<body><main>
{body}
</main></body></html>
"""
