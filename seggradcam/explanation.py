"""The result of an explanation: plain numpy arrays and what they mean."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from . import postprocess
from .diagnostics import Diagnosis, diagnose


@dataclasses.dataclass
class Explanation:
    """Seg-Grad-CAM maps for N images, T targets and L layers.

    Attributes:
        heatmaps: float32 (N, T, L, H, W): ReLU, bilinearly upsampled to the input size,
            each map scaled to [0, 1] (an all-zero map stays zero).
        raw: layer name -> (N, T, h, w) signed maps before the ReLU, at layer resolution.
        weights: layer name -> (N, T, k) channel weights alpha.
        scores: (N, T) the explained scores y.
        masks: (N, T, H_out, W_out) weights over output pixels actually used.
        layers: layer names, in the order of axis L.
        targets: the targets, in the order of axis T.
        classes: (N, T) the class explained for each image and target.
        prediction: (N, H_out, W_out) predicted label map.
        explained: which tensor was explained, in words.
        method: the method that produced the maps.
        images: the (N, H, W, C) float32 images that were explained.
        guided_gradients: (N, T, H, W, C) guided-backpropagation gradients of each target's
            score, when ``explain(..., guided=True)``; else None.

    Views of the same raw maps (all (N, T, L, H, W), computed on first use):
        ``signed`` in [-1, 1], ``counterfactual`` in [0, 1] (ReLU of the negated map), and
        ``guided_seg_grad_cam`` (N, T, L, H, W, C) = guided gradients x heatmaps.

    Example:
        >>> expl = explainer.explain(images, [1, 2])     # doctest: +SKIP
        >>> expl.heatmaps.shape                           # doctest: +SKIP
        (4, 2, 1, 128, 128)
    """

    heatmaps: np.ndarray
    raw: dict
    weights: dict
    scores: np.ndarray
    masks: np.ndarray
    layers: list
    targets: list
    classes: np.ndarray
    prediction: np.ndarray
    explained: str
    method: str
    images: np.ndarray
    guided_gradients: np.ndarray | None = None

    def view(self, mode: str = "positive") -> np.ndarray:
        """The maps of one view: ``"positive"`` (= heatmaps), ``"signed"`` or ``"counterfactual"``.

        Returns:
            float32 (N, T, L, H, W); each map upsampled bilinearly to the input size, then
            scaled (see ``seggradcam.postprocess``).
        """
        if mode == "positive":
            return self.heatmaps
        size = self.images.shape[1:3]
        return np.stack([postprocess.render(self.raw[name], size, mode).numpy() for name in self.layers], axis=2)

    @functools.cached_property
    def signed(self) -> np.ndarray:
        """Signed maps (N, T, L, H, W) scaled to [-1, 1] by their maximum absolute value."""
        return self.view("signed")

    @functools.cached_property
    def counterfactual(self) -> np.ndarray:
        """Counterfactual maps (N, T, L, H, W) in [0, 1]: ReLU of minus the signed map."""
        return self.view("counterfactual")

    @property
    def guided_seg_grad_cam(self) -> np.ndarray:
        """Guided Seg-Grad-CAM (N, T, L, H, W, C): guided gradients times the heatmaps."""
        if self.guided_gradients is None:
            raise ValueError("no guided gradients: call explain(images, targets, guided=True)")
        return self.guided_gradients[:, :, np.newaxis] * self.heatmaps[..., np.newaxis]

    def save(self, path):
        """Write this explanation to an .npz file (no pickle); read it with ``load_explanation``."""
        from .io import save_explanation

        return save_explanation(self, path)

    def plot(self, image_index: int = 0, class_names=None, path=None, **options):
        """Draw the targets x layers grid (see ``seggradcam.viz.plot_grid``); returns the Figure."""
        from .viz import plot_grid

        return plot_grid(self, image_index=image_index, class_names=class_names, path=path, **options)

    def diagnose(self) -> Diagnosis:
        """Negative-gradient analysis per image, target and layer; ``print()`` it to read it.

        Example:
            >>> print(expl.diagnose())     # doctest: +SKIP
        """
        return diagnose(self.raw, self.weights, self.layers, self.targets)

    def heatmap(self, image: int = 0, target: int = 0, layer=0) -> np.ndarray:
        """One (H, W) heatmap; ``layer`` is an index into ``layers`` or a layer name.

        Example:
            >>> expl.heatmap(0, 0, "bottleneck").shape    # doctest: +SKIP
            (128, 128)
        """
        if isinstance(layer, str):
            if layer not in self.layers:
                raise KeyError(f"layer {layer!r} was not explained; explained layers are {self.layers}")
            layer = self.layers.index(layer)
        return self.heatmaps[image, target, layer]

    def __repr__(self) -> str:
        n, t, l, h, w = self.heatmaps.shape
        return (
            f"Explanation({n} image(s) x {t} target(s) x {l} layer(s), {h}x{w}, method={self.method!r}, "
            f"layers={self.layers}, explained={self.explained!r})"
        )
