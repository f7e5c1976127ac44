"""Time the full class x layer grid against one forward pass and a naive baseline.

Run: ``python benchmarks/bench_grid.py`` (all configurations, each in its own process so
that its peak memory is its own) or ``python benchmarks/bench_grid.py --config shapes-b1``.

For each configuration it reports medians over ``--runs`` timed runs after warm-up:
  (a) one compiled forward pass;
  (b) seggradcam's full grid: every class x layers="all", heatmaps at input size, as numpy;
  (c) a naive baseline in the same process: eager GradientTape, one target and one layer at
      a time (the structure of the paper's code), with the per-layer sub-models built once
      before timing;
  (d) tf-keras-vis ``Gradcam`` with a sum-over-mask score, one map per call (if installed).
and the ratios (b)/(a), (c)/(b), (d)/(b), the floor 1.3 x (1 + C), and the peak RSS.
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


def run_config(name, runs, naive_runs):
    import tensorflow as tf

    import seggradcam as sgc

    model_name, batch = CONFIGS[name]
    model = build(model_name)
    height, width, channels = model.input_shape[1:]
    images = np.random.default_rng(0).uniform(0, 1, (batch, height, width, channels)).astype(np.float32)
    explainer = sgc.SegGradCAM(model, layers="all")
    num_classes = explainer.num_classes
    targets = [sgc.ClassTarget(c, region="all") for c in range(num_classes)]
    forward = tf.function(lambda x: model(x, training=False))
    result = {
        "config": name,
        "model": model_name,
        "batch": batch,
        "size": f"{height}x{width}",
        "classes": num_classes,
        "layers": len(explainer.layers),
        "parameters": int(model.count_params()),
    }
    result["forward_s"] = median_time(lambda: forward(images).numpy(), runs)
    result["grid_s"] = median_time(lambda: explainer.explain(images, targets).heatmaps, runs)
    if naive_runs == 0:  # baselines skipped
        result.update(naive_s=None, keras_vis_s=None, keras_vis_note="baselines skipped (--naive-runs 0)")
        result.update(runs=runs, naive_runs=0, traces=explainer.engine.trace_count)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return result
    result["naive_s"] = median_time(naive_grid(model, explainer.layers, images, num_classes), naive_runs)
    vis, note = keras_vis_grid(model, explainer.layers, images, num_classes)
    result["keras_vis_s"] = median_time(vis, naive_runs, warmup=0) if vis else None
    result["keras_vis_note"] = note
    result["naive_runs"] = naive_runs
    result["runs"] = runs
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["traces"] = explainer.engine.trace_count
    return result


def table(results):
    lines = [
        "| config | params | classes x layers | (a) forward | (b) grid | (c) naive | (d) tf-keras-vis "
        "| (b)/(a) | floor 1.3(1+C) | (c)/(b) | (d)/(b) | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ba = r["grid_s"] / r["forward_s"]
        cb = f"{r['naive_s'] / r['grid_s']:.1f}" if r["naive_s"] else "n/a"
        naive = f"{r['naive_s']:.2f} s" if r["naive_s"] else "n/a"
        db = f"{r['keras_vis_s'] / r['grid_s']:.1f}" if r["keras_vis_s"] else "n/a"
        dv = f"{r['keras_vis_s']:.3f} s" if r["keras_vis_s"] else "n/a"
        floor = 1.3 * (1 + r["classes"])
        lines.append(
            f"| {r['config']} ({r['size']}) | {r['parameters'] / 1e6:.2f}M | {r['classes']} x {r['layers']} "
            f"| {r['forward_s'] * 1e3:.1f} ms | {r['grid_s'] * 1e3:.0f} ms | {naive} | {dv} "
            f"| {ba:.2f} | {floor:.1f} | {cb} | {db} | {r['peak_rss_mb']:.0f} MB |"
        )
    notes = sorted({r["keras_vis_note"] for r in results if r["keras_vis_note"]})
    return "\n".join(lines + [f"\n(d): {note}" for note in notes])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), help="run one configuration in this process")
    parser.add_argument("--runs", type=int, default=10, help="timed runs of (a) and (b) (default 10)")
    parser.add_argument("--naive-runs", type=int, default=10, help="timed runs of (c) and (d) (default 10; 0 skips them)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.config:
        print(json.dumps(run_config(args.config, args.runs, args.naive_runs)))
        return
    results = []
    for name in CONFIGS:
        command = [sys.executable, __file__, "--config", name, "--runs", str(args.runs), "--naive-runs", str(args.naive_runs)]
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
