"""Everything seggradcam relies on from Keras internals, in one module.

To read (and, for guided backpropagation, replace) the output of any layer call, including
layers inside nested functional/Sequential sub-models and sub-layers that a custom layer
calls from its own ``call()``, seggradcam re-executes a model call by call inside one
``tf.function``. The rest of the package sees only :class:`GraphRunner`,
:func:`pre_activation`, :func:`is_walkable` and :func:`check_model`.

What this module relies on, and how an upgrade of Keras would be noticed
(``tests/test_keras_internals.py`` checks each point against the installed Keras, and
:func:`check_model` raises a clear error when one is missing):

- a functional model's ``_nodes_by_depth`` and each node's ``operation``, ``is_input``,
  ``input_tensors``, ``outputs`` and ``arguments.fill_in``: the walk Keras's own
  ``Functional._run_through_graph`` does;
- a layer's state lives in its instance ``__dict__`` (sub-layers as attributes, or in
  lists and dicts), so a *stand-in*, an instance of the same class that shares that state
  but sees recording wrappers instead of its sub-layers, can run the layer's own ``call``
  through ``keras.layers.Layer.__call__``; the user's layer is never modified;
- inside a ``tf.function`` graph, a fused activation is one op whose first input is the
  pre-activation tensor (``output.op.inputs[0]``).

Inference semantics: the whole run is one call of a private wrapper layer with
``training=False``, so every layer inside it, custom blocks included, resolves
``training=False`` through Keras's call context, and functional nodes get
``training=False`` explicitly, exactly as ``Functional.call`` passes it. The run happens
inside a ``keras.StatelessScope``: no variable can be assigned and no loss recorded,
whatever a layer does.
"""

from __future__ import annotations

from typing import Any, Callable

import keras
import tensorflow as tf

__all__ = ["GraphRunner", "Visit", "check_model", "is_walkable", "pre_activation", "ACTIVATION_OPS"]

Visit = Callable[[tuple, Any, list, Callable[[], Any]], Any]
"""``visit(path, operation, inputs, call)``: called for every operation call of a run.
``path`` is the tuple of names from the outermost sub-model down to the operation,
``inputs`` the call's tensor arguments, ``call()`` runs the operation and returns its
outputs; ``visit`` returns the outputs the run continues with."""

# TensorFlow op types of activations that are a single op whose first input is the
# pre-activation (what Keras's TensorFlow backend emits for these activations).
ACTIVATION_OPS = {
    "Relu": "relu",
    "Relu6": "relu6",
    "Elu": "elu",
    "Selu": "selu",
    "Sigmoid": "sigmoid",
    "Softmax": "softmax",
    "Tanh": "tanh",
    "Softplus": "softplus",
    "Softsign": "softsign",
    "LeakyRelu": "leaky_relu",
}

# Keras's own bookkeeping attributes of a layer: a stand-in shares them as they are.
_BOOKKEEPING = frozenset(
    {"_tracker", "_layers", "_trainable_variables", "_non_trainable_variables", "_metrics", "_seed_generators", "_losses", "_loss_ids"}
)
_FUNCTIONAL_NEEDS = ("_nodes_by_depth", "inputs", "outputs")
_NODE_NEEDS = ("operation", "is_input", "input_tensors", "outputs", "arguments")


def is_functional(operation) -> bool:
    """Whether ``operation`` is a functional model whose graph can be walked node by node."""
    return isinstance(operation, keras.Model) and not isinstance(operation, keras.Sequential) and hasattr(operation, "_nodes_by_depth")


def is_walkable(operation) -> bool:
    """Whether ``operation`` is a functional or Sequential model seggradcam walks into.

    Example:
        >>> is_walkable(keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(1, 1)]))
        True
    """
    return isinstance(operation, keras.Sequential) or is_functional(operation)


