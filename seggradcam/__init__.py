"""seggradcam: Seg-Grad-CAM explanations for Keras 3 semantic segmentation networks.

Example:
    >>> import seggradcam as sgc
    >>> model = sgc.models.load_pretrained("shapes_unet")
    >>> expl = sgc.SegGradCAM(model, layers="all").explain(sgc.data.load_samples("shapes")["images"][0], [1, 2])
    >>> expl.heatmaps.shape[:3]
    (1, 2, 18)
"""

from .diagnostics import Diagnosis
from .explainer import SegGradCAM, seg_grad_cam
from .explanation import Explanation, load_explanation, save_explanation
from .targets import ClassTarget, ComponentTarget, PixelTarget, RegionTarget, Target
from .warning_types import EmptyMapWarning, ProbabilityWarning, SegGradCAMWarning

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
