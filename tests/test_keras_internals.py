"""What seggradcam relies on from Keras internals, checked against the installed Keras.

If a Keras upgrade changes one of these, this file fails first and names what changed.
"""

import keras
import numpy as np
import tensorflow as tf

from seggradcam.keras_internals import ACTIVATION_OPS, GraphRunner, check_model, pre_activation
from seggradcam.models import build_unet

from .helpers import SMALL


def test_functional_models_expose_the_graph_the_walk_reads():
    model = build_unet(**SMALL, nested_encoder=True)
    assert hasattr(model, "_nodes_by_depth")
    nodes = [node for depth in model._nodes_by_depth.values() for node in depth]
    for node in nodes:
        for name in ("operation", "is_input", "input_tensors", "outputs", "arguments"):
            assert hasattr(node, name), name
        assert callable(node.arguments.fill_in)
    check_model(model)  # raises when one of them is missing


def test_walk_reproduces_the_model_call_exactly(unet_softmax, images):
    runner = GraphRunner(unet_softmax)
    outputs = tf.function(lambda x: runner.run(x, lambda path, op, inputs, call: call()))(images)
    np.testing.assert_array_equal(outputs[0].numpy(), tf.function(lambda x: unet_softmax(x, training=False))(images).numpy())


def test_layer_state_lives_in_the_instance_dict():
    layer = keras.layers.Conv2D(2, 1)
    layer.build((None, 4, 4, 3))
    assert "_kernel" in vars(layer) or "kernel" in vars(layer)
    assert "activation" in vars(layer) and "_tracker" in vars(layer)


def test_activations_are_single_ops_in_a_graph():
    seen = {}

    @tf.function
    def run(x):
        for name in ("relu", "sigmoid", "softmax", "tanh", "elu", "selu", "softplus", "softsign", "relu6"):
            out = keras.activations.get(name)(x)
            seen[name] = (out.op.type, pre_activation(out) is x)
        return x

    run(tf.zeros((1, 2, 2, 3)))
    for name, (op_type, found) in seen.items():
        assert ACTIVATION_OPS.get(op_type) == name and found, (name, op_type)
