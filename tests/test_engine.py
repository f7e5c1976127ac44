"""The compiled engine against the independent slow reference in tests/reference.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import seggradcam as sgc
from seggradcam.models import build_unet

from .helpers import SMALL, copy_weights
from .reference import Scores, Site, check_explanation, find_layer, relative_error

SOME_LAYERS = ["enc1_conv2", "bottleneck_conv2", "dec2_up", "dec1_conv2", "logits"]


def unet_sites(model, names):
    """Reference sites of build_unet layers, in a flat or nested (encoder) model."""
    encoder = [layer.name for layer in model.layers if layer.name == "encoder"]

    def layer(name):
        try:
            return model.get_layer(name)
        except ValueError:
            return find_layer(model, *encoder, name)

    return {name: Site(layer(name.removesuffix(":pre")), pre=name.endswith(":pre")) for name in names}


def unet_scores(model):
    """The reference's view of a build_unet head: the logits layer's output, or its pre-activation."""
    logits = find_layer(model, "logits")
    fused = logits.activation.__name__ != "linear"
    return Scores(logits, read="pre" if fused else "output", decision="positive" if logits.filters == 1 else "argmax")


def majority_class(model, images):
    logits = keras.Model(model.inputs[0], model.get_layer("logits").output)(images).numpy()
    return int(np.bincount(logits.argmax(-1).ravel()).argmax())


def test_flat_unet_with_separate_softmax_matches_reference(unet_softmax, images):
    cls = majority_class(unet_softmax, images[:1])
    explainer = sgc.SegGradCAM(unet_softmax, layers=SOME_LAYERS)
    expl = explainer.explain(images[:1], [cls, sgc.ClassTarget(cls, region="all")])
    assert "softmax" in expl.explained
    worst = check_explanation(expl, unet_softmax, images[:1], unet_sites(unet_softmax, SOME_LAYERS), unet_scores(unet_softmax))
    print(f"flat softmax U-Net: worst relative error {worst:.2e}")


def test_fused_softmax_explains_linear_part_like_separate_softmax(unet_softmax, images):
    keras.utils.set_random_seed(2)
    fused = build_unet(**SMALL, head="fused-softmax", name="fused")
    copy_weights(unet_softmax, fused)
    cls = majority_class(unet_softmax, images[:1])
    with pytest.raises(ValueError, match="not on the path"):
        sgc.SegGradCAM(fused, layers="logits")  # its output is the softmax, not the scores
    layers = SOME_LAYERS[:-1] + ["logits:pre"]
    expl = sgc.SegGradCAM(fused, layers=layers).explain(images[:1], [cls, sgc.PixelTarget(3, 30)])
    assert "without its fused softmax" in expl.explained
    check_explanation(expl, fused, images[:1], unet_sites(fused, layers), unet_scores(fused))
    # the same weights with a separate softmax give the same maps
    separate = sgc.SegGradCAM(unet_softmax, layers=SOME_LAYERS).explain(images[:1], [cls, sgc.PixelTarget(3, 30)])
    for mine, theirs in zip(layers, SOME_LAYERS):
        assert relative_error(expl.raw[mine], separate.raw[theirs]) < 1e-5  # float32 order differences only
    assert fused.get_layer("logits").activation.__name__ == "softmax"  # user's model untouched


def test_sigmoid_head_explains_foreground_logit(images):
    keras.utils.set_random_seed(3)
    model = build_unet(input_shape=(32, 32, 3), num_classes=1, filters=(4, 8, 16), head="sigmoid")
    logits = keras.Model(model.inputs[0], model.get_layer("logits").output)(images[:1]).numpy()[0]
    assert 0 < (logits > 0).sum() < logits.size, "the test needs a mixed prediction"
    explainer = sgc.SegGradCAM(model, layers=SOME_LAYERS)
    assert "sigmoid" in explainer.explained
    expl = explainer.explain(images[:1], [0, sgc.RegionTarget(box=(0, 0, 16, 16))])
    check_explanation(expl, model, images[:1], unet_sites(model, SOME_LAYERS), unet_scores(model))
    assert set(np.unique(expl.prediction)) <= {0, 1}


def test_fused_sigmoid_one_channel_head(images):
    keras.utils.set_random_seed(3)
    separate = build_unet(input_shape=(32, 32, 3), num_classes=1, filters=(4, 8, 16), head="sigmoid")
    fused = build_unet(input_shape=(32, 32, 3), num_classes=1, filters=(4, 8, 16), head="fused-sigmoid")
    copy_weights(separate, fused)
    layers = ["bottleneck_conv2", "dec1_conv2"]
    expl = sgc.SegGradCAM(fused, layers=layers).explain(images[:1], sgc.ClassTarget(0, region="all"))
    check_explanation(expl, fused, images[:1], unet_sites(fused, layers), unet_scores(fused))
    check_explanation(expl, separate, images[:1], unet_sites(separate, layers), unet_scores(separate))


def test_nested_encoder_gives_same_maps_as_flat_model(unet_softmax, images):
    keras.utils.set_random_seed(4)
    nested = build_unet(**SMALL, nested_encoder=True, name="nested")
    copy_weights(unet_softmax, nested)
    weights_before = [w.numpy().copy() for w in nested.weights]
    layer_count = len(nested.layers)
    cls = majority_class(unet_softmax, images[:2])
    targets = [sgc.ClassTarget(cls, region="all"), sgc.PixelTarget(10, 12)]
    expl_nested = sgc.SegGradCAM(nested, layers=SOME_LAYERS).explain(images[:2], targets)
    expl_flat = sgc.SegGradCAM(unet_softmax, layers=SOME_LAYERS).explain(images[:2], targets)
    for layer in SOME_LAYERS:
        assert relative_error(expl_nested.raw[layer], expl_flat.raw[layer]) < 1e-5
        assert relative_error(expl_nested.weights[layer], expl_flat.weights[layer]) < 1e-5
    np.testing.assert_allclose(expl_nested.heatmaps, expl_flat.heatmaps, atol=1e-5)
    check_explanation(expl_nested, nested, images[:2], unet_sites(nested, SOME_LAYERS), unet_scores(nested))
    # the user's nested model is untouched: same layers, same weights, still callable
    assert len(nested.layers) == layer_count
    for before, after in zip(weights_before, nested.weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert nested(images[:1]).shape == (1, 32, 32, 3)


def test_batch_of_three_four_target_kinds_all_layers(unet_softmax, images):
    labels = keras.Model(unet_softmax.inputs[0], unet_softmax.get_layer("logits").output)(images).numpy().argmax(-1)
    common = [c for c in range(3) if all((labels[n] == c).any() for n in range(3))]
    cls = common[0]
    targets = [
        sgc.ClassTarget(cls),
        sgc.PixelTarget(5, 7),
        sgc.RegionTarget(box=(4, 4, 20, 24), reduction="mean"),
        sgc.ComponentTarget(cls, which="largest"),
    ]
    explainer = sgc.SegGradCAM(unet_softmax, layers="all")
    expl = explainer.explain(images, targets)
    assert expl.heatmaps.shape == (3, 4, len(explainer.layers), 32, 32)
    worst = check_explanation(expl, unet_softmax, images, unet_sites(unet_softmax, expl.layers), unet_scores(unet_softmax))
    print(f"batch 3 x 4 targets x {len(expl.layers)} layers: worst relative error {worst:.2e}")


def test_closed_form_linear_logits():
    """logits = A @ W + b, with A the input itself: alpha_k = (|M| / (h w)) W[k, c]."""
    inputs = keras.Input((6, 5, 3))
    feat = keras.layers.Activation("linear", name="feat")(inputs)
    logits = keras.layers.Conv2D(2, 1, name="logits")(feat)
    model = keras.Model(inputs, logits)
    rng = np.random.default_rng(7)
    kernel = rng.normal(size=(1, 1, 3, 2)).astype(np.float32)
    bias = rng.normal(size=(2,)).astype(np.float32)
    model.get_layer("logits").set_weights([kernel, bias])
    image = rng.normal(size=(6, 5, 3)).astype(np.float32)
    mask = np.zeros((6, 5), bool)
    mask[1:4, 2:5] = True
    expl = sgc.SegGradCAM(model, layers="feat").explain(image, sgc.RegionTarget(mask=mask, class_index=1))
    alpha = mask.sum() / mask.size * kernel[0, 0, :, 1]
    np.testing.assert_allclose(expl.weights["feat"][0, 0], alpha, rtol=1e-6)
    np.testing.assert_allclose(expl.raw["feat"][0, 0], image @ alpha, rtol=1e-5, atol=1e-6)
    expected_score = (image[mask] @ kernel[0, 0, :, 1]).sum() + mask.sum() * bias[1]
    np.testing.assert_allclose(expl.scores[0, 0], expected_score, rtol=1e-5)


def test_mean_reduction_divides_by_mask_weight(unet_softmax, images):
    explainer = sgc.SegGradCAM(unet_softmax, layers="bottleneck_conv2")
    box = (2, 3, 12, 15)
    summed = explainer.explain(images[:1], sgc.RegionTarget(box=box, class_index=1))
    mean = explainer.explain(images[:1], sgc.RegionTarget(box=box, class_index=1, reduction="mean"))
    area = 10 * 12
    np.testing.assert_allclose(mean.scores * area, summed.scores, rtol=1e-5)
    np.testing.assert_allclose(mean.weights["bottleneck_conv2"] * area, summed.weights["bottleneck_conv2"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(mean.heatmaps, summed.heatmaps, atol=1e-5)


def test_repeated_calls_do_not_retrace(unet_softmax, images):
    explainer = sgc.SegGradCAM(unet_softmax, layers=["bottleneck_conv2", "dec1_conv2"])
    targets = [sgc.ClassTarget(0, region="all"), sgc.PixelTarget(1, 1)]
    for _ in range(3):
        explainer.explain(images[:2], targets)
    explainer.explain(images[1:3], [sgc.ClassTarget(2, region="all"), sgc.RegionTarget(box=(0, 0, 5, 5))])
    assert explainer.engine.trace_count == 1
    explainer.explain(images, targets)  # a new batch size is a new shape: one more trace
    assert explainer.engine.trace_count == 2


def test_one_forward_pass_per_batch(unet_softmax, images):
    calls = []
    layer = unet_softmax.get_layer("enc1_conv1")
    original = layer.call

    def counting_call(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    explainer = sgc.SegGradCAM(unet_softmax, layers="all")
    layer.call = counting_call
    try:
        explainer.explain(images, [sgc.ClassTarget(c, region="all") for c in range(3)])
    finally:
        del layer.call
    assert len(calls) == 1  # the first layer is called once in the single trace
    assert explainer.engine.trace_count == 1


def two_layer_network(separate_relu):
    """x -> 1x1 conv (ReLU, fused or separate) -> 1x1 conv logits: gradients in closed form."""
    inputs = keras.Input((4, 5, 2))
    if separate_relu:
        pre = keras.layers.Conv2D(3, 1, name="hidden")(inputs)
        hidden = keras.layers.Activation("relu", name="relu")(pre)
    else:
        hidden = keras.layers.Conv2D(3, 1, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="logits")(hidden))
    rng = np.random.default_rng(11)
    w1, b1 = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    w2, b2 = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    model.get_layer("hidden").set_weights([w1.reshape(1, 1, 2, 3), b1])
    model.get_layer("logits").set_weights([w2.reshape(1, 1, 3, 2), b2])
    return model, (w1, b1, w2, b2)


@pytest.mark.parametrize("separate_relu", [False, True])
def test_guided_backprop_two_layer_network_against_numpy(separate_relu):
    model, (w1, b1, w2, b2) = two_layer_network(separate_relu)
    x = np.random.default_rng(5).normal(size=(4, 5, 2)).astype(np.float32)
    mask = np.zeros((4, 5), np.float32)
    mask[1:3, 1:4] = 1.0
    explainer = sgc.SegGradCAM(model, layers="logits")
    expl = explainer.explain(x, [sgc.RegionTarget(mask=mask, class_index=c) for c in (0, 1)], guided=True)
    pre = x @ w1 + b1
    for c in (0, 1):
        upstream = mask[..., None] * w2[:, c]  # dy/dhidden at every pixel
        passed = upstream * (pre > 0) * (upstream > 0)
        expected = passed @ w1.T
        np.testing.assert_allclose(expl.guided_gradients[0, c], expected, rtol=1e-5, atol=1e-6)
        plain = (upstream * (pre > 0)) @ w1.T
        assert not np.allclose(plain, expected)  # the guided rule really changed something
    assert expl.guided_seg_grad_cam.shape == (1, 2, 1, 4, 5, 2)
    np.testing.assert_allclose(expl.guided_seg_grad_cam[0, 1, 0], expl.guided_gradients[0, 1] * expl.heatmaps[0, 1, 0][..., None])
    assert model.get_layer("hidden").activation.__name__ == ("linear" if separate_relu else "relu")


def test_guided_needs_flag(unet_softmax, images):
    expl = sgc.SegGradCAM(unet_softmax).explain(images[:1], sgc.PixelTarget(1, 1))
    with pytest.raises(ValueError, match="guided=True"):
        _ = expl.guided_seg_grad_cam


def test_pre_activation_equals_conv_followed_by_separate_activation():
    fused, _ = two_layer_network(separate_relu=False)
    separate, _ = two_layer_network(separate_relu=True)
    x = np.random.default_rng(6).normal(size=(2, 4, 5, 2)).astype(np.float32)
    targets = [sgc.ClassTarget(0, region="all"), sgc.PixelTarget(2, 3, class_index=1)]
    a = sgc.SegGradCAM(fused, layers=["hidden:pre", "hidden"]).explain(x, targets)
    b = sgc.SegGradCAM(separate, layers=["hidden", "relu"]).explain(x, targets)
    for mine, theirs in (("hidden:pre", "hidden"), ("hidden", "relu")):
        np.testing.assert_allclose(a.raw[mine], b.raw[theirs], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.weights[mine], b.weights[theirs], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no fused activation"):
        sgc.SegGradCAM(separate, layers="hidden:pre")


def test_pre_activation_on_the_unet_matches_reference(unet_softmax, images):
    layers = ["dec1_conv2:pre", "bottleneck_conv1:pre", "dec1_conv2"]
    expl = sgc.SegGradCAM(unet_softmax, layers=layers).explain(images[:2], [sgc.PixelTarget(3, 3), sgc.ClassTarget(1, region="all")])
    assert expl.raw["dec1_conv2:pre"].shape == (2, 2, 32, 32)
    check_explanation(expl, unet_softmax, images[:2], unet_sites(unet_softmax, layers), unet_scores(unet_softmax))


def test_loss_target_matches_reference_cross_entropy(unet_softmax, images):
    rng = np.random.default_rng(9)
    truth = rng.integers(0, 3, size=(32, 32))
    mask = np.zeros((32, 32), np.float32)
    mask[8:20, 4:30] = 1.0
    target = sgc.RegionTarget(mask=mask, class_index=0, ground_truth=truth)
    expl = sgc.SegGradCAM(unet_softmax, layers=["bottleneck_conv2", "dec1_up"]).explain(images[:1], [target, sgc.PixelTarget(1, 1)])
    assert expl.targets[0].describe().endswith("loss")
    probe = keras.Model(
        unet_softmax.inputs[0],
        [
            unet_softmax.get_layer("bottleneck_conv2").output,
            unet_softmax.get_layer("dec1_up").output,
            unet_softmax.get_layer("logits").output,
        ],
    )
    with tf.GradientTape() as tape:
        a1, a2, z = probe(images[:1])
        ce = tf.reduce_logsumexp(z[0], axis=-1) - tf.gather(z[0], truth, axis=-1, batch_dims=2)
        loss = tf.reduce_sum(ce * mask)
    g1, g2 = tape.gradient(loss, [a1, a2])
    np.testing.assert_allclose(expl.scores[0, 0], loss.numpy(), rtol=1e-5)
    for name, grad, act in (("bottleneck_conv2", g1, a1), ("dec1_up", g2, a2)):
        alpha = grad.numpy()[0].mean(axis=(0, 1))
        assert relative_error(expl.weights[name][0, 0], alpha) < 1e-5
        assert relative_error(expl.raw[name][0, 0], (act.numpy()[0] * alpha).sum(-1)) < 1e-5
    with pytest.raises(ValueError, match="label 5 but valid labels are 0..2"):
        sgc.SegGradCAM(unet_softmax).explain(images[:1], sgc.ClassTarget(0, region="all", ground_truth=np.full((32, 32), 5)))


@pytest.mark.parametrize("strategy", ["loop", "pfor", "loop-xla", "pfor-xla"])
def test_every_strategy_matches_reference(unet_softmax, images, strategy):
    targets = [sgc.ClassTarget(1, region="all"), sgc.PixelTarget(5, 7), sgc.RegionTarget(box=(4, 4, 20, 24), reduction="mean")]
    explainer = sgc.SegGradCAM(unet_softmax, layers="all", strategy=strategy)
    expl = explainer.explain(images[:2], targets)
    assert (explainer.engine.xla_trace_count == 1) == strategy.endswith("xla")
    worst = check_explanation(expl, unet_softmax, images[:2], unet_sites(unet_softmax, expl.layers), unet_scores(unet_softmax))
    print(f"{strategy}: worst relative error {worst:.2e}")


def test_xla_pass_one_image_per_call_matches_the_whole_batch(unet_softmax, images):
    """Without a GPU the XLA pass runs image by image: one compiled program for every batch size."""
    targets = [sgc.ClassTarget(1, region="all"), sgc.PixelTarget(5, 7)]
    per_image = sgc.SegGradCAM(unet_softmax, layers="all", strategy="loop-xla")
    whole = sgc.SegGradCAM(unet_softmax, layers="all", strategy="loop-xla")
    per_image.engine.xla_per_image, whole.engine.xla_per_image = True, False
    for count in (3, 2):
        split, joined = per_image.explain(images[:count], targets), whole.explain(images[:count], targets)
        # the same compiled computation on a batch of 1 or of `count`: XLA may tile the
        # convolutions differently, so float32 sums can round differently (a few ulp)
        for name in split.layers:
            assert split.raw[name].shape == joined.raw[name].shape
            assert relative_error(split.raw[name], joined.raw[name]) < 1e-5
            assert relative_error(split.weights[name], joined.weights[name]) < 1e-5
        np.testing.assert_allclose(split.scores, joined.scores, rtol=1e-5)
        np.testing.assert_array_equal(split.prediction, joined.prediction)
    # and the per-image pass against the independent slow reference (default tolerance, see there)
    check_explanation(split, unet_softmax, images[:2], unet_sites(unet_softmax, split.layers), unet_scores(unet_softmax))
    assert per_image.engine.xla_trace_count == 1  # batch sizes 3 and 2 ran the one program compiled for one image
    assert whole.engine.xla_trace_count == 2


def test_xla_pass_takes_images_one_per_call_only_for_large_enough_models(unet_softmax):
    """The rule: one image per XLA call when one image's layer outputs reach XLA_PER_IMAGE_BYTES (no GPU)."""
    from seggradcam.engine import XLA_PER_IMAGE_BYTES

    small = sgc.SegGradCAM(unet_softmax, strategy="loop-xla").engine
    large = sgc.SegGradCAM(sgc.models.load_pretrained("shapes_unet"), strategy="loop-xla").engine
    assert small.access.activation_bytes(32, 32) < XLA_PER_IMAGE_BYTES <= large.access.activation_bytes(128, 128)
    has_gpu = bool(tf.config.list_logical_devices("GPU"))
    assert small._per_image(tf.zeros((4, 32, 32, 3))) is False
    assert large._per_image(tf.zeros((4, 128, 128, 3))) is (not has_gpu)
    large.xla_per_image = False  # set by hand, it wins
    assert large._per_image(tf.zeros((4, 128, 128, 3))) is False


