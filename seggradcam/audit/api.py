"""``audit()``: Seg-Grad-CAM over a whole dataset, into a table, a heatmap store and a report."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np

from .._deps import import_with_tensorflow
from ._extras import require
from .compute import thumbnail
from .job import AuditJob
from .local import LocalBackend
from .selection import make_plan
from .sources import open_source
from .store import REPORT_FILE, AuditSettings, AuditStore

__all__ = ["AuditResult", "audit", "DEFAULT_BATCH_SIZE"]

DEFAULT_BATCH_SIZE = 16


@dataclasses.dataclass(frozen=True)
class AuditResult:
    """Where an audit wrote its results, and how much it did.

    Attributes:
        out: the output folder.
        metrics_path, heatmaps_path: ``metrics.parquet`` and ``heatmaps.zarr``.
        report_path: ``report.html``, or None when ``report=False``.
        images: images in the audit.
        explained: images explained by this call (fewer than ``images`` when it resumed).
        rows: rows of the table.
        layers, targets: the layer and target-slot names (axes of the heatmap store).
    """

    out: Path
    metrics_path: Path
    heatmaps_path: Path
    report_path: Path | None
    images: int
    explained: int
    rows: int
    layers: tuple
    targets: tuple

    def metrics(self):
        """The table as a ``pyarrow.Table`` (``.to_pandas()`` for a DataFrame)."""
        return require("pyarrow.parquet").read_table(self.metrics_path)

    def heatmaps(self):
        """The Zarr array (N, T, L, H, W) of heatmaps, read lazily (``[i]`` loads one image's grid)."""
        return require("zarr").open_group(str(self.heatmaps_path), mode="r")["heatmaps"]


def audit(
    model,
    source,
    targets=None,
    layers="auto",
    out=None,
    backend="local",
    *,
    masks=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    logits="auto",
    class_names=None,
    report: bool = True,
    progress: bool = True,
    ray_address: str | None = None,
    num_workers: int | None = None,
    safe_mode: bool = True,
) -> AuditResult:
    """Explain every image of a dataset and write a table, a heatmap store and a report.

    Each image is explained for the targets that apply to it (by default every class the
    model predicts in it) at every chosen layer; see ``seggradcam.audit.selection``. The
    run streams: batches are read, explained and committed one after another, and an
    interrupted audit started again with the same ``out`` does only what is missing.

    Args:
        model: a ``keras.Model`` or the path of a ``.keras`` file.
        source: a folder of images (PNG/JPEG/TIFF, sorted by relative path, scaled to
            [0, 1]), a ``.npy`` file, an (N, H, W, C) array, or a ``tf.data.Dataset`` of
            images or (image, mask) pairs. All images must have one size.
        targets: None (every predicted class), or a list of class indices and Targets.
        layers: as for :class:`~seggradcam.SegGradCAM` (``"auto"``, ``"all"``, names).
        out: the output folder (required): ``metrics.parquet``, ``heatmaps.zarr``,
            ``report.html``.
        backend: ``"local"`` (this process), ``"ray"`` (Ray Data), or a backend object
            such as ``seggradcam.audit.RayBackend(...)``.
        masks: ground-truth label maps: a folder of label images with the images' relative
            paths and stems (folder sources), or an (N, H, W) array or ``.npy`` file.
        batch_size: images per batch (per Ray task with the Ray backend).
        logits: as for :class:`~seggradcam.SegGradCAM`.
        class_names: names of the classes, for the table and the report.
        report: write ``report.html``.
        progress: show a progress bar with images per second.
        ray_address: with ``backend="ray"``: the address of a running Ray cluster to join;
            None starts a local Ray instance (or uses the one already started).
        num_workers: with ``backend="ray"``: explainer actors (default: one per CPU).
        safe_mode: load a model file with Keras safe mode (False allows Lambda layers).

    Returns:
        An :class:`AuditResult`.

    Raises:
        ValueError, TypeError, FileNotFoundError: bad arguments, unreadable images or masks,
            or an ``out`` folder that holds an audit with other settings.
        MissingExtraError: pyarrow/zarr (``seggradcam[audit]``) or Ray
            (``seggradcam[ray]``) is not installed.

    Example:
        >>> import tempfile
        >>> model = sgc.models.build_unet((32, 32, 3), num_classes=3, filters=(4, 8, 16))
        >>> images = np.random.default_rng(0).uniform(0, 1, (3, 32, 32, 3)).astype("float32")
        >>> result = sgc.audit(model, images, layers="all", out=tempfile.mkdtemp(), progress=False)
        >>> result.images, result.heatmaps().shape[2] == len(result.layers)
        (3, True)
        >>> result.metrics().column_names[:4]
        ['image', 'image_index', 'target', 'target_index']

        On files, from the command line: ``seggradcam audit model.keras images/ --masks masks/ --out audit_out``.
    """
    if out is None:
        raise TypeError("audit() needs out=: the folder for metrics.parquet, heatmaps.zarr and report.html")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    runner = _backend(backend, ray_address, num_workers)
    require("pyarrow")
    require("zarr")
    explainer_class = import_with_tensorflow("seggradcam.explainer").SegGradCAM

    keras_model, model_file = _load(model, safe_mode)
    explainer = explainer_class(keras_model, layers=layers, logits=logits)
    data = open_source(source, masks)
    plan = make_plan(targets, explainer.num_classes, class_names)
    channels = _channels(keras_model)
    settings = AuditSettings(
        model=_model_digest(keras_model),
        explained=explainer.explained,
        layers=tuple(explainer.layers),
        targets=plan.names,
        target_classes=plan.classes,
        source=data.fingerprint(),
        image_shape=tuple(int(s) for s in data.image_shape),
        thumbnail_shape=thumbnail(np.zeros(data.image_shape, np.float32)).shape,
        key_type=data.key_type,
        with_truth=data.has_masks,
    )
    job = AuditJob(keras_model, model_file, safe_mode, explainer, logits, plan, data, batch_size, channels)
    with AuditStore(out, settings, data.count) as store:
        bar = _progress(data.count, len(store.done), progress)
        try:
            explained = runner.run(job, store, bar)
        finally:
            bar.close()
        metrics_path = store.finish({"seggradcam.model": getattr(keras_model, "name", "")})
        images = store.count
        report_path = None
        if report:
            from .report import write_report

            report_path = write_report(
                store.out / REPORT_FILE,
                metrics_path,
                store.heatmaps_path,
                settings,
                title=f"Seg-Grad-CAM audit of {getattr(keras_model, 'name', 'a model')}",
                source=data.describe(),
            )
    rows = require("pyarrow.parquet").read_metadata(metrics_path).num_rows
    return AuditResult(
        Path(out), metrics_path, store.heatmaps_path, report_path, images, explained, rows, settings.layers, settings.targets
    )


def _backend(backend, ray_address, num_workers):
    if isinstance(backend, str):
        if backend == "local":
            if ray_address is not None or num_workers is not None:
                raise ValueError("ray_address and num_workers apply to backend='ray' only")
            return LocalBackend()
        if backend == "ray":
            from .ray_backend import RayBackend

            return RayBackend(address=ray_address, num_workers=num_workers)
        raise ValueError(f"backend must be 'local' or 'ray' (or a backend object), got {backend!r}")
    if not callable(getattr(backend, "run", None)):
        raise TypeError(f"backend must be 'local', 'ray' or an object with a run(job, store, progress) method, got {backend!r}")
    return backend


def _load(model, safe_mode: bool):
    if isinstance(model, (str, os.PathLike)):
        load_model = import_with_tensorflow("seggradcam.models").load_model
        return load_model(model, safe_mode=safe_mode), Path(model)
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model or the path of a .keras file, got {type(model).__name__}")
    return model, None


def _channels(model) -> int | None:
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else None
    return None if shape is None or shape[-1] is None else int(shape[-1])


def _model_digest(model) -> str:
    """sha256 of the model's architecture and weights: a resumed audit must use the same model."""
    digest = hashlib.sha256()
    try:
        digest.update(model.to_json().encode())
    except Exception:  # a model whose config cannot be serialised: weights and names only
        digest.update(type(model).__name__.encode())
    for weight in model.weights:
        value = np.asarray(weight.numpy())
        digest.update(f"{weight.path}{value.shape}{value.dtype}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def _progress(total: int | None, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="image", desc="audit", disable=not enabled, smoothing=0.1)
