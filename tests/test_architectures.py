"""Architectures of the kinds users bring, with random weights and no downloads.

Each model is explained with ``layers="all"`` and checked against the slow reference in
tests/reference.py on three layers (one deep inside the encoder, one in the middle, one in
the decoder or head), to the reference's default 1e-5 relative (see check_explanation).
"""

import keras
import numpy as np
import pytest

import seggradcam as sgc

from .reference import Scores, Site, check_explanation, find_layer

CLASSES = 3


def images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (1,) + shape).astype(np.float32)


def mobilenet_unet():
    """keras.applications.MobileNetV2 (weights=None) as a nested encoder of a U-Net decoder."""
    backbone = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, include_top=False, weights=None)
    names = ["block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu", "block_16_project"]
    encoder = keras.Model(backbone.input, [backbone.get_layer(name).output for name in names], name="encoder")
    inputs = keras.Input((64, 64, 3))
    *skips, x = encoder(inputs)
    for index, skip in enumerate(reversed(skips)):
        x = keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same", name=f"up{index}")(x)
        x = keras.layers.Concatenate(name=f"join{index}")([x, skip])
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name=f"fuse{index}")(x)
    x = keras.layers.Conv2DTranspose(CLASSES, 3, strides=2, padding="same", name="scores")(x)
    model = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(x), name="mobilenet_unet")
    sites = {
        "block_6_expand_relu": Site(find_layer(model, "encoder", "block_6_expand_relu")),
        "block_13_depthwise": Site(find_layer(model, "encoder", "block_13_depthwise")),
        "fuse2": Site(model.get_layer("fuse2")),
    }
    return model, sites, Scores(model.get_layer("probabilities"), read="input")


