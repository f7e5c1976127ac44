"""The audit's output folder: heatmaps, the table in committed parts, and what is done.

Layout of ``DIR``::

    metrics.parquet        the table, assembled (sorted) once every image is done
    heatmaps.zarr/         Zarr v3 group: "heatmaps" (N, T, L, H, W) float16 and
                           "thumbnails" (N, h, w, 3) uint8, both chunked one image per chunk
    report.html            written by seggradcam.audit.report
    .seggradcam-audit/     settings.json, parts/part-*.parquet, lock

Crash safety. A batch is committed in this order:

1. its heatmaps and thumbnails are written (Zarr writes each chunk to a temporary file and
   renames it) and the chunk files are fsynced;
2. its rows go to ``parts/.tmp-*.parquet`` with the batch's image indices in the file's
   metadata; the file is fsynced and renamed to ``parts/part-<first>-<last>.parquet``,
   then the folder is fsynced.

The rename is the commit: an image is done exactly when a part file names it. A crash
before it leaves a temporary file (deleted at the next start) and chunks of images that are
not done (overwritten when they are redone); nothing committed is touched again. A second
run with the same folder checks that its settings match (``settings.json``), skips the done
images and, at the end, assembles ``metrics.parquet`` from the parts, sorted by
(image_index, target_index, layer_index), with one row per image x target x layer.

Example:
    >>> import tempfile
    >>> settings = AuditSettings(model="m", explained="logits", layers=("conv",), targets=("class 0",),
    ...                          target_classes=(0,), source={"kind": "array", "count": 2},
    ...                          image_shape=(4, 4, 3), thumbnail_shape=(4, 4, 3), key_type="int", with_truth=False)
    >>> with AuditStore(tempfile.mkdtemp(), settings, count=2) as store:
    ...     print(store.done, store.heatmaps.shape)
    set() (2, 1, 1, 4, 4)
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from pathlib import Path

import numpy as np

from ._extras import require
from .compute import BatchResult
from .table import SORT_KEYS, schema, to_table

__all__ = ["AuditSettings", "AuditStore", "STATE_DIR", "METRICS_FILE", "HEATMAPS_DIR", "REPORT_FILE"]

STATE_DIR = ".seggradcam-audit"
METRICS_FILE = "metrics.parquet"
HEATMAPS_DIR = "heatmaps.zarr"
REPORT_FILE = "report.html"
FORMAT = 1
IMAGES_KEY = b"seggradcam.audit.images"
ZSTD_LEVEL = 3


@dataclasses.dataclass(frozen=True)
class AuditSettings:
    """Everything that must match for a run to continue an earlier one in the same folder.

    Attributes:
        model: a digest of the model's weights and structure.
        explained: which tensor is explained (``SegGradCAM.explained``).
        layers, targets: the layer and target-slot names (axes L and T).
        target_classes: each slot's fixed class, or -1.
        source: the source's fingerprint.
        image_shape, thumbnail_shape: (H, W, C) and (h, w, 3).
        key_type: ``"string"`` or ``"int"`` (type of the ``image`` column).
        with_truth: whether ground-truth metrics are computed.
    """

    model: str
    explained: str
    layers: tuple
    targets: tuple
    target_classes: tuple
    source: dict
    image_shape: tuple
    thumbnail_shape: tuple
    key_type: str
    with_truth: bool

    def to_json(self) -> dict:
        values = dataclasses.asdict(self)
        values["format"] = FORMAT
        return json.loads(json.dumps(values))  # tuples become lists, as when read back


class AuditStore:
    """Writes one audit folder (see the module docstring). Use as a context manager.

    Args:
        out: the folder (created if missing).
        settings: the run's :class:`AuditSettings`; an existing folder must have the same.
        count: number of images, or None when unknown (the arrays then grow).
    """

    def __init__(self, out, settings: AuditSettings, count: int | None):
        self.zarr = require("zarr")
        self.pq = require("pyarrow.parquet")
        self.out = Path(out)
        self.settings = settings
        self.state = self.out / STATE_DIR
        self.parts = self.state / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.state / "lock", self.out)
        try:
            self._check_settings()
            for leftover in self.parts.glob(".tmp-*"):
                leftover.unlink()
            self.done = self._read_done()
            self._open_arrays(count)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the folder's lock."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    @property
    def metrics_path(self) -> Path:
        return self.out / METRICS_FILE

    @property
    def heatmaps_path(self) -> Path:
        return self.out / HEATMAPS_DIR

    @property
    def count(self) -> int:
        """Images the arrays hold room for (the source's length once known)."""
        return int(self.heatmaps.shape[0])

    def _check_settings(self) -> None:
        path = self.state / "settings.json"
        wanted = self.settings.to_json()
        if path.is_file():
            found = json.loads(path.read_text())
            differ = [key for key in sorted(set(wanted) | set(found)) if wanted.get(key) != found.get(key)]
            if differ:
                details = "; ".join(f"{key}: {_short(wanted.get(key))} now vs {_short(found.get(key))} there" for key in differ[:3])
                raise ValueError(
                    f"out folder {self.out} holds an audit with other settings ({details}); "
                    "use another out folder, or delete this one to start over"
                )
            return
        _write_atomic(path, json.dumps(wanted, indent=1).encode())

    def _read_done(self) -> set:
        done = set()
        for part in sorted(self.parts.glob("part-*.parquet")):
            metadata = self.pq.read_schema(part).metadata or {}
            done.update(json.loads(metadata[IMAGES_KEY]))
        return done

    def _open_arrays(self, count: int | None) -> None:
        zarr = self.zarr
        settings = self.settings
        slots, layers = len(settings.targets), len(settings.layers)
        height, width = settings.image_shape[:2]
        rows = count if count is not None else 0
        group = zarr.open_group(str(self.heatmaps_path), mode="a", zarr_format=3)
        if "heatmaps" in group:
            self.heatmaps, self.thumbnails = group["heatmaps"], group["thumbnails"]
            if count is not None and self.heatmaps.shape[0] < count:
                self._grow(count)
            return
        compressors = zarr.codecs.ZstdCodec(level=ZSTD_LEVEL)
        self.heatmaps = group.create_array(
            "heatmaps",
            shape=(rows, slots, layers, height, width),
            chunks=(1, slots, layers, height, width),
            dtype="float16",
            fill_value=np.nan,
            compressors=compressors,
            dimension_names=("image", "target", "layer", "y", "x"),
        )
        self.thumbnails = group.create_array(
            "thumbnails",
            shape=(rows,) + tuple(settings.thumbnail_shape),
            chunks=(1,) + tuple(settings.thumbnail_shape),
            dtype="uint8",
            fill_value=0,
            compressors=compressors,
            dimension_names=("image", "y", "x", "rgb"),
        )
        group.attrs.update(
            {
                "layers": list(settings.layers),
                "targets": list(settings.targets),
                "target_classes": list(settings.target_classes),
                "explained": settings.explained,
                "axes": "heatmaps[image_index, target_index, layer_index, y, x]; image_index, target_index and "
                "layer_index as in metrics.parquet; NaN where a target does not apply to an image",
            }
        )

    def _grow(self, count: int) -> None:
        self.heatmaps.resize((count,) + self.heatmaps.shape[1:])
        self.thumbnails.resize((count,) + self.thumbnails.shape[1:])

    def commit(self, result: BatchResult) -> int:
        """Write one batch's heatmaps and rows and mark its images done (see the module
        docstring). Images already done are left as they are.

        Returns:
            The number of images newly done.
        """
        fresh = np.array([index not in self.done for index in result.indices.tolist()], bool)
        if not fresh.any():
            return 0
        if not fresh.all():
            result = _select(result, fresh)
        last = int(result.indices.max())
        if last >= self.count:
            self._grow(last + 1)
        for start, stop, rows in _runs(result.indices):
            self.heatmaps[start:stop] = result.heatmaps[rows]
            self.thumbnails[start:stop] = result.thumbnails[rows]
        _fsync_chunks(self.heatmaps_path / "heatmaps", result.indices, self.heatmaps.ndim)
        _fsync_chunks(self.heatmaps_path / "thumbnails", result.indices, self.thumbnails.ndim)
        settings = self.settings
        table = to_table(result, settings.targets, list(settings.layers), settings.with_truth, settings.key_type)
        indices = sorted(result.indices.tolist())
        table = table.replace_schema_metadata({IMAGES_KEY: json.dumps(indices).encode()})
        temporary = self.parts / f".tmp-{uuid.uuid4().hex}.parquet"
        self.pq.write_table(table, temporary, compression="zstd")
        _fsync_file(temporary)
        final = self.parts / f"part-{indices[0]:010d}-{indices[-1]:010d}.parquet"  # unique: an image is in one part
        os.replace(temporary, final)
        _fsync_dir(self.parts)
        self.done.update(indices)
        return len(indices)

    def finish(self, metadata: dict | None = None) -> Path:
        """Assemble ``metrics.parquet`` from the parts (sorted, one row per image x target x
        layer) and write it atomically. Returns its path.

        Raises:
            RuntimeError: two parts hold the same row (a broken folder; never expected).
        """
        pa = require("pyarrow")
        settings = self.settings
        target_schema = schema(settings.with_truth, settings.key_type)
        tables = [self.pq.read_table(part).replace_schema_metadata(None) for part in sorted(self.parts.glob("part-*.parquet"))]
        table = pa.concat_tables(tables) if tables else target_schema.empty_table()
        table = table.sort_by([(key, "ascending") for key in SORT_KEYS])
        keys = np.stack([table[key].to_numpy() for key in SORT_KEYS], axis=1)
        if len(keys) > 1 and (np.diff(keys, axis=0) == 0).all(axis=1).any():
            raise RuntimeError(f"the parts in {self.parts} hold duplicate rows; delete {self.out} and run the audit again")
        meta = {"seggradcam.audit": json.dumps(settings.to_json())}
        meta.update(metadata or {})
        table = table.replace_schema_metadata(meta)
        temporary = self.state / f".tmp-{uuid.uuid4().hex}.parquet"
        self.pq.write_table(table, temporary, compression="zstd")
        _fsync_file(temporary)
        os.replace(temporary, self.metrics_path)
        _fsync_dir(self.out)
        return self.metrics_path


def _select(result: BatchResult, keep: np.ndarray) -> BatchResult:
    values = {}
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        values[field.name] = None if value is None else value[keep]
    return BatchResult(**values)


def _runs(indices: np.ndarray):
    """(start, stop, rows) for each run of consecutive image indices."""
    order = np.argsort(indices, kind="stable")
    sorted_indices = indices[order]
    breaks = np.nonzero(np.diff(sorted_indices) != 1)[0] + 1
    for rows in np.split(order, breaks):
        yield int(indices[rows[0]]), int(indices[rows[-1]]) + 1, rows


def _fsync_chunks(array_dir: Path, indices: np.ndarray, ndim: int) -> None:
    """fsync the chunk files of these images (one chunk per image: key c/<i>/0/.../0)."""
    tail = "/".join(["0"] * (ndim - 1))
    for index in indices.tolist():
        chunk = array_dir / "c" / str(index) / tail
        if chunk.is_file():  # an all-fill chunk may not be written at all
            _fsync_file(chunk)


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:  # some platforms cannot open or fsync a folder
        pass


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".tmp-{uuid.uuid4().hex}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _lock(path: Path, out: Path):
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock
        return descriptor
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        raise ValueError(f"another audit is writing to {out} right now; wait for it, or use another out folder") from None
    return descriptor


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
