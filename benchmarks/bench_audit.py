"""Audit throughput (local vs Ray) and the local backend's peak memory at two dataset sizes.

Writes texture-shapes PNGs (and label masks) into a work folder once, then runs each
configuration in its own process, so each peak RSS is that process's own:

- local backend on the first ``--small`` images: images/s and peak RSS;
- local backend on ``--large`` images: images/s and peak RSS (memory should not grow);
- Ray backend (a local Ray instance, ``--workers`` actors) on the same ``--small`` images:
  images/s of the audit call, with Ray's own start-up timed separately.

The model is the shipped ``shapes_unet`` (128x128, 4 classes), every predicted class is
explained at ``--layers`` with the masks' localisation metrics. Printed figures are from one
run of this script; compare the ratios, not the absolute times (the machine may be shared).

    python benchmarks/bench_audit.py                 # 200 / 1000 images, 2 Ray workers
    python benchmarks/bench_audit.py --small 50 --large 100 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_data(folder: Path, count: int, seed: int) -> None:
    """PNG images and label masks for ``count`` texture-shape images (skipped if present)."""
    import cv2
    import numpy as np

    from seggradcam.data import texture_shapes

    done = folder / f".complete-{count}-{seed}"
    if done.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for start in range(0, count, 100):
        images, labels = texture_shapes(min(100, count - start), 128, seed=seed + start)
        for offset, (image, label) in enumerate(zip(images, labels)):
            name = f"{start + offset:05d}.png"
            cv2.imwrite(str(folder / "images" / name), cv2.cvtColor(np.round(image * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(folder / "masks" / name), label.astype(np.uint8))
    done.touch()


def subset(folder: Path, count: int) -> Path:
    """A folder of links to the first ``count`` images and masks."""
    target = folder.parent / f"first-{count}"
    if not target.exists():
        for kind in ("images", "masks"):
            (target / kind).mkdir(parents=True)
            for path in sorted((folder / kind).glob("*.png"))[:count]:
                (target / kind / path.name).symlink_to(path)
    return target


def child(args) -> None:
    """One measured run in this process; prints a JSON line."""
    from seggradcam.audit import RayBackend, audit
    from seggradcam.data import SHAPE_CLASSES
    from seggradcam.data import data_dir as package_data
    from seggradcam.models import load_model

    model_file = package_data() / "models" / "shapes_unet.keras"
    layers = args.layers[0] if len(args.layers) == 1 else args.layers
    data = Path(args.data)
    out = Path(args.out)
    record = {"config": args.child, "images": args.count, "load_start": os.getloadavg()[0]}
    backend = "local"
    if args.child == "ray":
        import ray

        start = time.perf_counter()
        ray.init(num_cpus=args.ray_cpus, _temp_dir=tempfile.mkdtemp(prefix="sgc-ray-"), include_dashboard=False, log_to_driver=False)
        record["ray_init_s"] = time.perf_counter() - start
        backend = RayBackend(num_workers=args.workers)
    load_model(model_file)  # warm the Keras import and the file cache outside the timed call
    start = time.perf_counter()
    result = audit(model_file, data / "images", masks=data / "masks", layers=layers, out=out, backend=backend, progress=False,
                   report=False, class_names=SHAPE_CLASSES, batch_size=args.batch_size)  # fmt: skip
    wall = time.perf_counter() - start
    record.update(
        wall_s=wall,
        images_per_s=result.explained / wall,
        rows=result.rows,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        load_end=os.getloadavg()[0],
    )
    print("RESULT " + json.dumps(record), flush=True)
    if args.child == "ray":
        ray.shutdown()


def run_child(kind: str, data: Path, count: int, args, work: Path) -> dict:
    out = work / f"out-{kind}-{count}"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, __file__, "--child", kind, "--data", str(data), "--count", str(count), "--out", str(out)]
    command += [
        "--workers",
        str(args.workers),
        "--ray-cpus",
        str(args.ray_cpus),
        "--batch-size",
        str(args.batch_size),
        "--layers",
        *args.layers,
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1])] + sys.path))
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} run failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["out"] = out
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=200, help="images for the throughput runs and the first memory run")
    parser.add_argument("--large", type=int, default=1000, help="images for the second memory run")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors")
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray instance")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--layers", nargs="+", default=["auto"])
    parser.add_argument("--work", default=None, help="folder for the images and outputs (default: a temporary folder)")
    parser.add_argument("--child", choices=("local", "ray"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="seggradcam-keras-"))
    if args.child:
        child(args)
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-audit-"))
    start = time.perf_counter()
    make_data(work / "all", args.large, seed=31)
    print(f"{args.large} images written in {time.perf_counter() - start:.0f} s to {work}; load average {os.getloadavg()[0]:.2f}")
    small, large = subset(work / "all", args.small), subset(work / "all", args.large)
    local_small = run_child("local", small, args.small, args, work)
    local_large = run_child("local", large, args.large, args, work)
    ray_small = run_child("ray", small, args.small, args, work)
    import pyarrow.parquet as pq

    same = pq.read_table(local_small["out"] / "metrics.parquet").drop(["image"]).to_pandas()
    other = pq.read_table(ray_small["out"] / "metrics.parquet").drop(["image"]).to_pandas()
    numeric = same.select_dtypes("number").columns
    difference = float(abs(same[numeric].to_numpy(float) - other[numeric].to_numpy(float))[~same[numeric].isna().to_numpy()].max())
    print(f"load average at the end {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs; layers {' '.join(args.layers)}")
    print(f"{'run':<22} {'images':>7} {'wall s':>8} {'images/s':>9} {'peak RSS MB':>12} {'load before/after':>18}")
    for name, record in (("local", local_small), ("local", local_large), (f"ray, {args.workers} workers", ray_small)):
        load = f"{record['load_start']:.1f} / {record['load_end']:.1f}"
        rate, rss = record["images_per_s"], record["peak_rss_mb"]
        print(f"{name:<22} {record['images']:>7} {record['wall_s']:>8.1f} {rate:>9.2f} {rss:>12.0f} {load:>18}")
    print(f"ray start-up (ray.init, not in the wall time above): {ray_small['ray_init_s']:.1f} s")
    print(f"ray / local images/s on the same {args.small} images: {ray_small['images_per_s'] / local_small['images_per_s']:.2f}")
    print(f"local peak RSS, {args.large} / {args.small} images: {local_large['peak_rss_mb'] / local_small['peak_rss_mb']:.3f}")
    print(f"ray vs local tables: {len(other)} vs {len(same)} rows, largest difference {difference:.2e}")


if __name__ == "__main__":
    main()
