"""Model access on hostile but legitimate models, each against the slow reference.

Every model here runs exactly as ``model(x, training=False)`` would run it, its variables
are never changed, and the fast path agrees with tests/reference.py to 1e-5 relative
(see reference.check_explanation for why 1e-5).
"""

import keras
import numpy as np
import pytest

import seggradcam as sgc
from seggradcam.models import build_unet

from .helpers import SMALL
from .reference import Scores, Site, check_explanation, find_layer, relative_error


def image_batch(shape, count=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (count,) + shape).astype(np.float32)


def variables_of(model):
    return [variable.numpy().copy() for variable in model.variables]


def assert_unchanged(model, before):
    after = variables_of(model)
    assert len(before) == len(after)
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)  # bit-identical: nothing may be written


# -- 1. training mode must not leak into the explained pass ----------------------------------
class ResizeConvNorm(keras.layers.Layer):
    """A block whose call() takes no `training`: Resizing -> Conv -> BatchNorm (like keras-hub's SPP)."""

    def __init__(self, size, filters, **kwargs):
        super().__init__(**kwargs)
        self.resize = keras.layers.Resizing(size, size, name="resize")
        self.conv = keras.layers.Conv2D(filters, 3, padding="same", name="conv")
        self.norm = keras.layers.BatchNormalization(name="norm")

    def call(self, x):
        return self.norm(self.conv(self.resize(x)))


def resize_block_model():
    keras.utils.set_random_seed(20)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="stem")(inputs)
    x = ResizeConvNorm(16, 8, name="block")(x)
    x = keras.layers.Activation("relu", name="block_relu")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, name="head")(x))
    norm = find_layer(model, "block", "norm")
    rng = np.random.default_rng(3)  # moving statistics far from any batch's, so a leak shows
    norm.moving_mean.assign(rng.normal(2.0, 1.0, 8).astype(np.float32))
    norm.moving_variance.assign(rng.uniform(3.0, 5.0, 8).astype(np.float32))
    return model


def test_custom_block_without_training_argument_runs_in_inference_mode():
    model = resize_block_model()
    images = image_batch((16, 16, 3))
    before = variables_of(model)
    explainer = sgc.SegGradCAM(model, layers=["stem", "block/conv", "block_relu"])
    expl = explainer.explain(images, [sgc.ClassTarget(0, region="all"), sgc.PixelTarget(4, 9)])
    assert_unchanged(model, before)
    expected = model.predict(images, verbose=0).argmax(-1)
    np.testing.assert_array_equal(expl.prediction, expected)
    np.testing.assert_array_equal(explainer.predict(images), expected)
    assert explainer.layers == ["stem", "conv", "block_relu"]  # a path is accepted, the unique plain name is kept
    sites = {
        "stem": Site(model.get_layer("stem")),
        "conv": Site(find_layer(model, "block", "conv")),
        "block_relu": Site(model.get_layer("block_relu")),
    }
    check_explanation(expl, model, images, sites, Scores(model.get_layer("head")))
    assert_unchanged(model, before)


# -- 2. weights are read at call time: later training is seen -----------------------------------
def train_one_step(model, images, seed):
    labels = np.random.default_rng(seed).integers(0, 3, images.shape[:3])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=1, batch_size=len(images), verbose=0)


@pytest.mark.parametrize("layers, guided", [(["bottleneck_conv2", "dec1_conv2:pre", "logits:pre"], False), (["dec1_up"], True)])
def test_explain_after_training_equals_a_fresh_explainer(layers, guided):
    keras.utils.set_random_seed(21)
    model = build_unet(**SMALL, head="fused-softmax")
    images = image_batch((32, 32, 3))
    targets = [sgc.ClassTarget(0, region="all"), sgc.PixelTarget(5, 5, class_index=1)]
    explainer = sgc.SegGradCAM(model, layers=layers)
    first = explainer.explain(images, targets, guided=guided)
    train_one_step(model, images, seed=1)
    again = explainer.explain(images, targets, guided=guided)
    fresh = sgc.SegGradCAM(model, layers=layers).explain(images, targets, guided=guided)
    assert relative_error(again.scores, first.scores) > 1e-3  # the step changed the model
    np.testing.assert_array_equal(again.scores, fresh.scores)
    for layer in layers:
        np.testing.assert_array_equal(again.raw[layer], fresh.raw[layer])
    if guided:
        np.testing.assert_array_equal(again.guided_gradients, fresh.guided_gradients)
    logits = find_layer(model, "logits")
    sites = {name: Site(find_layer(model, name.split(":")[0]), pre=name.endswith(":pre")) for name in layers}
    check_explanation(again, model, images, sites, Scores(logits, read="pre"))


