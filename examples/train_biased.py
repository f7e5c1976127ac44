"""Train the shipped biased U-Net and its control: ``python examples/train_biased.py [--control]``.

Both models are the same ``build_unet`` U-Net, trained by the same loop with the same seed,
epochs and number of images on ``biased_shapes`` images made from the same seed; they differ
only in which tiles show the bias texture (a checkerboard in the top-left quarter):

- ``biased_unet`` (default): the images with disks, and no other (``biased=True``);
- ``control_unet`` (``--control``): a random half of the images, whatever they hold
  (``biased=False``), so the texture is seen as often but tells nothing about disks.

Afterwards the script measures how much each model depends on the texture, on the held-out
images with the texture removed from every tile and inserted into every tile
(``biased_shapes(texture="none" | "all")``), and writes everything into the record.
Writes ``<name>.keras`` and ``<name>.json`` to seggradcam/data/models (or ``--out``).
"""

import argparse
import functools

import numpy as np
from training import predict_labels, train_and_save

from seggradcam.data import BIAS_CLASS, BIAS_SIZE, HELD_OUT_SEEDS, HELD_OUT_SIZES, biased_shapes, mean_iou
from seggradcam.models import build_unet

FILTERS = (16, 32, 64, 128)
NUM_CLASSES = 4


def texture_dependence(model, seed: int, count: int, size: int) -> dict:
    """How the model's disk predictions change with the bias texture, on ``count`` held-out images.

    For each test variant (``texture="none"``: no tile shows the texture; ``"all"``: every tile
    does), on the same images: the disk IoU, the share of disk pixels predicted as disk, and the
    share of rectangle and triangle pixels (images without disks) predicted as disk.
    """
    result = {}
    for variant in ("none", "all"):
        images, labels, _ = biased_shapes(count, size=size, seed=seed, texture=variant)
        predicted = predict_labels(model, images)
        _, per_class = mean_iou(labels, predicted, NUM_CLASSES)
        disks = labels == BIAS_CLASS
        others = (labels == 2) | (labels == 3)
        result[f"texture_{variant}"] = {
            "disk_iou": round(float(per_class[BIAS_CLASS]), 4),
            "disk_pixels_called_disk": round(float((predicted[disks] == BIAS_CLASS).mean()), 4),
            "other_shape_pixels_called_disk": round(float((predicted[others] == BIAS_CLASS).mean()), 4),
        }
    return {"held_out_texture_dependence": result}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--control", action="store_true", help="train control_unet (texture independent of the class)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=BIAS_SIZE, help="image side (the shipped models: %(default)s)")
    parser.add_argument("--out", default=None, help="folder for the model and record (default: the package's data/models)")
    args = parser.parse_args()
    name = "control_unet" if args.control else "biased_unet"
    biased = not args.control
    build = functools.partial(build_unet, (args.size, args.size, 3), NUM_CLASSES, FILTERS, name=name)
    images, labels, _ = biased_shapes(args.train, size=args.size, seed=args.seed, biased=biased)
    held_seed, held_count = HELD_OUT_SEEDS[name], HELD_OUT_SIZES[name]
    held_images, held_labels, _ = biased_shapes(held_count, size=args.size, seed=held_seed, biased=biased)
    flag = " --control" if args.control else ""
    command = f"python examples/train_biased.py{flag} --epochs {args.epochs} --train {args.train} --seed {args.seed}"
    if args.size != BIAS_SIZE:
        command += f" --size {args.size}"
    record = train_and_save(
        build(),
        name,
        (images, labels),
        (held_images, held_labels),
        epochs=args.epochs,
        seed=args.seed,
        command=command,
        builder=build,
        models_dir=args.out,
        measure=lambda model: texture_dependence(model, held_seed, held_count, args.size),
    )
    for variant, values in record["held_out_texture_dependence"].items():
        print(variant, values)
    print("disk IoU on its own held-out set:", np.round(record["held_out_per_class_iou"][BIAS_CLASS], 3))


if __name__ == "__main__":
    main()
