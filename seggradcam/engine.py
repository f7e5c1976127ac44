"""The compiled core: one forward pass, all targets, all layers.

For a batch of N images and T targets, :class:`Engine` runs one ``tf.function`` that
1. runs the model once, exposing the requested layers' activations A_l and the score map Z;
2. builds every target's weight mask W_t from that same prediction (``targets.build_masks``);
3. computes the scores S[n, t] = sum_{i,j} W[n, t, i, j] * Z[n, i, j, c(n, t)];
4. takes the Jacobian of sum_n S[:, t] with respect to all A_l at once, vectorised over the
   T targets with ``pfor`` (one batched backward pass, no Python loop over targets or layers;
   summing over images is exact because images in a batch do not interact at inference);
5. turns gradients into weights and maps with the chosen method, and upsamples them.

Calls with the same image shape and number of targets reuse the traced graph.
"""

from __future__ import annotations

import tensorflow as tf

from . import postprocess
from .methods import get_method
from .probe import ModelGraph
from .targets import build_masks


class Engine:
    """Computes Seg-Grad-CAM for many targets and layers in one compiled pass.

    Args:
        graph: the probed model.
        layers: names of the layers to explain, in output order.
        method: a method name from ``seggradcam.methods.METHODS``.
        method_options: options of the method (``pool_size``, ``pool`` for XRes).

    Example:
        >>> engine = Engine(ModelGraph(model), ["bottleneck"])    # doctest: +SKIP
        >>> out = engine.run(images, codes)                          # doctest: +SKIP
    """

    def __init__(self, graph: ModelGraph, layers: list[str], method: str = "seg-grad-cam", method_options: dict | None = None):
        self.graph = graph
        self.layers = list(layers)
        self.method = method
        self._weigh = get_method(method, method_options)
        self.trace_count = 0

        # fresh functions per engine: traces stay separate between explainers
        def explain_pass(images, codes, with_loss):
            return self._pass(images, codes, with_loss)

        def guided_pass(images, codes, with_loss):
            return self._guided(images, codes, with_loss)

        def predict_pass(images):
            return self._prediction(self.graph.forward(images, [])[1])

        self._compiled = tf.function(explain_pass, autograph=False)
        self._compiled_guided = tf.function(guided_pass, autograph=False)
        self._compiled_predict = tf.function(predict_pass, autograph=False)

    def predict(self, images) -> tf.Tensor:
        """The predicted label map (N, H', W') from one forward pass, no gradients."""
        return self._compiled_predict(tf.convert_to_tensor(images, tf.float32))

    def run(self, images, codes: dict) -> dict:
        """Explain a batch. ``codes`` are the arrays from ``targets.encode_targets``.

        Returns:
            A dict of tensors: ``scores`` (N, T), ``masks`` (N, T, H', W'), ``class_index``
            (N, T), ``components`` (N, T), ``prediction`` (N, H', W'), ``heatmaps``
            (N, T, L, H, W), and per layer ``weights/<name>`` (N, T, k), ``raw/<name>``
            (N, T, h, w).
        """
        return self._compiled(*self._arguments(images, codes))

    def guided_gradients(self, images, codes: dict) -> tf.Tensor:
        """Guided-backpropagation gradients of every target's score: (N, T, H, W, C)."""
        return self._compiled_guided(*self._arguments(images, codes))

    @staticmethod
    def _arguments(images, codes):
        tensors = {key: tf.convert_to_tensor(value) for key, value in codes.items()}
        with_loss = bool((codes["loss"] > 0).any())
        return tf.convert_to_tensor(images, tf.float32), tensors, with_loss

    def _scores(self, logits, codes, with_loss):
        """Masks and scores S (N, T) of every target, from one prediction."""
        built = build_masks(logits, codes, self.graph.logits.decision)
        pixel_scores = tf.gather(logits, built["class_index"], axis=3, batch_dims=1)  # (N, H', W', T)
        if with_loss:
            pixel_scores = tf.where(codes["loss"] > 0, self._pixel_losses(logits, codes["truth"]), pixel_scores)
        scores = tf.einsum("nhwt,nthw->nt", pixel_scores, built["masks"])
        return built, scores

    def _pixel_losses(self, logits, truth):
        """Per-pixel cross-entropy of the logits against each target's ground truth: (N, H', W', T)."""
        truth = tf.transpose(truth, [1, 2, 0])[tf.newaxis]  # (1, H', W', T)
        if self.graph.output_channels == 1:
            z = logits[..., :1]
            return tf.nn.softplus(z) - tf.cast(truth, z.dtype) * z
        truth = tf.broadcast_to(truth, tf.concat([tf.shape(logits)[:3], tf.shape(truth)[3:]], axis=0))
        true_logit = tf.gather(logits, truth, axis=3, batch_dims=3)
        return tf.reduce_logsumexp(logits, axis=-1, keepdims=True) - true_logit

    def _pass(self, images, codes, with_loss):
        self.trace_count += 1
        with tf.GradientTape(persistent=True) as tape:
            acts, logits = self.graph.forward(images, self.layers, on_capture=tape.watch)
            built, scores = self._scores(logits, codes, with_loss)
            per_target = tf.reduce_sum(scores, axis=0)
        sources = [acts[name] for name in self.layers]
        grads = tape.jacobian(
            per_target,
            sources,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
            experimental_use_pfor=True,
        )
        size = tf.shape(images)[1:3]
        out = {
            "scores": scores,
            "masks": built["masks"],
            "class_index": built["class_index"],
            "components": built["components"],
            "prediction": self._prediction(logits),
        }
        heatmaps = []
        for name, grad, act in zip(self.layers, grads, sources):
            weights, raw = self._weigh(grad, act)
            out[f"weights/{name}"] = weights
            out[f"raw/{name}"] = raw
            heatmaps.append(postprocess.heatmap(raw, size))
        out["heatmaps"] = tf.stack(heatmaps, axis=2)
        return out

    def _guided(self, images, codes, with_loss):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(images)
            _, logits = self.graph.forward(images, [], guided=True)
            _, scores = self._scores(logits, codes, with_loss)
            per_target = tf.reduce_sum(scores, axis=0)
        grads = tape.jacobian(per_target, images, experimental_use_pfor=True)  # (T, N, H, W, C)
        return tf.transpose(grads, [1, 0, 2, 3, 4])

    def _prediction(self, logits):
        """Label map: argmax over classes; for a one-channel head, 1 where foreground."""
        if self.graph.output_channels > 1:
            return tf.argmax(logits, axis=-1, output_type=tf.int32)
        threshold = 0.5 if self.graph.logits.decision == "half" else 0.0
        return tf.cast(logits[..., 0] > threshold, tf.int32)
