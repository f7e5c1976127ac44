"""An independent slow reference for Seg-Grad-CAM, written the obvious way.

Eager mode, one target and one layer at a time, a plain GradientTape on a multi-output
model built with the Keras functional API, masks computed in numpy. It shares no code
with the package's engine, probe or targets modules.
"""

import keras
import numpy as np
import tensorflow as tf
from skimage.measure import label

_PROBES = {}


def reference_gradients(model, image, layer_name, logits_layer, mask, class_index):
    """Eager gradient of sum(mask * logit_c) with respect to one layer: (grads, acts, score)."""
    key = (id(model), layer_name, logits_layer)
    if key not in _PROBES:
        outputs = [model.get_layer(layer_name).output, model.get_layer(logits_layer).output]
        _PROBES[key] = keras.Model(model.inputs[0], outputs)
    with tf.GradientTape() as tape:
        acts, logits = _PROBES[key](image[np.newaxis], training=False)
        score = tf.reduce_sum(logits[0, :, :, class_index] * mask)
    return tape.gradient(score, acts).numpy()[0].astype(np.float64), acts.numpy()[0].astype(np.float64), float(score)


def numpy_method(name, grads, acts, pool_size=1, pool="mean"):
    """Textbook numpy versions of the methods: (h, w, k) gradients and activations -> raw map."""
    if name == "seg-grad-cam":
        return (acts * grads.mean(axis=(0, 1))).sum(-1)
    if name == "seg-hires-grad-cam":
        return (grads * acts).sum(-1)
    if name == "seg-xres-grad-cam":
        h, w, _ = grads.shape
        pooled = np.empty_like(grads)
        for r in range(0, h, pool_size):
            for c in range(0, w, pool_size):
                block = grads[r : r + pool_size, c : c + pool_size]
                value = block.mean(axis=(0, 1)) if pool == "mean" else block.max(axis=(0, 1))
                pooled[r : r + pool_size, c : c + pool_size] = value
        return (pooled * acts).sum(-1)
    if name == "seg-grad-cam++":
        g2, g3 = grads**2, grads**3
        denominator = 2 * g2 + acts.sum(axis=(0, 1)) * g3
        alpha = np.where(denominator != 0, g2 / np.where(denominator != 0, denominator, 1), 0)
        weights = (alpha * np.maximum(grads, 0)).sum(axis=(0, 1))
        return (acts * weights).sum(-1)
    raise ValueError(name)


def reference(model, image, layer_name, logits_layer, mask, class_index):
    """Seg-Grad-CAM for one image, one mask and class, one layer, in float32 numpy.

    Returns (weights (k,), raw map (h, w), score).
    """
    grads, acts, score = reference_gradients(model, image, layer_name, logits_layer, mask, class_index)
    grads, acts = grads.astype(np.float32), acts.astype(np.float32)
    alpha = grads.mean(axis=(0, 1))
    return alpha, (acts * alpha).sum(axis=-1), score


def component_mask(binary, which):
    labels, count = label(binary, connectivity=2, return_num=True)
    sizes = [(labels == i).sum() for i in range(1, count + 1)]
    if which == "largest":
        chosen = int(np.argmax(sizes)) + 1
    elif which == "smallest":
        chosen = int(np.argmin(sizes)) + 1
    else:
        chosen = which + 1
    return (labels == chosen).astype(np.float32)


def reference_mask(target, predicted, out_shape):
    """Numpy mask and class for a target, from a (H, W, C) bool map of predicted classes."""
    import seggradcam as sgc

    mask = np.zeros(out_shape, np.float32)
    class_index = target.class_index
    if isinstance(target, sgc.ClassTarget):
        if isinstance(target.region, str):
            mask[:] = predicted[..., class_index] if target.region == "predicted" else 1.0
        else:
            mask = np.asarray(target.region, np.float32)
    elif isinstance(target, sgc.PixelTarget):
        mask[target.row, target.col] = 1.0
    elif isinstance(target, sgc.RegionTarget):
        if target.box is not None:
            r0, c0, r1, c1 = target.box
            mask[r0:r1, c0:c1] = 1.0
        else:
            mask = np.asarray(target.mask, np.float32)
    elif isinstance(target, sgc.ComponentTarget):
        mask = component_mask(predicted[..., class_index], target.which)
    if class_index is None:
        votes = (predicted * mask[..., np.newaxis]).sum(axis=(0, 1))
        class_index = int(np.argmax(votes))
    if target.reduction == "mean":
        mask = mask / mask.sum()
    return mask, class_index


def predicted_map(logits):
    """(H, W, C) bool: which classes each pixel is predicted as (argmax, or > 0 for one channel)."""
    if logits.shape[-1] == 1:
        return logits > 0
    return np.eye(logits.shape[-1], dtype=bool)[logits.argmax(axis=-1)]


def check_explanation(expl, model, logits_layer, images, tolerance=1e-5):
    """Compare every (image, target, layer) of ``expl`` with the slow reference.

    Returns the largest relative error seen on weights and raw maps.
    """
    worst = 0.0
    logits_model = keras.Model(model.inputs[0], model.get_layer(logits_layer).output)
    for n, image in enumerate(images):
        logits = logits_model(image[np.newaxis], training=False).numpy()[0]
        predicted = predicted_map(logits)
        for t, target in enumerate(expl.targets):
            mask, class_index = reference_mask(target, predicted, logits.shape[:2])
            assert expl.classes[n, t] == class_index, (n, t)
            np.testing.assert_allclose(expl.masks[n, t], mask, rtol=1e-6, atol=1e-7)
            for layer in expl.layers:
                alpha, raw, score = reference(model, image, layer, logits_layer, mask, class_index)
                np.testing.assert_allclose(expl.scores[n, t], score, rtol=1e-5, atol=1e-5)
                errors = (relative_error(expl.weights[layer][n, t], alpha), relative_error(expl.raw[layer][n, t], raw))
                assert max(errors) < tolerance, (n, t, layer, errors)
                worst = max(worst, *errors)
    return worst


def relative_error(actual, expected):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    scale = max(np.abs(expected).max(), 1e-12)
    return float(np.abs(actual - expected).max() / scale)
