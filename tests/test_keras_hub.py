"""keras-hub segmenters with random weights (runs only where keras-hub is installed).

keras-hub is not a test dependency: it pulls the full ``tensorflow`` build, which would
replace ``tensorflow-cpu``. Where it is installed, its SegFormer and DeepLabV3 segmenters
are explained with ``layers="all"`` and checked against the slow reference on three layers,
including layers that keras-hub's custom layers call inside their own ``call()``.
"""

import numpy as np
import pytest

import seggradcam as sgc

from .reference import Scores, Site, check_explanation, find_layer

keras_hub = pytest.importorskip("keras_hub")


def segformer():
    encoder = keras_hub.models.MiTBackbone(
        layerwise_depths=[1, 1],
        num_layers=2,
        layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[8, 4],
        max_drop_path_rate=0.1,
        layerwise_patch_sizes=[7, 3],
        layerwise_strides=[4, 2],
        hidden_dims=[16, 32],
        image_shape=(64, 64, 3),
    )
    backbone = keras_hub.models.SegFormerBackbone(image_encoder=encoder, projection_filters=32)
    return keras_hub.models.SegFormerImageSegmenter(backbone=backbone, num_classes=4)


def deeplab():
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(64, 64, 3),
    )
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder,
        low_level_feature_key="P2",
        spatial_pyramid_pooling_key="P3",
        dilation_rates=[2, 4],
        upsampling_size=2,
        projection_filters=16,
    )
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3)


@pytest.mark.parametrize("build, inside", [(segformer, "depthwise_conv2d"), (deeplab, "aspp_conv_2")])
def test_keras_hub_segmenter(build, inside):
    import keras

    keras.utils.set_random_seed(41)
    model = build()
    image = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
    before = [variable.numpy().copy() for variable in model.variables]
    explainer = sgc.SegGradCAM(model, layers="all")
    assert inside in explainer.layers  # a layer called inside a keras-hub custom layer
    by_name = {site.name: site for site in explainer.access.candidates()}
    chosen = [explainer.layers[1], inside, explainer.layers[-2]]
    expl = sgc.SegGradCAM(model, layers=chosen).explain(image, [sgc.ClassTarget(1, region="all"), sgc.PixelTarget(20, 40)])
    np.testing.assert_array_equal(expl.prediction, model.predict(image, verbose=0).argmax(-1))
    sites = {name: Site(find_layer(model, *by_name[name].path), by_name[name].occurrence) for name in chosen}
    output = explainer.access.catalogue.site(explainer.access.catalogue.outputs[0])
    check_explanation(expl, model, image, sites, Scores(find_layer(model, *output.path)))
    for old, new in zip(before, model.variables):
        np.testing.assert_array_equal(old, new.numpy())
