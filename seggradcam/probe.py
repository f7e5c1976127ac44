"""Find the layers and the score map to explain, and run a model so that they are exposed.

Keras 3 cannot make a layer inside a nested sub-model (an encoder built as its own
``keras.Model``) an output of the outer model, so building a second "multi-output" model
fails for exactly the U-Nets people build. Instead, :func:`run_graph` re-executes the
model's functional graph node by node, descending into nested functional and Sequential
sub-models, and calls each leaf layer itself. A callback sees every leaf call, so any
layer's output (nested or not) is available as a tensor in the same forward pass, inside a
``tf.function``. The user's model is only called, never rebuilt or modified.

Example:
    >>> graph = ModelGraph(model)                      # doctest: +SKIP
    >>> [info.name for info in graph.candidates]       # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import warnings
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from .diagnostics import ProbabilityWarning

SPATIAL_LAYER_TYPES = (
    keras.layers.Conv2D,
    keras.layers.Conv2DTranspose,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
)
PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")
DEFAULT_PROBE_SIZE = 128


def _is_functional(layer) -> bool:
    return isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")


def _is_walkable(layer) -> bool:
    return isinstance(layer, keras.Sequential) or _is_functional(layer)


def _accepts_training(layer) -> bool:
    try:
        return "training" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False


def _flat_tensors(structure) -> list:
    return [item for item in keras.tree.flatten(structure) if tf.is_tensor(item)]


LeafFn = Callable[[tuple, keras.layers.Layer, tuple, dict], object]


def run_graph(model: keras.Model, inputs: list, on_leaf: LeafFn, path: tuple = ()) -> list:
    """Execute ``model`` layer by layer, descending into nested sub-models.

    Args:
        model: a functional or Sequential keras Model.
        inputs: the tensors for ``model.inputs``, in order.
        on_leaf: called as ``on_leaf(path, layer, args, kwargs)`` for every leaf layer call;
            returns the layer's outputs (usually ``layer(*args, **kwargs)``).
        path: names of the enclosing models (used for recursion).

    Returns:
        The model's outputs, as a flat list.
    """
    if isinstance(model, keras.Sequential):
        outputs = inputs[0]
        for layer in model.layers:
            outputs = _call_operation(layer, (outputs,), {}, on_leaf, path)
        return [outputs]
    nodes_by_depth = model._nodes_by_depth
    computed = {id(symbol): tensor for symbol, tensor in zip(model.inputs, inputs)}
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            if any(id(symbol) not in computed for symbol in node.input_tensors):
                continue
            args, kwargs = node.arguments.fill_in(computed)
            outputs = _call_operation(node.operation, args, kwargs, on_leaf, path)
            for symbol, tensor in zip(node.outputs, keras.tree.flatten(outputs)):
                computed[id(symbol)] = tensor
    return [computed[id(symbol)] for symbol in model.outputs]


def _call_operation(operation, args, kwargs, on_leaf, path):
    if _is_walkable(operation):
        inner_inputs = args[0] if args else kwargs.get("inputs")
        outputs = run_graph(operation, keras.tree.flatten(inner_inputs), on_leaf, path + (operation.name,))
        return outputs[0] if len(outputs) == 1 else outputs
    kwargs = dict(kwargs)
    if _accepts_training(operation):
        kwargs["training"] = False
    return on_leaf(path + (operation.name,), operation, args, kwargs)


def without_activation(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A shallow copy of ``layer`` that shares its weights but has a linear activation.

    Only the copy's ``activation`` is replaced, so the user's layer is untouched. Call this
    eagerly (copying a layer inside a ``tf.function`` trace fails), then use
    :func:`call_linear` inside the trace.
    """
    clone = copy.copy(layer)
    object.__setattr__(clone, "activation", keras.activations.linear)
    return clone


def call_linear(clone: keras.layers.Layer, args: tuple, kwargs: dict):
    """Call a copy made by :func:`without_activation` on a leaf call's arguments."""
    kwargs = {key: value for key, value in kwargs.items() if key != "training"}
    return clone.call(*args, **kwargs)


PRE_SUFFIX = ":pre"


def _fused_activation(layer) -> str | None:
    """Name of a non-linear activation fused into a layer with weights (Conv2D(..., activation=...))."""
    if not hasattr(layer, "kernel") and not hasattr(layer, "depthwise_kernel"):
        return None
    name = getattr(getattr(layer, "activation", None), "__name__", None)
    return None if name in (None, "linear") else name


