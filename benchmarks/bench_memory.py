"""A 1024x2048 image, 19 classes, layers="all": the grid completes within the memory budget.

Run: ``python benchmarks/bench_memory.py [--max-memory BYTES]``. Prints the chunk plan, the
time and the peak RSS of this process (the explanation's own arrays included).
"""

import argparse
import json
import resource
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-memory", type=float, default=None, help="bytes; default: the package default")
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    args = parser.parse_args()

    import keras

    import seggradcam as sgc
    from seggradcam.explainer import DEFAULT_MAX_MEMORY
    from seggradcam.models import build_unet

    keras.utils.set_random_seed(0)
    model = build_unet((args.height, args.width, 3), 19, (8, 16, 32), name="cityscapes_like")
    explainer = sgc.SegGradCAM(model, layers="all")
    image = np.random.default_rng(0).uniform(0, 1, (1, args.height, args.width, 3)).astype(np.float32)
    budget = int(args.max_memory) if args.max_memory else DEFAULT_MAX_MEMORY
    targets = [sgc.ClassTarget(c, region="all") for c in range(19)]
    plan = explainer.plan_chunks(image.shape, len(targets), budget)
    start = time.perf_counter()
    expl = explainer.explain(image, targets, max_memory=budget)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "input": f"{args.height}x{args.width}",
                "classes": 19,
                "layers": len(expl.layers),
                "max_memory_bytes": budget,
                "images_per_chunk": plan[0],
                "targets_per_chunk": plan[1],
                "seconds": round(seconds, 1),
                "heatmaps_bytes": int(expl.heatmaps.nbytes),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "finite": bool(np.isfinite(expl.heatmaps).all()),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
