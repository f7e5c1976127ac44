"""One object per explained model: its call sites, its scores, and a way to run it.

:class:`ModelAccess` ties the pieces together: it catalogues the model's call sites
(``catalogue``), chooses the explained scores (``scores``), resolves the layers a user asks
for (``layer_choice``), and runs the model inside a ``tf.function`` so that the chosen
feature maps and the scores are tensors of one forward pass (:meth:`ModelAccess.forward`).
Every layer runs as in ``model(x, training=False)``, with the variables' values at the
time of the call; the model is never copied or changed.

Example:
    >>> access = ModelAccess(sgc.models.build_unet((32, 32, 3), num_classes=3, filters=(4, 8, 16)))
    >>> access.scores.description
    "pre-activation scores: the input of the final softmax layer 'softmax' (the output of 'logits')"
    >>> [layer.name for layer in access.choose_layers("auto")]
    ['bottleneck_conv2']
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from .catalogue import CallSite, Catalogue, build_catalogue
from .keras_internals import GraphRunner, pre_activation
from .layer_choice import ChosenLayer, auto_layer, candidates, choose_layers, decoder_layers
from .scores import ScoreSource, ScoreSpec, choose_scores
from .xla_gradients import reroute

__all__ = ["ForwardResult", "ModelAccess", "guided_relu", "FLAT_RELATIVE", "BYTES_PER_VALUE"]

FLAT_RELATIVE = 1e-6  # a map whose spatial range is below this share of its magnitude is constant
BYTES_PER_VALUE = 4  # float32


class ForwardResult(NamedTuple):
    """What one forward pass exposes.

    Attributes:
        activations: one tensor per captured layer, in the order asked for.
        scores: (N, H_out, W_out, classes) float32, the explained scores.
    """

    activations: tuple
    scores: tf.Tensor


@tf.custom_gradient
def guided_relu(x):
    """ReLU whose gradient passes only where the input and the incoming gradient are positive."""

    def gradient(upstream):
        return upstream * tf.cast(x > 0, upstream.dtype) * tf.cast(upstream > 0, upstream.dtype)

    return tf.nn.relu(x), gradient


def _first_tensor(structure):
    return next((item for item in keras.tree.flatten(structure) if tf.is_tensor(item)), None)


class ModelAccess:
    """A model's call sites, its explained scores, and its forward pass.

    Args:
        model: a functional or Sequential ``keras.Model`` (nested models and custom layers
            allowed) whose output, or the layer named by ``logits``, is a (H', W', C) map.
        logits: ``"auto"``, ``None`` or a layer name (see ``seggradcam.scores``).

    Raises:
        TypeError: not a keras Model, or a subclassed one.
        ValueError: a Sequential model never built, several inputs, no spatial score map.
    """

    def __init__(self, model: keras.Model, logits="auto"):
        if not isinstance(model, keras.Model):
            raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
        self.model = model
        self.runner = GraphRunner(model)
        self.catalogue: Catalogue = build_catalogue(self.runner)
        self.scores: ScoreSpec = choose_scores(self.catalogue, logits)
        self._keys = {(site.path, site.occurrence): site.index for site in self.catalogue.sites}
        self._score_site = self.catalogue.find(self.scores.site).index
        self._then = tuple(self.catalogue.find(name).index for name in self.scores.then)
        self._flat: dict[int, bool] = {}
        self._output_sizes: dict[tuple, tuple] = {}

    # -- facts ------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple:
        """The model's (H, W, C) input shape; None for a size the model leaves open."""
        return tuple(self.model.inputs[0].shape[1:])

    @property
    def channels(self) -> int:
        """Number of classes (channels) of the explained score map."""
        return self.scores.channels

    # -- layers -----------------------------------------------------------------------------
    def choose_layers(self, layers) -> tuple:
        """Resolve ``"auto"``, ``"all"``, names or Layers (see ``seggradcam.layer_choice``)."""
        return choose_layers(self.catalogue, self.scores, layers, self.spatially_constant)

    def candidates(self) -> tuple:
        """The call sites ``layers="all"`` explains."""
        return candidates(self.catalogue, self.scores)

    def auto_layer(self) -> CallSite:
        """The call site ``layers="auto"`` explains."""
        return auto_layer(self.catalogue, self.scores, self.spatially_constant)

    def decoder_layers(self) -> tuple:
        """Candidates after the automatic layer, in execution order."""
        return decoder_layers(self.catalogue, self.scores, self.auto_layer())

    def spatially_constant(self, sites: tuple) -> frozenset:
        """Indices of the sites whose output is constant over space on a random image.

        One forward pass at the catalogue's probe size, on uniform noise in [0, 1); a map is
        constant when its spatial range is below ``FLAT_RELATIVE`` of its largest magnitude.
        """
        unknown = [site for site in sites if site.index not in self._flat]
        if unknown:
            chosen = tuple(ChosenLayer(site.name, site) for site in unknown)
            noise = np.random.default_rng(0).uniform(size=(1,) + self.catalogue.probe_shape).astype(np.float32)

            def ranges(images):
                maps = [tf.cast(a, tf.float32) for a in self.forward(images, chosen).activations]
                return [(tf.reduce_max(m - tf.reduce_min(m, axis=[1, 2], keepdims=True)), tf.reduce_max(tf.abs(m))) for m in maps]

            for site, (spread, magnitude) in zip(unknown, tf.function(ranges, autograph=False)(noise)):
                self._flat[site.index] = float(spread) <= FLAT_RELATIVE * max(float(magnitude), 1.0)
        return frozenset(site.index for site in sites if self._flat[site.index])

    # -- running ----------------------------------------------------------------------------
    def forward(
        self, images, capture: tuple = (), guided: bool = False, watch: Callable | None = None, xla_gradients: bool = False
    ) -> ForwardResult:
        """Run the model once, inside a ``tf.function``, exposing the captured maps and the scores.

        Args:
            images: (N, H, W, C) tensor.
            capture: ChosenLayers whose feature maps to return.
            guided: replace every plain ReLU (fused or separate) by the guided-backpropagation
                ReLU: same forward values, gradient passed only where both the ReLU's input
                and the incoming gradient are positive.
            watch: called on each captured tensor as soon as it exists (e.g. ``tape.watch``).
            xla_gradients: give ops whose XLA gradient is slow an exact fast one
                (``seggradcam.xla_gradients``); forward values are unchanged.

        Returns:
            A :class:`ForwardResult`.

        Raises:
            ValueError: a captured layer was not called (Python control flow in a custom
                layer took another branch at this image size).
        """
        wanted: dict[int, list] = {}
        for slot, layer in enumerate(capture):
            wanted.setdefault(layer.site.index, []).append((slot, layer.pre))
        found = [None] * len(capture)
        state = {"scores": None}
        occurrences: dict[tuple, int] = {}
        source = self.scores.source

        def visit(path, operation, inputs, call):
            occurrence = occurrences.get(path, 0)
            occurrences[path] = occurrence + 1
            index = self._keys.get((path, occurrence))
            outputs = call()
            if xla_gradients:
                outputs = reroute(outputs)
            first = _first_tensor(outputs)
            pre = pre_activation(first) if first is not None else None
            if guided and tf.is_tensor(outputs) and pre is not None and first.op.type == "Relu":
                outputs = first = guided_relu(pre)
            if index == self._score_site:
                state["scores"] = (
                    inputs[0] if source is ScoreSource.ACTIVATION_INPUT else pre if source is ScoreSource.PRE_ACTIVATION else first
                )
            elif index in self._then and state["scores"] is not None:
                state["scores"] = operation(state["scores"])
            for slot, wants_pre in wanted.get(index, ()):
                found[slot] = pre if wants_pre else first
                if watch is not None:
                    watch(found[slot])
            return outputs

        self.runner.run(images, visit)
        missing = [layer.name for layer, tensor in zip(capture, found) if tensor is None]
        if missing or state["scores"] is None:
            raise ValueError(
                f"layer(s) {missing or [self.scores.site]} of model {self.model.name!r} were not called when it ran on "
                f"images of shape {tuple(images.shape)}; a custom layer may take another branch at this size"
            )
        return ForwardResult(tuple(found), tf.cast(state["scores"], tf.float32))

    def output_size(self, height: int, width: int) -> tuple:
        """(H_out, W_out) of the score map for an input of ``height`` x ``width``."""
        if (height, width) == self.catalogue.probe_shape[:2]:
            return tuple(self.scores.shape[:2])
        if (height, width) not in self._output_sizes:
            spec = tf.TensorSpec((1, height, width, self.catalogue.probe_shape[2]), tf.float32)
            traced = tf.function(lambda x: self.forward(x).scores, autograph=False).get_concrete_function(spec)
            self._output_sizes[(height, width)] = tuple(traced.structured_outputs.shape[1:3])
        return self._output_sizes[(height, width)]

    def activation_bytes(self, height: int, width: int) -> int:
        """Bytes of every call site's output for one image of ``height`` x ``width`` (an estimate)."""
        scale = self._probe_scale(height, width)
        total = 0.0
        for site in self.catalogue.sites:
            count = float(np.prod(site.shape)) if site.shape else 1.0
            total += BYTES_PER_VALUE * count * (scale if site.spatial else 1.0)
        return int(total)

    def map_values(self, layers, height: int, width: int) -> int:
        """Values of one (h, w) map per chosen layer, summed, for one image of ``height`` x ``width``."""
        scale = self._probe_scale(height, width)
        return int(sum(layer.shape[0] * layer.shape[1] * scale for layer in layers))

    def _probe_scale(self, height: int, width: int) -> float:
        """How many times more positions a spatial map has at ``height`` x ``width`` than at the probe size."""
        probe_h, probe_w = self.catalogue.probe_shape[:2]
        return (height / probe_h) * (width / probe_w)
