"""What to tell a user whose TensorFlow is missing.

TensorFlow is not an install requirement (it comes in builds that replace one another's
files; see setup.py), so the first use of the library checks for it and names the pip
command. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import importlib

__all__ = ["TENSORFLOW_MISSING", "import_with_tensorflow"]

TENSORFLOW_MISSING = (
    "seggradcam needs TensorFlow (>= 2.21), which is not installed in this environment. "
    'Install it with `pip install "seggradcam[cpu]"` (CPU-only build), '
    '`pip install "seggradcam[gpu]"` (NVIDIA GPU on Linux) or `pip install "seggradcam[tensorflow]"`; '
    "a TensorFlow you installed yourself is used as it is."
)


def import_with_tensorflow(module: str):
    """Import ``module`` (absolute name); a missing TensorFlow becomes an ImportError naming the pip command.

    Example:
        >>> import_with_tensorflow("seggradcam.diagnostics").__name__
        'seggradcam.diagnostics'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is not None and error.name.split(".")[0] == "tensorflow":
            raise ImportError(TENSORFLOW_MISSING, name="tensorflow") from error
        raise
