"""Small helpers shared by the tests."""

import keras
import numpy as np

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


def assert_same_table(got, expected):
    """Same columns, types and rows, values bit for bit (NaN equal to NaN)."""
    assert got.schema.remove_metadata().equals(expected.schema.remove_metadata())
    assert got.num_rows == expected.num_rows
    for name in expected.column_names:
        np.testing.assert_array_equal(got[name].to_numpy(zero_copy_only=False), expected[name].to_numpy(zero_copy_only=False), err_msg=name)
