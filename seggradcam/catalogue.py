"""A catalogue of a model's call sites: plain records of what runs, in the order it runs.

A *call site* is one call of one layer (or Keras operation) during ``model(x)``: a layer
applied twice has two call sites, a layer inside a nested sub-model or called by a custom
layer has its own. The catalogue is made once per model by tracing one symbolic run, and
keeps names, shapes, kinds and dependencies as plain values (no tensors outlive the trace).

Names: a site is named by its layer's name when that name belongs to one place in the model
tree, else by its path (``"encoder/conv1"``); a second call of the same layer at the same
path gets ``"@1"``, a third ``"@2"`` (``"shared"``, ``"shared@1"``).

Example:
    >>> from seggradcam.keras_internals import GraphRunner
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c")])
    >>> catalogue = build_catalogue(GraphRunner(model))
    >>> [(site.name, site.shape, site.kind.value) for site in catalogue.sites]
    [('c', (6, 6, 4), 'conv')]
"""

from __future__ import annotations

import dataclasses
import difflib
import enum

import keras
import tensorflow as tf

from .keras_internals import ACTIVATION_OPS, GraphRunner, pre_activation

__all__ = ["CallSite", "Catalogue", "SiteKind", "build_catalogue", "PROBE_SIZES", "PRE_SUFFIX", "SHOWN_IN_LISTINGS"]

PROBE_SIZES = (128, 256, 512)  # tried in order for input axes of unknown size
PRE_SUFFIX = ":pre"
SHOWN_IN_LISTINGS = 40  # names listed in an error message before "..."

_ACTIVATION_LAYERS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
)


class SiteKind(str, enum.Enum):
    """What a call site computes, as far as choosing layers to explain goes."""

    CONV = "conv"
    CONV_TRANSPOSE = "conv_transpose"
    ACTIVATION = "activation"
    OTHER = "other"