def separable_residual_unet():
    """A U-Net of SeparableConv2D residual blocks with BatchNorm and UpSampling2D."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    previous = x
    for index, filters in enumerate((16, 32)):
        x = keras.layers.Activation("relu", name=f"down{index}_relu_a")(x)
        x = keras.layers.SeparableConv2D(filters, 3, padding="same", name=f"down{index}_sep_a")(x)
        x = keras.layers.BatchNormalization(name=f"down{index}_bn_a")(x)
        x = keras.layers.Activation("relu", name=f"down{index}_relu_b")(x)
        x = keras.layers.SeparableConv2D(filters, 3, padding="same", name=f"down{index}_sep_b")(x)
        x = keras.layers.BatchNormalization(name=f"down{index}_bn_b")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"down{index}_pool")(x)
        residual = keras.layers.Conv2D(filters, 1, strides=2, padding="same", name=f"down{index}_residual")(previous)
        x = previous = keras.layers.Add(name=f"down{index}_add")([x, residual])
    for index, filters in enumerate((32, 16, 8)):
        x = keras.layers.Activation("relu", name=f"up{index}_relu_a")(x)
        x = keras.layers.Conv2DTranspose(filters, 3, padding="same", name=f"up{index}_tconv")(x)
        x = keras.layers.BatchNormalization(name=f"up{index}_bn")(x)
        x = keras.layers.UpSampling2D(2, name=f"up{index}_upsample")(x)
        residual = keras.layers.UpSampling2D(2, name=f"up{index}_residual_upsample")(previous)
        residual = keras.layers.Conv2D(filters, 1, padding="same", name=f"up{index}_residual")(residual)
        x = previous = keras.layers.Add(name=f"up{index}_add")([x, residual])
    outputs = keras.layers.Conv2D(CLASSES, 3, activation="softmax", padding="same", name="scores")(x)
    outputs = keras.layers.Resizing(32, 32, name="to_input")(outputs) if outputs.shape[1] != 32 else outputs
    model = keras.Model(inputs, outputs, name="separable_unet")
    sites = {
        "down0_sep_b": Site(model.get_layer("down0_sep_b")),
        "down1_relu_b": Site(model.get_layer("down1_relu_b")),
        "up2_tconv": Site(model.get_layer("up2_tconv")),
    }
    return model, sites, Scores(model.get_layer("scores"), read="pre")


def deeplab_like():
    """A small residual backbone, atrous spatial pyramid pooling with BatchNorm and image pooling,
    resized back to the input size with a final softmax."""
    inputs = keras.Input((48, 48, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    for index in range(2):
        shortcut = keras.layers.Conv2D(32, 1, strides=2, name=f"res{index}_short")(x)
        y = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name=f"res{index}_conv_a")(x)
        y = keras.layers.BatchNormalization(name=f"res{index}_bn_a")(y)
        y = keras.layers.ReLU(name=f"res{index}_relu_a")(y)
        y = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name=f"res{index}_conv_b")(y)
        y = keras.layers.BatchNormalization(name=f"res{index}_bn_b")(y)
        x = keras.layers.ReLU(name=f"res{index}_out")(keras.layers.Add(name=f"res{index}_add")([y, shortcut]))
    branches = [keras.layers.Conv2D(16, 1, use_bias=False, name="aspp_1x1")(x)]
    for rate in (2, 3):
        branch = keras.layers.Conv2D(16, 3, dilation_rate=rate, padding="same", use_bias=False, name=f"aspp_rate{rate}")(x)
        branch = keras.layers.BatchNormalization(name=f"aspp_rate{rate}_bn")(branch)
        branches.append(keras.layers.ReLU(name=f"aspp_rate{rate}_relu")(branch))
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
    pooled = keras.layers.Conv2D(16, 1, activation="relu", name="aspp_pool_conv")(pooled)
    branches.append(keras.layers.Resizing(6, 6, interpolation="bilinear", name="aspp_pool_resize")(pooled))
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    x = keras.layers.Conv2D(32, 1, use_bias=False, name="aspp_project")(x)
    x = keras.layers.BatchNormalization(name="aspp_project_bn")(x)
    x = keras.layers.ReLU(name="aspp_project_relu")(x)
    x = keras.layers.Conv2D(CLASSES, 1, name="scores")(x)
    x = keras.layers.Resizing(48, 48, interpolation="bilinear", name="to_input")(x)
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(x), name="deeplab_like")
    sites = {
        "res0_relu_a": Site(model.get_layer("res0_relu_a")),
        "aspp_rate2": Site(model.get_layer("aspp_rate2")),
        "aspp_project_relu": Site(model.get_layer("aspp_project_relu")),
    }
    return model, sites, Scores(model.get_layer("probabilities"), read="input")


class PatchEmbedding(keras.layers.Layer):
    """Overlapping patches: a strided convolution, then LayerNorm over channels."""

    def __init__(self, dim, stride, **kwargs):
        super().__init__(**kwargs)
        self.proj = keras.layers.Conv2D(dim, stride + 1, strides=stride, padding="same", name="proj")
        self.norm = keras.layers.LayerNormalization(name="norm")

    def call(self, x):
        return self.norm(self.proj(x))


class MixBlock(keras.layers.Layer):
    """A SegFormer-style block: self-attention over tokens, then an MLP with a depthwise convolution."""

    def __init__(self, dim, heads, **kwargs):
        super().__init__(**kwargs)
        self.norm1 = keras.layers.LayerNormalization(name="norm1")
        self.attention = keras.layers.MultiHeadAttention(heads, dim // heads, name="attention")
        self.norm2 = keras.layers.LayerNormalization(name="norm2")
        self.expand = keras.layers.Dense(dim * 2, name="expand")
        self.depthwise = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")
        self.gelu = keras.layers.Activation("gelu", name="gelu")
        self.shrink = keras.layers.Dense(dim, name="shrink")

    def call(self, x):
        height, width, channels = x.shape[1], x.shape[2], x.shape[3]
        tokens = keras.ops.reshape(x, (-1, height * width, channels))
        normed = self.norm1(tokens)
        tokens = tokens + self.attention(normed, normed)
        hidden = self.expand(self.norm2(tokens))
        grid = keras.ops.reshape(hidden, (-1, height, width, channels * 2))
        grid = self.gelu(self.depthwise(grid))
        tokens = tokens + self.shrink(keras.ops.reshape(grid, (-1, height * width, channels * 2)))
        return keras.ops.reshape(tokens, (-1, height, width, channels))


def transformer_segmenter():
    """A SegFormer-like encoder made of custom layers, with an all-MLP style decoder."""
    inputs = keras.Input((32, 32, 3))
    stage1 = MixBlock(16, 2, name="block1")(PatchEmbedding(16, 4, name="embed1")(inputs))  # 8x8
    stage2 = MixBlock(32, 2, name="block2")(PatchEmbedding(32, 2, name="embed2")(stage1))  # 4x4
    up = keras.layers.UpSampling2D(2, interpolation="bilinear", name="stage2_up")(keras.layers.Conv2D(16, 1, name="stage2_proj")(stage2))
    fused = keras.layers.Concatenate(name="fuse")([keras.layers.Conv2D(16, 1, name="stage1_proj")(stage1), up])
    x = keras.layers.Conv2D(16, 1, activation="relu", name="fuse_conv")(fused)
    x = keras.layers.Conv2D(CLASSES, 1, name="scores")(x)
    model = keras.Model(inputs, keras.layers.UpSampling2D(4, interpolation="bilinear", name="to_input")(x), name="segformer_like")
    block1, block2 = model.get_layer("block1"), model.get_layer("block2")
    sites = {
        "embed1/proj": Site(model.get_layer("embed1").proj),
        "block1/depthwise": Site(block1.depthwise),
        "block2/gelu": Site(block2.gelu),
    }
    return model, sites, Scores(model.get_layer("to_input"))


ARCHITECTURES = {
    "mobilenetv2-unet": (mobilenet_unet, (64, 64, 3)),
    "separable-residual-unet": (separable_residual_unet, (32, 32, 3)),
    "deeplab-aspp": (deeplab_like, (48, 48, 3)),
    "transformer-custom-layers": (transformer_segmenter, (32, 32, 3)),
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_all_layers_and_reference(name):
    keras.utils.set_random_seed(31)
    build, shape = ARCHITECTURES[name]
    model, sites, scores = build()
    x = images(shape)
    before = [variable.numpy().copy() for variable in model.variables]
    everything = sgc.SegGradCAM(model, layers="all")
    for chosen in sites:
        assert chosen in everything.layers, (chosen, everything.layers)
    targets = [sgc.ClassTarget(1, region="all"), sgc.PixelTarget(shape[0] // 3, shape[1] // 2)]
    grid = everything.explain(x, targets)
    assert grid.heatmaps.shape == (1, 2, len(everything.layers)) + shape[:2]
    assert np.isfinite(grid.heatmaps).all()
    expl = sgc.SegGradCAM(model, layers=list(sites)).explain(x, targets)
    for layer in sites:  # the three layers agree between the grid and the narrow run (same graph order: 1e-5)
        index = everything.layers.index(layer)
        scale = max(np.abs(expl.raw[layer]).max(), 1e-12)
        assert np.abs(grid.raw[everything.layers[index]] - expl.raw[layer]).max() / scale < 1e-5
    worst = check_explanation(expl, model, x, sites, scores)
    print(f"{name}: {len(everything.layers)} layers in 'all', worst relative error {worst:.2e}")
    for old, new in zip(before, [variable.numpy() for variable in model.variables]):
        np.testing.assert_array_equal(old, new)
