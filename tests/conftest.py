"""Shared fixtures: tiny models and a Keras home that is not the user's home folder."""

import os
import tempfile

os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="seggradcam-keras-"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from seggradcam.models import build_unet  # noqa: E402

from .helpers import SMALL  # noqa: E402


@pytest.fixture(scope="session")
def unet_softmax():
    keras.utils.set_random_seed(1)
    return build_unet(**SMALL, head="softmax", name="flat")


@pytest.fixture(scope="session")
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (3, 32, 32, 3)).astype(np.float32)
