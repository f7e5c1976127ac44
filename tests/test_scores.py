"""The explained scores: logits="auto", None and a name, on every kind of head."""

import keras
import numpy as np
import pytest

import seggradcam as sgc
from seggradcam.model_access import ModelAccess
from seggradcam.models import build_unet
from seggradcam.scores import Decision, ScoreSource

from .helpers import SMALL


@pytest.mark.parametrize(
    "head, source, decision, text",
    [
        ("softmax", ScoreSource.ACTIVATION_INPUT, Decision.ARGMAX, "input of the final softmax layer 'softmax' (the output of 'logits')"),
        ("fused-softmax", ScoreSource.PRE_ACTIVATION, Decision.ARGMAX, "'logits' without its fused softmax"),
        ("sigmoid", ScoreSource.ACTIVATION_INPUT, Decision.ARGMAX, "input of the final sigmoid layer 'sigmoid'"),
        ("linear", ScoreSource.OUTPUT, Decision.ARGMAX, "the model output"),
    ],
)
def test_logits_auto_says_what_it_explains(head, source, decision, text):
    spec = ModelAccess(build_unet(**SMALL, head=head)).scores
    assert text in spec.description
    assert spec.source is source and spec.decision is decision and spec.shape == (32, 32, 3)


def test_one_channel_heads_read_foreground_by_sign_or_half():
    logits = ModelAccess(build_unet((32, 32, 3), num_classes=1, filters=(4, 8, 16), head="fused-sigmoid")).scores
    assert logits.decision is Decision.POSITIVE and logits.channels == 1
    with pytest.warns(sgc.ProbabilityWarning):
        probabilities = ModelAccess(build_unet((32, 32, 3), num_classes=1, filters=(4, 8, 16), head="sigmoid"), logits=None).scores
    assert probabilities.decision is Decision.HALF


def test_logits_none_on_softmax_warns_once_and_explains_probabilities(unet_softmax, images):
    with pytest.warns(sgc.ProbabilityWarning, match="probabilities") as record:
        explainer = sgc.SegGradCAM(unet_softmax, logits=None)
    assert len([w for w in record if issubclass(w.category, sgc.ProbabilityWarning)]) == 1
    expl = explainer.explain(images[:1], sgc.ClassTarget(0, region="all"))
    probabilities = unet_softmax(images[:1]).numpy()
    np.testing.assert_allclose(expl.scores[0, 0], probabilities[0, :, :, 0].sum(), rtol=1e-5)  # float32 sum of 1024 values


def test_logits_by_layer_name(unet_softmax):
    explainer = sgc.SegGradCAM(unet_softmax, logits="logits")
    assert explainer.explained == "the output of layer 'logits'"
    with pytest.raises(KeyError, match="Did you mean \\['logits'\\]"):
        sgc.SegGradCAM(unet_softmax, logits="logit")
    with pytest.raises(TypeError, match="logits must be"):
        sgc.SegGradCAM(unet_softmax, logits=3)


def test_classification_model_is_rejected():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    with pytest.raises(ValueError, match="classification model"):
        sgc.SegGradCAM(model)


def test_sequential_model_with_separate_softmax():
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1"),
            keras.layers.Conv2D(2, 1, name="head"),
            keras.layers.Softmax(name="sm"),
        ]
    )
    explainer = sgc.SegGradCAM(model, layers="all")
    assert explainer.layers == ["c1", "head"]
    assert explainer.access.scores.source is ScoreSource.ACTIVATION_INPUT


def test_softmax_followed_by_upsampling_is_stripped_and_resampled():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(3, 3, strides=2, padding="same", activation="softmax", name="head")(inputs)
    model = keras.Model(inputs, keras.layers.UpSampling2D(2, interpolation="bilinear", name="up")(x))
    spec = ModelAccess(model).scores
    assert spec.source is ScoreSource.PRE_ACTIVATION and spec.then == ("up",) and spec.shape == (16, 16, 3)
    assert "without its fused softmax" in spec.description and "['up'] applied" in spec.description
