"""An independent slow reference for Seg-Grad-CAM, written the obvious way.

Eager mode, one image, one target and one feature map at a time: the model is called as
``model(x, training=False)`` under a plain ``tf.GradientTape``. The feature map is reached
by wrapping, for the duration of that one call, the ``call`` (or, for a pre-activation,
the ``activation``) of the one layer object it comes from: the wrapper adds a zero
variable to the layer's output at the chosen call, so the gradient with respect to that
variable is the gradient with respect to the feature map. The explained scores are read
the same way. Masks are computed in numpy. Nothing here uses the package's model access,
engine, masks or targets encoding.
"""

from __future__ import annotations

import contextlib
import dataclasses

import keras
import numpy as np
import tensorflow as tf
from skimage.measure import label


@dataclasses.dataclass(frozen=True)
class Site:
    """Where a feature map comes from: a layer object, which of its calls, before its activation?"""

    layer: object
    occurrence: int = 0
    pre: bool = False


@dataclasses.dataclass(frozen=True)
class Scores:
    """Where the explained scores come from.

    read: ``"output"`` of ``layer``, its ``"input"``, or its ``"pre"``-activation; ``then``:
    layers applied to the scores afterwards; ``decision``: how predictions are read
    (``"argmax"``, ``"positive"`` or ``"half"``).
    """

    layer: object
    read: str = "output"
    then: tuple = ()
    decision: str = "argmax"


def find_layer(model, *names):
    """A layer reached by names: through nested models (get_layer) and custom layers' attributes."""
    layer = model
    for name in names:
        if isinstance(layer, keras.Model):
            layer = layer.get_layer(name)
        else:
            layer = next(item for item in _sublayers(layer) if item.name == name)
    return layer


def _sublayers(layer):
    found = []
    for value in vars(layer).values():
        items = value if isinstance(value, (list, tuple)) else list(value.values()) if isinstance(value, dict) else [value]
        found += [item for item in items if isinstance(item, keras.layers.Layer)]
    return found


@contextlib.contextmanager
def _wrapped(layer, attribute: str, wrapper):
    """Replace ``layer.<attribute>`` (its call or activation) for one block, then restore it."""
    had_own = attribute in vars(layer)
    original = getattr(layer, attribute)
    object.__setattr__(layer, attribute, wrapper(original))
    try:
        yield
    finally:
        if had_own:
            object.__setattr__(layer, attribute, original)
        else:
            object.__delattr__(layer, attribute)


def _first(structure):
    return next(item for item in tf.nest.flatten(structure) if tf.is_tensor(item))


@contextlib.contextmanager
def _tap_site(site: Site, store: dict):
    """Add a zero variable to the site's feature map; store the map and the variable."""
    count = [0]

    def perturbed(value):
        if count[0] == site.occurrence:
            store["delta"] = tf.Variable(tf.zeros_like(value))
            value = value + store["delta"]
            store["acts"] = value
        count[0] += 1
        return value

    if site.pre:

        def wrapper(activation):
            return lambda z, *args, **kwargs: activation(perturbed(z), *args, **kwargs)

        with _wrapped(site.layer, "activation", wrapper):
            yield
    else:

        def wrapper(call):
            return lambda *args, **kwargs: perturbed(_first(call(*args, **kwargs)))

        with _wrapped(site.layer, "call", wrapper):
            yield


@contextlib.contextmanager
def _tap_scores(scores: Scores, store: dict):
    """Record the explained scores as the model computes them."""
    if scores.read == "pre":

        def wrapper(activation):
            def tapped(z, *args, **kwargs):
                store["scores"] = z
                return activation(z, *args, **kwargs)

            return tapped

        with _wrapped(scores.layer, "activation", wrapper):
            yield
        return

    def wrapper(call):
        def tapped(*args, **kwargs):
            outputs = call(*args, **kwargs)
            store["scores"] = _first(args) if scores.read == "input" else _first(outputs)
            return outputs

        return tapped

    with _wrapped(scores.layer, "call", wrapper):
        yield