def check_model(model) -> None:
    """Raise a clear error when ``model`` cannot be walked with the installed Keras.

    Raises:
        TypeError: a subclassed model (no functional graph to walk).
        ValueError: a Sequential model that was never built.
        RuntimeError: this Keras lacks an internal the walk relies on.

    Example:
        >>> check_model(keras.Sequential([keras.layers.Conv2D(1, 1)], name="never_built"))
        Traceback (most recent call last):
        ...
        ValueError: Sequential model 'never_built' has not been built: it has no input shape yet. ...
    """
    if isinstance(model, keras.Sequential):
        try:
            model.inputs  # noqa: B018 - raises when the model was never built
        except (AttributeError, ValueError):
            model_inputs = None
        else:
            model_inputs = model.inputs
        if not model.built or not model_inputs:
            raise ValueError(
                f"Sequential model {model.name!r} has not been built: it has no input shape yet. "
                "Call it once on a batch of images, or start it with keras.Input((H, W, C))."
            )
        return
    if not isinstance(model, keras.Model) or not is_functional(model):
        raise TypeError(
            f"model {getattr(model, 'name', model)!r} is a subclassed keras.Model ({type(model).__name__}); "
            "seggradcam needs a functional or Sequential model to reach its layers"
        )
    missing = [name for name in _FUNCTIONAL_NEEDS if not hasattr(model, name)]
    nodes = [node for depth in getattr(model, "_nodes_by_depth", {}).values() for node in depth]
    missing += sorted({name for node in nodes[:1] for name in _NODE_NEEDS if not hasattr(node, name)})
    if missing:
        raise RuntimeError(
            f"this Keras ({keras.__version__}) lacks {missing}, which seggradcam uses to walk functional "
            "models; seggradcam is tested with Keras 3.10 to 3.15"
        )


def pre_activation(output):
    """The pre-activation tensor of ``output`` when its last op is a single activation op.

    Only meaningful inside a ``tf.function`` graph (eager tensors carry no op).

    Returns:
        The tensor, or None.
    """
    op = getattr(output, "op", None)
    if op is None or getattr(op, "type", None) not in ACTIVATION_OPS or not op.inputs:
        return None
    return op.inputs[0]


class _InferenceCall(keras.layers.Layer):
    """The one layer call that opens the inference context of a run."""

    def __init__(self, run: Callable):
        super().__init__(autocast=False, dtype="float32", name="seggradcam_inference_call")
        self._run = run

    def call(self, images, training=None):
        return self._run(images)


class GraphRunner:
    """Runs a model operation by operation, as ``model(images, training=False)`` would.

    Args:
        model: a functional or Sequential keras Model (see :func:`check_model`).

    Example:
        >>> model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 1, name="c")])
        >>> seen = []
        >>> def visit(path, operation, inputs, call):
        ...     seen.append(path)
        ...     return call()
        >>> outputs = tf.function(lambda x: GraphRunner(model).run(x, visit))(tf.zeros((1, 4, 4, 1)))
        >>> seen
        [('c',)]
    """

    def __init__(self, model: keras.Model):
        check_model(model)
        self.model = model
        self._visit: Visit | None = None
        self._entry = _InferenceCall(self._walk_top)

    def run(self, images, visit: Visit) -> list:
        """Run the model on ``images`` (cast to the model's input dtype); returns its outputs as a list."""
        dtype = self.model.inputs[0].dtype
        images = tf.cast(images, dtype)
        previous, self._visit = self._visit, visit
        try:
            with keras.StatelessScope():
                return list(self._entry(images, training=False))
        finally:
            self._visit = previous

    def _walk_top(self, images):
        return _walk(self.model, [images], self._visit, (), training=False)


