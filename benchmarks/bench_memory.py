"""A 1024x2048 image, 19 classes, layers="all": the grid completes within the memory budget.

Run: ``python benchmarks/bench_memory.py [--max-memory BYTES]``. Prints the chunk plan, the
planner's estimate for one chunk, and the peak RSS of this process at three points:
before explaining (model built, traced shapes probed), after ``explain`` (the raw maps at
layer resolution, what ``explain`` hands back), and after reading ``expl.heatmaps`` (every
map upsampled to 1024x2048, rendered layer by layer into one array).
"""

import argparse
import json
import resource
import time

import numpy as np


def peak_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-memory", type=float, default=None, help="bytes; default: the package default")
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--strategy", default="auto", help="gradient strategy (default auto: the first call runs 'loop')")
    args = parser.parse_args()

    import keras

    import seggradcam as sgc
    from seggradcam.explainer import DEFAULT_MAX_MEMORY
    from seggradcam.models import build_unet

    keras.utils.set_random_seed(0)
    model = build_unet((args.height, args.width, 3), 19, (8, 16, 32), name="cityscapes_like")
    explainer = sgc.SegGradCAM(model, layers="all", strategy=args.strategy)
    image = np.random.default_rng(0).uniform(0, 1, (1, args.height, args.width, 3)).astype(np.float32)
    budget = int(args.max_memory) if args.max_memory else DEFAULT_MAX_MEMORY
    targets = [sgc.ClassTarget(c, region="all") for c in range(19)]
    images_per_chunk, targets_per_chunk = explainer.plan_chunks(image.shape, len(targets), budget)
    estimate = explainer.estimate_pass_bytes(images_per_chunk, targets_per_chunk, args.height, args.width)
    before = peak_mb()
    start = time.perf_counter()
    expl = explainer.explain(image, targets, max_memory=budget)
    explain_s = time.perf_counter() - start
    after_explain = peak_mb()
    raw_bytes = sum(raw.nbytes for raw in expl.raw.values())
    start = time.perf_counter()
    heatmaps = expl.heatmaps
    render_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "input": f"{args.height}x{args.width}",
                "classes": 19,
                "layers": len(expl.layers),
                "strategy": args.strategy,
                "max_memory_bytes": budget,
                "images_per_chunk": images_per_chunk,
                "targets_per_chunk": targets_per_chunk,
                "planner_estimate_mb": round(estimate / 2**20),
                "explain_s": round(explain_s, 1),
                "raw_maps_mb": round(raw_bytes / 2**20),
                "peak_rss_before_explain_mb": round(before),
                "peak_rss_after_explain_mb": round(after_explain),
                "explain_growth_mb": round(after_explain - before),
                "render_heatmaps_s": round(render_s, 1),
                "heatmaps_mb": round(heatmaps.nbytes / 2**20),
                "peak_rss_after_heatmaps_mb": round(peak_mb()),
                "finite": bool(np.isfinite(heatmaps).all()),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