@contextlib.contextmanager
def _taps(site: Site, scores: Scores, store: dict):
    """Both taps, in the order that lets the scores see the perturbed value.

    A pre-activation tap changes what the activation receives, so it must wrap outside a
    score tap on the same activation; an output tap changes what a call returns, so a score
    tap must wrap outside it.
    """
    site_first = not (site.pre and scores.read == "pre" and site.layer is scores.layer)
    first, second = (
        (_tap_site(site, store), _tap_scores(scores, store)) if site_first else (_tap_scores(scores, store), _tap_site(site, store))
    )
    with first, second:
        yield


def explained_scores(model, image, scores: Scores) -> np.ndarray:
    """The explained score map (H_out, W_out, C) of one image, float64."""
    store = {}
    with _tap_scores(scores, store):
        model(image[np.newaxis], training=False)
    value = store["scores"]
    for layer in scores.then:
        value = layer(value)
    return value.numpy()[0].astype(np.float64)


def reference_gradients(model, image, site: Site, scores: Scores, mask, class_index):
    """Eager gradient of sum(mask * score_c) with respect to one feature map: (grads, acts, score)."""
    store = {}
    with tf.GradientTape() as tape, _taps(site, scores, store):
        model(image[np.newaxis], training=False)
        value = store["scores"]
        for layer in scores.then:
            value = layer(value)
        score = tf.reduce_sum(tf.cast(value[0, :, :, class_index], tf.float64) * mask)
    grads = tape.gradient(score, store["delta"])
    return grads.numpy()[0].astype(np.float64), store["acts"].numpy()[0].astype(np.float64), float(score)


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


def reference(model, image, site: Site, scores: Scores, mask, class_index):
    """Seg-Grad-CAM for one image, one mask and class, one feature map: (weights (k,), raw (h, w), score)."""
    grads, acts, score = reference_gradients(model, image, site, scores, mask, class_index)
    # float64: the engine sums the spatial mean in float64 too (methods.spatial_mean), because the
    # gradients of a decoder layer largely cancel and a float32 sum's rounding depends on its order
    grads, acts = grads.astype(np.float64), acts.astype(np.float64)
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


def predicted_map(scores, decision="argmax"):
    """(H, W, C) bool: which classes each pixel is predicted as."""
    if decision == "positive":
        return scores > 0
    if decision == "half":
        return scores > 0.5
    return np.eye(scores.shape[-1], dtype=bool)[scores.argmax(axis=-1)]


def check_explanation(expl, model, images, sites: dict, scores: Scores, tolerance=1e-5):
    """Compare every (image, target, layer) of ``expl`` with the slow reference.

    Args:
        sites: explained layer name -> :class:`Site`.
        tolerance: largest relative error (max |a - b| / max |b|) allowed on weights and
            raw maps. The default 1e-5: float32 sums over the same values in another order
            (graph vs eager kernels, oneDNN fusions, AVX2 vs AVX-512) differ by a few ulps
            per step, about 1e-7 relative per layer; 1e-5 leaves two orders of margin.

    Returns:
        The largest relative error seen on weights and raw maps.
    """
    worst = 0.0
    for n, image in enumerate(images):
        explained = explained_scores(model, image, scores)
        predicted = predicted_map(explained, scores.decision)
        for t, target in enumerate(expl.targets):
            mask, class_index = reference_mask(target, predicted, explained.shape[:2])
            assert expl.classes[n, t] == class_index, (n, t)
            np.testing.assert_allclose(expl.masks[n, t], mask, rtol=1e-6, atol=1e-7)
            for layer in expl.layers:
                alpha, raw, score = reference(model, image, sites[layer], scores, mask, class_index)
                assert relative_error(expl.scores[n, t], score) < tolerance, (n, t, expl.scores[n, t], score)
                errors = (relative_error(expl.weights[layer][n, t], alpha), relative_error(expl.raw[layer][n, t], raw))
                assert max(errors) < tolerance, (n, t, layer, errors)
                worst = max(worst, *errors)
    return worst


def relative_error(actual, expected):
    """max |actual - expected| / max |expected| (expected floored at 1e-12)."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    scale = max(np.abs(expected).max(), 1e-12)
    return float(np.abs(actual - expected).max() / scale)
