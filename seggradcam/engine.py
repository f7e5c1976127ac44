"""The compiled core: one forward pass, all targets, all layers.

For a batch of N images and T targets, :class:`Engine` runs one ``tf.function`` that
1. runs the model once (``ModelAccess.forward``), exposing the chosen layers' activations
   A_l and the explained scores Z;
2. builds every target's mask from that same prediction (``seggradcam.masks``);
3. computes the scores y[n, t] (``seggradcam.scoring``);
4. takes the gradients of every target's score with respect to all layers at once, by one
   of the strategies below; summing y over images first is exact because images in a batch
   do not interact at inference. For Seg-Grad-CAM, a map that depends on no other explained
   map and feeds only a stride-1 convolution (the first layer of a plain U-Net) gets its
   channel sums from that convolution's output gradient (``seggradcam.conv_sums``): the
   backward pass through the convolution is skipped (on the benchmark U-Nets 0.3 to 0.4
   forward passes less per grid);
5. turns gradients into weights and signed maps with the chosen method. Heatmaps at input
   size are rendered from those maps by the Explanation on first use (``postprocess``).

Gradient strategies (``strategy=``), all inside the same traced graph:
    ``"loop"``: one backward pass per target, unrolled in the graph (T gradient calls on one
        persistent tape, each with a one-hot cotangent over the targets).
    ``"pfor"``: the T backward passes vectorised into one with ``pfor`` (``tape.jacobian``).
    ``"loop-xla"``, ``"pfor-xla"``: the same, the whole pass compiled with XLA
        (``jit_compile=True``): on the benchmark U-Nets warm calls 1.4 to 2 times faster on
        CPU, a first call up to several seconds slower; on other models slower. A pass
        with a ``ComponentTarget`` (scikit-image labelling) cannot be compiled with XLA and
        runs without it.
    ``"auto"`` (default), tiered like a JIT and measured: each new call signature (image
        shape, number of targets, loss or not) runs ``"loop"`` first, which starts fastest;
        once the calls of that signature have taken ``XLA_AFTER`` times its first call, the
        next one compiles ``"loop-xla"``, ``XLA_TRIALS`` more are timed, and from then on the
        signature runs whichever of the two ran faster (XLA wins on the plain U-Nets, and
        loses, for example, where depthwise convolutions dominate). A few calls never pay
        for XLA; a long stream of calls (an audit, a benchmark) spends at most about that
        much extra before it runs at the faster speed. If XLA cannot compile the model's
        pass (an op without an XLA kernel, e.g. the gradient of a nearest-neighbour
        ``Resizing``), "auto" stays without XLA (``Engine.xla_refusal`` says why) and
        "loop-xla"/"pfor-xla" raise a ValueError.
    In the XLA passes, max pools get an exact gradient that XLA runs fast
    (``seggradcam.xla_gradients``). Without a GPU, and when one image's layer outputs reach
    ``XLA_PER_IMAGE_BYTES``, the XLA pass runs one image per call and the results are joined
    along the batch axis: one compiled program serves every batch size, and the per-image
    working set stays in cache (on the 2-core project machine the shapes U-Net's pass at
    batch 8 took 4.9 instead of 5.5 forward passes, the 2M U-Net's 6.4 instead of 6.6; the
    architecture tests' small models were slower, so they keep the whole batch; see
    ``benchmarks/README.md``). With a GPU the whole batch goes in one call.
See ``benchmarks/README.md`` for the measurements behind these choices.

Calls with the same image shape, the same number of targets and the same target
features (loss, components) reuse the traced graph.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import NamedTuple

import tensorflow as tf

from . import conv_sums
from .encoding import EncodedTargets
from .layer_choice import ChosenLayer
from .masks import build_masks, predicted_labels
from .methods import BoundMethod, get_method
from .model_access import ModelAccess
from .scoring import cross_entropy, pixel_values, target_scores

__all__ = ["Engine", "PassResult", "STRATEGIES"]

STRATEGIES = ("auto", "loop", "pfor", "loop-xla", "pfor-xla")
XLA_AFTER = 3.0  # "auto": compile with XLA once a signature's plain calls took this many times its first call
XLA_TRIALS = 2  # "auto": warm XLA calls timed (after the compiling one) before settling on the faster pass
# without a GPU, the XLA pass takes images one per call once one image's layer outputs reach this
# size (measured: 13 MiB models gained 0.2 to 0.5 forward passes per grid, 0.1 to 4 MiB ones lost)
XLA_PER_IMAGE_BYTES = 8 * 2**20


@dataclasses.dataclass
class _Tier:
    """What "auto" knows about one call signature, and which pass it runs next.

    Example:
        >>> tier = _Tier()
        >>> for elapsed in (1.0, 0.5, 0.5, 0.5, 0.5):  # the first call traces; 3.0 s in all = 3 x 1.0 s
        ...     tier.record("plain", elapsed)
        >>> tier.next_pass()
        'xla'
        >>> for elapsed in (4.0, 0.8, 0.7):  # XLA compiles, then runs slower than the plain pass
        ...     tier.record("xla", elapsed)
        >>> tier.settled, tier.next_pass()
        ('plain', 'plain')
    """

    first_s: float = 0.0  # the first plain call, tracing included
    spent_s: float = 0.0  # all plain calls
    recent_plain_s: list = dataclasses.field(default_factory=list)  # the last XLA_TRIALS plain calls after the first
    xla_calls: int = 0
    xla_best_s: float = math.inf  # the fastest XLA call after its first (which compiles)
    settled: str | None = None  # "plain" or "xla", once both were measured

    @property
    def plain_best_s(self) -> float:
        """The fastest of the last ``XLA_TRIALS`` plain calls: as many samples as the XLA side
        has, so that neither side's minimum is favoured by more draws."""
        return min(self.recent_plain_s, default=math.inf)

    def next_pass(self) -> str:
        """The pass to run: "plain" until the plain calls have cost ``XLA_AFTER`` times the
        first, then "xla" for ``XLA_TRIALS`` + 1 calls, then whichever ran faster, for good."""
        if self.settled is not None:
            return self.settled
        if self.first_s == 0 or self.spent_s < XLA_AFTER * self.first_s:
            return "plain"
        return "xla"

    def record(self, kind: str, elapsed: float) -> None:
        """Note one call's time; after the XLA trials, settle on the faster pass."""
        if kind == "plain":
            if self.first_s == 0:
                self.first_s = elapsed
            else:
                self.recent_plain_s = (self.recent_plain_s + [elapsed])[-XLA_TRIALS:]
            self.spent_s += elapsed
            return
        self.xla_calls += 1
        if self.xla_calls > 1:
            self.xla_best_s = min(self.xla_best_s, elapsed)
        if self.xla_calls > XLA_TRIALS:
            self.settled = "xla" if self.xla_best_s < self.plain_best_s else "plain"