# -- 3. an unregistered custom Conv2D subclass with a fused ReLU -------------------------------
class ScaledConv(keras.layers.Conv2D):
    """A user's own convolution, not registered for serialisation."""

    def call(self, inputs):
        return super().call(inputs * 0.5)


def test_custom_conv_subclass_with_fused_relu():
    keras.utils.set_random_seed(22)
    inputs = keras.Input((12, 12, 2))
    x = ScaledConv(5, 3, padding="same", activation="relu", name="scaled")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax", name="head")(x))
    images = image_batch((12, 12, 2))
    explainer = sgc.SegGradCAM(model, layers=["scaled", "scaled:pre"])
    assert "without its fused softmax" in explainer.explained
    expl = explainer.explain(images, [sgc.ClassTarget(0, region="all"), sgc.PixelTarget(2, 3)], guided=True)
    scaled = model.get_layer("scaled")
    check_explanation(
        expl, model, images, {"scaled": Site(scaled), "scaled:pre": Site(scaled, pre=True)}, Scores(model.get_layer("head"), read="pre")
    )
    assert expl.raw["scaled:pre"].min() < 0  # before the ReLU the map is signed
    assert np.isfinite(expl.guided_gradients).all() and np.abs(expl.guided_gradients).max() > 0


# -- 4. mixed precision and float64 ------------------------------------------------------------
def small_unet_under_policy(policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(23)
        return build_unet(**SMALL, head="softmax", batch_norm=True)
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize(
    "policy, tolerance",
    [
        # the model computes in float16 (4.9e-4 relative step). Measured: 2e-7 on an AVX2 CPU,
        # where graph and eager run the same float16 kernels; a CPU with native float16
        # kernels may fuse ops in the graph and round differently, by up to about two float16
        # steps, hence 1e-3
        ("mixed_float16", 1e-3),
        # float64 inside the model; scores and maps are returned in float32, so agreement is
        # that of float32 (see check_explanation's default)
        ("float64", 1e-5),
    ],
)
def test_mixed_precision_and_float64(policy, tolerance):
    model = small_unet_under_policy(policy)
    images = image_batch((32, 32, 3))
    layers = ["enc1_relu2", "bottleneck_conv2", "dec1_up"]
    expl = sgc.SegGradCAM(model, layers=layers).explain(images, [sgc.ClassTarget(0, region="all"), sgc.PixelTarget(7, 7, class_index=2)])
    assert expl.heatmaps.dtype == np.float32 and np.isfinite(expl.heatmaps).all()
    assert all(expl.raw[name].dtype == np.float32 for name in layers)
    sites = {name: Site(model.get_layer(name)) for name in layers}
    worst = check_explanation(expl, model, images, sites, Scores(model.get_layer("softmax"), read="input"), tolerance=tolerance)
    print(f"{policy}: worst relative error {worst:.2e}")


# -- 5. a shared layer explained at both call sites ---------------------------------------------
def test_shared_layer_has_one_site_per_call():
    keras.utils.set_random_seed(24)
    inputs = keras.Input((16, 16, 4))
    shared = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="shared")
    x = shared(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = shared(x)
    x = keras.layers.UpSampling2D(name="up")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, name="head")(x))
    explainer = sgc.SegGradCAM(model, layers="all")
    assert explainer.layers == ["shared", "shared@1", "head"]
    sites = {site.name: site.shape for site in explainer.access.candidates()}
    assert sites == {"shared": (16, 16, 4), "shared@1": (8, 8, 4), "head": (16, 16, 3)}
    images = image_batch((16, 16, 4))
    expl = explainer.explain(images, [sgc.ClassTarget(1, region="all"), sgc.PixelTarget(3, 12)])
    assert expl.raw["shared"].shape[2:] == (16, 16) and expl.raw["shared@1"].shape[2:] == (8, 8)
    sites = {"shared": Site(shared, 0), "shared@1": Site(shared, 1), "head": Site(model.get_layer("head"))}
    check_explanation(expl, model, images, sites, Scores(model.get_layer("head")))


