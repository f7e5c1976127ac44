"""Which tensor is explained: the choice of the score map (the logits).

Seg-Grad-CAM explains pre-softmax class scores. With ``logits="auto"`` the score map is
found from the model's output backwards:

1. trailing layers that only move pixels (``Resizing``, ``UpSampling2D``, ``Cropping2D``,
   ``ZeroPadding2D``, identity) are stepped over and re-applied to the scores, so targets
   keep the output's resolution;
2. a separate final softmax/sigmoid (``Softmax``, ``Activation``, ``keras.ops``) is
   stripped: its input is explained;
3. a softmax/sigmoid fused into the last layer with weights is stripped: its
   pre-activation is explained (read from the same forward pass, with the layer's current
   weights);
4. otherwise the output is explained as it is.

``logits=None`` explains the first output as it is (warning when it is a probability);
``logits=NAME`` explains that call site's output, which also picks one head of a model
with several outputs.

Example:
    >>> from seggradcam.catalogue import build_catalogue
    >>> from seggradcam.keras_internals import GraphRunner
    >>> inputs = keras.Input((8, 8, 3))
    >>> scores = keras.layers.Conv2D(2, 1, name="scores")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(scores))
    >>> spec = choose_scores(build_catalogue(GraphRunner(model)), "auto")
    >>> spec.description
    "pre-activation scores: the input of the final softmax layer 'probabilities' (the output of 'scores')"
"""

from __future__ import annotations

import dataclasses
import enum
import warnings

import keras

from .catalogue import CallSite, Catalogue
from .warning_types import ProbabilityWarning

__all__ = ["Decision", "ScoreSource", "ScoreSpec", "choose_scores", "PROBABILITY_ACTIVATIONS", "PIXEL_MOVING_LAYERS"]

PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")
PIXEL_MOVING_LAYERS = ("Resizing", "UpSampling2D", "Cropping2D", "ZeroPadding2D", "Identity")
SIGMOID_HALF = 0.5  # a sigmoid probability above this is "predicted"


class ScoreSource(str, enum.Enum):
    """Where the explained tensor is read at its call site."""

    OUTPUT = "output"
    ACTIVATION_INPUT = "activation input"
    PRE_ACTIVATION = "pre-activation"


class Decision(str, enum.Enum):
    """How predicted classes are read from the explained scores."""

    ARGMAX = "argmax"  # several channels: the highest score wins
    POSITIVE = "positive"  # one channel of logits: foreground where the score is > 0
    HALF = "half"  # one channel of sigmoid probabilities: foreground where > 0.5


@dataclasses.dataclass(frozen=True)
class ScoreSpec:
    """The explained score map and how to read predictions from it.

    Attributes:
        site: the name of the call site the scores are read at.
        producer: the name of the call site whose output is the explained tensor (the site
            itself, or the one feeding a stripped activation layer).
        source: the output, the input of an activation layer, or the pre-activation.
        then: names of pixel-moving call sites re-applied to the scores, in order.
        decision: how predicted classes are read (see :class:`Decision`).
        shape: (H_out, W_out, classes) at the catalogue's probe size.
        ancestors: indices of the call sites the scores depend on.
        description: a sentence for users saying what is explained.
    """

    site: str
    producer: str
    source: ScoreSource
    then: tuple
    decision: Decision
    shape: tuple
    ancestors: frozenset
    description: str

    @property
    def channels(self) -> int:
        """Number of classes (channels) of the score map."""
        return self.shape[-1]


def choose_scores(catalogue: Catalogue, logits="auto") -> ScoreSpec:
    """Choose the explained score map of a catalogued model.

    Args:
        catalogue: the model's call sites.
        logits: ``"auto"``, ``None``, or the name (or keras Layer) of the call site whose
            output is the score map.

    Raises:
        ValueError: no spatial score map, or several outputs and no ``logits`` name.
        TypeError: ``logits`` of the wrong type.
        KeyError: no call site of that name.
    """
    if isinstance(logits, str) and logits != "auto" or isinstance(logits, keras.layers.Layer):
        site = catalogue.find(logits)
        spec = _spec(site, ScoreSource.OUTPUT, (), f"the output of layer {site.name!r}")
        if site.output_activation in PROBABILITY_ACTIVATIONS:
            _warn_probabilities(f"layer {site.name!r} ends with a {site.output_activation}", stacklevel=5)
        return _checked(spec, catalogue)
    if logits != "auto" and logits is not None:
        raise TypeError(f"logits must be 'auto', None, a layer name or a keras Layer; got {logits!r} ({type(logits).__name__})")
    output = _single_output(catalogue)
    if logits is None:
        activation = _probability_in_chain(catalogue, output)
        spec = _spec(output, ScoreSource.OUTPUT, (), f"the model output as is (layer {output.name!r})", decision_hint=activation)
        if activation:
            _warn_probabilities(f"logits=None: the output of layer {output.name!r} comes after a {activation}", stacklevel=5)
        return _checked(spec, catalogue)
    return _checked(_auto(catalogue, output), catalogue)


