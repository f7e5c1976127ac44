"""Which gradient pass wins on models we did not design, and what "auto" settles on.

Run from the repository root: ``python benchmarks/bench_architectures.py``.

The models are the architecture tests' (``tests/test_architectures.py``: a MobileNetV2
backbone in a U-Net, a separable residual U-Net, a DeepLab-style atrous pyramid with
BatchNorm and bilinear resizing, a transformer-style segmenter of custom layers), each at
its test size, a batch of ``--batch`` random images, every class (``region="all"``) x
``layers="all"``. For each: one compiled forward pass, the plain "loop" pass and the
"loop-xla" pass of the engine (``SegGradCAM.engine.run``, maps at layer resolution), timed
in alternation round after round (median of per-round ratios to the forward pass); then a
fresh "auto" explainer called until it has settled, with the pass it chose.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np

ARCHITECTURES = ("mobilenet_unet", "separable_residual_unet", "deeplab_like", "transformer_segmenter")
MAX_SETTLE_CALLS = 2000


def measure(name: str, batch: int, runs: int) -> dict:
    import tensorflow as tf

    import seggradcam as sgc
    from seggradcam.encoding import encode_targets
    from tests import test_architectures

    built = getattr(test_architectures, name)()
    model = built[0] if isinstance(built, tuple) else built
    shape = tuple(model.input_shape[1:])
    images = tf.constant(np.random.default_rng(0).uniform(0, 1, (batch,) + shape).astype(np.float32))
    forward = tf.function(lambda x: model(x, training=False), autograph=False)
    explainers = {strategy: sgc.SegGradCAM(model, layers="all", strategy=strategy) for strategy in ("loop", "loop-xla")}
    num_classes = explainers["loop"].num_classes
    targets = [sgc.ClassTarget(c, region="all") for c in range(num_classes)]
    encoded = encode_targets(targets, explainers["loop"].access.output_size(*shape[:2]), num_classes)
    calls = {"forward": lambda: np.asarray(forward(images))}
    for strategy, explainer in explainers.items():
        calls[strategy] = lambda explainer=explainer: [np.asarray(raw) for raw in explainer.engine.run(images, encoded).raw]
    for call in calls.values():  # trace and compile, then one warm call
        call()
        call()
    ratios = {strategy: [] for strategy in explainers}
    for _ in range(runs):
        start = time.perf_counter()
        calls["forward"]()
        forward_s = time.perf_counter() - start
        for strategy in explainers:
            start = time.perf_counter()
            calls[strategy]()
            ratios[strategy].append((time.perf_counter() - start) / forward_s)
    auto = sgc.SegGradCAM(model, layers="all")
    warnings.simplefilter("ignore", sgc.EmptyMapWarning)  # random weights: some maps are empty, as expected
    count = 0
    while count < MAX_SETTLE_CALLS and not (auto.engine._tiers and all(t.settled for t in auto.engine._tiers.values())):
        auto.explain(images.numpy(), targets)
        count += 1
    settled = [tier.settled for tier in auto.engine._tiers.values()]
    return {
        "name": name,
        "size": "x".join(str(side) for side in shape[:2]),
        "layers": len(explainers["loop"].layers),
        "classes": num_classes,
        "loop": statistics.median(ratios["loop"]),
        "loop-xla": statistics.median(ratios["loop-xla"]),
        "auto": "/".join({"xla": "loop-xla", "plain": "loop"}.get(kind, "unsettled") for kind in settled),
        "auto_calls": count,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2, help="images per call (default 2)")
    parser.add_argument("--runs", type=int, default=9, help="timed rounds (default 9)")
    args = parser.parse_args()
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rows = [measure(name, args.batch, args.runs) for name in ARCHITECTURES]
    print("| model | input | classes x layers | loop / forward | loop-xla / forward | faster | auto settled on (calls) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        faster = "loop-xla" if row["loop-xla"] < row["loop"] else "loop"
        print(
            f"| {row['name']} | {row['size']} | {row['classes']} x {row['layers']} | {row['loop']:.2f} | {row['loop-xla']:.2f} "
            f"| {faster} | {row['auto']} ({row['auto_calls']}) |"
        )


if __name__ == "__main__":
    main()
