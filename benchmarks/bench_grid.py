"""Time the full class x layer grid against one forward pass and a naive baseline.

Run: ``python benchmarks/bench_grid.py`` (all configurations, each in its own process so
that its peak memory is its own) or ``python benchmarks/bench_grid.py --config shapes-b1``.

For each configuration and each gradient strategy (``--strategies``) it reports:
  (a) one compiled forward pass (``model(x, training=False)`` in a ``tf.function``);
  (b) seggradcam's full grid: every class x layers="all", ``explain`` plus the heatmaps at
      input size as numpy. (a) and (b) are timed in alternation, round after round, and
      (b)/(a) is the median of each round's ratio, so that a slower or faster machine during
      the run moves both; in each round (a) is the median of ``FORWARDS_PER_ROUND``
      forward passes, because one pass of the small model varied by +-10% from call to call
      and moved the ratio as much; the floor is 1.2 x (1 + C) forward passes;
  first call: a new explainer's first grid (tracing and compiling) against a warm one;
  for "auto", the calls and seconds it took (first call included) to try XLA and settle on
  the faster pass before it is timed, and which pass it settled on;
  (c) a naive baseline in the same process: eager GradientTape, one target and one layer at
      a time (the structure of the paper's code), with the per-layer sub-models built once
      before timing;
  (d) tf-keras-vis ``Gradcam`` with a sum-over-mask score, one map per call (if installed);
and the ratios (c)/(b), (d)/(b) (against the fastest strategy) and the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

CONFIGS = {
    "shapes-b1": ("shapes", 1),
    "shapes-b8": ("shapes", 8),
    "unet2m-b1": ("unet2m", 1),
    "unet2m-b8": ("unet2m", 8),
}


FORWARDS_PER_ROUND = 3  # forward passes timed per round; their median is that round's (a)
MAX_SETTLE_CALLS = 2000  # "auto": calls allowed for trying XLA and settling (it needs far fewer)


def build(model_name):
    import keras

    from seggradcam.models import build_unet, load_pretrained

    if model_name == "shapes":
        return load_pretrained("shapes_unet")
    keras.utils.set_random_seed(0)
    return build_unet((256, 256, 3), 6, (32, 64, 128, 256), name="unet2m")


def median_time(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive_grid(model, layer_names, images, num_classes):
    """The paper's structure: one eager GradientTape per (class, layer), maps in numpy."""
    import cv2
    import keras
    import tensorflow as tf

    probes = {name: keras.Model(model.inputs[0], [model.get_layer(name).output, model.get_layer("logits").output]) for name in layer_names}

    def run():
        maps = []
        for c in range(num_classes):
            for name in layer_names:
                with tf.GradientTape() as tape:
                    acts, logits = probes[name](images, training=False)
                    score = tf.reduce_sum(logits[..., c])
                grads = tape.gradient(score, acts).numpy()
                acts = acts.numpy()
                alpha = grads.mean(axis=(1, 2), keepdims=True)
                cams = np.maximum((alpha * acts).sum(-1), 0)
                for cam in cams:
                    cam = cv2.resize(cam, images.shape[2:0:-1], interpolation=cv2.INTER_LINEAR)
                    maps.append(cam / cam.max() if cam.max() > 0 else cam)
        return maps

    return run


def keras_vis_grid(model, layer_names, images, num_classes):
    """tf-keras-vis Gradcam, one map per call; None if the package is missing or fails."""
    import tensorflow as tf

    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    except Exception:
        return None, "tf-keras-vis is not installed"
    try:
        explainer = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)

        def run():
            maps = []
            for c in range(num_classes):
                for name in layer_names:
                    score = lambda output, c=c: tf.reduce_sum(output[..., c], axis=[1, 2])  # noqa: E731
                    maps.append(explainer(score, images, penultimate_layer=name))
            return maps

        run()
        return run, None
    except Exception as error:  # report, do not crash the benchmark
        return None, f"tf-keras-vis failed on this model: {type(error).__name__}: {str(error)[:120]}"


