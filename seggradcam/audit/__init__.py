"""Dataset-scale audits: Seg-Grad-CAM over every image of a dataset.

``audit(model, source, targets=None, layers="auto", out=DIR, backend="local")`` explains
each image for its targets at every chosen layer and writes, in ``DIR``:

- ``metrics.parquet``: one row per image x target x layer (columns: ``seggradcam.audit.table``);
- ``heatmaps.zarr``: the heatmaps (N, T, L, H, W) float16, one image per chunk;
- ``report.html``: per class x layer tables and plots, the worst and best images per class.

It streams in batches with bounded memory, resumes after an interruption, and runs in this
process (``backend="local"``) or on Ray Data (``backend="ray"``) with the same table.
Needs ``pip install "seggradcam[audit]"`` (pyarrow, zarr); Ray needs ``"seggradcam[ray]"``.

Modules, one job each: ``sources`` (images and masks with stable ids), ``selection`` (targets
per image), ``compute`` (explain and measure a batch), ``table`` (rows), ``store`` (output
folder, commits, resume), ``report`` (HTML), ``local`` and ``ray_backend`` (backends), ``cli``.

Example (see :func:`audit` for one that runs; this one needs files):
    >>> from seggradcam.audit import audit
    >>> audit is sgc.audit
    True
"""

from ._extras import MissingExtraError
from .api import AuditResult, audit
from .local import LocalBackend
from .ray_backend import RayBackend

__all__ = ["AuditResult", "LocalBackend", "MissingExtraError", "RayBackend", "audit"]
