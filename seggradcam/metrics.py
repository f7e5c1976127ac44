"""How good an explanation is: localisation, faithfulness and bias, batched over maps.

Shapes: heatmaps are (N, T, L, H, W) in [0, 1]; masks are (N, T, H, W) (a target mask or a
ground-truth mask broadcast to the targets); a region for the bias share is (H, W) or
(N, H, W). Every function returns an (N, T, L) array; NaN marks a map that is all zero.
"""

from __future__ import annotations

import numpy as np

__all__ = ["baseline_image", "bias_share", "energy_inside", "faithfulness", "map_iou", "pointing_game", "BASELINES"]

BASELINES = ("blur", "mean", "zero")
BLUR_DIVISOR = 16  # the blur baseline's sigma is the image's longer side over this
PENDING_BATCHES = 4  # perturbed images gathered before they are scored, in batches


def _masks(masks, heatmaps) -> np.ndarray:
    masks = np.asarray(masks) > 0
    if masks.ndim == 2:
        masks = np.broadcast_to(masks, heatmaps.shape[:2] + masks.shape)
    elif masks.ndim == 3:
        masks = np.broadcast_to(masks[:, np.newaxis], heatmaps.shape[:2] + masks.shape[1:])
    if masks.shape[-2:] != heatmaps.shape[-2:]:
        raise ValueError(f"mask size {masks.shape[-2:]} does not match the heatmaps' size {heatmaps.shape[-2:]}")
    return masks[:, :, np.newaxis]


