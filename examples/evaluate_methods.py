"""Compare methods and layers with numbers: ``python examples/evaluate_methods.py``.

On the shipped shapes U-Net and a freshly generated held-out set (``--images`` images,
seed ``--seed``), every predicted shape class of every image is explained with each method at
three layers (bottleneck, middle and last decoder convolution). Printed per method x layer,
averaged over images and classes (empty maps skipped):

- ``in target``: share of the map's mass inside the target mask (the predicted class);
- ``in truth``: the same inside the ground-truth mask of the class;
- ``pointing``: the map's maximum falls inside the ground truth (share of maps);
- ``IoU@0.5``: IoU of the map thresholded at 0.5 with the ground truth;
- ``deletion`` / ``insertion``: area under the deletion / insertion curve (blur baseline,
  10 steps) divided by the unperturbed score: lower is better for deletion, higher for insertion;
- ``empty``: share of maps that are empty after the ReLU.

Then the biased U-Net: the bias share of its disk maps on the biased tile (1 = no preference).
"""

import argparse

import numpy as np

import seggradcam as sgc
from seggradcam import metrics
from seggradcam.data import biased_shapes, texture_shapes
from seggradcam.models import load_pretrained

METHODS = [
    ("seg-grad-cam", None),
    ("seg-hires-grad-cam", None),
    ("seg-xres-grad-cam", {"pool_size": 4, "pool": "mean"}),
    ("seg-grad-cam++", None),
]
LAYERS = ["bottleneck_conv2", "dec2_conv2", "dec1_conv2"]


def evaluate(model, images, labels, method, options):
    import warnings

    explainer = sgc.SegGradCAM(model, layers=LAYERS, method=method, method_options=options)
    rows = {name: [] for name in ("in target", "in truth", "pointing", "IoU@0.5", "deletion", "insertion", "empty")}
    for image, label in zip(images, labels):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sgc.EmptyMapWarning)
            prediction = explainer.predict(image)[0]
            classes = [int(c) for c in np.unique(prediction) if c != 0]
            if not classes:
                continue
            expl = explainer.explain(image, classes)
        truth = np.stack([label == c for c in classes])[np.newaxis]
        rows["in target"].append(metrics.energy_inside(expl.heatmaps, expl.masks))
        rows["in truth"].append(metrics.energy_inside(expl.heatmaps, truth))
        rows["pointing"].append(metrics.pointing_game(expl.heatmaps, truth))
        rows["IoU@0.5"].append(metrics.map_iou(expl.heatmaps, truth))
        rows["deletion"].append(metrics.faithfulness(explainer, expl, "deletion", steps=10)["normalised_auc"])
        rows["insertion"].append(metrics.faithfulness(explainer, expl, "insertion", steps=10)["normalised_auc"])
        rows["empty"].append(expl.diagnose().empty.astype(float))
    return {name: np.concatenate([v.reshape(-1, len(LAYERS)) for v in values]) for name, values in rows.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--seed", type=int, default=50_001)
    args = parser.parse_args()
    model = load_pretrained("shapes_unet")
    images, labels = texture_shapes(args.images, seed=args.seed)
    names = ("in target", "in truth", "pointing", "IoU@0.5", "deletion", "insertion", "empty")
    print(f"shapes_unet, {args.images} held-out images (seed {args.seed}), every predicted shape class\n")
    print("| method | layer | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for method, options in METHODS:
        label = method + (f" (p={options['pool_size']}, {options['pool']})" if options else "")
        scores = evaluate(model, images, labels, method, options)
        for l, layer in enumerate(LAYERS):
            cells = [f"{np.nanmean(scores[name][:, l]):.3f}" for name in names]
            print(f"| {label} | {layer} | " + " | ".join(cells) + " |")
    biased = load_pretrained("biased_unet")
    images, labels, tile = biased_shapes(4 * args.images, seed=args.seed)
    disk_images = [i for i in range(len(images)) if (labels[i] == 1).any()]
    explainer = sgc.SegGradCAM(biased, layers=LAYERS)
    expl = explainer.explain(images[disk_images], sgc.ClassTarget(1, region="all"))
    share = metrics.bias_share(expl.heatmaps, tile)
    print(f"\nbiased_unet, {len(disk_images)} images with disks: bias share of the disk maps on the tile")
    for l, layer in enumerate(LAYERS):
        print(f"  {layer:<18} {np.nanmean(share[:, 0, l]):.2f}")


if __name__ == "__main__":
    main()
