"""What a backend needs to run an audit: the explainer, the target plan, the source."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .compute import BatchComputer
from .selection import TargetPlan
from .sources import Source

__all__ = ["AuditJob"]


@dataclasses.dataclass(frozen=True)
class AuditJob:
    """One audit, as the backends see it.

    Attributes:
        model: the keras model (in this process).
        model_file: the ``.keras`` file it was loaded from, or None for a model object.
        safe_mode: whether the file is loaded with Keras safe mode.
        explainer: a :class:`~seggradcam.SegGradCAM` of ``model`` (in this process).
        logits: the explainer's ``logits`` argument, for workers that build their own.
        plan: the target slots.
        source: the images.
        batch_size: images per batch.
        channels: the model's input channels, or None if unknown.
    """

    model: object
    model_file: Path | None
    safe_mode: bool
    explainer: object
    logits: object
    plan: TargetPlan
    source: Source
    batch_size: int
    channels: int | None

    @property
    def layers(self) -> list[str]:
        return list(self.explainer.layers)

    def computer(self) -> BatchComputer:
        """A :class:`BatchComputer` with this process's explainer."""
        return BatchComputer(self.explainer, self.plan, self.channels)