def energy_inside(heatmaps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each heatmap's mass inside a mask (pixels with weight > 0).

    Example:
        >>> float(energy_inside(np.ones((1, 1, 1, 2, 2)), np.array([[[[1, 0], [0, 0]]]]))[0, 0, 0])
        0.25
    """
    heatmaps = np.asarray(heatmaps, np.float64)
    inside = _masks(masks, heatmaps)
    total = heatmaps.sum(axis=(-2, -1))
    within = (heatmaps * inside).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, within / np.where(total > 0, total, 1), np.nan)


def pointing_game(heatmaps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """1.0 where a map's maximum lies inside the mask, 0.0 where not, NaN for an empty map.

    Ties: the first maximum in raster order counts.

    Example:
        >>> float(pointing_game(np.array([[[[[0, 1], [0, 0]]]]]), np.array([[[[0, 1], [0, 0]]]]))[0, 0, 0])
        1.0
    """
    heatmaps = np.asarray(heatmaps, np.float64)
    inside = np.broadcast_to(_masks(masks, heatmaps), heatmaps.shape)
    flat = heatmaps.reshape(heatmaps.shape[:3] + (-1,))
    peak = flat.argmax(axis=-1)
    hit = np.take_along_axis(inside.reshape(flat.shape), peak[..., np.newaxis], axis=-1)[..., 0]
    return np.where(flat.max(axis=-1) > 0, hit.astype(np.float64), np.nan)


def map_iou(heatmaps: np.ndarray, masks: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """IoU between ``heatmap >= threshold`` and the mask.

    Example:
        >>> float(map_iou(np.array([[[[[1, 1], [0, 0]]]]]), np.array([[[[1, 0], [0, 0]]]]))[0, 0, 0])
        0.5
    """
    heatmaps = np.asarray(heatmaps, np.float64)
    inside = _masks(masks, heatmaps)
    hot = heatmaps >= threshold
    union = (hot | inside).sum(axis=(-2, -1))
    inter = (hot & inside).sum(axis=(-2, -1))
    empty = heatmaps.max(axis=(-2, -1)) <= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(empty | (union == 0), np.nan, inter / np.where(union > 0, union, 1))


def bias_share(heatmaps: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Map mass on a region divided by the region's share of the image area.

    1 means the region gets the mass its size predicts; well above 1 means the map
    concentrates there (the paper's bias experiment: the biased tile).

    Example:
        >>> float(bias_share(np.array([[[[[1, 0], [0, 0]]]]]), np.array([[1, 0], [0, 0]]))[0, 0, 0])
        4.0
    """
    heatmaps = np.asarray(heatmaps, np.float64)
    inside = _masks(region, heatmaps)
    area = inside.mean(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return energy_inside(heatmaps, np.asarray(region)) / area


def baseline_image(image: np.ndarray, baseline: str) -> np.ndarray:
    """The replacement values for removed pixels: a strong blur, the channel mean, or zeros."""
    import cv2

    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; valid baselines are {BASELINES}")
    if baseline == "zero":
        return np.zeros_like(image)
    if baseline == "mean":
        return np.broadcast_to(image.mean(axis=(0, 1)), image.shape).astype(image.dtype)
    sigma = max(image.shape[:2]) / BLUR_DIVISOR
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return blurred.reshape(image.shape)


def faithfulness(explainer, expl, mode: str = "deletion", steps: int = 16, baseline: str = "blur", batch_size: int = 32) -> dict:
    """Deletion or insertion curves for every map of an explanation.

    Pixels are ranked by the heatmap (highest first). Deletion replaces the top k/steps of
    them with the baseline; insertion starts from the baseline and puts the top pixels back.
    At each step the target's score is recomputed exactly as the explanation scored it:
    with its own mask and class (``expl.masks``, ``expl.classes``) and, for a target with
    ground truth, as the loss against it, by the explainer's compiled scoring
    (``seggradcam.scoring``), in batches.

    Args:
        explainer: the :class:`~seggradcam.SegGradCAM` that produced ``expl``.
        expl: the explanation.
        mode: ``"deletion"`` or ``"insertion"``.
        steps: number of steps; the curve has ``steps + 1`` points.
        baseline: ``"blur"``, ``"mean"`` or ``"zero"``.
        batch_size: images per forward pass.

    Returns:
        A dict: ``curves`` (N, T, L, steps + 1) scores, ``fractions`` (steps + 1,),
        ``auc`` (N, T, L) the area under the curve over the fraction axis, and
        ``normalised_auc``: the AUC divided by |score of the unchanged image|.
        For deletion a lower AUC is better; for insertion a higher one.

    Example:
        >>> explainer = sgc.SegGradCAM(sgc.models.load_pretrained("shapes_unet"))
        >>> expl = explainer.explain(sgc.data.load_samples("shapes")["images"][0], 1)
        >>> result = faithfulness(explainer, expl, "deletion", steps=4)
        >>> result["curves"].shape, bool(np.isclose(result["curves"][0, 0, 0, 0], expl.scores[0, 0], rtol=1e-4))
        ((1, 1, 1, 5), True)
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    n_images, n_targets, n_layers, height, width = expl.heatmaps.shape
    fractions = np.linspace(0, 1, steps + 1)
    cuts = np.round(fractions * height * width).astype(np.int64)
    truths = np.stack([_truth_of(target, expl.masks.shape[2:]) for target in expl.targets])  # (T, H', W')
    has_truth = np.array([target.ground_truth is not None for target in expl.targets])
    jobs = [(n, t, l) for n in range(n_images) for t in range(n_targets) for l in range(n_layers)]
    bases = [baseline_image(expl.images[n], baseline) for n in range(n_images)]
    curves = np.zeros((n_images, n_targets, n_layers, steps + 1))
    pending_images, pending_keys = [], []

    def flush():
        if not pending_images:
            return
        batch = np.concatenate(pending_images)
        keys = np.concatenate(pending_keys)
        masks = expl.masks[keys[:, 0], keys[:, 1]]
        classes = expl.classes[keys[:, 0], keys[:, 1]].astype(np.int32)
        truth, loss = truths[keys[:, 1]], has_truth[keys[:, 1]]
        values = np.concatenate(
            [
                explainer.engine.scores_with_masks(
                    batch[i : i + batch_size],
                    masks[i : i + batch_size],
                    classes[i : i + batch_size],
                    truth[i : i + batch_size],
                    loss[i : i + batch_size],
                ).numpy()
                for i in range(0, len(batch), batch_size)
            ]
        )
        for (n, t, l, k), value in zip(keys, values):
            curves[n, t, l, k] = value
        pending_images.clear()
        pending_keys.clear()

    for n, t, l in jobs:
        order = np.argsort(-expl.heatmaps[n, t, l].ravel(), kind="stable")
        rank = np.empty(height * width, np.int64)
        rank[order] = np.arange(height * width)
        chosen = (rank.reshape(1, height, width) < cuts[:, None, None])[..., np.newaxis]
        image, base = expl.images[n], bases[n]
        stack = np.where(chosen, base, image) if mode == "deletion" else np.where(chosen, image, base)
        pending_images.append(stack.astype(np.float32))
        pending_keys.append(np.array([(n, t, l, k) for k in range(steps + 1)]))
        if sum(len(p) for p in pending_images) >= PENDING_BATCHES * batch_size:
            flush()
    flush()
    auc = np.trapezoid(curves, fractions, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        reference = np.abs(expl.scores)[:, :, np.newaxis]
        normalised = np.where(reference > 0, auc / np.where(reference > 0, reference, 1), np.nan)
    return {"curves": curves, "fractions": fractions, "auc": auc, "normalised_auc": normalised}


def _truth_of(target, out_shape: tuple) -> np.ndarray:
    return np.zeros(out_shape, np.int32) if target.ground_truth is None else target.ground_truth
