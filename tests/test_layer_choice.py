"""Layer choice: "all", "auto", names, Layer objects, ":pre", and the errors users see."""

import keras
import pytest

import seggradcam as sgc
from seggradcam.model_access import ModelAccess
from seggradcam.models import build_unet

from .helpers import SMALL

UNET_LAYERS = [
    "enc1_conv1",
    "enc1_conv2",
    "enc2_conv1",
    "enc2_conv2",
    "bottleneck_conv1",
    "bottleneck_conv2",
    "dec2_up",
    "dec2_conv1",
    "dec2_conv2",
    "dec1_up",
    "dec1_conv1",
    "dec1_conv2",
    "logits",
]


def test_all_lists_spatial_layers_in_execution_order_including_decoder(unet_softmax):
    assert sgc.SegGradCAM(unet_softmax, layers="all").layers == UNET_LAYERS


def test_all_reaches_layers_inside_nested_encoder():
    access = ModelAccess(build_unet(**SMALL, nested_encoder=True))
    names = [site.name for site in access.candidates()]
    assert names == UNET_LAYERS  # the same layers, in the same order, as the flat model
    assert [site.path for site in access.candidates()][0] == ("encoder", "enc1_conv1")
    assert access.choose_layers("encoder/enc2_conv1")[0].name == "enc2_conv1"


def test_auto_is_the_last_smallest_feature_map(unet_softmax):
    access = ModelAccess(unet_softmax)
    assert access.auto_layer().name == "bottleneck_conv2"
    assert access.auto_layer().shape == (8, 8, 16)
    assert sgc.SegGradCAM(unet_softmax).layers == ["bottleneck_conv2"]
    assert [site.name for site in access.decoder_layers()] == UNET_LAYERS[6:]


def test_layer_objects_and_lists_keep_order_and_drop_repeats(unet_softmax):
    layer = unet_softmax.get_layer("dec1_up")
    explainer = sgc.SegGradCAM(unet_softmax, layers=[layer, "enc1_conv1", "enc1_conv1"])
    assert explainer.layers == ["dec1_up", "enc1_conv1"]


def test_unknown_layer_name_lists_candidates(unet_softmax):
    with pytest.raises(KeyError) as info:
        sgc.SegGradCAM(unet_softmax, layers="bottlenek_conv2")
    message = str(info.value)
    assert "Did you mean ['bottleneck_conv2'" in message and "dec1_up" in message


@pytest.mark.parametrize(
    "layers, text", [([], "layers is empty"), (["auto", "dec1_up"], "'auto' cannot be mixed"), ([3], "got 3 \\(int\\)")]
)
def test_bad_layer_arguments(unet_softmax, layers, text):
    with pytest.raises((ValueError, TypeError), match=text):
        sgc.SegGradCAM(unet_softmax, layers=layers)


def test_non_spatial_layer_is_rejected_with_suggestions():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    flat = keras.layers.Flatten(name="flat")(x)
    dense = keras.layers.Dense(8 * 8 * 2, name="dense")(flat)
    model = keras.Model(inputs, keras.layers.Reshape((8, 8, 2), name="reshape")(dense))
    for name in ("flat", "dense"):
        with pytest.raises(ValueError, match=rf"layer '{name}'.*not a spatial.*\['conv'\]"):
            sgc.SegGradCAM(model, layers=name)
    assert sgc.SegGradCAM(model, layers="conv").layers == ["conv"]


def test_pre_on_a_layer_without_fused_activation_says_so(unet_softmax):
    with pytest.raises(ValueError, match="'dec1_up:pre' cannot be explained: it has no fused activation"):
        sgc.SegGradCAM(unet_softmax, layers="dec1_up:pre")


def test_pre_on_a_composite_activation_is_refused_clearly():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="gelu", name="gelu_conv")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="scores")(x))
    with pytest.raises(ValueError, match="fused activation 'gelu' is not a single operation"):
        sgc.SegGradCAM(model, layers="gelu_conv:pre")


def test_layer_after_a_stripped_fused_softmax_suggests_pre():
    model = build_unet(**SMALL, head="fused-softmax")
    with pytest.raises(ValueError, match="not on the path.*explain 'logits:pre' instead"):
        sgc.SegGradCAM(model, layers="logits")
    assert sgc.SegGradCAM(model, layers="logits:pre").layers == ["logits:pre"]
