"""Names every docstring example may use without importing them: np, tf, keras, sgc."""

import os
import tempfile

os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="seggradcam-keras-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    import keras
    import tensorflow as tf

    import seggradcam as sgc
    import seggradcam.data
    import seggradcam.models  # noqa: F401 - makes sgc.models and sgc.data available

    doctest_namespace.update(np=np, tf=tf, keras=keras, sgc=sgc)
