"""Target masks evaluated on a prediction, inside the compiled pass (TensorFlow).

The data-dependent part of a target (which pixels are predicted as its class, which
connected object is the largest, which class a region mostly holds) is computed here from
the same forward pass that yields the gradients. This is also the one place that reads
predicted classes from scores.

Example:
    >>> scores = tf.constant([[[[2.0, 1.0], [0.0, 3.0]]]])      # (1, 1, 2, 2): two pixels, two classes
    >>> predicted_labels(scores, Decision.ARGMAX).numpy().tolist()
    [[[0, 1]]]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from .encoding import ComponentRule, EncodedTargets, Restriction
from .scores import SIGMOID_HALF, Decision

__all__ = ["BuiltMasks", "build_masks", "predicted_classes", "predicted_labels", "select_components", "CONNECTIVITY"]

CONNECTIVITY = 2  # scikit-image's 8-connectivity in 2-D


class BuiltMasks(NamedTuple):
    """Masks of T targets on N images.

    Attributes:
        masks: (N, T, H_out, W_out) float32 weights over output pixels.
        class_index: (N, T) int32 the class explained.
        components: (N, T) int32 objects found (component targets; 0 for the others).
    """

    masks: tf.Tensor
    class_index: tf.Tensor
    components: tf.Tensor


def predicted_classes(scores: tf.Tensor, decision: Decision) -> tf.Tensor:
    """(N, H, W, C) float32: 1 where a pixel is predicted as a class.

    ``ARGMAX``: the highest score; ``POSITIVE``: score > 0 (one-channel logits); ``HALF``:
    score > 0.5 (one-channel sigmoid probabilities).
    """
    if decision is Decision.ARGMAX:
        return tf.one_hot(tf.argmax(scores, axis=-1), tf.shape(scores)[-1], dtype=tf.float32)
    threshold = 0.0 if decision is Decision.POSITIVE else SIGMOID_HALF
    return tf.cast(scores > threshold, tf.float32)


def predicted_labels(scores: tf.Tensor, decision: Decision) -> tf.Tensor:
    """(N, H, W) int32 label map: the argmax class, or for one channel 1 where foreground."""
    if decision is Decision.ARGMAX:
        return tf.argmax(scores, axis=-1, output_type=tf.int32)
    return tf.cast(predicted_classes(scores, decision)[..., 0], tf.int32)


def select_components(binary: np.ndarray, selected: np.ndarray, rule: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numpy side of the component rule for (N, T, H, W) bool maps.

    Only targets with ``selected[t]`` are labelled. A selector that does not exist (no
    object, or an index past the last) gives an empty mask; the caller turns that into an
    error that names the target.

    Returns:
        (N, T, H, W) float32 object masks and the (N, T) int32 number of objects found.

    Example:
        >>> binary = np.zeros((1, 1, 4, 4), bool); binary[0, 0, 0, :2] = binary[0, 0, 3, 3] = True
        >>> masks, counts = select_components(binary, np.array([True]), np.array([1]), np.array([0]))
        >>> int(counts[0, 0]), int(masks[0, 0].sum())
        (2, 1)
    """
    from skimage.measure import label

    masks = np.zeros(binary.shape, np.float32)
    counts = np.zeros(binary.shape[:2], np.int32)
    for t in np.flatnonzero(selected):
        for n in range(binary.shape[0]):
            labels, count = label(binary[n, t], connectivity=CONNECTIVITY, return_num=True)
            counts[n, t] = count
            if count == 0:
                continue
            sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
            if rule[t] == ComponentRule.LARGEST:
                chosen = int(np.argmax(sizes)) + 1
            elif rule[t] == ComponentRule.SMALLEST:
                chosen = int(np.argmin(sizes)) + 1
            elif index[t] < count:
                chosen = int(index[t]) + 1
            else:
                continue
            masks[n, t] = labels == chosen
    return masks, counts


def build_masks(scores: tf.Tensor, targets: EncodedTargets, decision: Decision, with_components: bool) -> BuiltMasks:
    """Evaluate the targets on a prediction.

    Args:
        scores: (N, H_out, W_out, C) the explained scores.
        targets: the encoded targets, as tensors.
        decision: how predicted classes are read from ``scores``.
        with_components: whether some target selects a connected object (a static flag:
            without one, no labelling is traced at all).
    """
    predicted = predicted_classes(scores, decision)
    votes = tf.einsum("thw,nhwc->ntc", targets.region, predicted)
    inferred = tf.argmax(votes, axis=-1, output_type=tf.int32)
    fixed = tf.broadcast_to(targets.class_index[tf.newaxis], tf.shape(inferred))
    class_index = tf.where(targets.infer_class[tf.newaxis], inferred, fixed)  # (N, T)
    class_map = tf.gather(tf.transpose(predicted, [0, 3, 1, 2]), class_index, axis=1, batch_dims=1)  # (N, T, H, W)
    restriction = targets.restriction[tf.newaxis, :, tf.newaxis, tf.newaxis]
    keep = tf.where(restriction == int(Restriction.PREDICTED), class_map, tf.ones_like(class_map))
    counts = tf.zeros(tf.shape(class_map)[:2], tf.int32)
    if with_components:
        selected = targets.restriction == int(Restriction.COMPONENT)
        objects, counts = tf.numpy_function(
            select_components,
            [class_map > 0.5, selected, targets.component_rule, targets.component_index],
            [tf.float32, tf.int32],
            stateful=False,
        )
        objects = tf.reshape(objects, tf.shape(class_map))
        counts = tf.reshape(counts, tf.shape(class_map)[:2])
        keep = tf.where(restriction == int(Restriction.COMPONENT), objects, keep)
    masks = targets.region[tf.newaxis] * keep
    total = tf.reduce_sum(masks, axis=[2, 3], keepdims=True)
    divide = targets.mean[tf.newaxis, :, tf.newaxis, tf.newaxis] & (total > 0)
    masks = tf.where(divide, masks / tf.where(divide, total, 1.0), masks)
    return BuiltMasks(tf.stop_gradient(masks), class_index, counts)
