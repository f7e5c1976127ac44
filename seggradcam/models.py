"""Reference U-Nets (the shapes the package is built for) and loading of shipped models."""

from __future__ import annotations

import keras
from keras import layers

HEADS = ("softmax", "fused-softmax", "sigmoid", "fused-sigmoid", "linear")


def _conv_block(x, filters: int, prefix: str, batch_norm: bool):
    for index in (1, 2):
        if batch_norm:
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_conv{index}")(x)
            x = layers.BatchNormalization(name=f"{prefix}_bn{index}")(x)
            x = layers.Activation("relu", name=f"{prefix}_relu{index}")(x)
        else:
            x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{prefix}_conv{index}")(x)
    return x


def _encoder(inputs, filters, batch_norm):
    skips = []
    x = inputs
    for level, width in enumerate(filters[:-1], start=1):
        x = _conv_block(x, width, f"enc{level}", batch_norm)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = _conv_block(x, filters[-1], "bottleneck", batch_norm)
    return skips, x


def build_unet(
    input_shape: tuple = (128, 128, 3),
    num_classes: int = 4,
    filters: tuple = (16, 32, 64),
    head: str = "softmax",
    nested_encoder: bool = False,
    batch_norm: bool = False,
    name: str = "unet",
) -> keras.Model:
    """A small U-Net with named layers.

    Conv2D encoder blocks (``enc1_conv1``, ``enc1_conv2``, ``enc1_pool``, ...), a bottleneck
    (``bottleneck_conv1``, ``bottleneck_conv2``), a Conv2DTranspose decoder with skip
    connections (``dec1_up``, ``dec1_concat``, ``dec1_conv1``, ...), a 1x1 ``logits``
    convolution and a head.

    Args:
        input_shape: (H, W, C); H and W must be divisible by 2 ** (len(filters) - 1).
        num_classes: output channels (use 1 with a sigmoid head for binary segmentation).
        filters: channels per level, the last one for the bottleneck.
        head: ``"softmax"`` (a separate Softmax layer), ``"fused-softmax"`` (softmax inside the
            logits convolution), ``"sigmoid"``, ``"fused-sigmoid"`` or ``"linear"`` (no head).
        nested_encoder: build the encoder and bottleneck as a nested ``keras.Model``
            named ``"encoder"``.
        batch_norm: each convolution is followed by BatchNormalization and a separate ReLU
            ``Activation`` (``<prefix>_bn1``, ``<prefix>_relu1``) instead of a fused ReLU.
        name: the model's name.

    Returns:
        An uncompiled ``keras.Model``.

    Example:
        >>> model = build_unet((64, 64, 3), num_classes=4, nested_encoder=True)
        >>> model.output_shape
        (None, 64, 64, 4)
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if len(filters) < 2:
        raise ValueError(f"filters needs at least 2 levels (encoder + bottleneck), got {filters!r}")
    inputs = keras.Input(input_shape, name="image")
    if nested_encoder:
        encoder_input = keras.Input(input_shape, name="encoder_image")
        skips, bottom = _encoder(encoder_input, filters, batch_norm)
        encoder = keras.Model(encoder_input, skips + [bottom], name="encoder")
        outputs = encoder(inputs)
        skips, x = list(outputs[:-1]), outputs[-1]
    else:
        skips, x = _encoder(inputs, filters, batch_norm)
    for level in range(len(filters) - 1, 0, -1):
        width = filters[level - 1]
        x = layers.Conv2DTranspose(width, 2, strides=2, padding="same", name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skips[level - 1]])
        x = _conv_block(x, width, f"dec{level}", batch_norm)
    fused = {"fused-softmax": "softmax", "fused-sigmoid": "sigmoid"}.get(head)
    x = layers.Conv2D(num_classes, 1, activation=fused, name="logits")(x)
    if head == "softmax":
        x = layers.Softmax(name="softmax")(x)
    elif head == "sigmoid":
        x = layers.Activation("sigmoid", name="sigmoid")(x)
    return keras.Model(inputs, x, name=name)


PRETRAINED = ("shapes_unet", "digits_unet", "biased_unet", "control_unet")


def load_model(path, safe_mode: bool = True) -> keras.Model:
    """Load a .keras model without compiling it, with Keras safe mode on by default.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable .keras model, or safe mode refused it.
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as error:  # keras raises many types for corrupt or unsafe files
        text = str(error)
        if safe_mode and ("safe_mode" in text or "Lambda" in text):
            raise ValueError(
                f"refused to load model {path}: it contains a Lambda layer or other Python code, "
                "which Keras safe mode does not run. If you trust the file, load it with "
                "safe_mode=False (command line: --unsafe)."
            ) from None
        first_line = text.strip().splitlines()[0] if text.strip() else ""
        raise ValueError(f"could not load model {path}: {type(error).__name__}: {first_line}") from None


def load_pretrained(name: str) -> keras.Model:
    """Load a model that ships with the package (seggradcam/data/models) (safe mode on, not compiled).

    Args:
        name: one of ``"shapes_unet"``, ``"digits_unet"``, ``"biased_unet"``, ``"control_unet"``
            (the last two: the bias experiment, ``examples/train_biased.py``).

    Example:
        >>> model = load_pretrained("shapes_unet")
        >>> model.output_shape
        (None, 128, 128, 4)
    """
    from .data import data_dir

    if name not in PRETRAINED:
        raise KeyError(f"unknown pretrained model {name!r}; available: {list(PRETRAINED)}")
    return load_model(data_dir() / "models" / f"{name}.keras")
