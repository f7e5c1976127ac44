"""The paper's bias experiment, measured: ``python examples/bias_study.py``.

Two shipped U-Nets, identical but for their training data (``examples/train_biased.py``):
``biased_unet`` saw the checkerboard texture in the top-left tile of exactly the images with
disks; ``control_unet`` saw it in a random half of the images, whatever they held.

Part 1, does the biased model use the texture? Disk predictions on the held-out images with
the texture removed from every tile and inserted into every tile.

Part 2, does Seg-Grad-CAM see it? On held-out images with disks and the checkerboard in the
tile (the same images for both models), the disk class is explained at several layers and
the *bias share* of each map on the tile is taken (``seggradcam.metrics.bias_share``: the map's
mass on the tile divided by the tile's share of the image area; 1 = as much as its size
predicts, 0 = none). Per layer: the mean over images for each model with a 95% percentile
bootstrap interval (images resampled with replacement), and the ratio biased / control of the
means, its interval from the same (paired) resamples. An all-zero map has no share; it is
left out of the mean and counted in the ``empty`` column.

Targets (which pixels' disk scores are summed):
  predicted   the pixels predicted as disk (the paper's choice; ``ClassTarget(1)``)
  truth       the ground-truth disk pixels of each image (``ClassTarget(1, region=mask)``)
  image       every pixel (``ClassTarget(1, region="all")``)
Views of the same maps:
  positive        ``expl.heatmaps``: ReLU of the map (what raises the score)
  counterfactual  ``expl.counterfactual``: ReLU of minus the map (what lowers it)
  magnitude       ``abs(expl.signed)``: where the map is large, whatever its sign
Methods: ``seg-grad-cam`` (the paper's) and ``seg-hires-grad-cam`` (gradient x activation
per position, no averaging of the gradients over the layer).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

import seggradcam as sgc
from seggradcam.data import BIAS_CLASS, BIAS_STUDY_SEED, HELD_OUT_SEEDS, biased_shapes
from seggradcam.diagnostics import negative_weight_share
from seggradcam.metrics import bias_share
from seggradcam.models import load_model, load_pretrained

MODELS = ("biased_unet", "control_unet")
LAYERS = ("enc1_conv2", "enc2_conv2", "enc3_conv2", "bottleneck_conv1", "bottleneck_conv2", "dec3_conv2", "dec2_conv2", "dec1_conv2")
TARGETS = ("predicted", "truth", "image")
VIEWS = ("positive", "counterfactual", "magnitude")
METHODS = ("seg-grad-cam", "seg-hires-grad-cam")
SIGN_LAYERS = ("enc3_conv2", "bottleneck_conv1", "bottleneck_conv2")
# The view this study recommends for the shortcut (see the README and notebook 04); the test
# tests/test_bias_study.py checks it on the shipped models.
RECOMMENDED = {"method": "seg-hires-grad-cam", "target": "predicted", "view": "positive", "layer": "enc3_conv2"}


class Interval(NamedTuple):
    """A statistic and its 95% percentile bootstrap interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:6.2f} [{self.low:5.2f}, {self.high:5.2f}]"


