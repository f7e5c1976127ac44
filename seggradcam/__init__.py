"""seggradcam: Seg-Grad-CAM explanations for Keras 3 semantic segmentation networks.

Example:
    >>> import seggradcam as sgc
    >>> expl = sgc.SegGradCAM(model, layers="all").explain(images, [1, 2])   # doctest: +SKIP
"""

from .diagnostics import Diagnosis, EmptyMapWarning, ProbabilityWarning, SegGradCAMWarning
from .explainer import SegGradCAM, seg_grad_cam
from .explanation import Explanation
from .io import load_explanation, save_explanation
from .targets import ClassTarget, ComponentTarget, PixelTarget, RegionTarget, Target

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
    "load_explanation",
    "save_explanation",
    "seg_grad_cam",
]

__version__ = "0.1.0"
