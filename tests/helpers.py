"""Small helpers shared by the tests."""

import keras

SMALL = dict(input_shape=(32, 32, 3), num_classes=3, filters=(4, 8, 16))


def copy_weights(source: keras.Model, destination: keras.Model) -> None:
    """Copy weights between two models built with the same layer names (nested or flat)."""
    by_name = {}

    def collect(model):
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                collect(layer)
            elif layer.weights:
                by_name[layer.name] = layer

    collect(source)

    def assign(model):
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                assign(layer)
            elif layer.weights:
                layer.set_weights(by_name[layer.name].get_weights())

    assign(destination)
