"""seggradcam: Seg-Grad-CAM explanations for Keras 3 semantic segmentation networks.

The public names are imported on first use (PEP 562), so ``import seggradcam`` and the
``seggradcam --help`` command do not start TensorFlow. A missing TensorFlow is reported at
that first use, with the pip command that installs it.

Submodules (``sgc.models``, ``sgc.data``, ``sgc.viz``, ...) load on first use as well.

Example:
    >>> import seggradcam as sgc
    >>> model = sgc.models.load_pretrained("shapes_unet")
    >>> expl = sgc.SegGradCAM(model, layers="all").explain(sgc.data.load_samples("shapes")["images"][0], [1, 2])
    >>> expl.heatmaps.shape[:3]
    (1, 2, 18)
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from .audit import audit  # eager and light (no TensorFlow): the function must win over the same-named subpackage

__version__ = "0.1.0"

__all__ = [
    "ClassTarget",
    "ComponentTarget",
    "Diagnosis",
    "EmptyMapWarning",
    "Explanation",
    "PixelTarget",
    "ProbabilityWarning",
    "RegionTarget",
    "SegGradCAM",
    "SegGradCAMWarning",
    "Target",
    "audit",
    "load_explanation",
    "save_explanation",
    "seg_grad_cam",
]

# public name -> the module that defines it
_SOURCES = {
    "ClassTarget": "targets",
    "ComponentTarget": "targets",
    "PixelTarget": "targets",
    "RegionTarget": "targets",
    "Target": "targets",
    "Diagnosis": "diagnostics",
    "EmptyMapWarning": "warning_types",
    "ProbabilityWarning": "warning_types",
    "SegGradCAMWarning": "warning_types",
    "Explanation": "explanation",
    "SegGradCAM": "explainer",
    "seg_grad_cam": "explainer",
    "load_explanation": "explanation",
    "save_explanation": "explanation",
}

if TYPE_CHECKING:  # for type checkers and editors; at run time the names load lazily
    from .diagnostics import Diagnosis
    from .explainer import SegGradCAM, seg_grad_cam
    from .explanation import Explanation, load_explanation, save_explanation
    from .targets import ClassTarget, ComponentTarget, PixelTarget, RegionTarget, Target
    from .warning_types import EmptyMapWarning, ProbabilityWarning, SegGradCAMWarning


def __getattr__(name: str):
    from ._deps import import_with_tensorflow

    source = _SOURCES.get(name)
    if source is not None:
        value = getattr(import_with_tensorflow(f"{__name__}.{source}"), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = import_with_tensorflow(f"{__name__}.{name}")  # a submodule, e.g. sgc.models
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
