"""The ``seggradcam`` command: ``demo``, ``explain`` and ``layers``.

Exit codes: 0 on success, 2 on bad arguments or unreadable files (a one-line message on
stderr, no traceback).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


class UsageError(Exception):
    """A bad argument or file: reported in one line, exit code 2."""


def _parse_ints(text: str, count: int, what: str) -> tuple:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"{what} must be {count} comma-separated integers, got {text!r}") from None
    if len(values) != count:
        raise UsageError(f"{what} must be {count} comma-separated integers, got {text!r}")
    return values


def read_image(path: Path) -> np.ndarray:
    """Read a PNG/JPEG as float32 RGB in [0, 1] (grayscale stays one channel)."""
    import cv2

    if not path.is_file():
        raise UsageError(f"image file not found: {path}")
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise UsageError(f"could not read image {path} (not a PNG/JPEG/TIFF image, or corrupt)")
    if data.ndim == 3:
        data = cv2.cvtColor(data[..., :3], cv2.COLOR_BGR2RGB)
    scale = 65535.0 if data.dtype == np.uint16 else 255.0
    return data.astype(np.float32) / scale


def _targets_from_args(args):
    import seggradcam as sgc

    if args.pixel:
        row, col = _parse_ints(args.pixel, 2, "--pixel")
        return [sgc.PixelTarget(row, col)]
    if args.box:
        return [sgc.RegionTarget(box=_parse_ints(args.box, 4, "--box"))]
    if args.mask:
        mask_path = Path(args.mask)
        if not mask_path.is_file():
            raise UsageError(f"mask file not found: {mask_path}")
        mask = read_image(mask_path)
        mask = mask.max(axis=-1) if mask.ndim == 3 else mask
        return [sgc.RegionTarget(mask=mask > 0)]
    if args.component:
        cls, _, which = args.component.partition(":")
        if not cls.isdigit():
            raise UsageError(f"--component must be C[:largest|smallest|N], got {args.component!r}")
        which = which or "largest"
        return [sgc.ComponentTarget(int(cls), which=int(which) if which.isdigit() else which)]
    if args.class_index is not None:
        return [sgc.ClassTarget(args.class_index)]
    return None


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _image_paths(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_mask"))
        if not found:
            raise UsageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        return found
    if not path.exists():
        raise UsageError(f"image file not found: {path}")
    return [path]


def cmd_explain(args) -> int:
    import seggradcam as sgc
    from seggradcam.models import load_model

    model = load_model(args.model, safe_mode=not args.unsafe)
    paths = _image_paths(Path(args.image))
    layers = args.layers[0] if len(args.layers) == 1 else args.layers
    explainer = sgc.SegGradCAM(model, layers=layers)
    targets = _targets_from_args(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if len(paths) > 1:
        from tqdm.auto import tqdm

        paths = tqdm(paths, desc="explaining", unit="image")
    for path in paths:
        image = read_image(path)
        chosen = targets
        if chosen is None:  # every foreground class predicted in the image
            chosen = [int(c) for c in np.unique(explainer.predict(image)[0]) if c != 0] or [0]
        expl = explainer.explain(image, chosen)
        expl.plot(path=out / f"{path.stem}_grid.png", view="signed" if args.signed else "positive")
        expl.save(out / f"{path.stem}_explanation.npz")
    print(f"explained {expl.explained}")
    print(f"wrote {len(list(out.glob('*_grid.png')))} grid(s) and explanation file(s) to {out}")
    return 0


def cmd_layers(args) -> int:
    from seggradcam.model_access import ModelAccess
    from seggradcam.models import load_model

    access = ModelAccess(load_model(args.model, safe_mode=not args.unsafe))
    auto = access.auto_layer().name
    decoder = {site.name for site in access.decoder_layers()}
    print(f"{'layer':<28} {'type':<18} {'output shape':<16} note")
    for site in access.candidates():
        note = "auto (bottleneck)" if site.name == auto else ("decoder" if site.name in decoder else "")
        print(f"{site.name:<28} {site.layer_type:<18} {str(site.shape):<16} {note}")
    print(f"explained scores: {access.scores.description}")
    return 0


def cmd_demo(args) -> int:
    import seggradcam as sgc
    from seggradcam.data import SHAPE_CLASSES, load_samples
    from seggradcam.diagnostics import negative_weight_share
    from seggradcam.metrics import energy_inside
    from seggradcam.model_access import ModelAccess
    from seggradcam.models import load_pretrained
    from seggradcam.viz import plot_grid

    start = time.perf_counter()
    model = load_pretrained("shapes_unet")
    image = load_samples("shapes")["images"][args.sample]
    access = ModelAccess(model)
    layers = [access.auto_layer().name] + [site.name for site in access.decoder_layers()]
    explainer = sgc.SegGradCAM(model, layers=layers)
    prediction = explainer.predict(image)[0]
    classes = [int(c) for c in np.unique(prediction) if c != 0]
    expl = explainer.explain(image, classes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid_path = out / "demo_grid.png"
    plot_grid(expl, class_names=SHAPE_CLASSES, path=grid_path)
    inside = energy_inside(expl.heatmaps, expl.masks)
    negative = negative_weight_share(expl.weights, expl.layers)
    print(f"model: shapes_unet; explained: {expl.explained}")
    print(f"{'class':<10} {'layer':<18} {'score':>10} {'in mask':>8} {'neg. alpha':>10}")
    for t, cls in enumerate(classes):
        for l, layer in enumerate(expl.layers):
            share = "empty" if np.isnan(inside[0, t, l]) else f"{inside[0, t, l]:.2f}"
            print(f"{SHAPE_CLASSES[cls]:<10} {layer:<18} {expl.scores[0, t]:>10.1f} {share:>8} {negative[0, t, l]:>10.2f}")
    print(f"wrote {grid_path} ({time.perf_counter() - start:.1f} s after import)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seggradcam", description="Explain Keras segmentation models with Seg-Grad-CAM.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="explain the shipped shapes U-Net on a shipped sample")
    demo.add_argument("--out", default="seggradcam_demo", help="folder for the PNG grid (default: seggradcam_demo)")
    demo.add_argument("--sample", type=int, default=0, help="which shipped sample image (default 0)")
    demo.set_defaults(run=cmd_demo)
    explain = commands.add_parser("explain", help="explain a model on an image")
    explain.add_argument("model", help="a .keras model file (loaded with safe mode on)")
    explain.add_argument("image", help="a PNG/JPEG image, or a folder of them; pixel values are scaled to [0, 1]")
    group = explain.add_mutually_exclusive_group()
    group.add_argument("--class", dest="class_index", type=int, help="explain every pixel predicted as class C")
    group.add_argument("--pixel", help="R,C: explain one output pixel")
    group.add_argument("--box", help="R0,C0,R1,C1: explain a box (ends exclusive)")
    group.add_argument("--mask", help="a PNG whose non-zero pixels are the region")
    group.add_argument("--component", help="C[:largest|smallest|N]: one connected object of class C")
    explain.add_argument("--layers", nargs="+", default=["auto"], help="auto, all, or layer names")
    explain.add_argument("--signed", action="store_true", help="draw signed maps (diverging colormap) instead of heatmaps")
    explain.add_argument("--out", default="seggradcam_out", help="output folder")
    explain.add_argument("--unsafe", action="store_true", help="allow models with Lambda layers (runs their code)")
    explain.set_defaults(run=cmd_explain)
    layers = commands.add_parser("layers", help="list the explainable layers of a model")
    layers.add_argument("model", help="a .keras model file")
    layers.add_argument("--unsafe", action="store_true", help="allow models with Lambda layers (runs their code)")
    layers.set_defaults(run=cmd_layers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, ValueError, TypeError, KeyError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"seggradcam {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
