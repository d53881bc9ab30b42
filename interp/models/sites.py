"""Hook sites: the TransformerLens names every stage uses, and their validation.

A site is a hook name of the bridge (``blocks.{L}.hook_resid_pre``, ``blocks.{L}.mlp.hook_post``,
...). Unknown names are rejected before any compute, with the closest valid names in the message.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from interp.models.loader import LoadedModel

# The sites most stages use, with the width of their last axis as a function of the model.
COMMON_SITES = {
    "hook_resid_pre": "d_model",
    "hook_resid_mid": "d_model",
    "hook_resid_post": "d_model",
    "hook_attn_out": "d_model",
    "hook_mlp_out": "d_model",
    "mlp.hook_pre": "d_mlp",
    "mlp.hook_post": "d_mlp",
    "attn.hook_z": "n_heads*d_head",
}
_LAYER = re.compile(r"^blocks\.(\d+)\.")


def site_layer(site: str) -> int | None:
    """The block index of a ``blocks.{L}.*`` site, else None."""
    m = _LAYER.match(site)
    return int(m.group(1)) if m else None


def stop_layer(sites: list[str]) -> int | None:
    """``stop_at_layer`` that still runs every block the sites need (None: run the whole model)."""
    layers = [site_layer(s) for s in sites]
    return None if any(l is None for l in layers) else max(layers) + 1


def valid_sites(model: "LoadedModel") -> list[str]:
    return sorted(model.bridge.hook_dict.keys())


def validate_site(model: "LoadedModel", site: str) -> str:
    """Return ``site`` if the model has it, else raise naming the closest valid sites."""
    names = model.bridge.hook_dict
    if site in names:
        return site
    layer = site_layer(site)
    if layer is not None and layer >= model.n_layers:
        raise ValueError(
            f"site {site!r}: layer {layer} does not exist, {model.name} has layers 0..{model.n_layers - 1}"
        )
    close = difflib.get_close_matches(site, list(names), n=5, cutoff=0.5)
    hint = f" Closest valid sites: {', '.join(close)}." if close else ""
    raise ValueError(f"unknown hook site {site!r} for {model.name}.{hint}")


def site_width(model: "LoadedModel", site: str) -> int:
    """Width D of the activations at ``site`` (heads are flattened: attn.hook_z -> H*d_head)."""
    validate_site(model, site)
    suffix = _LAYER.sub("", site)
    expr = COMMON_SITES.get(suffix)
    if expr == "d_model":
        return model.d_model
    if expr == "d_mlp":
        return model.d_mlp
    if expr == "n_heads*d_head":
        return model.n_heads * model.d_head
    shapes = []
    for length in (2, 3):  # a per-token site is [B, S, ...] with a trailing size that ignores S
        probe = torch.zeros(1, length, dtype=torch.long, device=model.device)
        _, cache = model.bridge.run_with_cache(probe, names_filter=[site], stop_at_layer=stop_layer([site]))
        shapes.append(tuple(cache[site].shape))
    if any(shape[:2] != (1, length) for shape, length in zip(shapes, (2, 3))) or shapes[0][2:] != shapes[1][2:]:
        raise ValueError(
            f"site {site!r} is not a per-token activation ([batch, seq, ...]); cache and "
            f"decompose per-token sites such as hook_resid_post, mlp.hook_post or attn.hook_z"
        )
    return int(torch.Size(shapes[0][2:]).numel())