def run_config(name, runs, naive_runs, strategies):
    import tensorflow as tf

    import seggradcam as sgc

    model_name, batch = CONFIGS[name]
    model = build(model_name)
    height, width, channels = model.input_shape[1:]
    images = np.random.default_rng(0).uniform(0, 1, (batch, height, width, channels)).astype(np.float32)
    forward = tf.function(lambda x: model(x, training=False))
    explainers = {}
    first_call = {}
    settling = {}
    for strategy in strategies:
        start = time.perf_counter()
        explainer = sgc.SegGradCAM(model, layers="all", strategy=strategy)
        targets = [sgc.ClassTarget(c, region="all") for c in range(explainer.num_classes)]
        _ = explainer.explain(images, targets).heatmaps
        first_call[strategy] = time.perf_counter() - start
        explainers[strategy] = explainer
        if strategy == "auto":  # call until "auto" has tried XLA and settled on the faster pass
            calls, start = 1, time.perf_counter()
            while not all(tier.settled for tier in explainer.engine._tiers.values()) and calls < MAX_SETTLE_CALLS:
                _ = explainer.explain(images, targets).heatmaps
                calls += 1
            tiers = list(explainer.engine._tiers.values())
            seconds = first_call[strategy] + time.perf_counter() - start
            settling = {"calls": calls, "seconds": seconds, "settled": [tier.settled for tier in tiers]}
    num_classes = explainer.num_classes
    result = {
        "config": name,
        "model": model_name,
        "batch": batch,
        "size": f"{height}x{width}",
        "classes": num_classes,
        "layers": len(explainer.layers),
        "parameters": int(model.count_params()),
    }
    forward(images).numpy()
    rounds = {strategy: [] for strategy in strategies}
    forwards, grids = [], {strategy: [] for strategy in strategies}
    for _ in range(runs):
        for strategy in strategies:
            forward_s = median_time(lambda: forward(images).numpy(), FORWARDS_PER_ROUND, warmup=0)
            start = time.perf_counter()
            _ = explainers[strategy].explain(images, targets).heatmaps
            grid_s = time.perf_counter() - start
            forwards.append(forward_s)
            grids[strategy].append(grid_s)
            rounds[strategy].append(grid_s / forward_s)
    result["forward_s"] = statistics.median(forwards)
    result["strategies"] = {
        strategy: {
            "grid_s": statistics.median(grids[strategy]),
            "ratio": statistics.median(rounds[strategy]),
            "first_call_s": first_call[strategy],
            "traces": explainers[strategy].engine.trace_count,
            "settling": settling if strategy == "auto" else None,
        }
        for strategy in strategies
    }
    best = min(result["strategies"].values(), key=lambda item: item["grid_s"])["grid_s"]
    result["best_grid_s"] = best
    result["runs"] = runs
    if naive_runs == 0:  # baselines skipped
        result.update(naive_s=None, keras_vis_s=None, keras_vis_note="baselines skipped (--naive-runs 0)", naive_runs=0)
    else:
        result["naive_s"] = median_time(naive_grid(model, explainer.layers, images, num_classes), naive_runs)
        vis, note = keras_vis_grid(model, explainer.layers, images, num_classes)
        result["keras_vis_s"] = median_time(vis, naive_runs, warmup=0) if vis else None
        result["keras_vis_note"] = note
        result["naive_runs"] = naive_runs
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def table(results):
    lines = [
        "| config | params | classes x layers | strategy | (a) forward | (b) grid | (b)/(a) | floor 1.2(1+C) | first call | warm call "
        "| (c) naive | (d) tf-keras-vis | (c)/(b) | (d)/(b) | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        floor = 1.2 * (1 + r["classes"])
        for strategy, item in r["strategies"].items():
            best = item["grid_s"] == r["best_grid_s"]
            naive = f"{r['naive_s']:.2f} s" if r["naive_s"] and best else ""
            cb = f"{r['naive_s'] / item['grid_s']:.1f}" if r["naive_s"] and best else ""
            dv = f"{r['keras_vis_s']:.2f} s" if r["keras_vis_s"] and best else ""
            db = f"{r['keras_vis_s'] / item['grid_s']:.1f}" if r["keras_vis_s"] and best else ""
            label = strategy
            if item.get("settling"):
                settled = item["settling"]
                names = {"xla": "loop-xla", "plain": "loop", None: "unsettled"}
                passes = "/".join(names[kind] for kind in settled["settled"])
                label = f"auto (runs {passes} after {settled['calls']} calls, {settled['seconds']:.0f} s)"
            lines.append(
                f"| {r['config']} ({r['size']}) | {r['parameters'] / 1e6:.2f}M | {r['classes']} x {r['layers']} | {label} "
                f"| {r['forward_s'] * 1e3:.1f} ms | {item['grid_s'] * 1e3:.0f} ms | {item['ratio']:.2f} | {floor:.1f} "
                f"| {item['first_call_s']:.1f} s | {item['grid_s']:.2f} s | {naive} | {dv} | {cb} | {db} | {r['peak_rss_mb']:.0f} MB |"
            )
    notes = sorted({r["keras_vis_note"] for r in results if r.get("keras_vis_note")})
    return "\n".join(lines + [f"\n(d): {note}" for note in notes])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), help="run one configuration in this process")
    parser.add_argument("--runs", type=int, default=10, help="timed runs of (a) and (b) (default 10)")
    parser.add_argument("--naive-runs", type=int, default=10, help="timed runs of (c) and (d) (default 10; 0 skips them)")
    parser.add_argument(
        "--strategies",
        default="auto,loop,pfor,loop-xla",
        help="comma-separated gradient strategies (default auto,loop,pfor,loop-xla)",
    )
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated configurations (default: all)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.config:
        print(json.dumps(run_config(args.config, args.runs, args.naive_runs, args.strategies.split(","))))
        return
    results = []
    for name in args.configs.split(","):
        command = [sys.executable, __file__, "--config", name, "--runs", str(args.runs), "--naive-runs", str(args.naive_runs)]
        command += ["--strategies", args.strategies]
        done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
        if done.returncode != 0:
            print(f"{name} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{name}: done", file=sys.stderr)
    print(table(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
