"""The ``seggradcam`` command: ``demo``, ``explain`` and ``layers``.

Each command is one ``cmd_*`` function, added to the parser by one ``_add_*`` function in
:func:`build_parser`. Nothing heavy is imported at module level: ``seggradcam --help``
does not start TensorFlow, and a command starts it with its start-up log lines silenced
(in this process only; set ``TF_CPP_MIN_LOG_LEVEL`` yourself to see them).

Exit codes: 0 on success; 2 on a user error (bad argument, unreadable file, a class that is
not predicted, missing TensorFlow), reported as one line on stderr without a traceback. A
folder in which some images fail is explained as far as possible; the failures are listed
at the end and the exit code is 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

__all__ = ["UsageError", "build_parser", "main", "read_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class UsageError(Exception):
    """A bad argument or file: reported in one line, exit code 2."""


# --------------------------------------------------------------------------- inputs


def _parse_ints(text: str, count: int, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"{what} must be {count} comma-separated integers, got {text!r}") from None
    if len(values) != count:
        raise UsageError(f"{what} must be {count} comma-separated integers, got {text!r}")
    return values


def read_image(path: Path, channels: int | None = None):
    """Read a PNG/JPEG/TIFF/BMP as float32 in [0, 1], RGB channel order.

    Args:
        path: the image file.
        channels: the channels the model expects. ``None`` keeps the file's own (a grayscale
            file gives an (H, W) array); 1 turns colour into luminance and adds the channel
            axis to grayscale; 3 repeats a grayscale channel. An alpha channel is dropped.

    Returns:
        float32 (H, W) or (H, W, C), values in [0, 1] (8-bit / 255, 16-bit / 65535).

    Raises:
        UsageError: missing or unreadable file, or channels that cannot be converted.
    """
    import cv2
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"image file not found: {path}")
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise UsageError(f"could not read image {path} (not a PNG/JPEG/TIFF/BMP image, or corrupt)")
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 3:
        data = cv2.cvtColor(np.ascontiguousarray(data[..., :3]), cv2.COLOR_BGR2RGB)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(data.dtype, 1.0)
    image = data.astype(np.float32) / scale
    if channels is None:
        return image
    if image.ndim == 2:
        image = image[..., np.newaxis]
    have = image.shape[-1]
    if have == channels:
        return image
    if have == 1 and channels == 3:
        return np.repeat(image, 3, axis=-1)
    if have == 3 and channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., np.newaxis]
    raise UsageError(f"image {path} has {have} channel(s) but the model expects {channels}")


def _image_paths(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_mask"))
        if not found:
            raise UsageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        return found
    if not path.exists():
        raise UsageError(f"image file not found: {path}")
    return [path]


def _output_folder(text: str) -> Path:
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is an existing file; name a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the output folder {out}: {error.strerror}") from None
    return out


def _input_channels(model) -> int | None:
    shape = model.input_shape
    if isinstance(shape, list):
        if len(shape) != 1:
            raise UsageError(f"the model has {len(shape)} inputs; the command line explains models with one image input")
        shape = shape[0]
    return shape[-1]


# --------------------------------------------------------------------------- TensorFlow


def _start_tensorflow() -> None:
    """Import TensorFlow for this command, without its start-up log lines.

    ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the user set it) hides the C++ INFO/WARNING/ERROR
    lines of this process; the few lines some builds print while their libraries load,
    before that setting is read, are kept off the terminal by pointing file descriptor 2
    at /dev/null for the import only. Python exceptions are not affected.
    """
    from ._deps import import_with_tensorflow

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if sys.modules.get("tensorflow") is not None:
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):  # no real stderr: import as it is
        import_with_tensorflow("tensorflow")
        return
    os.dup2(devnull, 2)
    try:
        import_with_tensorflow("tensorflow")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# --------------------------------------------------------------------------- messages


def _one_line(error: BaseException) -> str:
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(message).split())


def _class_list(labels) -> str:
    return ", ".join(str(int(c)) for c in labels) or "none"


def _report_warnings(prefix: str, caught: list, expl=None, where: str = "") -> None:
    """Print the warnings of one command step, one line each, in command-line words.

    Empty heatmaps are reported from ``expl.diagnose()`` (not from the library's warning
    text, which speaks Python); other warnings keep their first line.
    """
    from .warning_types import EmptyMapWarning

    where = f"{where}: " if where else ""
    seen = set()
    for record in caught:
        if issubclass(record.category, EmptyMapWarning):
            continue
        text = f"{record.category.__name__}: {' '.join(str(record.message).split())}"
        if text not in seen:
            seen.add(text)
            print(f"{prefix}: warning: {where}{text}", file=sys.stderr)
    if expl is None:
        return
    empty = expl.diagnose().empty
    if empty.any():
        cells = []
        for t, target in enumerate(expl.targets):
            layers = [expl.layers[l] for l in range(len(expl.layers)) if empty[:, t, l].any()]
            if layers:
                cells.append(f"{target.describe()} at {', '.join(layers)}")
        print(
            f"{prefix}: warning: {where}{int(empty.sum())} of {empty.size} heatmap(s) are empty after the ReLU "
            f"(all evidence negative): {'; '.join(cells)}. Run again with --signed to see the negative evidence.",
            file=sys.stderr,
        )


# --------------------------------------------------------------------------- targets


def _region_from_args(args):
    """The region options as (kind, value) parsed before any model is loaded, or None."""
    if args.component and args.class_index:
        raise UsageError("--component names its own class; give it without --class")
    if args.pixel:
        return "pixel", _parse_ints(args.pixel, 2, "--pixel")
    if args.box:
        return "box", _parse_ints(args.box, 4, "--box")
    if args.mask:
        mask = read_image(Path(args.mask))
        mask = mask.max(axis=-1) if mask.ndim == 3 else mask
        return "mask", mask > 0
    if args.component:
        cls, _, which = args.component.partition(":")
        which = which or "largest"
        if not cls.isdigit() or not (which in ("largest", "smallest") or which.isdigit()):
            raise UsageError(f"--component must be C[:largest|smallest|N], got {args.component!r}")
        return "component", (int(cls), int(which) if which.isdigit() else which)
    return None


def _check_classes(classes: list[int], num_classes: int) -> None:
    for cls in classes:
        if cls >= num_classes:
            raise UsageError(
                f"class index {cls} is out of range: the model scores {num_classes} class(es), valid --class values: 0..{num_classes - 1}"
            )


def _targets_for(args, region, explainer, image, name: str) -> list:
    """The targets for one image: the options given, or every foreground class predicted."""
    import numpy as np

    import seggradcam as sgc

    classes = list(args.class_index or [])
    if region is not None and region[0] != "component":
        kind, value = region
        per_class = classes or [None]
        if kind == "pixel":
            return [sgc.PixelTarget(value[0], value[1], class_index=c) for c in per_class]
        if kind == "box":
            return [sgc.RegionTarget(box=value, class_index=c) for c in per_class]
        return [sgc.RegionTarget(mask=value, class_index=c) for c in per_class]
    labels = explainer.predict(image)[0]
    binary = explainer.num_classes == 1
    # predicted labels as class indices: a one-channel head predicts its class 0 where label == 1
    present = ([0] if (labels == 1).any() else []) if binary else [int(c) for c in np.unique(labels)]
    if region is not None:  # a component of class C
        cls, which = region[1]
        wanted = [cls]
    elif classes:
        wanted = classes
    elif binary:
        if not present:
            note = f"{name}: no foreground predicted; explaining the foreground score over the whole image"
            print(f"seggradcam explain: note: {note}", file=sys.stderr)
            return [sgc.ClassTarget(0, region="all")]
        return [sgc.ClassTarget(0)]
    else:
        return [sgc.ClassTarget(c) for c in present if c != 0] or [sgc.ClassTarget(0)]
    missing = [c for c in wanted if c not in present]
    if missing:
        shown = "foreground (class 0)" if binary and present else f"classes {_class_list(present)}"
        raise UsageError(
            f"class {missing[0]} is not predicted in {name} (predicted: {shown}); choose a predicted class with --class, "
            f"or explain class {missing[0]} over a region with --class {missing[0]} and --box R0,C0,R1,C1, --mask FILE or --pixel R,C"
        )
    if region is not None:
        return [sgc.ComponentTarget(cls, which=which)]
    return [sgc.ClassTarget(c) for c in classes]


def _make_explainer(model, layers):
    """SegGradCAM(model, layers); a layer after a fused softmax/sigmoid gets the ``:pre`` hint."""
    import seggradcam as sgc

    try:
        return sgc.SegGradCAM(model, layers=layers)
    except ValueError as error:
        names = [layers] if isinstance(layers, str) else list(layers)
        for name in names:
            if name in ("auto", "all") or str(name).endswith(":pre"):
                continue
            try:
                sgc.SegGradCAM(model, layers=name)
            except ValueError:
                try:
                    sgc.SegGradCAM(model, layers=f"{name}:pre")
                except (ValueError, KeyError, TypeError):
                    continue
                raise UsageError(
                    f"{_one_line(error).rstrip('.')}. Use --layers {name}:pre to explain {name!r} before its fused activation"
                ) from None
            except (KeyError, TypeError):
                continue
        raise


# --------------------------------------------------------------------------- commands


def cmd_demo(args) -> int:
    """Explain the shipped shapes U-Net on one shipped sample and write a grid."""
    from .data import SHAPE_CLASSES, load_samples

    images = load_samples("shapes")["images"]
    if not 0 <= args.sample < len(images):
        raise UsageError(f"--sample must be 0..{len(images) - 1} (the shipped shapes samples), got {args.sample}")
    out = _output_folder(args.out)
    _start_tensorflow()
    import numpy as np

    import seggradcam as sgc
    from seggradcam.diagnostics import negative_weight_share
    from seggradcam.metrics import energy_inside
    from seggradcam.model_access import ModelAccess
    from seggradcam.models import load_pretrained
    from seggradcam.viz import plot_grid

    start = time.perf_counter()
    model = load_pretrained("shapes_unet")
    image = images[args.sample]
    access = ModelAccess(model)
    layers = [access.auto_layer().name] + [site.name for site in access.decoder_layers()]
    explainer = sgc.SegGradCAM(model, layers=layers)
    prediction = explainer.predict(image)[0]
    classes = [int(c) for c in np.unique(prediction) if c != 0]
    with warnings.catch_warnings(record=True) as caught:
        expl = explainer.explain(image, classes)
    grid_path = out / "demo_grid.png"
    plot_grid(expl, class_names=SHAPE_CLASSES, path=grid_path)
    inside = energy_inside(expl.heatmaps, expl.masks)
    negative = negative_weight_share(expl.weights, expl.layers)
    print(f"model: shapes_unet; sample {args.sample}; explained: {expl.explained}")
    print(f"{'class':<10} {'layer':<18} {'score':>10} {'in mask':>8} {'neg. alpha':>10}")
    for t, cls in enumerate(classes):
        for l, layer in enumerate(expl.layers):
            share = "empty" if np.isnan(inside[0, t, l]) else f"{inside[0, t, l]:.2f}"
            print(f"{SHAPE_CLASSES[cls]:<10} {layer:<18} {expl.scores[0, t]:>10.1f} {share:>8} {negative[0, t, l]:>10.2f}")
    _report_warnings("seggradcam demo", caught, expl)
    print(f"wrote {grid_path} ({time.perf_counter() - start:.1f} s after import)")
    return 0


def cmd_explain(args) -> int:
    """Explain a model on an image or on every image of a folder; one grid and one .npz per image."""
    prefix = "seggradcam explain"
    paths = _image_paths(Path(args.image))
    region = _region_from_args(args)
    out = _output_folder(args.out)
    _start_tensorflow()
    from seggradcam.models import load_model

    model = load_model(args.model, safe_mode=not args.unsafe)
    explainer = _make_explainer(model, args.layers[0] if len(args.layers) == 1 else args.layers)
    _check_classes(list(args.class_index or []) + ([region[1][0]] if region and region[0] == "component" else []), explainer.num_classes)
    channels = _input_channels(model)
    written, failed = 0, []
    progress = paths
    if len(paths) > 1:
        from tqdm.auto import tqdm

        progress = tqdm(paths, desc="explaining", unit="image")
    for path in progress:
        try:
            image = read_image(path, channels)
            targets = _targets_for(args, region, explainer, image, path.name)
            with warnings.catch_warnings(record=True) as caught:
                expl = explainer.explain(image, targets)
        except (UsageError, ValueError, TypeError, KeyError) as error:
            if len(paths) == 1:
                raise
            failed.append((path, _one_line(error)))
            continue
        _report_warnings(prefix, caught, expl, where=path.name if len(paths) > 1 else "")
        expl.plot(path=out / f"{path.stem}_grid.png", view="signed" if args.signed else "positive")
        expl.save(out / f"{path.stem}_explanation.npz")
        written += 1
    print(f"explained {explainer.explained}")
    print(f"wrote {written} grid(s) and explanation file(s) to {out}")
    for path, message in failed:
        print(f"{prefix}: error: {path.name}: {message}", file=sys.stderr)
    if failed:
        print(f"{prefix}: error: {len(failed)} of {len(paths)} image(s) failed (listed above)", file=sys.stderr)
        return 2
    return 0


def cmd_layers(args) -> int:
    """List the explainable layers of a model, the automatic choice and the decoder."""
    _start_tensorflow()
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


# --------------------------------------------------------------------------- parser


def _add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="explain the shipped shapes U-Net on a shipped sample")
    demo.add_argument("--out", default="seggradcam_demo", help="folder for the PNG grid (default: seggradcam_demo)")
    demo.add_argument("--sample", type=int, default=0, help="which shipped sample image, 0..3 (default 0)")
    demo.set_defaults(run=cmd_demo)


def _add_explain(commands) -> None:
    explain = commands.add_parser(
        "explain",
        help="explain a model on an image or a folder of images",
        description="Explain a model on an image or on every image of a folder (one grid PNG and one .npz each). "
        "Without a target option every foreground class predicted in the image is explained. --class may be "
        "given several times and combined with one of --pixel, --box or --mask to name the class explained there.",
    )
    explain.add_argument("model", help="a .keras model file (loaded with safe mode on)")
    explain.add_argument(
        "image",
        help="a PNG/JPEG/TIFF/BMP image, or a folder of them; pixel values are scaled to [0, 1] and converted "
        "to the model's channels (grayscale <-> RGB)",
    )
    explain.add_argument("--class", dest="class_index", type=int, action="append", metavar="C", help="explain class C (repeatable)")
    region = explain.add_mutually_exclusive_group()
    region.add_argument("--pixel", metavar="R,C", help="explain one output pixel")
    region.add_argument("--box", metavar="R0,C0,R1,C1", help="explain a box (ends exclusive)")
    region.add_argument("--mask", metavar="FILE", help="a PNG whose non-zero pixels are the region")
    region.add_argument("--component", metavar="C[:largest|smallest|N]", help="one connected object of class C")
    explain.add_argument("--layers", nargs="+", default=["auto"], help="auto, all, or layer names (NAME:pre before a fused activation)")
    explain.add_argument("--signed", action="store_true", help="draw signed maps (diverging colormap) instead of heatmaps")
    explain.add_argument("--out", default="seggradcam_out", help="output folder (default: seggradcam_out)")
    explain.add_argument("--unsafe", action="store_true", help="allow models with Lambda layers (runs their code)")
    explain.set_defaults(run=cmd_explain)


def _add_layers(commands) -> None:
    layers = commands.add_parser("layers", help="list the explainable layers of a model")
    layers.add_argument("model", help="a .keras model file")
    layers.add_argument("--unsafe", action="store_true", help="allow models with Lambda layers (runs their code)")
    layers.set_defaults(run=cmd_layers)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one sub-command per ``_add_*`` function.

    Example:
        >>> build_parser().parse_args(["demo", "--sample", "2"]).sample
        2
    """
    parser = argparse.ArgumentParser(prog="seggradcam", description="Explain Keras segmentation models with Seg-Grad-CAM.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_demo(commands)
    _add_explain(commands)
    _add_layers(commands)
    from .audit.cli import add_parser as add_audit_parser

    add_audit_parser(commands)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, ValueError, TypeError, KeyError, FileNotFoundError, ImportError) as error:
        message = _one_line(error)
        if isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] == "tensorflow":
            from ._deps import TENSORFLOW_MISSING

            message = TENSORFLOW_MISSING
        if "is not predicted there" in message:  # the library's wording speaks Python; say it with flags
            message = (
                message.split(". Explain a predicted class")[0]
                + ". Choose a predicted class with --class, or give a region with --box, --mask or --pixel"
            )
        print(f"seggradcam {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
