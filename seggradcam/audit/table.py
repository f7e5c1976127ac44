"""The rows of ``metrics.parquet``: one per image x applicable target x layer.

Columns (in this order):

=================  =======  ===================================================================
``image``          string   the image's path relative to the source folder, or
                   / int64  its index for an array or dataset source
``image_index``    int64    position in the source; row of ``heatmaps.zarr`` (axis 0)
``target``         string   the slot's name (``"class 2"``, a class name, ``Target.describe()``)
``target_index``   int32    the slot; ``heatmaps.zarr`` axis 1
``class_index``    int32    the class explained
``layer``          string   the layer's name
``layer_index``    int32    ``heatmaps.zarr`` axis 2
``score``          float64  the explained score y (sum of the class logit over the target mask)
``pixels``         float64  the target mask's total weight (output pixels explained)
``negative_share`` float64  share of negative channel weights alpha
``removed_share``  float64  share of the signed map's mass the ReLU removed (NaN: all zero)
``empty``          bool     the heatmap is empty after the ReLU
``max_heat``       float64  maximum of the positive part of the signed map at layer resolution
                            (before upsampling and scaling; the heatmaps themselves are scaled
                            to a maximum of 1)
=================  =======  ===================================================================

With ground truth, also ``energy_inside``, ``pointing_hit`` (1.0, 0.0, NaN for an empty map)
and ``iou_at_0.5`` (float64), against the true pixels of the explained class, and
``truth_pixels`` (float64), how many there are (0: the class is predicted but absent from
the mask, so nothing can be inside).

Example:
    >>> [field for field, _ in columns(with_truth=False, key_type="int")][:4]
    ['image', 'image_index', 'target', 'target_index']
"""

from __future__ import annotations

import numpy as np

from ._extras import require
from .compute import BatchResult

__all__ = ["columns", "schema", "to_table", "SORT_KEYS"]

SORT_KEYS = ("image_index", "target_index", "layer_index")
PER_MAP = ("negative_share", "removed_share", "empty", "max_heat")
TRUTH = (("energy_inside", "energy_inside"), ("pointing_hit", "pointing_hit"), ("iou_at_0.5", "iou"))
TRUTH_PER_TARGET = (("truth_pixels", "truth_pixels"),)


def columns(with_truth: bool, key_type: str) -> list[tuple[str, str]]:
    """(name, arrow type name) of every column, in order."""
    names = [
        ("image", "string" if key_type == "string" else "int64"),
        ("image_index", "int64"),
        ("target", "string"),
        ("target_index", "int32"),
        ("class_index", "int32"),
        ("layer", "string"),
        ("layer_index", "int32"),
        ("score", "float64"),
        ("pixels", "float64"),
        ("negative_share", "float64"),
        ("removed_share", "float64"),
        ("empty", "bool_"),
        ("max_heat", "float64"),
    ]
    if with_truth:
        names += [(name, "float64") for name, _ in TRUTH + TRUTH_PER_TARGET]
    return names


def schema(with_truth: bool, key_type: str, metadata: dict | None = None):
    """The pyarrow schema of the table (metadata: str -> str, stored in the file)."""
    pa = require("pyarrow")
    fields = [pa.field(name, getattr(pa, kind)()) for name, kind in columns(with_truth, key_type)]
    return pa.schema(fields, metadata=metadata)


def to_table(result: BatchResult, target_names: tuple, layers: list, with_truth: bool, key_type: str):
    """The rows of one :class:`~seggradcam.audit.compute.BatchResult`, sorted by image, target, layer."""
    pa = require("pyarrow")
    image_rows, slots = np.nonzero(result.classes >= 0)  # row-major: sorted by image row, then slot
    num_layers = len(layers)
    pick = np.repeat(np.arange(len(image_rows)), num_layers)
    layer = np.tile(np.arange(num_layers), len(image_rows))
    rows, slot = image_rows[pick], slots[pick]
    order = np.lexsort((layer, slot, result.indices[rows]))
    rows, slot, layer = rows[order], slot[order], layer[order]
    data = {
        "image": result.keys[rows].tolist(),
        "image_index": result.indices[rows],
        "target": [target_names[s] for s in slot],
        "target_index": slot.astype(np.int32),
        "class_index": result.classes[rows, slot].astype(np.int32),
        "layer": [layers[k] for k in layer],
        "layer_index": layer.astype(np.int32),
        "score": result.scores[rows, slot],
        "pixels": result.pixels[rows, slot],
    }
    for name in PER_MAP:
        data[name] = getattr(result, name)[rows, slot, layer]
    if with_truth:
        for name, field in TRUTH:
            data[name] = getattr(result, field)[rows, slot, layer]
        for name, field in TRUTH_PER_TARGET:
            data[name] = getattr(result, field)[rows, slot]
    return pa.Table.from_pydict(data, schema=schema(with_truth, key_type))