def _spec(
    site: CallSite, source: ScoreSource, then: tuple, description: str, decision_hint: str | None = None, producer: str | None = None
) -> ScoreSpec:
    if source is ScoreSource.ACTIVATION_INPUT:
        shape, ancestors = site.input_shape, site.input_ancestors
    elif source is ScoreSource.PRE_ACTIVATION:
        shape, ancestors = site.shape, site.ancestors - {site.index}
    else:
        shape, ancestors = site.shape, site.ancestors
    if then:
        shape = then[-1].shape
    channels = shape[-1] if shape else 0
    if channels != 1:
        decision = Decision.ARGMAX
    elif source is ScoreSource.OUTPUT and (decision_hint or site.output_activation) == "sigmoid":
        decision = Decision.HALF
    else:
        decision = Decision.POSITIVE
    return ScoreSpec(
        site.name, producer or site.name, source, tuple(step.name for step in then), decision, shape, frozenset(ancestors), description
    )


def _single_output(catalogue: Catalogue) -> CallSite:
    if len(catalogue.outputs) != 1:
        heads = [catalogue.site(index).name for index in catalogue.outputs if index >= 0]
        raise ValueError(
            f"model {catalogue.model_name!r} has {len(catalogue.outputs)} outputs ({heads}); pass "
            "logits=NAME, the layer whose output is the score map to explain"
        )
    index = catalogue.outputs[0]
    if index < 0:
        raise ValueError(f"could not find the layer that produces the output of model {catalogue.model_name!r}")
    return catalogue.site(index)


def _step_back(catalogue: Catalogue, site: CallSite) -> tuple[CallSite, list]:
    """Step back from ``site`` over pixel-moving layers; returns the first other site and those stepped over."""
    trailing = []
    while site.layer_type in PIXEL_MOVING_LAYERS and len(site.input_sites) == 1:
        trailing.insert(0, site)
        site = catalogue.site(site.input_sites[0])
    return site, trailing


def _auto(catalogue: Catalogue, output: CallSite) -> ScoreSpec:
    site, trailing = _step_back(catalogue, output)
    activation = site.output_activation
    after = f", then {[step.name for step in trailing]} applied to them" if trailing else ""
    if activation in PROBABILITY_ACTIVATIONS and site.activation is None and site.input_sites:
        producer = catalogue.site(site.input_sites[-1]).name
        description = f"pre-activation scores: the input of the final {activation} layer {site.name!r} (the output of {producer!r}){after}"
        return _spec(site, ScoreSource.ACTIVATION_INPUT, tuple(trailing), description, producer=producer)
    if activation in PROBABILITY_ACTIVATIONS and site.activation is None:
        description = f"pre-activation scores: the input of the final {activation} {site.name!r}{after}"
        return _spec(site, ScoreSource.ACTIVATION_INPUT, tuple(trailing), description)
    if activation in PROBABILITY_ACTIVATIONS and site.has_pre:
        description = (
            f"pre-activation scores: layer {site.name!r} without its fused {activation} (same weights, read in the same pass){after}"
        )
        return _spec(site, ScoreSource.PRE_ACTIVATION, tuple(trailing), description)
    return _spec(output, ScoreSource.OUTPUT, (), f"the model output (layer {output.name!r} has no final softmax/sigmoid)")


def _probability_in_chain(catalogue: Catalogue, output: CallSite) -> str | None:
    site, _ = _step_back(catalogue, output)
    return site.output_activation if site.output_activation in PROBABILITY_ACTIVATIONS else None


def _checked(spec: ScoreSpec, catalogue: Catalogue) -> ScoreSpec:
    if len(spec.shape) != 3:
        raise ValueError(
            f"the explained score map ({spec.description}) has shape {spec.shape}; seggradcam "
            "needs a spatial (H_out, W_out, classes) map. Is this a classification model?"
        )
    return spec


def _warn_probabilities(what: str, stacklevel: int) -> None:
    warnings.warn(
        f"{what}: its values are probabilities; their gradients saturate and maps can come out weak "
        "or empty. Use logits='auto' to explain the pre-activation scores as the paper does.",
        ProbabilityWarning,
        stacklevel=stacklevel,
    )
