"""The Ray backend: the same audit on Ray Data, one compiled explainer per actor.

``ray.data`` reads the source (a folder with ``read_binary_files``; an array or a
``tf.data`` source is read on the driver and handed over with ``from_items``), and
``map_batches`` runs :class:`AuditWorker`, a callable class, in a pool of actors: each
loads the model once, builds one :class:`~seggradcam.SegGradCAM` and runs the same
:class:`~seggradcam.audit.compute.BatchComputer` as the local backend. The driver gathers
the results and commits them to the output folder batch by batch, so the table is the same
as the local backend's, and an interrupted Ray run resumes like a local one (or with the
local backend). Ray restarts an actor that dies and runs its batch again (Ray Data's
defaults for actor pools); the store ignores any image already committed.

What workers need:
- the model travels as the bytes of a ``.keras`` file (the given file, or the model object
  saved by the driver), so it must be loadable where the workers run: custom layers must be
  registered (``keras.saving.register_keras_serializable``) in a module the workers import;
  a model that Keras cannot save and load cannot use this backend (use the local one);
- a folder source's files (and masks) are read by path: on a cluster they must be on a
  file system every node sees.

Ray starts a local instance when no address is given and none is running (and shuts it
down afterwards); with ``address`` it joins that cluster. Ray is imported only here, on use.

Example:
    >>> backend = RayBackend(num_workers=2)
    >>> backend.name
    'ray'
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np

from ._extras import require
from .compute import BatchComputer, BatchResult
from .job import AuditJob
from .selection import TargetPlan
from .sources import Batch, FolderSource, decode_image, decode_mask
from .store import AuditStore

__all__ = ["AuditWorker", "RayBackend", "WorkerSpec", "READ_CPUS"]

READ_CPUS = 0  # CPUs a file-reading task reserves: reading is I/O, and the actors hold the CPUs (a reserved
# share would wait for CPUs the actors never free: with 2 CPUs and 2 actors the run hangs)


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What an :class:`AuditWorker` needs to build its explainer (sent once per actor).

    Attributes:
        model: the ``.keras`` file's bytes, or a Ray object reference to them.
        safe_mode: load the model with Keras safe mode.
        layers: the layer names resolved by the driver.
        logits: the explainer's ``logits`` argument.
        plan: the target slots.
        channels: the model's input channels.
        files: for a folder source: (absolute paths, keys, mask paths or None), or a
            reference to them; None otherwise.
    """

    model: object
    safe_mode: bool
    layers: tuple
    logits: object
    plan: TargetPlan
    channels: int | None
    files: object = None


class AuditWorker:
    """A Ray Data callable class: one loaded model and compiled explainer per actor.

    Called with a batch of rows (numpy format) it returns the
    :meth:`~seggradcam.audit.compute.BatchResult.to_columns` of the explained batch.
    """

    def __init__(self, spec: WorkerSpec):
        from ..explainer import SegGradCAM
        from ..models import load_model

        model_bytes = _resolve(spec.model)
        with tempfile.TemporaryDirectory(prefix="seggradcam-audit-") as folder:
            path = Path(folder) / "model.keras"
            path.write_bytes(model_bytes)
            model = load_model(path, safe_mode=spec.safe_mode)
        explainer = SegGradCAM(model, layers=list(spec.layers), logits=spec.logits)
        if explainer.layers != list(spec.layers):
            raise RuntimeError(f"the worker resolved layers {explainer.layers}, the driver {list(spec.layers)}")
        self.computer = BatchComputer(explainer, spec.plan, spec.channels)
        self.files = None
        if spec.files is not None:
            paths, keys, masks = _resolve(spec.files)
            self.files = ({os.path.normpath(p): i for i, p in enumerate(paths)}, keys, masks)

    def __call__(self, rows: dict) -> dict:
        batch = self._batch(rows) if self.files is None else self._file_batch(rows)
        return self.computer(batch).to_columns()

    def _batch(self, rows: dict) -> Batch:
        indices = np.asarray(rows["index"], np.int64)
        keys = tuple(rows["key"].tolist())
        truth = np.asarray(rows["mask"], np.int32) if "mask" in rows else None
        return Batch(indices, keys, np.asarray(rows["image"], np.float32), truth)

    def _file_batch(self, rows: dict) -> Batch:
        index_of, keys, masks = self.files
        indices = [index_of[os.path.normpath(str(path))] for path in rows["path"]]
        images = np.stack([decode_image(bytes(data), keys[i]) for data, i in zip(rows["bytes"], indices)])
        truth = None
        if masks is not None:
            truth = np.stack([decode_mask(Path(masks[i]).read_bytes(), masks[i]) for i in indices])
        return Batch(np.asarray(indices, np.int64), tuple(keys[i] for i in indices), images, truth)


def _resolve(value):
    if type(value).__name__ == "ObjectRef":
        return require("ray").get(value)
    return value