@pytest.mark.parametrize("strategy", ["loop", "loop-xla"])
def test_earliest_layer_sums_read_off_the_next_convolution(unet_softmax, images, strategy):
    """layers="all": the first conv's map feeds only the second conv, so its channel sums come
    from that conv's output gradient (seggradcam.conv_sums) and its own backward pass is skipped."""
    targets = [sgc.ClassTarget(1, region="all"), sgc.PixelTarget(5, 7)]
    summed = sgc.SegGradCAM(unet_softmax, layers="all", strategy=strategy)
    direct = sgc.SegGradCAM(unet_softmax, layers="all", strategy=strategy)
    direct.engine.conv_sums = False
    expl, plain = summed.explain(images[:2], targets), direct.explain(images[:2], targets)
    assert summed.engine.conv_sum_layers == ("enc1_conv1",) and direct.engine.conv_sum_layers == ()
    for name in expl.layers:
        # the same gradients summed in another order (float64 across blocks in both): a few
        # float32 roundings of the scale apart on any CPU
        assert relative_error(expl.weights[name], plain.weights[name]) < 1e-5
        assert relative_error(expl.raw[name], plain.raw[name]) < 1e-5
    check_explanation(expl, unet_softmax, images[:2], unet_sites(unet_softmax, expl.layers), unet_scores(unet_softmax))
    other = sgc.SegGradCAM(unet_softmax, layers="all", method="seg-grad-cam++", strategy=strategy)
    other.explain(images[:1], targets)
    assert other.engine.conv_sum_layers == ()  # Grad-CAM++ needs the gradient itself


