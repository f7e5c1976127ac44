"""How gradients become channel weights and maps: one small function per method.

Each method takes the gradients of every target's score with respect to one layer's
activations and the activations themselves, and returns the channel weights and the signed
(pre-ReLU) maps. They run inside the compiled pass on tensors:

    grads: (T, N, h, w, k)   d y_t / d A for every target t and image n
    acts:  (N, h, w, k)      the layer's activations A
    returns weights (N, T, k) and raw maps (N, T, h, w)
"""

from __future__ import annotations

import tensorflow as tf


def seg_grad_cam(grads: tf.Tensor, acts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Seg-Grad-CAM (Vinogradova et al. 2020): alpha_k = spatial mean of the gradient.

    Returns:
        ``(weights, raw)`` with weights (N, T, k) and raw = sum_k alpha_k A_k, (N, T, h, w).
    """
    alpha = tf.transpose(tf.reduce_mean(grads, axis=[2, 3]), [1, 0, 2])
    raw = tf.einsum("ntk,nhwk->nthw", alpha, acts)
    return alpha, raw


METHODS = {"seg-grad-cam": seg_grad_cam}


def get_method(name: str):
    """Look up a method by name; raises ValueError listing the valid names."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods are {sorted(METHODS)}")
    return METHODS[name]
