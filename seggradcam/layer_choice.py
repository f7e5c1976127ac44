"""Which feature maps are explained: ``layers="auto"``, ``"all"``, names, Layers, ``"name:pre"``.

- ``"all"``: every call site on the path to the scores whose output is an (h, w, k) map and
  which is a convolution (plain, transposed, separable, depthwise) or an activation, nested
  sub-models and layers called inside custom layers included, in execution order.
- ``"auto"``: the bottleneck, as in the paper: among those, the smallest map (h * w), ties
  to the last in execution order. A 1x1 map, or one that is constant over space (a global
  image-pooling branch broadcast back), is never chosen: its Grad-CAM map is flat. The layer
  producing the scores is chosen only when nothing else qualifies.
- ``"name:pre"``: a layer's output before its fused activation.

Example:
    >>> from seggradcam.catalogue import build_catalogue
    >>> from seggradcam.keras_internals import GraphRunner
    >>> from seggradcam.scores import choose_scores
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="c"),
    ...                           keras.layers.Conv2D(2, 1, name="scores")])
    >>> catalogue = build_catalogue(GraphRunner(model))
    >>> spec = choose_scores(catalogue, "auto")
    >>> [layer.name for layer in choose_layers(catalogue, spec, ["c:pre", "c"])]
    ['c:pre', 'c']
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

from .catalogue import PRE_SUFFIX, CallSite, Catalogue, SiteKind
from .scores import ScoreSource, ScoreSpec

__all__ = ["ChosenLayer", "auto_layer", "candidates", "choose_layers", "decoder_layers", "SUGGESTED"]

SUGGESTED = 8  # candidate names suggested in an error message

ConstancyCheck = Callable[[tuple], frozenset]
"""``check(sites) -> indices`` of the sites whose output is constant over space."""


@dataclasses.dataclass(frozen=True)
class ChosenLayer:
    """A feature map to explain.

    Attributes:
        name: the name in ``Explanation.layers`` (the site's name, plus ``":pre"``).
        site: the call site.
        pre: explain the site's output before its fused activation.
    """

    name: str
    site: CallSite
    pre: bool = False

    @property
    def shape(self) -> tuple:
        """(h, w, channels) at the catalogue's probe size."""
        return self.site.shape


def _upstream(site: CallSite, spec: ScoreSpec, pre: bool = False) -> bool:
    if site.index in spec.ancestors:
        return True
    return pre and spec.source is ScoreSource.PRE_ACTIVATION and spec.site == site.name


def candidates(catalogue: Catalogue, spec: ScoreSpec) -> tuple:
    """Every site ``layers="all"`` explains, in execution order."""
    return tuple(site for site in catalogue.sites if site.spatial and site.kind is not SiteKind.OTHER and _upstream(site, spec))


def auto_layer(catalogue: Catalogue, spec: ScoreSpec, is_constant: ConstancyCheck | None = None) -> CallSite:
    """The bottleneck: the smallest informative feature map (see the module docstring).

    Raises:
        ValueError: the model has no spatial convolution or activation to explain.
    """
    every = candidates(catalogue, spec)
    pool = [site for site in every if site.name != spec.producer and site.shape[0] * site.shape[1] > 1]
    if pool and is_constant is not None:
        flat = is_constant(tuple(pool))
        pool = [site for site in pool if site.index not in flat]
    pool = pool or list(every)
    if not pool:
        raise ValueError(f"model {catalogue.model_name!r} has no convolution or activation layer with a spatial feature map to explain")
    smallest = min(site.shape[0] * site.shape[1] for site in pool)
    return [site for site in pool if site.shape[0] * site.shape[1] == smallest][-1]


def decoder_layers(catalogue: Catalogue, spec: ScoreSpec, auto: CallSite) -> tuple:
    """Candidates after the automatic (bottleneck) layer in execution order."""
    return tuple(site for site in candidates(catalogue, spec) if site.index > auto.index)


def choose_layers(catalogue: Catalogue, spec: ScoreSpec, layers, is_constant: ConstancyCheck | None = None) -> tuple:
    """Turn ``"auto"``, ``"all"``, a name, a Layer or a list of them into ChosenLayers.

    Raises:
        ValueError: an empty list, ``"auto"``/``"all"`` inside a list, a map that is not
            spatial or not on the path to the scores, or ``":pre"`` on a layer without a
            fused activation.
        KeyError: an unknown name (the message lists the layers).
        TypeError: an item that is neither a string nor a keras Layer.
    """
    if isinstance(layers, str) and layers == "auto":
        site = auto_layer(catalogue, spec, is_constant)
        return (ChosenLayer(site.name, site),)
    if isinstance(layers, str) and layers == "all":
        every = candidates(catalogue, spec)
        if not every:
            raise ValueError(f"model {catalogue.model_name!r} has no spatial convolution or activation layer to explain")
        return tuple(ChosenLayer(site.name, site) for site in every)
    items = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if not items:
        raise ValueError("layers is empty: pass 'auto', 'all', a layer name or a list of names")
    chosen: dict[str, ChosenLayer] = {}
    for item in items:
        if isinstance(item, str) and item in ("auto", "all"):
            raise ValueError(f"{item!r} cannot be mixed with other layers in a list")
        layer = _one(catalogue, spec, item)
        chosen.setdefault(layer.name, layer)
    return tuple(chosen.values())


def _one(catalogue: Catalogue, spec: ScoreSpec, item) -> ChosenLayer:
    pre = isinstance(item, str) and item.endswith(PRE_SUFFIX)
    site = catalogue.find(item[: -len(PRE_SUFFIX)] if pre else item)
    if pre and not site.has_pre:
        fused = [s.name for s in catalogue.sites if s.has_pre and _upstream(s, spec, pre=True)][:SUGGESTED]
        why = (
            f"its fused activation {site.declared_activation!r} is not a single operation"
            if site.declared_activation
            else "it has no fused activation"
        )
        raise ValueError(f"'{site.name}{PRE_SUFFIX}' cannot be explained: {why}. Layers with a fused activation: {fused}")
    if not site.spatial:
        raise ValueError(
            f"layer {site.name!r} ({site.layer_type}) has output shape {site.shape}, not a spatial "
            "(h, w, channels) feature map; choose a convolution or activation layer, e.g. one of "
            f"{[s.name for s in candidates(catalogue, spec)][:SUGGESTED]}"
        )
    if not _upstream(site, spec, pre):
        hint = ""
        if site.has_pre and _upstream(site, spec, pre=True):
            hint = (
                f" Its output is after the {site.activation} that is stripped from the scores; explain '{site.name}{PRE_SUFFIX}' instead."
            )
        raise ValueError(
            f"layer {site.name!r} is not on the path to the explained score map ({spec.description}); its gradient would be zero.{hint}"
        )
    return ChosenLayer(f"{site.name}{PRE_SUFFIX}" if pre else site.name, site, pre)


def names(chosen: Iterable[ChosenLayer]) -> list[str]:
    """The names of chosen layers, in order."""
    return [layer.name for layer in chosen]
