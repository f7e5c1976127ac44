"""The audit's optional dependencies, imported on first use.

pyarrow and zarr come with ``pip install "seggradcam[audit]"``, Ray Data with
``pip install "seggradcam[ray]"``. Importing :mod:`seggradcam.audit` needs none of them; a
missing one raises :class:`MissingExtraError` (an ImportError) that names the command.

Example:
    >>> require("json").__name__
    'json'
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require", "EXTRA_OF"]

EXTRA_OF = {"pyarrow": "audit", "zarr": "audit", "ray": "ray"}


class MissingExtraError(ImportError):
    """An optional package the audit needs is not installed."""


def require(module: str) -> ModuleType:
    """Import ``module``; if it is missing, raise :class:`MissingExtraError` naming the extra.

    Args:
        module: a module name such as ``"pyarrow.parquet"`` or ``"ray.data"``.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        if top not in EXTRA_OF:
            raise
        raise MissingExtraError(
            f'seggradcam.audit needs {module!r}, which is not installed: pip install "seggradcam[{EXTRA_OF[top]}]"'
        ) from error
