"""Train the shipped digits U-Net: ``python examples/train_digits.py`` (about 10 min on 2 cores).

Writes seggradcam/data/models/digits_unet.keras and digits_unet.json (how it was made, held-out IoU).
"""

import argparse
import functools

from training import train_and_save

from seggradcam.data import HELD_OUT_SEEDS, HELD_OUT_SIZES, texture_digits
from seggradcam.models import build_unet

HELD_OUT_SEED = HELD_OUT_SEEDS["digits_unet"]  # the tests regenerate this held-out set
HELD_OUT_SIZE = HELD_OUT_SIZES["digits_unet"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build = functools.partial(build_unet, (64, 64, 3), 11, (16, 32, 64, 128), name="digits_unet")
    train_and_save(
        build(),
        "digits_unet",
        texture_digits(args.train, seed=args.seed),
        texture_digits(HELD_OUT_SIZE, seed=HELD_OUT_SEED),
        epochs=args.epochs,
        seed=args.seed,
        command=f"python examples/train_digits.py --epochs {args.epochs} --train {args.train} --seed {args.seed}",
        builder=build,
    )


if __name__ == "__main__":
    main()
