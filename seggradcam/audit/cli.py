"""The ``seggradcam audit`` command (hooked into ``seggradcam.cli`` by :func:`add_parser`).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="seggradcam")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["audit", "m.keras", "images", "--out", "o", "--class", "1", "2"])
    >>> args.classes, args.backend, args.batch_size
    ([1, 2], 'local', 16)
"""

from __future__ import annotations

import argparse
import sys

from .api import DEFAULT_BATCH_SIZE

__all__ = ["add_parser", "cmd_audit"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``audit`` subcommand to an argparse ``add_subparsers()`` object."""
    audit = subparsers.add_parser(
        "audit",
        help="explain every image of a dataset: metrics.parquet, heatmaps.zarr, report.html",
        description=(
            "Explain every image of a folder (or a .npy array) for every predicted class (or the --class list) at "
            "the chosen layers. Writes OUT/metrics.parquet, OUT/heatmaps.zarr and OUT/report.html; run it again "
            "with the same --out to resume after an interruption."
        ),
    )
    audit.add_argument("model", help="a .keras model file (loaded with safe mode on)")
    audit.add_argument("source", help="a folder of PNG/JPEG/TIFF images (sorted by path, scaled to [0, 1]) or a .npy array")
    audit.add_argument("--out", required=True, help="output folder (also where an interrupted audit resumes)")
    audit.add_argument(
        "--class",
        dest="classes",
        type=int,
        nargs="+",
        action="extend",
        metavar="C",
        help="explain these classes where predicted (default: every predicted class)",
    )
    audit.add_argument("--layers", nargs="+", default=["auto"], help="auto, all, or layer names (default: auto)")
    audit.add_argument("--masks", help="ground-truth label images with the images' relative paths and stems (or a .npy array)")
    audit.add_argument("--backend", choices=("local", "ray"), default="local", help="where to run (default: local)")
    audit.add_argument("--ray-address", help="join this Ray cluster (default: start a local Ray instance)")
    audit.add_argument("--workers", type=int, help="Ray explainer actors (default: one per CPU)")
    audit.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"images per batch (default {DEFAULT_BATCH_SIZE})")
    audit.add_argument("--class-names", help="comma-separated class names for the table and the report")
    audit.add_argument("--no-report", action="store_true", help="do not write report.html")
    audit.add_argument("--unsafe", action="store_true", help="allow models with Lambda layers (runs their code)")
    audit.set_defaults(run=cmd_audit)
    return audit


def cmd_audit(args) -> int:
    """Run the audit for parsed arguments; prints where the results are. Returns the exit code."""
    from ._extras import MissingExtraError
    from .api import audit

    if args.backend != "ray" and (args.ray_address or args.workers):
        raise ValueError("--ray-address and --workers need --backend ray")
    layers = args.layers[0] if len(args.layers) == 1 else args.layers
    names = None if not args.class_names else [name.strip() for name in args.class_names.split(",")]
    try:
        result = audit(
            args.model,
            args.source,
            targets=args.classes,
            layers=layers,
            out=args.out,
            backend=args.backend,
            masks=args.masks,
            batch_size=args.batch_size,
            class_names=names,
            report=not args.no_report,
            ray_address=args.ray_address,
            num_workers=args.workers,
            safe_mode=not args.unsafe,
        )
    except MissingExtraError as error:
        print(f"seggradcam audit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seggradcam audit: interrupted; run the same command again to resume in {args.out}", file=sys.stderr)
        return 130
    resumed = f" ({result.images - result.explained} done before)" if result.explained < result.images else ""
    print(f"audited {result.images} images{resumed}: {result.rows} rows ({len(result.targets)} targets x {len(result.layers)} layers)")
    print(f"table:    {result.metrics_path}")
    print(f"heatmaps: {result.heatmaps_path}")
    if result.report_path is not None:
        print(f"report:   {result.report_path}")
    return 0
