"""Image validation: clear messages, never a TensorFlow traceback."""

import numpy as np
import pytest

import seggradcam as sgc
from seggradcam.inputs import as_image_batch


def test_single_image_gets_a_batch_axis():
    assert as_image_batch(np.zeros((4, 5, 3), np.uint8), (None, None, 3)).shape == (1, 4, 5, 3)
    assert as_image_batch(np.zeros((4, 5, 3), np.uint8), (None, None, 3)).dtype == np.float32


@pytest.mark.parametrize(
    "images, error, text",
    [
        (np.zeros((2, 4, 4)), ValueError, "channels"),
        (np.zeros((4, 4)), ValueError, "rank 2"),
        (np.zeros((1, 1, 4, 4, 3)), ValueError, "rank 5"),
        (np.zeros((0, 4, 4, 3)), ValueError, "empty batch"),
        (np.full((1, 4, 4, 3), "a"), TypeError, "dtype <U1"),
        (np.array([[[[object()]]]], dtype=object), TypeError, "object"),
        (np.zeros((1, 4, 4, 1)), ValueError, "1 channels but the model expects 3"),
    ],
)
def test_bad_images(images, error, text):
    with pytest.raises(error, match=text):
        as_image_batch(images, (None, None, 3))


def test_nan_and_inf_are_located():
    images = np.zeros((2, 4, 4, 3), np.float32)
    images[1, 2, 3, 0] = np.nan
    images[1, 3, 3, 1] = np.inf
    with pytest.raises(ValueError, match=r"2 NaN or Inf.*\(1, 2, 3, 0\)"):
        as_image_batch(images, (None, None, 3))


def test_explain_rejects_wrong_size_and_nan(unet_softmax):
    explainer = sgc.SegGradCAM(unet_softmax)
    with pytest.raises(ValueError, match="height 30 but the model expects 32"):
        explainer.explain(np.zeros((1, 30, 32, 3)), 0)
    bad = np.zeros((1, 32, 32, 3), np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        explainer.explain(bad, 0)
