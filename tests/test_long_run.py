"""Many explain calls with the same shapes: memory stays flat and the pass traces once.

benchmarks/long_run.py runs the long version (1,000 calls); this is a short one.
"""

import numpy as np
import pytest

import seggradcam as sgc
from seggradcam.models import build_unet

CALLS, WARMUP = 150, 20
MAX_GROWTH_MB = 50  # allocator noise over 150 calls stays well under this; a leak of one batch's maps per call (~1 MB) would not


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


@pytest.mark.parametrize("strategy", ["loop", "loop-xla"])
def test_repeated_explain_keeps_memory_flat_and_traces_once(strategy):
    model = build_unet((64, 64, 3), 4, (8, 16, 32))
    explainer = sgc.SegGradCAM(model, layers="all", strategy=strategy)
    rng = np.random.default_rng(0)
    targets = [sgc.ClassTarget(c, region="all") for c in range(4)] + [sgc.PixelTarget(5, 5)]
    for _ in range(WARMUP):
        explainer.explain(rng.uniform(0, 1, (2, 64, 64, 3)).astype(np.float32), targets)
    start = rss_mb()
    peak = start
    for _ in range(CALLS):
        explainer.explain(rng.uniform(0, 1, (2, 64, 64, 3)).astype(np.float32), targets)
        peak = max(peak, rss_mb())
    assert explainer.engine.trace_count + explainer.engine.xla_trace_count == 1
    assert peak - start < MAX_GROWTH_MB, (start, peak)
