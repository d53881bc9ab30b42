"""What a store's features are: the view of the decomposer a store was built from (recorded in the
manifest at build time) and a one-line identity per feature.

- attention-head SVD (Merullo et al. 2024): layer, head, circuit (OV/QK), side (write/read) and
  singular component, with its singular value;
- LIB (Bushnaq et al. 2024): node layer, hook site, basis (LIB's Jacobian basis or the PCA
  baseline) and the direction's rank, with its eigenvalue;
- semi-NMF (Shafran et al. 2025): site and basis (MLP neurons, read out through W_out);
- every other method: its site and the width of the space its directions live in.

``describe`` reads a decomposer (duck-typed on its config: no torch import here), the other
functions read only the manifest, so the app can label pages without loading the artifact.
"""

from __future__ import annotations

from typing import Any


def describe(dec: Any, site: str, width: int) -> dict[str, Any]:
    """The manifest's ``view`` entry for decomposer ``dec`` at ``site`` (directions of ``width``)."""
    cfg, method = dec.cfg, dec.method
    if method == "attn_svd":
        return {
            "kind": "heads",
            "layer": cfg.layer,
            "circuit": cfg.circuit,
            "side": cfg.side,
            "n_heads": cfg.n_heads,
            "d_head": cfg.d_head,
            "singular_values": [round(float(s), 5) for s in dec.singular_values().tolist()],
        }
    if method == "lib":
        skip = dec._skip()
        l = cfg.direction_layer
        return {
            "kind": "lib",
            "node_layer": cfg.node_layers[l] if cfg.node_layers else str(l),
            "node_index": l,
            "basis": cfg.basis,
            "skip": skip,
            "eigenvalues": [float(e) for e in dec.eigenvalues(l)[skip:].tolist()],
        }
    if method == "snmf":
        return {"kind": "snmf", "basis": f"MLP neurons (width {width}), non-negative codes"}
    return {"kind": "generic", "basis": f"{method} directions (width {width})"}


def basis_text(manifest: dict) -> str:
    """Which site and which basis the store's features live in (one sentence)."""
    v, site = manifest.get("view") or {}, manifest.get("site", "?")
    kind = v.get("kind")
    if kind == "heads":
        sides = {
            "write": "write vectors (rows of Vᵀ, what a component adds to the residual stream)",
            "read": "read vectors (columns of U, what a component reads)",
        }
        return (
            f"Attention-head SVD of layer {v['layer']}: {v['circuit'].upper()} circuit, {sides[v['side']]}; "
            f"{v['n_heads']} heads x {v['d_head']} components, projected at {site}."
        )
    if kind == "lib":
        name = "LIB (Jacobian interaction basis)" if v["basis"] == "jacobian" else "PCA baseline"
        return (
            f"{name} of node layer {v['node_index']} ({v['node_layer']}) at {site}, ordered by importance (eigenvalue)."
        )
    if kind == "snmf":
        return f"Semi-NMF features at {site} in the basis of {v['basis']}; vocabulary through W_out."
    if kind == "generic":
        return f"{v['basis']} at {site}."
    return f"Features at {site}."


def feature_label(manifest: dict, i: int) -> str:
    """One line saying which feature ``i`` is (empty for methods with nothing more than an id)."""
    v = manifest.get("view") or {}
    if v.get("kind") == "heads":
        head, comp = divmod(i, v["d_head"])
        s = v["singular_values"][i] if i < len(v.get("singular_values", [])) else float("nan")
        return f"layer {v['layer']} · head {head} · {v['circuit'].upper()} {v['side']} · component {comp} (σ = {s:.3g})"
    if v.get("kind") == "lib":
        e = v["eigenvalues"][i] if i < len(v.get("eigenvalues", [])) else float("nan")
        name = "LIB" if v["basis"] == "jacobian" else "PCA"
        return f"{name} direction {i} of node layer {v['node_index']} ({v['node_layer']}) · eigenvalue {e:.3g}"
    return ""


def _with_config(dec: Any, **changes: Any) -> Any:
    """The same fitted decomposer with other config fields (its weights shared)."""
    import dataclasses

    other = type(dec)(dataclasses.replace(dec.cfg, **changes))
    other.load_state_dict(dec.state_dict())
    return other.eval()


def artifact_views(dec: Any, only: Any = None) -> list[tuple[str, Any]]:
    """``(subfolder, decomposer)`` per store a build makes: one per layer for an all-layer head
    SVD, one per hooked node layer for LIB (the last one only when it is a fitted basis,
    ``rotate_final``), else ``[("", dec)]``. ``only``: the layer / node-layer indices to keep."""
    cfg = dec.cfg
    if dec.method == "attn_svd" and cfg.layer is None:
        views = [(l, f"layer-{l:02d}", lambda l=l: dec.view(layer=l)) for l in range(cfg.n_layers)]
    elif dec.method == "lib" and sum(1 for s in cfg.sites if s) > 1:
        last = len(cfg.sites) - 1
        views = [
            (l, f"node-{l}", lambda l=l, s=s: _with_config(dec, direction_layer=l, site=s))
            for l, s in enumerate(cfg.sites)
            if s and (l < last or cfg.rotate_final)
        ]
    else:
        return [("", dec)]
    keep = [v for v in views if only is None or v[0] in set(only)]
    if not keep:
        raise ValueError(
            f"views={list(only)} selects none of this {dec.method} artifact's views {[v[0] for v in views]}"
        )
    return [(name, make()) for _, name, make in keep]
