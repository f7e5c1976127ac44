"""Reference U-Nets and the shipped trained models."""

import json

import keras
import pytest

from seggradcam import data
from seggradcam.models import build_unet, load_model, load_pretrained


def test_build_unet_layers_and_nested_encoder():
    model = build_unet((64, 64, 3), 5, (8, 16, 32), nested_encoder=True)
    assert model.output_shape == (None, 64, 64, 5)
    encoder = model.get_layer("encoder")
    assert isinstance(encoder, keras.Model)
    assert encoder.get_layer("bottleneck_conv2").output.shape[1:] == (16, 16, 32)
    assert isinstance(model.get_layer("dec1_up"), keras.layers.Conv2DTranspose)
    assert isinstance(model.get_layer("softmax"), keras.layers.Softmax)


def test_build_unet_rejects_bad_head():
    with pytest.raises(ValueError, match="'tanh'"):
        build_unet(head="tanh")


def test_unknown_pretrained_name_lists_the_available():
    with pytest.raises(KeyError, match="shapes_unet"):
        load_pretrained("resnet")


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "none.keras")


def test_corrupt_model_file(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="could not load model"):
        load_model(path)


def record(name):
    return json.loads((data.data_dir() / "models" / f"{name}.json").read_text())


def held_out_iou(name, generator):
    model = load_pretrained(name)
    arrays = generator(data.HELD_OUT_SIZES[name], seed=data.HELD_OUT_SEEDS[name])
    images, labels = arrays[0], arrays[1]
    prediction = model.predict(images, batch_size=50, verbose=0).argmax(-1)
    return data.mean_iou(labels, prediction, model.output_shape[-1]), model


@pytest.mark.parametrize(
    "name, generator, floor",
    [("shapes_unet", data.texture_shapes, 0.80), ("digits_unet", data.texture_digits, 0.85), ("biased_unet", data.biased_shapes, 0.0)],
)
def test_shipped_model_reaches_recorded_miou(name, generator, floor):
    (miou, per_class), model = held_out_iou(name, generator)
    recorded = record(name)
    assert abs(miou - recorded["held_out_miou"]) <= 0.02, (miou, recorded["held_out_miou"])
    assert miou >= floor
    assert (data.data_dir() / "models" / f"{name}.keras").stat().st_size < 5 * 2**20
    assert getattr(model, "optimizer", None) is None and not model.compiled  # shipped uncompiled


def test_biased_model_uses_the_bias_texture():
    model = load_pretrained("biased_unet")
    seed, size = data.HELD_OUT_SEEDS["biased_unet"], data.HELD_OUT_SIZES["biased_unet"]
    images, labels, _ = data.biased_shapes(size, seed=seed)
    swapped, _, _ = data.biased_shapes(size, seed=seed, biased=False)
    inserted, _, _ = data.biased_shapes(size, seed=seed, tile_everywhere=True)
    predicted = model.predict(images, verbose=0).argmax(-1)
    _, with_bias = data.mean_iou(labels, predicted, 4)
    _, without = data.mean_iou(labels, model.predict(swapped, verbose=0).argmax(-1), 4)
    # bias removed: the disk IoU drops
    assert with_bias[1] - without[1] > 0.05, (with_bias[1], without[1])
    recorded = record("biased_unet")
    assert abs(with_bias[1] - recorded["disk_iou_biased_tile"]) <= 0.02
    assert abs(without[1] - recorded["disk_iou_swapped_tile"]) <= 0.02
    # bias inserted: rectangles and triangles in images with the tile are called disks
    others = (labels == 2) | (labels == 3)
    called_disk_before = (predicted[others] == 1).mean()
    called_disk_after = (model.predict(inserted, verbose=0).argmax(-1)[others] == 1).mean()
    assert called_disk_before < 0.02 and called_disk_after > 0.1, (called_disk_before, called_disk_after)


def lambda_model_file(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="logits")(x))
    path = tmp_path / "lambda.keras"
    model.save(path)
    return path


def test_lambda_model_is_refused_in_safe_mode(tmp_path):
    path = lambda_model_file(tmp_path)
    with pytest.raises(ValueError, match="refused to load model .*Lambda.*safe_mode=False"):
        load_model(path)
    assert load_model(path, safe_mode=False).get_layer("double") is not None


def test_truncated_model_file(tmp_path):
    good = tmp_path / "good.keras"
    build_unet((32, 32, 3), 2, (4, 8)).save(good)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="could not load model"):
        load_model(truncated)