class RayBackend:
    """Runs an audit on Ray Data (``backend="ray"``).

    Args:
        address: a running cluster's address (``"ray://host:10001"``, ``"host:6379"`` or
            ``"auto"``); None uses the Ray instance this process already started, or starts
            a local one (and stops it at the end).
        num_workers: explainer actors; default: the cluster's CPUs / ``cpus_per_worker``.
        cpus_per_worker: CPUs each actor reserves (each runs TensorFlow's own threads).
        init_options: extra keyword arguments for ``ray.init`` (e.g. ``num_cpus``,
            ``_temp_dir``) when this backend starts or joins Ray.
        worker_class: the actor class (a subclass of :class:`AuditWorker`); for extending
            and testing.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_workers: int | None = None,
        cpus_per_worker: float = 1.0,
        init_options: dict | None = None,
        worker_class: type = AuditWorker,
    ):
        if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1):
            raise ValueError(f"num_workers must be an int >= 1 or None, got {num_workers!r}")
        if not cpus_per_worker > 0:
            raise ValueError(f"cpus_per_worker must be > 0, got {cpus_per_worker!r}")
        self.address = address
        self.num_workers = num_workers
        self.cpus_per_worker = float(cpus_per_worker)
        self.init_options = dict(init_options or {})
        self.worker_class = worker_class

    def run(self, job: AuditJob, store: AuditStore, progress) -> int:
        """Explain every image not done yet on Ray; returns how many were explained."""
        ray = require("ray")
        require("ray.data")
        model_bytes = _model_bytes(job)
        started = self._connect(ray)
        try:
            dataset, files = self._dataset(job, store.done)
            if dataset is None:
                return 0
            spec = WorkerSpec(
                model=ray.put(model_bytes),
                safe_mode=job.safe_mode if job.model_file is not None else False,
                layers=tuple(job.layers),
                logits=job.logits,
                plan=job.plan,
                channels=job.channels,
                files=None if files is None else ray.put(files),
            )
            workers = self.num_workers or max(1, int(ray.cluster_resources().get("CPU", 1) // self.cpus_per_worker))
            results = dataset.map_batches(
                self.worker_class,
                fn_constructor_kwargs={"spec": spec},
                batch_size=job.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=self.cpus_per_worker,
            )
            explained = 0
            for columns in results.iter_batches(batch_size=None, batch_format="numpy"):
                result = BatchResult.from_columns(columns)
                explained += store.commit(result)
                progress.update(len(result))
            return explained
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray) -> bool:
        """Join or start Ray; True when this call started (or joined) it and must stop it."""
        if ray.is_initialized():
            if self.address is not None:
                raise ValueError(
                    f"Ray is already running in this process; cannot join {self.address!r} as well "
                    "(call ray.shutdown() first, or leave ray_address unset to use the running instance)"
                )
            return False
        options = {"include_dashboard": False, **self.init_options}
        ray.init(address=self.address, **options)
        return True

    def _dataset(self, job: AuditJob, done: set):
        """The Ray dataset of images not done yet (None when nothing is left) and, for a
        folder source, the (paths, keys, mask paths) the workers look rows up in."""
        ray = require("ray")
        source = job.source
        if isinstance(source, FolderSource):
            todo = source.todo(done)
            if not todo:
                return None, None
            paths = [str(path.resolve()) for path in source.paths]
            masks = None if source.mask_paths is None else [str(path.resolve()) for path in source.mask_paths]
            dataset = ray.data.read_binary_files([paths[i] for i in todo], include_paths=True, num_cpus=READ_CPUS)
            return dataset, (paths, list(source.keys), masks)
        rows = []
        for batch in source.batches(done, job.batch_size):
            for row in range(len(batch.indices)):
                item = {"index": int(batch.indices[row]), "key": batch.keys[row], "image": batch.images[row]}
                if batch.truth is not None:
                    item["mask"] = batch.truth[row]
                rows.append(item)
        if not rows:
            return None, None
        return ray.data.from_items(rows), None


def _model_bytes(job: AuditJob) -> bytes:
    """The model as ``.keras`` bytes, checked to load back here (so workers can load it)."""
    from ..models import load_model

    if job.model_file is not None:
        return Path(job.model_file).read_bytes()
    with tempfile.TemporaryDirectory(prefix="seggradcam-audit-") as folder:
        path = Path(folder) / "model.keras"
        try:
            job.model.save(path)
            load_model(path, safe_mode=False)
        except Exception as error:  # keras raises many types for models it cannot serialise
            raise ValueError(
                "the Ray backend sends the model to its workers as a .keras file, and this model could not be "
                f"saved and loaded back ({type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}). "
                "Register custom layers with keras.saving.register_keras_serializable in a module the workers "
                "import, pass the path of a .keras file, or use backend='local'"
            ) from None
        return path.read_bytes()