@dataclasses.dataclass(frozen=True)
class CallSite:
    """One call of one layer or operation, as seen in a traced run.

    Attributes:
        index: position in execution order (the order outputs are produced).
        name: the unique name users give to explain this site.
        path: names from the outermost sub-model or custom layer down to the layer.
        occurrence: 0 for the first call at this path, 1 for the second, ...
        layer_type: the class name of the layer or operation.
        kind: see :class:`SiteKind`.
        shape: the first output's shape without the batch axis, at the probe input size.
        input_shape: the first tensor input's shape without the batch axis.
        output_activation: the activation the output ends with (``"relu"``, ``"softmax"``...),
            fused into a layer or applied by an activation layer; None if it ends otherwise.
        activation: the non-linear activation fused into a layer with weights, else None.
        declared_activation: the name of the layer's ``activation`` attribute when it is not
            linear (it may be fused but not a single op, e.g. ``"gelu"``), else None.
        has_pre: the output before that fused activation can be explained (``"name:pre"``).
        input_sites: the sites that produced this call's tensor inputs (where known).
        ancestors: sites whose outputs this site's output depends on, itself included.
        input_ancestors: sites whose outputs this call's inputs depend on.
    """

    index: int
    name: str
    path: tuple
    occurrence: int
    layer_type: str
    kind: SiteKind
    shape: tuple
    input_shape: tuple
    output_activation: str | None
    activation: str | None
    declared_activation: str | None
    has_pre: bool
    input_sites: tuple
    ancestors: frozenset
    input_ancestors: frozenset

    @property
    def spatial(self) -> bool:
        """Whether the output is an (h, w, channels) feature map."""
        return len(self.shape) == 3

    @property
    def depth(self) -> int:
        """How many sub-models or custom layers enclose the layer."""
        return len(self.path) - 1


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """Every call site of a model, plus which sites produce the model's outputs.

    Attributes:
        model_name: the model's name, for messages.
        sites: the call sites in execution order.
        outputs: for each model output, the index of the site that produced it (or -1).
        probe_shape: the (H, W, C) input size the catalogue was traced at.
    """

    model_name: str
    sites: tuple
    outputs: tuple
    probe_shape: tuple
    _layer_sites: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def site(self, index: int) -> CallSite:
        """The site at ``index`` in execution order."""
        return self.sites[index]

    def find(self, ref) -> CallSite:
        """The site named ``ref``: a site name, a path ``"outer/inner/name"``, or a keras Layer.

        Raises:
            KeyError: no such site (the message lists close names and the layers), or a plain
                name shared by layers in several sub-models.
            TypeError: ``ref`` is neither a string nor a Layer.
        """
        if isinstance(ref, keras.layers.Layer):
            indices = self._layer_sites.get(id(ref), ())
            if not indices:
                raise KeyError(f"layer object {ref.name!r} is not called inside model {self.model_name!r}; layers are: {self.listing()}")
            return self.sites[indices[0]]
        if not isinstance(ref, str):
            raise TypeError(f"a layer must be a name (str) or a keras Layer, got {ref!r} ({type(ref).__name__})")
        for site in self.sites:
            if ref == site.name or ref == _path_name(site):
                return site
        base, _, occurrence = ref.partition("@")
        plain = [site for site in self.sites if site.path[-1] == base and site.occurrence == int(occurrence or 0)]
        if len(plain) > 1:
            raise KeyError(f"layer name {ref!r} is ambiguous in model {self.model_name!r}; use one of {[site.name for site in plain]}")
        close = difflib.get_close_matches(ref, [site.name for site in self.sites], n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise KeyError(f"no layer named {ref!r} in model {self.model_name!r}.{hint} Layers are: {self.listing()}")

    def sites_of(self, layer) -> tuple:
        """Every call site of one layer object, in execution order."""
        return tuple(self.sites[i] for i in self._layer_sites.get(id(layer), ()))

    def listing(self, sites=None) -> str:
        """Site names joined for a message, cut after ``SHOWN_IN_LISTINGS``."""
        names = [site.name for site in (self.sites if sites is None else sites)]
        shown = names if len(names) <= SHOWN_IN_LISTINGS else names[:SHOWN_IN_LISTINGS] + [f"... ({len(names)} in all)"]
        return ", ".join(shown)

    def key_of(self, path: tuple, occurrence: int) -> int | None:
        """The index of the site at ``path`` and ``occurrence``, or None."""
        for site in self.sites:
            if site.path == path and site.occurrence == occurrence:
                return site.index
        return None


def _path_name(site: CallSite) -> str:
    base = "/".join(site.path)
    return base if site.occurrence == 0 else f"{base}@{site.occurrence}"


def _kind(operation, output, inputs: list) -> SiteKind:
    if isinstance(operation, keras.layers.Conv2DTranspose):
        return SiteKind.CONV_TRANSPOSE
    if isinstance(operation, (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)):
        return SiteKind.CONV
    weightless = not (isinstance(operation, keras.layers.Layer) and operation.weights)
    passes_through = output is not None and any(output.name == tensor.name for tensor in inputs)  # e.g. Dropout at inference
    if isinstance(operation, _ACTIVATION_LAYERS) or (weightless and not passes_through and pre_activation(output) is not None):
        return SiteKind.ACTIVATION
    return SiteKind.OTHER


def _first_tensor(structure):
    return next((item for item in keras.tree.flatten(structure) if tf.is_tensor(item)), None)


def _shape(tensor) -> tuple:
    return tuple(tensor.shape[1:]) if tensor is not None and tensor.shape.rank else ()


@dataclasses.dataclass
class _Seen:
    """A call as the tracing run saw it (tensors of that trace; never kept past it)."""

    path: tuple
    operation: object
    inputs: list
    output: object


def build_catalogue(runner: GraphRunner) -> Catalogue:
    """Trace ``runner``'s model once and record every call site.

    The input size is the model's own; unknown height or width is tried at each of
    ``PROBE_SIZES`` until the model runs.

    Raises:
        ValueError: the model input is not an image, or the model cannot run at any probe size.
    """
    model = runner.model
    if len(model.inputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs; seggradcam needs one image input")
    declared = tuple(model.inputs[0].shape[1:])
    if len(declared) != 3:
        raise ValueError(f"model input must be an image (H, W, C); got input shape {declared}")
    if declared[2] is None:
        raise ValueError(f"model {model.name!r} has an unknown number of input channels {declared}; give keras.Input a channel count")
    first_error = None
    for size in PROBE_SIZES:
        shape = (declared[0] or size, declared[1] or size, declared[2])
        try:
            return _catalogue_at(runner, shape)
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
            first_error = first_error or error
            if declared[0] and declared[1]:
                break
    raise ValueError(f"model {model.name!r} could not be run on a {shape} image to list its layers: {first_error}") from first_error


def _catalogue_at(runner: GraphRunner, shape: tuple) -> Catalogue:
    seen: list[_Seen] = []
    model_outputs: list = []

    def visit(path, operation, inputs, call):
        outputs = call()
        seen.append(_Seen(path, operation, inputs, _first_tensor(outputs)))
        return outputs

    def traced(images):
        outputs = runner.run(images, visit)
        model_outputs.extend(_first_tensor(output) for output in outputs)
        return outputs

    spec = tf.TensorSpec((1,) + shape, runner.model.inputs[0].dtype)
    concrete = tf.function(traced, autograph=False).get_concrete_function(spec)
    return _records(runner.model.name, seen, model_outputs, concrete.graph, shape)


def _dependencies(seen: list, graph) -> dict:
    """For every tensor of the traced graph, a bit mask of the sites its value depends on.

    Ops are visited in creation order, which is a topological order of the graph; bit i
    of a tensor's mask is set when site i's output is the tensor or one of its inputs.
    """
    owner: dict[str, int] = {}
    for index, item in enumerate(seen):
        if item.output is not None:
            owner[item.output.name] = owner.get(item.output.name, 0) | (1 << index)
    bits: dict[str, int] = {}
    for op in graph.get_operations():
        base = 0
        for tensor in op.inputs:
            base |= bits.get(tensor.name, 0)
        for tensor in op.outputs:
            bits[tensor.name] = base | owner.get(tensor.name, 0)
    return bits


def _names(seen: list) -> list[tuple[str, int]]:
    """(name, occurrence) of every seen call, by the naming rule of this module."""
    paths_by_name: dict[str, set] = {}
    for item in seen:
        paths_by_name.setdefault(item.path[-1], set()).add(item.path)
    occurrences: dict[tuple, int] = {}
    named = []
    for item in seen:
        occurrence = occurrences.get(item.path, 0)
        occurrences[item.path] = occurrence + 1
        base = item.path[-1] if len(paths_by_name[item.path[-1]]) == 1 else "/".join(item.path)
        named.append((base if occurrence == 0 else f"{base}@{occurrence}", occurrence))
    return named


def _records(model_name: str, seen: list, model_outputs: list, graph, shape: tuple) -> Catalogue:
    bits = _dependencies(seen, graph)
    producer: dict[str, int] = {}
    sites = []
    layer_sites: dict[int, list] = {}
    for index, (item, (name, occurrence)) in enumerate(zip(seen, _names(seen))):
        output = item.output
        inputs = [tensor for tensor in item.inputs if tf.is_tensor(tensor)]
        pre = pre_activation(output) if output is not None else None
        ends_with = ACTIVATION_OPS[output.op.type] if pre is not None else None
        has_weights = isinstance(item.operation, keras.layers.Layer) and bool(item.operation.weights)
        activation = ends_with if has_weights else None
        input_bits = 0
        for tensor in inputs:
            input_bits |= bits.get(tensor.name, 0)
        output_bits = bits.get(output.name, 0) if output is not None else 0
        sites.append(
            CallSite(
                index=index,
                name=name,
                path=item.path,
                occurrence=occurrence,
                layer_type=type(item.operation).__name__,
                kind=_kind(item.operation, output, inputs),
                shape=_shape(output),
                input_shape=_shape(inputs[0]) if inputs else (),
                output_activation=ends_with,
                activation=activation,
                declared_activation=_declared(item.operation),
                has_pre=activation is not None and _shape(pre) == _shape(output),
                input_sites=tuple(sorted({producer[t.name] for t in inputs if t.name in producer})),
                ancestors=_indices(output_bits | (1 << index)),
                input_ancestors=_indices(input_bits),
            )
        )
        if output is not None:
            producer[output.name] = index  # the last site to hand a tensor on produced it
        layer_sites.setdefault(id(item.operation), []).append(index)
    outputs = tuple(producer.get(tensor.name, -1) if tensor is not None else -1 for tensor in model_outputs)
    return Catalogue(model_name, tuple(sites), outputs, shape, {key: tuple(value) for key, value in layer_sites.items()})


def _declared(operation) -> str | None:
    name = getattr(getattr(operation, "activation", None), "__name__", None)
    return None if name in (None, "linear") else name


def _indices(mask: int) -> frozenset:
    return frozenset(index for index in range(mask.bit_length()) if mask >> index & 1)