def _is_plain_relu(layer) -> bool:
    """A ReLU with no cap, slope or threshold: fused, an Activation layer, or a ReLU layer."""
    if isinstance(layer, keras.layers.ReLU):
        return layer.max_value is None and not layer.negative_slope and not layer.threshold
    return getattr(getattr(layer, "activation", None), "__name__", None) == "relu"


@tf.custom_gradient
def guided_relu(x):
    """ReLU whose gradient passes only where the input and the incoming gradient are positive."""

    def gradient(upstream):
        return upstream * tf.cast(x > 0, upstream.dtype) * tf.cast(upstream > 0, upstream.dtype)

    return tf.nn.relu(x), gradient


def _activation_name(layer) -> str | None:
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    return name if name in PROBABILITY_ACTIVATIONS else None


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """A leaf layer call seen while probing the model.

    Attributes:
        name: the key used in ``Explanation.layers``: the layer's own name, or its path
            ``"outer/inner/name"`` when the plain name is not unique in the model tree.
        path: names from the outermost sub-model down to the layer.
        layer: the keras Layer.
        shape: the output shape without the batch axis, at the probe input size.
        spatial: whether the output is a (N, h, w, k) feature map.
        kind: ``"conv"``, ``"conv_transpose"``, ``"activation"`` or ``"other"``.
        upstream: whether the explained score map depends on this layer's output.
    """

    name: str
    path: tuple
    layer: keras.layers.Layer
    shape: tuple
    spatial: bool
    kind: str
    upstream: bool
    pre: bool = False

    @property
    def candidate(self) -> bool:
        """Whether ``layers="all"`` includes this layer (pre-activations only on request)."""
        return self.spatial and self.upstream and self.kind != "other" and not self.pre


@dataclasses.dataclass(frozen=True)
class LogitsSpec:
    """How the explained score map is obtained.

    Attributes:
        layer: the name of the leaf layer whose call yields the score map.
        source: ``"output"`` (the layer's output), ``"input"`` (the input of a final
            softmax/sigmoid layer) or ``"linear"`` (the layer without its fused activation).
        decision: how predicted classes are read from the scores (see ``targets.build_masks``).
        description: a sentence for users saying what is explained.
    """

    layer: str
    source: str
    decision: str
    description: str


def _kind(layer) -> str:
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return "conv_transpose"
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)):
        return "conv"
    if isinstance(layer, SPATIAL_LAYER_TYPES):
        return "activation"
    return "other"


