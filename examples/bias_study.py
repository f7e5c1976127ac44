"""The paper's bias experiment, measured: ``python examples/bias_study.py``.

Two shipped U-Nets, identical but for their training data (``examples/train_biased.py``):
``biased_unet`` saw the checkerboard texture in the top-left tile of exactly the images with
disks; ``control_unet`` saw it in a random half of the images. On held-out images with disks
and the checkerboard in the tile (the same images for both models), the script explains the
disk class with Seg-Grad-CAM at several layers and reports, per layer, the bias share of the
maps on the tile (``seggradcam.metrics.bias_share``: the map's mass on the tile divided by the
tile's share of the image area, so 1 means "as much as its size predicts" and 0 "none").

Per (target, view, layer): the mean bias share over images for each model with a 95%
percentile bootstrap interval (images resampled with replacement), and the ratio
biased / control of the means with its interval from the same (paired) resamples. Maps that
are all zero (nothing positive to show) have no share; they are left out of the mean and
counted in the ``empty`` columns.

Targets (what the explained score sums):
  predicted   the pixels predicted as disk (the paper's choice; ``ClassTarget(1)``)
  truth       the ground-truth disk pixels of each image (``ClassTarget(1, region=mask)``)
  image       every pixel's disk score (``ClassTarget(1, region="all")``)
Views: ``positive`` (the heatmaps: ReLU of the map), ``counterfactual`` (ReLU of minus the
map: what lowers the disk score).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

import seggradcam as sgc
from seggradcam.data import BIAS_CLASS, BIAS_STUDY_SEED, biased_shapes
from seggradcam.metrics import bias_share
from seggradcam.models import load_model, load_pretrained

MODELS = ("biased_unet", "control_unet")
LAYERS = ("enc1_conv2", "enc2_conv2", "enc3_conv2", "bottleneck_conv1", "bottleneck_conv2", "dec3_conv2", "dec2_conv2", "dec1_conv2")
TARGETS = ("predicted", "truth", "image")
VIEWS = ("positive", "counterfactual")


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


def shares(model, images, truth, tile, layers=LAYERS, batch: int = 16, method: str = "seg-grad-cam") -> dict:
    """Bias shares on the tile, per (target, view): (N, L) arrays, NaN for an all-zero map.

    Each batch is one ``explain`` call (one compiled pass) with every layer and target: the
    ``predicted`` and ``image`` targets plus one ``truth`` target per image of the batch,
    of which each image keeps its own.
    """
    explainer = sgc.SegGradCAM(model, layers=list(layers), method=method)
    out = {(target, view): [] for target in TARGETS for view in VIEWS}
    for start in range(0, len(images), batch):
        chunk = slice(start, start + batch)
        own = [sgc.ClassTarget(BIAS_CLASS, region=mask) for mask in truth[chunk]]
        targets = [sgc.ClassTarget(BIAS_CLASS), sgc.ClassTarget(BIAS_CLASS, region="all"), *own]
        with warnings.catch_warnings():  # empty maps are expected and counted below
            warnings.simplefilter("ignore", sgc.EmptyMapWarning)
            expl = explainer.explain(images[chunk], targets)
        rows = np.arange(len(own))
        for view in VIEWS:
            share = bias_share(expl.view(view), tile)  # (n, T, L)
            out[("predicted", view)].append(share[:, 0])
            out[("image", view)].append(share[:, 1])
            out[("truth", view)].append(share[rows, 2 + rows])
    return {key: np.concatenate(parts) for key, parts in out.items()}


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
        low, high = np.nanpercentile(boot, [2.5, 97.5]) if np.isfinite(boot).any() else (np.nan, np.nan)
        return Interval(float(value), float(low), float(high))

    return interval(_mean(biased), boot_b), interval(_mean(control), boot_c), interval(ratio, boot_r)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=128, help="held-out images with disks (default %(default)s)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--draws", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=BIAS_STUDY_SEED, help="biased_shapes seed of the study images")
    parser.add_argument("--models", default=None, help="folder with biased_unet.keras and control_unet.keras (default: the shipped ones)")
    args = parser.parse_args()
    images, truth, tile = study_images(args.images, args.seed)
    print(f"{len(images)} held-out images with disks (biased_shapes seed {args.seed}), checkerboard in the tile;")
    print(f"tile = top-left quarter ({tile.mean():.0%} of the area); bias share 1 = the map's mass on the tile")
    print(f"matches its area, 0 = none. Mean over images [95% bootstrap interval, {args.draws} paired resamples].\n")
    results = {}
    for name in MODELS:
        start = time.perf_counter()
        model = load_model(Path(args.models) / f"{name}.keras") if args.models else load_pretrained(name)
        results[name] = shares(model, images, truth, tile, batch=args.batch)
        print(f"{name}: explained in {time.perf_counter() - start:.0f} s")
    for target in TARGETS:
        for view in VIEWS:
            biased, control = results["biased_unet"][(target, view)], results["control_unet"][(target, view)]
            print(f"\ntarget={target} view={view}")
            print(f"{'layer':<17} {'biased_unet':>22} {'control_unet':>22} {'ratio biased/control':>24}  empty b/c")
            for index, layer in enumerate(LAYERS):
                b, c, r = compare(biased[:, index], control[:, index], args.draws)
                empty = f"{np.isnan(biased[:, index]).sum()}/{np.isnan(control[:, index]).sum()}"
                print(f"{layer:<17} {b!s:>22} {c!s:>22} {r!s:>24}  {empty:>9}")


if __name__ == "__main__":
    main()