def _walk(model, inputs: list, visit: Visit, path: tuple, training) -> list:
    """Execute a functional or Sequential model call by call; returns its outputs as a list."""
    if isinstance(model, keras.Sequential):
        outputs = inputs[0]
        for layer in model.layers:
            outputs = _call(layer, (outputs,), {}, visit, path, training)
        return [outputs]
    computed = {id(symbol): tensor for symbol, tensor in zip(model.inputs, inputs)}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            if any(id(symbol) not in computed for symbol in node.input_tensors):
                continue
            args, kwargs = node.arguments.fill_in(computed)
            outputs = _call(node.operation, args, kwargs, visit, path, training)
            for symbol, tensor in zip(node.outputs, keras.tree.flatten(outputs)):
                computed[id(symbol)] = tensor
    return [computed[id(symbol)] for symbol in model.outputs]


def _call(operation, args: tuple, kwargs: dict, visit: Visit, path: tuple, training):
    """One operation call of a walk: descend into models, record custom layers' sub-layers."""
    if is_walkable(operation):
        inner = args[0] if args else kwargs.get("inputs")
        outputs = _walk(operation, keras.tree.flatten(inner), visit, path + (operation.name,), training)
        return outputs[0] if len(outputs) == 1 else outputs
    kwargs = dict(kwargs)
    if isinstance(operation, keras.layers.Layer) and training is not None:
        kwargs["training"] = training
    site = path + (operation.name,)
    if _has_sublayers(operation):

        def call():
            stand_in = _stand_in(operation, visit, site)
            return keras.layers.Layer.__call__(stand_in, *args, **kwargs)

    else:

        def call():
            return operation(*args, **kwargs)

    inputs = [item for item in keras.tree.flatten((args, kwargs)) if tf.is_tensor(item)]
    return visit(site, operation, inputs, call)


def _is_keras_builtin(layer) -> bool:
    return type(layer).__module__.startswith("keras.")


def _has_sublayers(layer) -> bool:
    """A custom (not Keras built-in) layer that holds sub-layers it calls itself."""
    if not isinstance(layer, keras.layers.Layer) or _is_keras_builtin(layer) or isinstance(layer, keras.Model) and is_walkable(layer):
        return False
    return any(_holds_layer(value) for key, value in vars(layer).items() if key not in _BOOKKEEPING)


def _holds_layer(value, depth: int = 0) -> bool:
    if isinstance(value, keras.layers.Layer):
        return True
    if depth < 3 and isinstance(value, (list, tuple)):
        return any(_holds_layer(item, depth + 1) for item in value)
    if depth < 3 and isinstance(value, dict):
        return any(_holds_layer(item, depth + 1) for item in value.values())
    return False


class _Recorded:
    """Stands for a sub-layer inside a stand-in: calls go through the walk, attributes to the layer."""

    __slots__ = ("_layer", "_visit", "_path")

    def __init__(self, layer, visit: Visit, path: tuple):
        self._layer = layer
        self._visit = visit
        self._path = path

    def __call__(self, *args, **kwargs):
        # training is not injected: inside a custom call it comes from Keras's call context,
        # or from what the custom code passes itself, exactly as in a plain model call
        return _call(self._layer, args, kwargs, self._visit, self._path, training=kwargs.get("training"))

    def __getattr__(self, name):
        return getattr(self._layer, name)


def _substitute(value, visit: Visit, path: tuple, depth: int = 0):
    if isinstance(value, keras.layers.Layer):
        return _Recorded(value, visit, path)
    if depth < 3 and isinstance(value, (list, tuple)) and _holds_layer(value):
        items = [_substitute(item, visit, path, depth + 1) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    if depth < 3 and isinstance(value, dict) and _holds_layer(value):
        return {key: _substitute(item, visit, path, depth + 1) for key, item in value.items()}
    return value


def _stand_in(layer, visit: Visit, path: tuple):
    """An instance of ``type(layer)`` sharing its state, whose sub-layers are recorded.

    Made without running ``__init__``; the user's layer object is not touched.
    """
    stand_in = object.__new__(type(layer))
    state = {key: value if key in _BOOKKEEPING else _substitute(value, visit, path) for key, value in vars(layer).items()}
    stand_in.__dict__.update(state)
    return stand_in
