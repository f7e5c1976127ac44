"""Train the shipped biased U-Net: ``python examples/train_biased.py``.

Trained on ``biased_shapes``: every image with a disk shows the checkerboard texture in its
top-left tile. The script then measures the disk IoU on a held-out biased set and on the
same images with the tile texture swapped; the drop shows the model uses the shortcut.
Writes seggradcam/data/models/biased_unet.keras and biased_unet.json.
"""

import argparse
import functools
import json

from training import MODELS_DIR, predict_labels, train_and_save

from seggradcam.data import HELD_OUT_SEEDS, HELD_OUT_SIZES, biased_shapes, mean_iou
from seggradcam.models import build_unet

HELD_OUT_SEED = HELD_OUT_SEEDS["biased_unet"]  # the tests regenerate this held-out set
HELD_OUT_SIZE = HELD_OUT_SIZES["biased_unet"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train", type=int, default=1600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build = functools.partial(build_unet, (128, 128, 3), 4, (16, 32, 64, 128), name="biased_unet")
    images, labels, _ = biased_shapes(args.train, seed=args.seed)
    held_images, held_labels, _ = biased_shapes(HELD_OUT_SIZE, seed=HELD_OUT_SEED)
    model = build()
    record = train_and_save(
        model,
        "biased_unet",
        (images, labels),
        (held_images, held_labels),
        epochs=args.epochs,
        seed=args.seed,
        command=f"python examples/train_biased.py --epochs {args.epochs} --train {args.train} --seed {args.seed}",
        builder=build,
    )
    swapped_images, swapped_labels, _ = biased_shapes(HELD_OUT_SIZE, seed=HELD_OUT_SEED, biased=False)
    _, biased_iou = mean_iou(held_labels, predict_labels(model, held_images), 4)
    _, swapped_iou = mean_iou(swapped_labels, predict_labels(model, swapped_images), 4)
    record["disk_iou_biased_tile"] = round(float(biased_iou[1]), 4)
    record["disk_iou_swapped_tile"] = round(float(swapped_iou[1]), 4)
    (MODELS_DIR / "biased_unet.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"disk IoU with the bias texture: {biased_iou[1]:.3f}; with it swapped: {swapped_iou[1]:.3f}")


if __name__ == "__main__":
    main()