# -- 6. sub-layers called by a custom layer, with Python control flow ---------------------------
class Stage(keras.layers.Layer):
    """Convolutions in a list, a residual branch chosen by Python control flow, a nested Sequential."""

    def __init__(self, filters, depth, **kwargs):
        super().__init__(**kwargs)
        self.depth = depth
        self.convs = [keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{i}") for i in range(depth)]
        self.act = keras.layers.ReLU(name="act")
        self.mixer = keras.Sequential(
            [keras.layers.Conv2D(filters, 1, name="mix"), keras.layers.Activation("relu", name="mix_relu")], name="mixer"
        )

    def call(self, x, training=None):
        for index, conv in enumerate(self.convs):
            y = self.act(conv(x))
            x = y + x if index % 2 and x.shape[-1] == y.shape[-1] else y
        return self.mixer(x)


def test_sublayers_of_custom_layers_are_listed_and_explained():
    keras.utils.set_random_seed(25)
    inputs = keras.Input((16, 16, 3))
    x = Stage(6, 3, name="stage1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = Stage(6, 2, name="stage2")(x)
    x = keras.layers.UpSampling2D(name="up")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, name="head")(x))
    explainer = sgc.SegGradCAM(model, layers="all")
    listed = explainer.layers
    for expected in ("stage1/conv0", "stage1/act", "stage1/act@2", "stage1/mixer/mix_relu", "conv2", "stage2/conv1", "stage2/act@1"):
        assert expected in listed, (expected, listed)
    images = image_batch((16, 16, 3))
    chosen = ["stage1/conv1", "stage1/act@2", "stage2/mixer/mix_relu"]
    expl = sgc.SegGradCAM(model, layers=chosen).explain(images, [sgc.ClassTarget(2, region="all"), sgc.PixelTarget(10, 3)])
    stage1, stage2 = model.get_layer("stage1"), model.get_layer("stage2")
    sites = {
        "stage1/conv1": Site(stage1.convs[1]),
        "stage1/act@2": Site(stage1.act, occurrence=2),
        "stage2/mixer/mix_relu": Site(stage2.mixer.get_layer("mix_relu")),
    }
    check_explanation(expl, model, images, sites, Scores(model.get_layer("head")))
    assert len(stage1._layers) == 5 and isinstance(stage1.convs[0], keras.layers.Conv2D)  # the layer is untouched


def test_two_explainers_in_threads_give_the_same_maps():
    import concurrent.futures

    keras.utils.set_random_seed(26)
    inputs = keras.Input((16, 16, 3))
    x = Stage(4, 2, name="stage")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(x))
    images = image_batch((16, 16, 3))
    layers = ["conv0", "mix_relu"]
    alone = sgc.SegGradCAM(model, layers=layers).explain(images, sgc.ClassTarget(1, region="all"))

    def work(_):
        return sgc.SegGradCAM(model, layers=layers).explain(images, sgc.ClassTarget(1, region="all")).raw

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(work, range(4)))
    for raw in results:
        for layer in layers:
            np.testing.assert_array_equal(raw[layer], alone.raw[layer])


