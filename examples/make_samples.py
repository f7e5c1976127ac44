"""Write the sample images that ship in seggradcam/data/samples: ``python examples/make_samples.py``.

For each dataset: PNG images (``<set>_<i>.png``), ground-truth label PNGs (pixel value = class,
``<set>_<i>_mask.png``) and one npz bundle (``<set>.npz``) with images, labels and class names.
"""

from pathlib import Path

import cv2
import numpy as np

from seggradcam.data import DIGIT_CLASSES, SHAPE_CLASSES, biased_shapes, texture_digits, texture_shapes

SAMPLES = Path(__file__).resolve().parent.parent / "seggradcam" / "data" / "samples"
SEED = 728  # chosen so that shapes sample 0 shows all three shape classes


def write(name, images, labels, class_names, **extra):
    SAMPLES.mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        rgb = np.round(image * 255).astype(np.uint8)
        cv2.imwrite(str(SAMPLES / f"{name}_{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(SAMPLES / f"{name}_{i}_mask.png"), label.astype(np.uint8))
    # the npz holds the PNG-quantised images, so both give the same pixels
    quantised = np.round(images * 255).astype(np.uint8).astype(np.float32) / 255
    np.savez_compressed(SAMPLES / f"{name}.npz", images=quantised, labels=labels, class_names=np.array(class_names), **extra)


def main():
    write("shapes", *texture_shapes(4, seed=SEED), SHAPE_CLASSES)
    write("digits", *texture_digits(4, seed=SEED), DIGIT_CLASSES)
    images, labels, tile = biased_shapes(4, seed=SEED)
    write("biased", images, labels, SHAPE_CLASSES, tile=tile)
    print(f"wrote samples to {SAMPLES}")


if __name__ == "__main__":
    main()
