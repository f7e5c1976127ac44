"""Many explain calls with the same shapes: memory must stay flat and the pass trace once.

Run: ``python benchmarks/long_run.py --calls 1000`` (the tests run a shorter version).
Prints the resident memory (RSS) after warm-up and every ``--every`` calls, the growth,
and the number of traces.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def long_run(calls: int, every: int = 100, warmup: int = 20, model=None) -> dict:
    """Explain the same-shaped batch ``calls`` times; returns RSS samples and trace count."""
    import seggradcam as sgc
    from seggradcam.models import build_unet

    if model is None:
        model = build_unet((64, 64, 3), 4, (8, 16, 32))
    explainer = sgc.SegGradCAM(model, layers="all")
    rng = np.random.default_rng(0)
    targets = [sgc.ClassTarget(c, region="all") for c in range(4)] + [sgc.PixelTarget(5, 5)]
    shape = (2,) + tuple(model.input_shape[1:])
    for _ in range(warmup):
        explainer.explain(rng.uniform(0, 1, shape).astype(np.float32), targets)
    start_rss = rss_mb()
    samples = [(0, start_rss)]
    start = time.perf_counter()
    for call in range(1, calls + 1):
        explainer.explain(rng.uniform(0, 1, shape).astype(np.float32), targets)
        if call % every == 0 or call == calls:
            samples.append((call, rss_mb()))
    return {
        "calls": calls,
        "seconds": round(time.perf_counter() - start, 1),
        "rss_after_warmup_mb": round(start_rss, 1),
        "rss_end_mb": round(samples[-1][1], 1),
        "growth_mb": round(samples[-1][1] - start_rss, 1),
        "max_growth_mb": round(max(value for _, value in samples) - start_rss, 1),
        "samples": [(call, round(value, 1)) for call, value in samples],
        "traces": explainer.engine.trace_count,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(long_run(args.calls, args.every), indent=1))


if __name__ == "__main__":
    main()