class ModelGraph:
    """The leaf layers of a model, the score map to explain, and a way to expose both.

    Args:
        model: a functional or Sequential keras Model (nested sub-models allowed).
        logits: ``"auto"``, a layer name whose output is the score map, or ``None``.

    Example:
        >>> graph = ModelGraph(model, logits="auto")   # doctest: +SKIP
        >>> graph.logits.description                   # doctest: +SKIP
    """

    def __init__(self, model: keras.Model, logits="auto"):
        if not isinstance(model, keras.Model):
            raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
        if not _is_walkable(model):
            raise TypeError(
                f"model {model.name!r} is a subclassed keras.Model ({type(model).__name__}); "
                "seggradcam needs a functional or Sequential model to reach its layers"
            )
        if len(model.inputs) != 1:
            raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs; seggradcam needs one image input")
        if len(model.outputs) != 1:
            raise ValueError(
                f"model {model.name!r} has {len(model.outputs)} outputs; pass logits=LAYER_NAME to say which score map to explain"
            )
        self.model = model
        shape = tuple(model.inputs[0].shape[1:])
        if len(shape) != 3:
            raise ValueError(f"model input must be an image (H, W, C); got input shape {shape}")
        self.input_shape = shape
        self._output_sizes = {}
        self._leaves, final = self._probe()
        self.names = self._assign_names()
        self.logits = self._resolve_logits(logits, final)
        self._mark_upstream()
        # shallow copies without the fused activation, made eagerly (not inside a trace)
        self._linear_clones = {info.name: without_activation(info.layer) for info in self.infos if _fused_activation(info.layer)}
        self.output_channels = self._logits_shape[-1]

    # -- probing ---------------------------------------------------------------------------
    def probe_size(self) -> tuple:
        height, width, channels = self.input_shape
        return (height or DEFAULT_PROBE_SIZE, width or DEFAULT_PROBE_SIZE, channels)

    def _probe(self):
        """Trace the model once symbolically and record every leaf call."""
        records = []
        ancestry = {}
        producers = {}

        def on_leaf(path, layer, args, kwargs):
            outputs = layer(*args, **kwargs)
            parents = set()
            for tensor in _flat_tensors((args, kwargs)):
                parents |= ancestry.get(id(tensor), set())
            index = len(records)
            flat = _flat_tensors(outputs)
            records.append({"path": path, "layer": layer, "outputs": flat, "args": args, "kwargs": kwargs, "ancestors": parents | {index}})
            for tensor in flat:
                ancestry[id(tensor)] = parents | {index}
                producers[id(tensor)] = index
            return outputs

        def trace(images):
            outputs = run_graph(self.model, [images], on_leaf)
            final["tensor"] = outputs[0]
            return outputs

        final = {}
        spec = tf.TensorSpec((1,) + self.probe_size(), tf.float32)
        tf.function(trace, autograph=False).get_concrete_function(spec)
        final["index"] = producers.get(id(final["tensor"]))
        return records, final

    def _assign_names(self) -> list[str]:
        plain = [record["path"][-1] for record in self._leaves]
        names = []
        for record, name in zip(self._leaves, plain):
            names.append(name if plain.count(name) == 1 else "/".join(record["path"]))
        return names

    def _find(self, name: str) -> int:
        """Index of the leaf called ``name`` (plain name, path, or a Layer object)."""
        if isinstance(name, keras.layers.Layer):
            hits = [i for i, record in enumerate(self._leaves) if record["layer"] is name]
            if not hits:
                raise KeyError(f"layer object {name.name!r} is not called inside model {self.model.name!r}; layers are: {self._listing()}")
            return hits[0]
        if not isinstance(name, str):
            raise TypeError(f"a layer must be a name (str) or a keras Layer, got {name!r} ({type(name).__name__})")
        for i, record in enumerate(self._leaves):
            if name == self.names[i] or name == "/".join(record["path"]):
                return i
        plain_hits = [i for i, record in enumerate(self._leaves) if record["path"][-1] == name]
        if len(plain_hits) > 1:
            options = [self.names[i] for i in plain_hits]
            raise KeyError(f"layer name {name!r} is ambiguous in model {self.model.name!r}; use one of {options}")
        close = difflib.get_close_matches(name, self.names, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise KeyError(f"no layer named {name!r} in model {self.model.name!r}.{hint} Layers are: {self._listing()}")

    def _listing(self) -> str:
        shown = self.names if len(self.names) <= 40 else self.names[:40] + ["..."]
        return ", ".join(shown)

    # -- logits ------------------------------------------------------------------------------
    def _resolve_logits(self, logits, final) -> LogitsSpec:
        if final.get("index") is None:
            raise ValueError(f"could not find the layer that produces the output of model {self.model.name!r}")
        last = final["index"]
        last_layer = self._leaves[last]["layer"]
        last_name = self.names[last]
        activation = _activation_name(last_layer)
        if logits == "auto":
            if activation and not hasattr(last_layer, "kernel"):
                producer = self._producer_of(self._leaves[last]["args"])
                spec = LogitsSpec(
                    last_name,
                    "input",
                    "argmax" if activation == "softmax" else "positive",
                    f"pre-activation scores: the input of the final {activation} layer {last_name!r} (the output of {producer!r})",
                )
            elif activation:
                spec = LogitsSpec(
                    last_name,
                    "linear",
                    "argmax" if activation == "softmax" else "positive",
                    f"pre-activation scores: layer {last_name!r} without its fused {activation} (same weights, linear activation)",
                )
            else:
                spec = LogitsSpec(last_name, "output", "argmax", f"the model output (layer {last_name!r} has no final softmax/sigmoid)")
        elif logits is None:
            decision = "half" if activation == "sigmoid" else "argmax"
            spec = LogitsSpec(last_name, "output", decision, f"the model output as is (layer {last_name!r})")
            if activation:
                warnings.warn(
                    f"logits=None: explaining the {activation} output of layer {last_name!r} as "
                    "probabilities; their gradients saturate and maps can come out weak or empty. "
                    "Use logits='auto' to explain the pre-activation scores as the paper does.",
                    ProbabilityWarning,
                    stacklevel=4,
                )
        elif isinstance(logits, (str, keras.layers.Layer)):
            index = self._find(logits)
            spec = LogitsSpec(self.names[index], "output", "argmax", f"the output of layer {self.names[index]!r}")
        else:
            raise TypeError(f"logits must be 'auto', None, a layer name or a keras Layer; got {logits!r}")
        record = self._leaves[self._find(spec.layer)]
        if spec.source == "input":
            tensor = _flat_tensors(record["args"])[0]
        else:
            tensor = record["outputs"][0]
        shape = tuple(tensor.shape[1:])
        if len(shape) != 3:
            raise ValueError(
                f"the explained score map ({spec.description}) has shape {shape}; seggradcam "
                "needs a spatial (H_out, W_out, classes) map. Is this a classification model?"
            )
        if shape[-1] == 1 and spec.decision == "argmax":
            spec = dataclasses.replace(spec, decision="positive")
        self._logits_shape = shape
        return spec

    def _producer_of(self, args) -> str:
        tensor = _flat_tensors(args)[0]
        for i, record in enumerate(self._leaves):
            if any(out is tensor for out in record["outputs"]):
                return self.names[i]
        return "the model input"

    def _mark_upstream(self) -> None:
        index = self._find(self.logits.layer)
        ancestors = set(self._leaves[index]["ancestors"])
        if self.logits.source in ("input", "linear"):
            ancestors.discard(index)  # the layer's own output is not what is explained
        infos = []
        for i, record in enumerate(self._leaves):
            shape = tuple(record["outputs"][0].shape[1:]) if record["outputs"] else ()
            infos.append(
                LayerInfo(
                    name=self.names[i],
                    path=record["path"],
                    layer=record["layer"],
                    shape=shape,
                    spatial=len(shape) == 3,
                    kind=_kind(record["layer"]),
                    upstream=i in ancestors,
                )
            )
        self.infos = infos

    # -- layer selection ------------------------------------------------------------------------
    @property
    def candidates(self) -> list[LayerInfo]:
        """Every layer ``layers="all"`` explains, in model order."""
        return [info for info in self.infos if info.candidate]

    def auto_layer(self) -> LayerInfo:
        """The bottleneck: the candidate with the smallest spatial size (h * w).

        Ties go to the last such layer in model order (the bottleneck's output, just before
        the decoder starts). The layer producing the score map is used only when it is the
        only candidate.
        """
        pool = [info for info in self.candidates if info.name != self.logits.layer] or self.candidates
        if not pool:
            raise ValueError(f"model {self.model.name!r} has no convolution or activation layer with a spatial feature map to explain")
        smallest = min(info.shape[0] * info.shape[1] for info in pool)
        return [info for info in pool if info.shape[0] * info.shape[1] == smallest][-1]

    def resolve_layers(self, layers) -> list[LayerInfo]:
        """Turn ``"auto"``, ``"all"``, a name, a Layer or a list of them into LayerInfos."""
        if isinstance(layers, str) and layers == "auto":
            return [self.auto_layer()]
        if isinstance(layers, str) and layers == "all":
            if not self.candidates:
                raise ValueError(f"model {self.model.name!r} has no spatial layer to explain")
            return self.candidates
        items = list(layers) if isinstance(layers, (list, tuple)) else [layers]
        if not items:
            raise ValueError("layers is empty: pass 'auto', 'all', a layer name or a list of names")
        chosen = []
        for item in items:
            if isinstance(item, str) and item in ("auto", "all"):
                raise ValueError(f"{item!r} cannot be mixed with other layers in a list")
            if isinstance(item, str) and item.endswith(PRE_SUFFIX):
                info = self._pre_activation(item[: -len(PRE_SUFFIX)])
            else:
                info = self.infos[self._find(item)]
            if not info.spatial:
                raise ValueError(
                    f"layer {info.name!r} ({type(info.layer).__name__}) has output shape {info.shape}, "
                    "not a spatial (h, w, channels) feature map; choose a convolution or activation "
                    f"layer, e.g. one of {[c.name for c in self.candidates][:8]}"
                )
            if not info.upstream:
                raise ValueError(
                    f"layer {info.name!r} is not on the path to the explained score map "
                    f"({self.logits.description}); its gradient would be zero"
                )
            if info.name not in [c.name for c in chosen]:
                chosen.append(info)
        return chosen

    def _pre_activation(self, name: str) -> LayerInfo:
        """The LayerInfo of ``name:pre``: a layer's output before its fused activation."""
        info = self.infos[self._find(name)]
        if info.name not in self._linear_clones:
            fused = [n for n in self._linear_clones if self.infos[self._find(n)].candidate][:8]
            raise ValueError(
                f"layer {info.name!r} ({type(info.layer).__name__}) has no fused activation, so "
                f"'{name}{PRE_SUFFIX}' would equal '{info.name}'; layers with a fused activation: {fused}"
            )
        upstream = info.upstream or (info.name == self.logits.layer and self.logits.source == "linear")
        return dataclasses.replace(info, name=f"{info.name}{PRE_SUFFIX}", pre=True, upstream=upstream)

    def decoder_layers(self) -> list[LayerInfo]:
        """Candidates after the auto (bottleneck) layer in model order."""
        names = [info.name for info in self.candidates]
        start = names.index(self.auto_layer().name) + 1
        return self.candidates[start:]

    # -- running --------------------------------------------------------------------------------
    def forward(self, images, capture: list[str], on_capture=None, guided: bool = False):
        """Run the model once, returning the captured layer outputs and the score map.

        Args:
            images: (N, H, W, C) tensor.
            capture: layer names whose outputs to return; ``"name:pre"`` captures the
                pre-activation of a layer with a fused activation.
            on_capture: called with each captured tensor as it is produced (e.g.
                ``tape.watch``), before anything downstream uses it.
            guided: replace every ReLU (fused or separate) by the guided-backpropagation
                ReLU: same forward values, gradient passed only where both the ReLU's input
                and the incoming gradient are positive.

        Returns:
            ``(activations, logits)``: a dict name -> (N, h, w, k) tensor, and (N, H', W', C).
        """
        wanted = set(capture)
        found = {}
        name_of = {record["path"]: name for record, name in zip(self._leaves, self.names)}
        spec = self.logits

        def keep(name, tensor):
            if on_capture is not None:
                on_capture(tensor)
            found[name] = tensor

        def on_leaf(path, layer, args, kwargs):
            name = name_of.get(path)
            relu = guided and _is_plain_relu(layer)
            clone = self._linear_clones.get(name)
            pre = None
            if clone is not None and (relu or f"{name}{PRE_SUFFIX}" in wanted):
                pre = call_linear(clone, args, kwargs)
                if f"{name}{PRE_SUFFIX}" in wanted:
                    keep(f"{name}{PRE_SUFFIX}", pre)
                outputs = guided_relu(pre) if relu else layer.activation(pre)
            elif relu:
                outputs = guided_relu(_flat_tensors(args)[0])
            else:
                outputs = layer(*args, **kwargs)
            if name == spec.layer:
                if spec.source == "input":
                    found["__logits__"] = _flat_tensors(args)[0]
                elif spec.source == "linear":
                    found["__logits__"] = pre if pre is not None else call_linear(clone, args, kwargs)
                else:
                    found["__logits__"] = _flat_tensors(outputs)[0]
            if name in wanted:
                keep(name, _flat_tensors(outputs)[0])
            return outputs

        run_graph(self.model, [images], on_leaf)
        return {name: found[name] for name in capture}, found["__logits__"]

    def activation_bytes(self, height: int, width: int) -> int:
        """Bytes of every leaf layer's float32 output for one image of ``height`` x ``width``."""
        probe_h, probe_w = self.probe_size()[:2]
        total = 0
        for info in self.infos:
            count = float(np.prod(info.shape)) if info.shape else 1.0
            if info.spatial:
                count *= (height / probe_h) * (width / probe_w)
            total += 4 * count
        return int(total)

    def output_size(self, height: int, width: int) -> tuple:
        """(H_out, W_out) of the score map for an input of ``height`` x ``width``."""
        if (height, width) == self.probe_size()[:2]:
            return tuple(self._logits_shape[:2])
        if (height, width) in self._output_sizes:
            return self._output_sizes[(height, width)]
        spec = tf.TensorSpec((1, height, width, self.input_shape[2]), tf.float32)
        fn = tf.function(lambda x: self.forward(x, [])[1], autograph=False)
        size = tuple(fn.get_concrete_function(spec).structured_outputs.shape[1:3])
        self._output_sizes[(height, width)] = size
        return size
