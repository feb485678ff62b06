"""Training configs as a base per machine plus small overlays.

A base (configs/default.cfg for the CPU, configs/bert_crf.cfg for a GPU) is a
whole training config. An overlay (configs/overlays/*.cfg) holds only what a
variant changes. A section of the overlay that has settings of its own
replaces the base section's settings whole, since one architecture's
arguments are no use to another (the softmax head takes no CRF learning
rate); the base's subsections that the overlay does not name stay, so the
softmax overlay keeps the base's encoder block. Subsections the overlay names
are overlaid by the same rule. Values are not interpolated: `${paths.*}`
references resolve when the composed config is trained.
"""

from typing import Any, Dict, Iterable

from spacy.util import load_config
from thinc.api import Config

from ..formats import PathLike


def config_with_overlays(base: PathLike, overlays: Iterable[PathLike] = ()) -> Config:
    """The base config with each overlay applied in turn."""
    config = load_config(base, interpolate=False)
    for overlay in overlays:
        config = Config(overlaid(config, load_config(overlay, interpolate=False)))
    return config


def overlaid(base: Dict[str, Any], overlay: Dict[str, Any]) -> Dict[str, Any]:
    """`base` with `overlay`'s sections on top of it (the rule in the module docstring)."""
    settings = {key: value for key, value in overlay.items() if not isinstance(value, dict)}
    if settings:
        merged = {key: value for key, value in base.items() if isinstance(value, dict)}
        merged.update(settings)
    else:
        merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict):
            below = base.get(key)
            merged[key] = overlaid(below, value) if isinstance(below, dict) else value
    return merged
