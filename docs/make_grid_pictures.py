"""Make the grid pictures in docs/: the shipped shapes U-Net at 3 layers, and the same
network written with separate BatchNormalization and ReLU layers (32 explainable layers) at
every layer.

The deeper model needs no training: ``build_unet(..., batch_norm=True)`` has the same
convolution kernels as the shipped ``shapes_unet``; each convolution's bias becomes the
following BatchNormalization's offset (scale 1, moving mean 0, moving variance 1 - epsilon),
so it computes the same function (checked below) with a Conv2D, a BatchNormalization and an
Activation where the shipped model has one Conv2D with a fused ReLU. Run from the
repository root:

    python docs/make_grid_pictures.py
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="seggradcam-keras-"))

import numpy as np  # noqa: E402

import seggradcam as sgc  # noqa: E402
from seggradcam.data import SHAPE_CLASSES, load_samples  # noqa: E402
from seggradcam.models import build_unet, load_pretrained  # noqa: E402

DOCS = Path(__file__).resolve().parent


def three_layers(model, image: np.ndarray) -> None:
    explainer = sgc.SegGradCAM(model, layers=["bottleneck_conv2", "dec2_conv2", "dec1_conv2"])
    targets = [1, 2, 3, sgc.PixelTarget(100, 100), sgc.RegionTarget(box=(0, 0, 64, 64))]
    explainer.explain(image, targets).plot(class_names=SHAPE_CLASSES, path=DOCS / "grid_3_layers.png", dpi=90)


def batch_norm_copy(model):
    """shapes_unet as a batch-norm U-Net that computes the same function."""
    deep = build_unet((128, 128, 3), num_classes=4, filters=(16, 32, 64, 128), batch_norm=True, name="shapes_unet_bn")
    for layer in deep.layers:
        if not layer.weights or layer.name.split("_")[-1].startswith("bn"):
            continue
        kernel, *bias = model.get_layer(layer.name).get_weights()
        if layer.use_bias:
            layer.set_weights([kernel, *bias])
            continue
        layer.set_weights([kernel])
        norm = deep.get_layer(layer.name.replace("conv", "bn"))
        width = kernel.shape[-1]
        norm.set_weights([np.ones(width), bias[0], np.zeros(width), np.full(width, 1 - norm.epsilon)])
    return deep


def many_layers(model, image: np.ndarray) -> None:
    deep = batch_norm_copy(model)
    batch = image[np.newaxis]
    gap = float(np.abs(deep.predict(batch, verbose=0) - model.predict(batch, verbose=0)).max())
    print(f"largest difference between the two models' probabilities: {gap:.2e}")
    assert gap < 1e-4, gap
    explainer = sgc.SegGradCAM(deep, layers="all")
    prediction = explainer.predict(image)[0]
    classes = [int(c) for c in np.unique(prediction) if c != 0]
    expl = explainer.explain(image, classes)
    path = DOCS / f"grid_{len(expl.layers)}_layers.png"
    expl.plot(class_names=SHAPE_CLASSES, path=path, columns=8, dpi=72)
    print(f"wrote {path}")


if __name__ == "__main__":
    shapes = load_pretrained("shapes_unet")
    sample = load_samples("shapes")["images"][0]
    three_layers(shapes, sample)
    many_layers(shapes, sample)
