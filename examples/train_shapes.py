"""Train the shipped shapes U-Net: ``python examples/train_shapes.py`` (about 20 min on 2 cores).

Writes seggradcam/data/models/shapes_unet.keras and shapes_unet.json (how it was made, held-out IoU).
"""

import argparse
import functools

from training import train_and_save

from seggradcam.data import HELD_OUT_SEEDS, HELD_OUT_SIZES, texture_shapes
from seggradcam.models import build_unet

HELD_OUT_SEED = HELD_OUT_SEEDS["shapes_unet"]  # the tests regenerate this held-out set
HELD_OUT_SIZE = HELD_OUT_SIZES["shapes_unet"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=28)
    parser.add_argument("--train", type=int, default=1600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build = functools.partial(build_unet, (128, 128, 3), 4, (16, 32, 64, 128), name="shapes_unet")
    train_and_save(
        build(),
        "shapes_unet",
        texture_shapes(args.train, seed=args.seed),
        texture_shapes(HELD_OUT_SIZE, seed=HELD_OUT_SEED),
        epochs=args.epochs,
        seed=args.seed,
        command=f"python examples/train_shapes.py --epochs {args.epochs} --train {args.train} --seed {args.seed}",
        builder=build,
    )


if __name__ == "__main__":
    main()
