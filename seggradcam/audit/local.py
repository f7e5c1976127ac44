"""The local backend: read, explain and write batch after batch in this process.

Memory stays flat: one batch of images, maps and rows is alive at a time, and each batch is
committed to the store before the next is read.
"""

from __future__ import annotations

from .job import AuditJob
from .store import AuditStore

__all__ = ["LocalBackend"]


class LocalBackend:
    """Runs an audit in this process (the default, ``backend="local"``).

    Example:
        >>> LocalBackend().name
        'local'
    """

    name = "local"

    def run(self, job: AuditJob, store: AuditStore, progress) -> int:
        """Explain every image not done yet; returns how many were explained.

        Args:
            job: the audit.
            store: the output folder; each batch is committed before the next is read.
            progress: a tqdm-like bar (``update(n)``).
        """
        computer = job.computer()
        explained = 0
        for batch in job.source.batches(store.done, job.batch_size):
            explained += store.commit(computer(batch))
            progress.update(len(batch.indices))
        return explained