def test_auto_strategy_moves_to_xla_after_enough_calls(unet_softmax, images):
    from seggradcam.engine import XLA_AFTER

    explainer = sgc.SegGradCAM(unet_softmax, layers=["bottleneck_conv2", "dec1_conv2"])
    targets = [sgc.ClassTarget(0, region="all"), sgc.PixelTarget(2, 2)]
    first = explainer.explain(images[:1], targets)
    assert explainer.engine.trace_count == 1 and explainer.engine.xla_trace_count == 0
    tier = next(iter(explainer.engine._tiers.values()))
    calls = 1
    while explainer.engine.xla_trace_count == 0:  # until a call ran the XLA pass
        later = explainer.explain(images[:1], targets)
        calls += 1
        assert calls < 1000, "never switched"
    assert tier.spent_s >= XLA_AFTER * tier.first_s and explainer.engine.xla_trace_count == 1
    assert explainer.engine.trace_count == 1  # the plain pass was traced once for all those calls
    # XLA fuses and orders float32 sums differently: same maps to 1e-5 of their scale
    for layer in first.layers:
        assert relative_error(later.raw[layer], first.raw[layer]) < 1e-5
    with pytest.raises(ValueError, match="strategy must be one of"):
        sgc.SegGradCAM(unet_softmax, strategy="fast")