class PassResult(NamedTuple):
    """What one compiled pass returns (tensors; the explainer turns them into numpy).

    Attributes:
        scores: (N, T) the explained scores y.
        masks: (N, T, H_out, W_out) the weights over output pixels actually used.
        class_index: (N, T) the class explained.
        components: (N, T) connected objects found (component targets).
        prediction: (N, H_out, W_out) predicted labels.
        weights: per layer, (N, T, k) channel weights.
        raw: per layer, (N, T, h, w) signed maps.
    """

    scores: tf.Tensor
    masks: tf.Tensor
    class_index: tf.Tensor
    components: tf.Tensor
    prediction: tf.Tensor
    weights: tuple
    raw: tuple


class Engine:
    """Computes Seg-Grad-CAM for many targets and layers in one compiled pass.

    Args:
        access: the model's :class:`~seggradcam.model_access.ModelAccess`.
        layers: the feature maps to explain, in output order.
        method: a method bound to its options (``seggradcam.methods.get_method``).
        strategy: how gradients are taken, one of ``STRATEGIES``.

    Example:
        >>> from seggradcam.encoding import encode_targets
        >>> access = ModelAccess(sgc.models.build_unet((32, 32, 3), num_classes=3, filters=(4, 8, 16)))
        >>> engine = Engine(access, access.choose_layers("auto"))
        >>> result = engine.run(np.zeros((1, 32, 32, 3), np.float32), encode_targets([sgc.PixelTarget(0, 0)], (32, 32), 3))
        >>> result.raw[0].shape
        TensorShape([1, 1, 8, 8])
    """

    def __init__(self, access: ModelAccess, layers: tuple, method: BoundMethod | None = None, strategy: str = "auto"):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.access = access
        self.layers: tuple[ChosenLayer, ...] = tuple(layers)
        self.method = method or get_method("seg-grad-cam")
        self.strategy = strategy
        self.trace_count = 0  # traces of the plain pass
        self.xla_trace_count = 0  # traces of the XLA-compiled pass
        self._tiers: dict[tuple, _Tier] = {}
        self.xla_refusal: str | None = None  # why XLA could not compile this model's pass, once it failed
        self.xla_per_image: bool | None = None  # XLA pass one image per call: None = by the rule in _per_image
        self._has_gpu = bool(tf.config.list_logical_devices("GPU"))
        self.conv_sums = True  # read the earliest layer's channel sums off the next convolution (conv_sums); set before the first call
        self.conv_sum_layers: tuple = ()  # the layers it did that for, as of the last trace

        def counted(counter: str, xla: bool):
            def traced_pass(images, targets, with_loss, with_components):
                setattr(self, counter, getattr(self, counter) + 1)  # runs once per trace
                return self._explain_pass(images, targets, with_loss, with_components, xla)

            return traced_pass

        # functions of this engine only: traces are never shared between explainers
        self._explain = tf.function(counted("trace_count", xla=False), autograph=False)
        self._explain_xla = tf.function(counted("xla_trace_count", xla=True), autograph=False, jit_compile=True)
        self._guided = tf.function(self._guided_pass, autograph=False)
        self._predict = tf.function(self._predict_pass, autograph=False)
        self._fixed = tf.function(self._fixed_pass, autograph=False, reduce_retracing=True)

    # -- public calls -----------------------------------------------------------------------
    def run(self, images, targets: EncodedTargets) -> PassResult:
        """Explain a batch of (N, H, W, C) float32 images for the encoded targets.

        Raises:
            ValueError: ``strategy`` "loop-xla" or "pfor-xla" on a model that XLA cannot
                compile here (the message names the operations); "auto" then stays without XLA.
        """
        images = tf.convert_to_tensor(images, tf.float32)
        args = (images, _tensors(targets), targets.any_loss, targets.any_components)
        if targets.any_components or self.strategy in ("loop", "pfor"):
            return self._explain(*args)
        if self.strategy != "auto":
            return self._explicit_xla(args)
        tier = self._tiers.setdefault((tuple(images.shape), targets.num_targets, targets.any_loss), _Tier())
        if tier.next_pass() == "xla" and self.xla_refusal is None:
            start = time.perf_counter()
            try:
                result = self._xla_pass(*args)
            except tf.errors.OpError as error:
                # XLA failed where the plain pass ran: stay without XLA. Should the plain
                # pass fail too, its own error is the one to report.
                self.xla_refusal = _xla_refusal(str(error)) or f"XLA failed: {_first_line(str(error))}"
            else:
                tier.record("xla", time.perf_counter() - start)
                return result
        start = time.perf_counter()
        result = self._explain(*args)
        tier.record("plain", time.perf_counter() - start)
        return result

    def _explicit_xla(self, args) -> PassResult:
        """The XLA pass of strategy "loop-xla"/"pfor-xla"; a ValueError if XLA cannot compile it."""
        if self.xla_refusal is None:
            try:
                return self._xla_pass(*args)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError) as error:
                self.xla_refusal = _xla_refusal(str(error))
                if self.xla_refusal is None:
                    raise
        raise ValueError(
            f"strategy {self.strategy!r}: XLA cannot compile this model's pass on this device "
            f"({self.xla_refusal}); use strategy='loop' (or 'auto', which then runs without XLA)"
        )

    def _xla_pass(self, images, targets: EncodedTargets, with_loss: bool, with_components: bool) -> PassResult:
        """The XLA-compiled pass; one call per image (see :meth:`_per_image`), joined along axis 0."""
        count = images.shape[0]
        if count is None or count <= 1 or not self._per_image(images):
            return self._explain_xla(images, targets, with_loss, with_components)
        parts = [self._explain_xla(images[i : i + 1], targets, with_loss, with_components) for i in range(count)]
        return tf.nest.map_structure(lambda *pieces: tf.concat(pieces, axis=0), *parts)

    def _per_image(self, images) -> bool:
        """Whether the XLA pass takes these images one per call: ``xla_per_image`` if set; else
        without a GPU when one image's layer outputs reach ``XLA_PER_IMAGE_BYTES`` (their
        working set then fits the CPU's caches one image at a time; small models would only
        pay more calls)."""
        if self.xla_per_image is not None:
            return self.xla_per_image
        if self._has_gpu:
            return False
        return self.access.activation_bytes(images.shape[1], images.shape[2]) >= XLA_PER_IMAGE_BYTES

    def guided_gradients(self, images, targets: EncodedTargets) -> tf.Tensor:
        """Guided-backpropagation gradients of every target's score: (N, T, H, W, C)."""
        return self._guided(tf.convert_to_tensor(images, tf.float32), _tensors(targets), targets.any_loss, targets.any_components)

    def predict(self, images) -> tf.Tensor:
        """The predicted label map (N, H_out, W_out) from one forward pass, no gradients."""
        return self._predict(tf.convert_to_tensor(images, tf.float32))

    def scores_with_masks(self, images, masks, class_index, truth=None, has_truth=None) -> tf.Tensor:
        """Scores (N,) of one target per image with a given mask (N, H_out, W_out) and class (N,).

        ``truth`` (N, H_out, W_out) and ``has_truth`` (N,) make a row score the loss against
        the labels instead, as for a target with ground truth.
        """
        images = tf.convert_to_tensor(images, tf.float32)
        masks = tf.convert_to_tensor(masks, tf.float32)
        class_index = tf.convert_to_tensor(class_index, tf.int32)
        if truth is None:
            truth = tf.zeros(tf.shape(masks), tf.int32)
            has_truth = tf.zeros(tf.shape(class_index), tf.bool)
        return self._fixed(images, masks, class_index, tf.convert_to_tensor(truth, tf.int32), tf.convert_to_tensor(has_truth, tf.bool))

    # -- the traced functions -------------------------------------------------------------------
    def _explain_pass(self, images, targets: EncodedTargets, with_loss: bool, with_components: bool, xla: bool = False) -> PassResult:
        watchable = images.dtype.is_floating
        with tf.GradientTape(persistent=not self.strategy.startswith("pfor"), watch_accessed_variables=False) as tape:
            if watchable:
                tape.watch(images)
            run = self.access.forward(images, self.layers, watch=tape.watch, xla_gradients=xla)
            built, scores = self._scores(run.scores, targets, with_loss, with_components)
            per_target = tf.reduce_sum(scores, axis=0)
            # after the scores: their ops are uses too (an explained map may be the scores themselves)
            plans = self._conv_sum_plans(run.activations)
            for plan in plans.values():
                tape.watch(plan.output)
        sources = [plans[index].output if index in plans else act for index, act in enumerate(run.activations)]
        grads = self._gradients(tape, per_target, sources, targets.class_index.shape[0])
        weights, raw = [], []
        for index, (grad, act) in enumerate(zip(grads, run.activations)):
            if index in plans:
                means = [plans[index].input_gradient_mean(output_grad) for output_grad in grad]
                layer_weights, layer_raw = self.method.apply(None, act, fused=xla, channel_means=means)
            else:
                layer_weights, layer_raw = self.method.apply(grad, act, fused=xla)
            weights.append(layer_weights)
            raw.append(layer_raw)
        prediction = predicted_labels(run.scores, self.access.scores.decision)
        return PassResult(scores, built.masks, built.class_index, built.components, prediction, tuple(weights), tuple(raw))

    def _conv_sum_plans(self, activations) -> dict:
        """Explained maps whose channel sums can be read off the next convolution (``conv_sums``).

        Only for a method that uses nothing but those sums, and only for maps that depend on
        no other explained map: there the backward pass through the convolution is then
        skipped; elsewhere it is needed anyway for the maps upstream.

        Returns:
            {index in ``activations``: ConvInput}
        """
        if not (self.conv_sums and self.method.method.mean_gradient):
            return {}
        plans = {}
        for index, (layer, act) in enumerate(zip(self.layers, activations)):
            # the catalogue knows which call sites each site's output depends on
            others = {other.site.index for position, other in enumerate(self.layers) if position != index}
            plan = conv_sums.find(act) if others.isdisjoint(layer.site.ancestors) else None
            if plan is not None:
                plans[index] = plan
        self.conv_sum_layers = tuple(self.layers[index].name for index in plans)
        return plans

    def _gradients(self, tape, per_target, sources: list, num_targets: int) -> list:
        """d per_target[t] / d source for every target and source: per source, a list of T (N, ...) tensors."""
        if self.strategy.startswith("pfor"):
            stacked = tape.jacobian(per_target, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO, experimental_use_pfor=True)
            return [tf.unstack(grads, num=num_targets) for grads in stacked]
        rows = []
        for t in range(num_targets):
            cotangent = tf.one_hot(t, num_targets, dtype=per_target.dtype)
            rows.append(tape.gradient(per_target, sources, output_gradients=cotangent, unconnected_gradients=tf.UnconnectedGradients.ZERO))
        return [[row[i] for row in rows] for i in range(len(sources))]

    def _scores(self, explained, targets: EncodedTargets, with_loss: bool, with_components: bool):
        built = build_masks(explained, targets, self.access.scores.decision, with_components)
        if with_loss:
            values = pixel_values(explained, built.class_index, targets.truth, targets.has_truth)
        else:
            values = pixel_values(explained, built.class_index)
        return built, target_scores(values, built.masks)

    def _guided_pass(self, images, targets: EncodedTargets, with_loss: bool, with_components: bool):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(images)
            run = self.access.forward(images, guided=True)
            _, scores = self._scores(run.scores, targets, with_loss, with_components)
            per_target = tf.reduce_sum(scores, axis=0)
        grads = tape.jacobian(per_target, images, experimental_use_pfor=True)  # (T, N, H, W, C)
        return tf.transpose(grads, [1, 0, 2, 3, 4])

    def _predict_pass(self, images):
        return predicted_labels(self.access.forward(images).scores, self.access.scores.decision)

    def _fixed_pass(self, images, masks, class_index, truth, has_truth):
        explained = self.access.forward(images).scores
        chosen = tf.gather(explained, class_index[:, tf.newaxis], axis=3, batch_dims=1)[..., 0]
        values = tf.where(has_truth[:, tf.newaxis, tf.newaxis], cross_entropy(explained, truth), chosen)
        return tf.reduce_sum(values * masks, axis=[1, 2])


def _xla_refusal(message: str) -> str | None:
    """What XLA refused, in words, if ``message`` is an XLA compilation failure; else None."""
    if not any(mark in message for mark in ("XLA", "tf2xla", "mixed precision is disallowed")):
        return None
    ops = sorted(set(re.findall(r"(\w+) \(No registered '", message)))
    if ops:
        return "no XLA kernel for " + ", ".join(ops)
    return "XLA compilation failed: " + _first_line(message)


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0][:200] if message.strip() else "(no message)"


def _tensors(targets: EncodedTargets) -> EncodedTargets:
    return EncodedTargets(*(tf.convert_to_tensor(array) for array in targets))
