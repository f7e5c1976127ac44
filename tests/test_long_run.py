"""A shorter version of benchmarks/long_run.py: memory stays flat, one trace."""

import importlib.util
from pathlib import Path


def load_long_run():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "long_run.py"
    spec = importlib.util.spec_from_file_location("long_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repeated_explain_keeps_memory_flat_and_traces_once():
    result = load_long_run().long_run(calls=150, every=50, warmup=20)
    assert result["traces"] == 1
    assert result["max_growth_mb"] < 50, result["samples"]