def nearest_resize_model():
    """A small segmenter whose upsampling is a nearest-neighbour Resizing: XLA has no kernel for its gradient."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    pooled = keras.layers.MaxPooling2D(name="pool")(features)
    deeper = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="deep")(pooled)
    restored = keras.layers.Resizing(16, 16, interpolation="nearest", name="resize")(deeper)
    joined = keras.layers.Concatenate()([restored, features])
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, name="logits")(joined))


def test_xla_refusal_auto_stays_plain_and_explicit_xla_says_why(monkeypatch):
    import seggradcam.engine as engine_module

    model = nearest_resize_model()
    images = np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    targets = [sgc.ClassTarget(c, region="all") for c in range(3)]
    plain = sgc.SegGradCAM(model, layers="all", strategy="loop").explain(images, targets)
    monkeypatch.setattr(engine_module, "XLA_AFTER", 0.0)  # "auto" tries XLA from its second call
    auto = sgc.SegGradCAM(model, layers="all")
    auto.explain(images, targets)
    later = auto.explain(images, targets)
    assert auto.engine.xla_trace_count == 1 and "ResizeNearestNeighborGrad" in auto.engine.xla_refusal
    again = auto.explain(images, targets)
    assert auto.engine.xla_trace_count == 1  # not tried twice
    for layer in plain.layers:
        np.testing.assert_array_equal(later.raw[layer], plain.raw[layer])
        np.testing.assert_array_equal(again.raw[layer], plain.raw[layer])
    with pytest.raises(ValueError, match=r"strategy 'loop-xla'.*ResizeNearestNeighborGrad.*strategy='loop'"):
        sgc.SegGradCAM(model, layers="all", strategy="loop-xla").explain(images, targets)


def test_auto_settles_on_the_faster_pass(unet_softmax, images, monkeypatch):
    import seggradcam.engine as engine_module

    monkeypatch.setattr(engine_module, "XLA_AFTER", 0.0)  # XLA trials from the second call
    explainer = sgc.SegGradCAM(unet_softmax, layers=["bottleneck_conv2", "dec1_conv2"])
    targets = [sgc.ClassTarget(0, region="all"), sgc.PixelTarget(2, 2)]
    first = explainer.explain(images[:1], targets)
    tier = next(iter(explainer.engine._tiers.values()))
    for _ in range(engine_module.XLA_TRIALS + 1):
        assert tier.next_pass() == "xla"
        explainer.explain(images[:1], targets)
    assert tier.settled == ("xla" if tier.xla_best_s < tier.plain_best_s else "plain")
    settled = explainer.explain(images[:1], targets)
    assert explainer.engine.xla_trace_count == 1 and explainer.engine.trace_count == 1
    for layer in first.layers:  # XLA or not: the same maps to 1e-5 of their scale (float32 sums in another order)
        assert relative_error(settled.raw[layer], first.raw[layer]) < 1e-5


def test_tier_goes_back_to_plain_when_xla_is_slower():
    from seggradcam.engine import XLA_TRIALS, _Tier

    tier = _Tier()
    for elapsed in (1.0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2):
        assert tier.next_pass() == "plain"
        tier.record("plain", elapsed)
    assert tier.next_pass() == "xla"
    tier.record("xla", 5.0)  # compiling
    for _ in range(XLA_TRIALS):
        tier.record("xla", 0.3)
    assert tier.settled == "plain" and tier.next_pass() == "plain"
    faster = _Tier(first_s=1.0, spent_s=3.0, recent_plain_s=[0.2, 0.25])
    for elapsed in [5.0] + [0.1] * XLA_TRIALS:
        faster.record("xla", elapsed)
    assert faster.settled == "xla"


def test_xla_internal_failure_auto_stays_plain(monkeypatch):
    # found by a review: XLA refuses float16 ReluGrad next to a float32 ResizeBilinearGrad with an
    # InternalError (not InvalidArgumentError); "auto" must fall back instead of failing every call
    import seggradcam.engine as engine_module

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(1)
        inputs = keras.Input((16, 16, 3))
        features = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
        deeper = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(keras.layers.MaxPooling2D()(features))
        restored = keras.layers.UpSampling2D(interpolation="bilinear", name="up")(deeper)
        logits = keras.layers.Conv2D(3, 1, name="logits")(keras.layers.Concatenate()([restored, features]))
        model = keras.Model(inputs, keras.layers.Activation("softmax", dtype="float32")(logits))
    finally:
        keras.config.set_dtype_policy(previous)
    images = np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    targets = [sgc.ClassTarget(c, region="all") for c in range(3)]
    plain = sgc.SegGradCAM(model, layers=["c1", "up"], strategy="loop").explain(images, targets)
    monkeypatch.setattr(engine_module, "XLA_AFTER", 0.0)
    auto = sgc.SegGradCAM(model, layers=["c1", "up"])
    for _ in range(3):
        later = auto.explain(images, targets)
    assert auto.engine.xla_refusal is not None and auto.engine.xla_trace_count == 1
    for layer in plain.layers:
        np.testing.assert_array_equal(later.raw[layer], plain.raw[layer])