def study_images(count: int, seed: int = BIAS_STUDY_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``count`` images with disks of ``biased_shapes(seed=seed)`` (checkerboard in the tile).

    Returns:
        (images, disk masks, tile): (count, H, W, 3), (count, H, W) bool, (H, W) bool.
    """
    images, labels, tile = biased_shapes(3 * count, seed=seed)
    keep = np.flatnonzero((labels == BIAS_CLASS).any(axis=(1, 2)))[:count]
    if len(keep) < count:
        raise ValueError(f"only {len(keep)} images with disks among {3 * count}; ask for fewer")
    return images[keep], labels[keep] == BIAS_CLASS, tile


def dependence(model, count: int = 200, seed: int = HELD_OUT_SEEDS["biased_unet"]) -> dict:
    """Disk predictions with the texture in no tile and in every tile (the same held-out images).

    Returns:
        variant -> (share of disk pixels predicted as disk, share of rectangle and triangle
        pixels predicted as disk).
    """
    result = {}
    for variant in ("none", "all"):
        images, labels, _ = biased_shapes(count, seed=seed, texture=variant)
        predicted = model.predict(images, batch_size=50, verbose=0).argmax(-1)
        others = (labels == 2) | (labels == 3)
        result[variant] = (float((predicted[labels == BIAS_CLASS] == BIAS_CLASS).mean()), float((predicted[others] == BIAS_CLASS).mean()))
    return result


def view_maps(expl, view: str) -> np.ndarray:
    """(N, T, L, H, W) maps of one view (see the module docstring)."""
    return np.abs(expl.signed) if view == "magnitude" else expl.view(view)


def shares(model, images, truth, tile, layers=LAYERS, batch: int = 16, method: str = "seg-grad-cam", targets=TARGETS) -> dict:
    """Bias shares on the tile, per (target, view): (N, L) arrays, NaN for an all-zero map.

    Each batch is one ``explain`` call (one compiled pass) with every layer and target; the
    ``truth`` target is one target per image of the batch, of which each image keeps its own.
    """
    explainer = sgc.SegGradCAM(model, layers=list(layers), method=method)
    out = {(target, view): [] for target in targets for view in VIEWS}
    for start in range(0, len(images), batch):
        chunk = slice(start, start + batch)
        own = [sgc.ClassTarget(BIAS_CLASS, region=mask) for mask in truth[chunk]] if "truth" in targets else []
        fixed = [t for t in targets if t != "truth"]
        batch_targets = [sgc.ClassTarget(BIAS_CLASS, region="predicted" if t == "predicted" else "all") for t in fixed] + own
        with warnings.catch_warnings():  # empty maps are expected and counted below
            warnings.simplefilter("ignore", sgc.EmptyMapWarning)
            expl = explainer.explain(images[chunk], batch_targets)
        rows = np.arange(len(own))
        for view in VIEWS:
            share = bias_share(view_maps(expl, view), tile)  # (n, T, L)
            for index, target in enumerate(fixed):
                out[(target, view)].append(share[:, index])
            if own:
                out[("truth", view)].append(share[rows, len(fixed) + rows])
    return {key: np.concatenate(parts) for key, parts in out.items()}


def signs(model, images, layers=SIGN_LAYERS, batch: int = 16) -> dict:
    """Per layer: the share of negative channel weights alpha, and the signed map's mean on the
    tile and off it (at the layer's resolution, each map divided by its largest |value|), for
    the predicted-disk target of plain Seg-Grad-CAM. Returns layer -> (3,) means over images.
    """
    explainer = sgc.SegGradCAM(model, layers=list(layers))
    parts = []
    for start in range(0, len(images), batch):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sgc.EmptyMapWarning)
            expl = explainer.explain(images[start : start + batch], sgc.ClassTarget(BIAS_CLASS))
        negative = negative_weight_share(expl.weights, expl.layers)[:, 0]  # (n, L)
        rows = []
        for name in expl.layers:
            raw = expl.raw[name][:, 0]  # (n, h, w)
            raw = raw / np.maximum(np.abs(raw).max(axis=(1, 2), keepdims=True), 1e-12)
            on_tile = bias_tile_at(raw.shape[1])
            rows.append(np.stack([raw[:, on_tile].mean(axis=1), raw[:, ~on_tile].mean(axis=1)], axis=1))
        parts.append(np.concatenate([negative[..., np.newaxis], np.stack(rows, axis=1)], axis=2))  # (n, L, 3)
    means = np.concatenate(parts).mean(axis=0)
    return {name: means[index] for index, name in enumerate(layers)}


def bias_tile_at(side: int) -> np.ndarray:
    """The tile (top-left quarter) on a side x side grid."""
    tile = np.zeros((side, side), bool)
    tile[: side // 2, : side // 2] = True
    return tile


def _mean(values: np.ndarray, axis=None) -> np.ndarray:
    with warnings.catch_warnings():  # a resample of only empty maps has no mean: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def compare(biased: np.ndarray, control: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[Interval, Interval, Interval]:
    """Means over images of two (N,) share arrays and their ratio, with paired bootstrap intervals."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(biased), size=(draws, len(biased)))
    boot_b, boot_c = _mean(biased[picks], axis=1), _mean(control[picks], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio, boot_r = _mean(biased) / _mean(control), boot_b / boot_c

    def interval(value, boot):
        finite = boot[np.isfinite(boot)]
        low, high = np.percentile(finite, [2.5, 97.5]) if len(finite) else (np.nan, np.nan)
        return Interval(float(value), float(low), float(high))

    return interval(_mean(biased), boot_b), interval(_mean(control), boot_c), interval(ratio, boot_r)


def print_table(biased: np.ndarray, control: np.ndarray, draws: int) -> None:
    print(f"{'layer':<17} {'biased_unet':>22} {'control_unet':>22} {'ratio biased/control':>24}  empty b/c")
    for index, layer in enumerate(LAYERS):
        b, c, r = compare(biased[:, index], control[:, index], draws)
        empty = f"{np.isnan(biased[:, index]).sum()}/{np.isnan(control[:, index]).sum()}"
        print(f"{layer:<17} {b!s:>22} {c!s:>22} {r!s:>24}  {empty:>9}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=128, help="held-out images with disks (default %(default)s)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--draws", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=BIAS_STUDY_SEED, help="biased_shapes seed of the study images")
    parser.add_argument("--models", default=None, help="folder with biased_unet.keras and control_unet.keras (default: the shipped ones)")
    args = parser.parse_args()
    models = {name: load_model(Path(args.models) / f"{name}.keras") if args.models else load_pretrained(name) for name in MODELS}

    print("Part 1: does the model use the texture? 200 held-out images (biased_shapes seed 30001)")
    print(f"{'':<13} {'disk pixels called disk':>32} {'rectangle/triangle pixels called disk':>40}")
    print(f"{'':<13} {'texture in no tile':>18} {'in every':>13} {'texture in no tile':>22} {'in every tile':>17}")
    for name, model in models.items():
        found = dependence(model)
        print(f"{name:<13} {found['none'][0]:>18.3f} {found['all'][0]:>13.3f} {found['none'][1]:>22.3f} {found['all'][1]:>17.3f}")

    images, truth, tile = study_images(args.images, args.seed)
    print(f"\nPart 2: does Seg-Grad-CAM see it? {len(images)} held-out images with disks (biased_shapes seed {args.seed}),")
    print(f"checkerboard in the tile (top-left quarter, {tile.mean():.0%} of the area). Bias share of the disk maps on")
    print(f"the tile, mean over images [95% bootstrap interval, {args.draws} paired resamples].")
    results = {}
    for method in METHODS:
        targets = TARGETS if method == "seg-grad-cam" else ("predicted",)
        for name, model in models.items():
            start = time.perf_counter()
            results[(method, name)] = shares(model, images, truth, tile, method=method, targets=targets)
            print(f"  {method} on {name}: {time.perf_counter() - start:.0f} s")
        for target in targets:
            for view in VIEWS:
                biased, control = results[(method, "biased_unet")][(target, view)], results[(method, "control_unet")][(target, view)]
                print(f"\nmethod={method} target={target} view={view}")
                print_table(biased, control, args.draws)

    print("\nPart 3: the signs. Plain Seg-Grad-CAM, predicted-disk target: share of negative channel weights")
    print("alpha, and the signed map's mean on the tile and off it (each map divided by its max |value|).")
    print(f"{'layer':<17} {'model':<13} {'negative alpha':>15} {'map on tile':>12} {'map off tile':>13}")
    for name, model in models.items():
        for layer, (negative, on_tile, off_tile) in signs(model, images).items():
            print(f"{layer:<17} {name:<13} {negative:>15.2f} {on_tile:>+12.3f} {off_tile:>+13.3f}")

    pick = RECOMMENDED
    index = LAYERS.index(pick["layer"])
    b, c, r = compare(
        results[(pick["method"], "biased_unet")][(pick["target"], pick["view"])][:, index],
        results[(pick["method"], "control_unet")][(pick["target"], pick["view"])][:, index],
        args.draws,
    )
    print(f"\nRecommended view: {pick}: biased {b}, control {c}, ratio {r}")


if __name__ == "__main__":
    main()
