"""Saving and loading explanations as .npz files, without pickle.

Arrays are stored as arrays; names, strings and target parameters go into one JSON string
inside the archive; target arrays (masks, ground truth) are stored as arrays of their own.
``np.load(..., allow_pickle=False)`` reads it back, so a file can never run code.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np

from . import targets as target_types
from .explanation import Explanation

FORMAT = "seggradcam-explanation-1"
ARRAYS = ("heatmaps", "scores", "masks", "classes", "prediction", "images")
TARGET_TYPES = {
    cls.__name__: cls
    for cls in (target_types.ClassTarget, target_types.PixelTarget, target_types.RegionTarget, target_types.ComponentTarget)
}


def save_explanation(expl: Explanation, path) -> Path:
    """Write ``expl`` to ``path`` (.npz, compressed). Returns the path written.

    Example:
        >>> save_explanation(expl, "run1.npz")          # doctest: +SKIP
    """
    path = Path(path)
    arrays = {name: getattr(expl, name) for name in ARRAYS}
    for index, layer in enumerate(expl.layers):
        arrays[f"raw.{index}"] = expl.raw[layer]
        arrays[f"weights.{index}"] = expl.weights[layer]
    if expl.guided_gradients is not None:
        arrays["guided_gradients"] = expl.guided_gradients
    described = []
    for index, target in enumerate(expl.targets):
        fields = {}
        for field in dataclasses.fields(target):
            value = getattr(target, field.name)
            if isinstance(value, np.ndarray):
                arrays[f"target.{index}.{field.name}"] = value
                fields[field.name] = {"array": f"target.{index}.{field.name}"}
            else:
                fields[field.name] = list(value) if isinstance(value, tuple) else value
        described.append({"type": type(target).__name__, "fields": fields})
    meta = {"format": FORMAT, "layers": expl.layers, "targets": described, "explained": expl.explained, "method": expl.method}
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(path, **arrays)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_explanation(path) -> Explanation:
    """Read an explanation written by :func:`save_explanation` (never unpickles).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable seggradcam explanation (corrupt, truncated,
            or another kind of npz).

    Example:
        >>> expl = load_explanation("run1.npz")          # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"explanation file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as bundle:
            data = {key: bundle[key] for key in bundle.files}
        meta = json.loads(str(data["meta"]))
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as error:
        raise ValueError(f"{path} is not a readable seggradcam explanation: {type(error).__name__}: {error}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    targets = []
    for item in meta["targets"]:
        fields = {}
        for name, value in item["fields"].items():
            fields[name] = data[value["array"]] if isinstance(value, dict) else value
        if isinstance(fields.get("box"), list):
            fields["box"] = tuple(fields["box"])
        targets.append(TARGET_TYPES[item["type"]](**fields))
    layers = meta["layers"]
    return Explanation(
        **{name: data[name] for name in ARRAYS},
        raw={layer: data[f"raw.{i}"] for i, layer in enumerate(layers)},
        weights={layer: data[f"weights.{i}"] for i, layer in enumerate(layers)},
        layers=layers,
        targets=targets,
        explained=meta["explained"],
        method=meta["method"],
        guided_gradients=data.get("guided_gradients"),
    )
