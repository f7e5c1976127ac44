"""Why is my heatmap empty? Negative-gradient analysis and the warnings users see.

A Seg-Grad-CAM map is ``ReLU(sum_k alpha_k A_k)``. Where every channel weight alpha_k is
negative (common in decoder layers and next to a softmax head), the signed map is
negative everywhere and the ReLU leaves nothing. :func:`diagnose` measures this for every
image, target and layer, and says what to look at instead.

Energies are L1 masses of the signed raw map at layer resolution:
``positive_energy = sum(max(raw, 0))`` and ``negative_energy = sum(max(-raw, 0))``; the
share the ReLU removed is ``negative / (positive + negative)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Diagnosis", "diagnose", "empty_map_summary", "empty_maps", "negative_weight_share", "EMPTY_RELATIVE"]

EMPTY_RELATIVE = 1e-6  # a ReLU'd map whose max is below this share of max|signed| is empty
MOSTLY_REMOVED = 0.5  # above this share of removed mass, a map is called "mostly negative"
SUMMARY_LAYERS = 4  # layers named in the one-line warning before "and N more"


def negative_weight_share(weights: dict, layers: list) -> np.ndarray:
    """Share of negative channel weights alpha, as an (N, T, L) array.

    Example:
        >>> float(negative_weight_share({"a": np.array([[[1.0, -1.0]]])}, ["a"])[0, 0, 0])
        0.5
    """
    return np.stack([(weights[name] < 0).mean(axis=-1) for name in layers], axis=-1)


def empty_maps(raw: dict, layers: list) -> np.ndarray:
    """(N, T, L) bool: the ReLU'd map is all zeros or below 1e-6 of max|signed map|."""
    flags = []
    for name in layers:
        maps = raw[name]
        top = np.maximum(maps, 0).max(axis=(-2, -1))
        scale = np.abs(maps).max(axis=(-2, -1))
        flags.append((top <= 0) | (top < EMPTY_RELATIVE * scale))
    return np.stack(flags, axis=-1)


@dataclasses.dataclass
class Diagnosis:
    """Negative-gradient analysis of an Explanation; arrays are (N, T, L).

    Attributes:
        negative_share: share of negative channel weights alpha.
        positive_energy, negative_energy: L1 mass of the signed map above and below zero.
        removed_share: share of the signed map's mass the ReLU removed.
        empty: the ReLU'd heatmap is empty.
        layers, targets: the axes' labels.
    """

    negative_share: np.ndarray
    positive_energy: np.ndarray
    negative_energy: np.ndarray
    removed_share: np.ndarray
    empty: np.ndarray
    layers: list
    targets: list

    def explain_one(self, image: int, target: int, layer: int) -> str:
        """A sentence about one map, with a suggestion when it is empty or mostly removed."""
        name = self.layers[layer]
        label = self.targets[target].describe()
        negative = self.negative_share[image, target, layer]
        removed = self.removed_share[image, target, layer]
        head = (
            f"image {image}, {label}, layer {name!r}: {negative:.0%} of channel weights negative, "
            f"ReLU removed {removed:.0%} of the map's mass"
        )
        if self.empty[image, target, layer]:
            if not np.isfinite(removed) or self.positive_energy[image, target, layer] + self.negative_energy[image, target, layer] == 0:
                return head + ". The map is zero everywhere: the gradient does not reach this layer's active units; try another layer."
            return (
                head + ". The heatmap is EMPTY: the signed map is negative everywhere. Look at "
                "expl.signed (what the ReLU hid) and expl.counterfactual (what would lower the "
                "score), try an earlier layer, or the layer's pre-activation ('NAME:pre')."
            )
        if removed > MOSTLY_REMOVED:
            return head + ". Most evidence is negative: compare with expl.signed and expl.counterfactual."
        return head + "."

    def rows(self) -> list[dict]:
        """One dict per (image, target, layer) with the numbers and the sentence."""
        rows = []
        n, t, l = self.empty.shape
        for i in range(n):
            for j in range(t):
                for k in range(l):
                    rows.append(
                        {
                            "image": i,
                            "target": j,
                            "layer": self.layers[k],
                            "negative_share": float(self.negative_share[i, j, k]),
                            "positive_energy": float(self.positive_energy[i, j, k]),
                            "negative_energy": float(self.negative_energy[i, j, k]),
                            "removed_share": float(self.removed_share[i, j, k]),
                            "empty": bool(self.empty[i, j, k]),
                            "message": self.explain_one(i, j, k),
                        }
                    )
        return rows

    def __str__(self) -> str:
        lines = [row["message"] for row in self.rows()]
        count = int(self.empty.sum())
        lines.append(f"{count} of {self.empty.size} heatmap(s) empty after the ReLU.")
        return "\n".join(lines)


def diagnose(raw: dict, weights: dict, layers: list, targets: list) -> Diagnosis:
    """Negative-gradient analysis of raw maps and weights (see :class:`Diagnosis`).

    Example:
        >>> raw = {"a": np.array([[[[-1.0, -2.0]]]])}
        >>> diagnose(raw, {"a": np.array([[[-0.5]]])}, ["a"], [sgc.ClassTarget(0)]).empty.tolist()
        [[[True]]]
    """
    positive = np.stack([np.maximum(raw[name], 0).sum(axis=(-2, -1)) for name in layers], axis=-1)
    negative = np.stack([np.maximum(-raw[name], 0).sum(axis=(-2, -1)) for name in layers], axis=-1)
    total = positive + negative
    with np.errstate(invalid="ignore", divide="ignore"):
        removed = np.where(total > 0, negative / np.where(total > 0, total, 1), np.nan)
    return Diagnosis(
        negative_share=negative_weight_share(weights, layers),
        positive_energy=positive,
        negative_energy=negative,
        removed_share=removed,
        empty=empty_maps(raw, layers),
        layers=list(layers),
        targets=list(targets),
    )


def empty_map_summary(empty: np.ndarray, layers: list, targets: list) -> str | None:
    """One sentence naming the layers and targets whose heatmaps came out empty, or None."""
    if not empty.any():
        return None
    parts = []
    for k, name in enumerate(layers):
        hit = sorted({int(j) for j in np.nonzero(empty[:, :, k].any(axis=0))[0]})
        if hit:
            labels = ", ".join(targets[j].describe() for j in hit)
            parts.append(f"layer {name!r} for {labels}")
    if len(parts) > SUMMARY_LAYERS:
        parts = parts[:SUMMARY_LAYERS] + [f"and {len(parts) - SUMMARY_LAYERS} more layer(s)"]
    return (
        f"{int(empty.sum())} of {empty.size} heatmap(s) are empty after the ReLU (all channel "
        f"evidence negative): {'; '.join(parts)}. Call expl.diagnose() for details, and see "
        "expl.signed and expl.counterfactual for what the ReLU removed."
    )
