"""The explained score y of every target: the one place it is computed.

``y[n, t] = sum_{i, j} M[n, t, i, j] * s[n, i, j, t]`` where M is the target's mask and
``s`` the per-pixel value it explains: the score of its class, or, for a target with
ground truth, the pixel's cross-entropy loss against it (binary cross-entropy for a
one-channel head). Used by the engine and by ``seggradcam.metrics.faithfulness``.

Example:
    >>> scores = tf.constant([[[[1.0, 2.0], [3.0, 4.0]]]])          # (1, 1, 2, 2)
    >>> values = pixel_values(scores, tf.constant([[1]]))
    >>> target_scores(values, tf.ones((1, 1, 1, 2))).numpy().tolist()
    [[6.0]]
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["cross_entropy", "pixel_losses", "pixel_values", "target_scores"]


def pixel_values(scores: tf.Tensor, class_index: tf.Tensor, truth=None, has_truth=None) -> tf.Tensor:
    """(N, H, W, T): each target's explained value at every pixel.

    Args:
        scores: (N, H, W, C) float32 explained scores.
        class_index: (N, T) int32 the class explained per image and target.
        truth: optional (T, H, W) int32 ground truth, used where ``has_truth`` (T,) is True.
    """
    values = tf.gather(scores, class_index, axis=3, batch_dims=1)
    if truth is None:
        return values
    losses = pixel_losses(scores, truth)
    return tf.where(has_truth[tf.newaxis, tf.newaxis, tf.newaxis], losses, values)


def pixel_losses(scores: tf.Tensor, truth: tf.Tensor) -> tf.Tensor:
    """(N, H, W, T) per-pixel cross-entropy of the scores (logits) against T label maps."""
    truth = tf.transpose(truth, [1, 2, 0])[tf.newaxis]  # (1, H, W, T)
    if scores.shape[-1] == 1:
        logit = scores[..., :1]
        return tf.nn.softplus(logit) - tf.cast(truth, logit.dtype) * logit
    truth = tf.broadcast_to(truth, tf.concat([tf.shape(scores)[:3], tf.shape(truth)[3:]], axis=0))
    true_score = tf.gather(scores, truth, axis=3, batch_dims=3)
    return tf.reduce_logsumexp(scores, axis=-1, keepdims=True) - true_score


def cross_entropy(scores: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """(N, H, W) per-pixel cross-entropy of scores (N, H, W, C) against labels (N, H, W).

    One channel: binary cross-entropy of the foreground logit; else softmax cross-entropy.
    """
    if scores.shape[-1] == 1:
        logit = scores[..., 0]
        return tf.nn.softplus(logit) - tf.cast(labels, logit.dtype) * logit
    true_score = tf.gather(scores, labels[..., tf.newaxis], axis=3, batch_dims=3)[..., 0]
    return tf.reduce_logsumexp(scores, axis=-1) - true_score


def target_scores(values: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
    """(N, T) the masked sums: ``values`` (N, H, W, T) weighted by ``masks`` (N, T, H, W)."""
    return tf.einsum("nhwt,nthw->nt", values, masks)