# -- 7. several outputs: logits= names one head ------------------------------------------------
def test_two_output_model_with_logits_naming_one_head():
    keras.utils.set_random_seed(27)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="body")(inputs)
    main = keras.layers.Conv2D(3, 1, name="main_logits")(x)
    aux = keras.layers.Conv2D(3, 1, name="aux_logits")(keras.layers.Conv2D(4, 3, padding="same", name="aux_conv")(x))
    model = keras.Model(inputs, [keras.layers.Softmax(name="main")(main), keras.layers.Softmax(name="aux")(aux)])
    with pytest.raises(ValueError, match="has 2 outputs.*logits="):
        sgc.SegGradCAM(model)
    explainer = sgc.SegGradCAM(model, layers="all", logits="main_logits")
    assert explainer.layers == ["body", "main_logits"]  # the auxiliary branch is not on the path
    with pytest.raises(ValueError, match="not on the path"):
        sgc.SegGradCAM(model, layers="aux_conv", logits="main_logits")
    images = image_batch((16, 16, 3))
    expl = explainer.explain(images, [sgc.ClassTarget(0, region="all"), sgc.PixelTarget(1, 2)])
    check_explanation(
        expl,
        model,
        images,
        {"body": Site(model.get_layer("body")), "main_logits": Site(model.get_layer("main_logits"))},
        Scores(model.get_layer("main_logits")),
    )


# -- 8. the automatic layer skips flat maps; a final resize keeps the logits -------------------
def pyramid_model():
    """DeepLab-like: a 1x1 global-pooling branch broadcast back, next to a 4x4 atrous branch."""
    keras.utils.set_random_seed(28)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu", name="features")(x)  # 4x4
    atrous = keras.layers.Conv2D(8, 3, dilation_rate=2, padding="same", activation="relu", name="atrous")(x)
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="image_pool")(x)
    pooled = keras.layers.Conv2D(8, 1, activation="relu", name="pool_conv")(pooled)  # 1x1
    pooled = keras.layers.UpSampling2D(4, name="pool_up")(pooled)
    pooled = keras.layers.Conv2D(8, 1, activation="relu", name="pool_project")(pooled)  # 4x4, constant
    x = keras.layers.Concatenate(name="concat")([atrous, pooled])
    x = keras.layers.Conv2D(3, 1, name="classes")(x)
    x = keras.layers.Softmax(name="softmax")(x)
    return keras.Model(inputs, keras.layers.Resizing(32, 32, name="resize")(x))


def test_auto_layer_is_never_a_flat_map_and_a_final_resize_keeps_the_logits():
    model = pyramid_model()
    explainer = sgc.SegGradCAM(model)
    assert explainer.layers == ["atrous"]  # not pool_conv (1x1) nor pool_project (constant over space)
    assert "softmax" in explainer.explained and "resize" in explainer.explained
    images = image_batch((32, 32, 3))
    expl = explainer.explain(images, [sgc.ClassTarget(1, region="all"), sgc.PixelTarget(30, 2)])
    assert expl.masks.shape[2:] == (32, 32)
    scores = Scores(model.get_layer("softmax"), read="input", then=(model.get_layer("resize"),))
    check_explanation(expl, model, images, {"atrous": Site(model.get_layer("atrous"))}, scores)


def test_never_built_sequential_model_gets_a_clear_message():
    model = keras.Sequential([keras.layers.Conv2D(4, 3), keras.layers.Conv2D(2, 1)], name="plain")
    with pytest.raises(ValueError, match="'plain' has not been built.*keras.Input"):
        sgc.SegGradCAM(model)


def test_keras_operations_in_a_functional_model():
    keras.utils.set_random_seed(29)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.ops.relu(x)
    model = keras.Model(inputs, keras.activations.softmax(keras.layers.Conv2D(2, 1, name="scores")(x)))
    explainer = sgc.SegGradCAM(model, layers="all")
    assert "pre-activation scores" in explainer.explained
    assert len(explainer.layers) == 3  # conv, the relu operation, scores
    images = image_batch((8, 8, 3))
    # the relu operation has no layer object the reference could tap; check the layers around it
    sites = {"conv": Site(model.get_layer("conv")), "scores": Site(model.get_layer("scores"))}
    expl = sgc.SegGradCAM(model, layers=["conv", "scores"]).explain(images, sgc.PixelTarget(2, 2))
    check_explanation(expl, model, images, sites, Scores(model.get_layer("scores")))
