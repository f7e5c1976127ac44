"""Layer and logits resolution, nested models, and leaving the user's model untouched."""

import keras
import numpy as np
import pytest

import seggradcam as sgc
from seggradcam.models import build_unet
from seggradcam.probe import ModelGraph

from .helpers import SMALL


def test_all_lists_spatial_layers_in_model_order_including_decoder(unet_softmax):
    names = [info.name for info in ModelGraph(unet_softmax).candidates]
    assert names == [
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


def test_all_reaches_layers_inside_nested_encoder():
    nested = build_unet(**SMALL, nested_encoder=True)
    graph = ModelGraph(nested)
    names = [info.name for info in graph.candidates]
    assert "enc1_conv1" in names and "bottleneck_conv2" in names and "dec1_up" in names
    paths = {info.name: info.path for info in graph.candidates}
    assert paths["enc1_conv1"] == ("encoder", "enc1_conv1")
    assert graph.resolve_layers("encoder/enc2_conv1")[0].name == "enc2_conv1"


def test_auto_is_the_last_smallest_feature_map(unet_softmax):
    graph = ModelGraph(unet_softmax)
    assert graph.auto_layer().name == "bottleneck_conv2"
    assert graph.auto_layer().shape == (8, 8, 16)
    assert sgc.SegGradCAM(unet_softmax).layers == ["bottleneck_conv2"]


def test_layer_objects_and_lists(unet_softmax):
    layer = unet_softmax.get_layer("dec1_up")
    explainer = sgc.SegGradCAM(unet_softmax, layers=[layer, "enc1_conv1", "enc1_conv1"])
    assert explainer.layers == ["dec1_up", "enc1_conv1"]


def test_unknown_layer_name_lists_candidates(unet_softmax):
    with pytest.raises(KeyError) as info:
        sgc.SegGradCAM(unet_softmax, layers="bottlenek_conv2")
    message = str(info.value)
    assert "bottlenek_conv2" in message and "bottleneck_conv2" in message and "dec1_up" in message


def test_non_spatial_layer_is_rejected():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    flat = keras.layers.Flatten(name="flat")(x)
    dense = keras.layers.Dense(8 * 8 * 2, name="dense")(flat)
    out = keras.layers.Reshape((8, 8, 2), name="reshape")(dense)
    model = keras.Model(inputs, out)
    for name in ("flat", "dense"):
        with pytest.raises(ValueError, match=f"layer '{name}'.*not a spatial"):
            sgc.SegGradCAM(model, layers=name)
    assert sgc.SegGradCAM(model, layers="conv").layers == ["conv"]


def test_classification_model_is_rejected():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    with pytest.raises(ValueError, match="classification model"):
        sgc.SegGradCAM(model)


def test_not_a_model_is_rejected():
    with pytest.raises(TypeError, match="keras.Model"):
        sgc.SegGradCAM("unet.keras")


@pytest.mark.parametrize(
    "head, text",
    [
        ("softmax", "input of the final softmax layer 'softmax'"),
        ("fused-softmax", "'logits' without its fused softmax"),
        ("sigmoid", "input of the final sigmoid layer 'sigmoid'"),
        ("linear", "the model output"),
    ],
)
def test_logits_auto_says_what_it_explains(head, text):
    model = build_unet(**SMALL, head=head)
    assert text in ModelGraph(model).logits.description


def test_logits_none_on_softmax_warns_once_and_explains_probabilities(unet_softmax, images):
    with pytest.warns(sgc.ProbabilityWarning, match="probabilities") as record:
        explainer = sgc.SegGradCAM(unet_softmax, logits=None)
    assert len([w for w in record if issubclass(w.category, sgc.ProbabilityWarning)]) == 1
    expl = explainer.explain(images[:1], sgc.ClassTarget(0, region="all"))
    probabilities = unet_softmax(images[:1]).numpy()
    np.testing.assert_allclose(expl.scores[0, 0], probabilities[0, :, :, 0].sum(), rtol=1e-5)


def test_logits_by_layer_name(unet_softmax, images):
    explainer = sgc.SegGradCAM(unet_softmax, logits="logits")
    assert explainer.explained == "the output of layer 'logits'"
    with pytest.raises(KeyError, match="logit"):
        sgc.SegGradCAM(unet_softmax, logits="logit")


def test_sequential_model():
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1"),
            keras.layers.Conv2D(2, 1, name="head"),
            keras.layers.Softmax(name="sm"),
        ]
    )
    graph = ModelGraph(model)
    assert [info.name for info in graph.candidates] == ["c1", "head"]
    assert graph.logits.source == "input"


def test_probing_leaves_the_model_untouched(unet_softmax):
    nodes = {layer.name: len(layer._inbound_nodes) for layer in unet_softmax.layers}
    sgc.SegGradCAM(unet_softmax, layers="all")
    assert {layer.name: len(layer._inbound_nodes) for layer in unet_softmax.layers} == nodes
