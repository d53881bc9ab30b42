"""LIB interaction graphs and ablations (Bushnaq et al. 2024, arXiv 2405.10928; rib's
``run_ablations`` and graph plots).

* ``interaction_graph`` / ``export_graph`` / ``plot_graph``: the layered graph of LIB (or PCA)
  features with squared-attribution edge weights, as GraphML + node-link JSON and a matplotlib plot
  (edge widths normalised per layer, as rib's plots do).
* ``node_ablation``: rotate node layer l into the basis, zero the least important directions
  (the last ones), rotate back and run the rest of the cut; ``ablation_schedule`` is rib's
  exponential schedule (every count individually up to a cutoff, then base 1.05).
* ``edge_ablation``: keep the top-K edges of layer l (edges from the constant node for free) and
  run each output feature on its un-ablated inputs only; ``edges_needed`` bisects for the smallest
  K whose metric stays within a tolerance of the unablated one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Sequence

import networkx as nx
import torch
from jaxtyping import Float

from interp._io import write_atomic
from interp.decomposers.lib import ops

Metric = Callable[[torch.Tensor], float]  # raw final-node-layer activations [N, P, d] -> number


def interaction_graph(lib, min_norm_weight: float = 0.0) -> nx.DiGraph:
    """Nodes ``"{layer}:{j}"`` (attrs: layer, index, eigenvalue); edges from layer l feature j to
    layer l+1 feature i with ``weight = E_l[i, j]`` and ``norm_weight`` (divided by the layer's
    max); edges with ``norm_weight <= min_norm_weight`` are left out."""
    g = nx.DiGraph()
    names = lib.cfg.node_layers
    for l, name in enumerate(names):
        for j, lam in enumerate(lib.eigenvalues(l).tolist()):
            g.add_node(f"{name}:{j}", layer=l, layer_name=name, index=j, eigenvalue=float(lam))
    for l in range(len(names) - 1):
        E = lib.edges(l)
        top = float(E.max()) or 1.0
        for i, j in (E > min_norm_weight * top).nonzero().tolist():
            g.add_edge(
                f"{names[l]}:{j}", f"{names[l + 1]}:{i}", weight=float(E[i, j]), norm_weight=float(E[i, j]) / top
            )
    return g


def export_graph(lib, path: str | Path, min_norm_weight: float = 0.0) -> Path:
    """Write ``path.graphml`` and ``path.json`` (networkx node-link) atomically; returns the stem."""
    path = Path(path)
    g = interaction_graph(lib, min_norm_weight)
    write_atomic(path.with_suffix(".graphml"), lambda f: nx.write_graphml(g, f), binary=True)
    write_atomic(path.with_suffix(".json"), lambda f: json.dump(nx.node_link_data(g, edges="edges"), f))
    return path


def plot_graph(lib, path: str | Path, max_nodes: int = 30, title: str = "") -> Path:
    """Layered plot of the first ``max_nodes`` features per layer; line width ~ normalised edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = lib.cfg.node_layers
    fig, ax = plt.subplots(figsize=(2.2 * len(names) + 2, 0.22 * max_nodes + 2))
    for l in range(len(names) - 1):
        E = lib.edges(l)[:max_nodes, :max_nodes]
        W = (E / E.max().clamp_min(1e-300)).tolist()
        for i, row in enumerate(W):
            for j, w in enumerate(row):
                if w > 1e-3:
                    ax.plot([l, l + 1], [-j, -i], color="tab:blue", lw=3 * w, alpha=min(1.0, 0.2 + w))
    for l in range(len(names)):
        n = min(max_nodes, lib.eigenvalues(l).numel())
        ax.scatter([l] * n, [-j for j in range(n)], s=12, color="black", zorder=3)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks([])
    ax.set_title(title or f"{lib.cfg.basis} interaction graph")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ablation_schedule(r: int, individual: int = 10, base: float = 1.05) -> list[int]:
    """Numbers of kept directions (rib's schedule): every count 1..individual, then
    ``ceil(individual * base^n)`` up to r. The constant direction (index 0) counts as one and is
    always kept (with it zeroed, folded biases vanish)."""
    ks, x = set(range(1, min(individual, r) + 1)), float(individual)
    while x < r:
        x *= base
        ks.add(min(r, math.ceil(x)))
    ks.add(r)
    return sorted(ks)


@torch.no_grad()
def run_from(fns: Sequence, l: int, f: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """Run folded modules ``fns[l:]`` on folded activations; returns the raw final activations."""
    outs = []
    for i in range(0, len(f), batch):
        x = f[i : i + batch]
        for fn in fns[l:]:
            x = fn(x)
        outs.append(x[..., :-1])
    return torch.cat(outs)


@torch.no_grad()
def node_ablation(
    lib, l: int, acts: Float[torch.Tensor, "N P d1"], fns: Sequence, metric: Metric, ks: Sequence[int]
) -> list[tuple[int, float]]:
    """Metric with only the first k directions of node layer l kept (constant counted as one)."""
    C, C_pinv = lib.basis(l).to(acts.dtype), lib.basis_pinv(l).to(acts.dtype)
    f_hat = acts @ C
    out = []
    for k in ks:
        k = max(k, 1 if lib.cfg.center else 0)
        f = f_hat[..., :k] @ C_pinv[:k]
        out.append((int(k), float(metric(run_from(fns, l, f)))))
    return out


def edge_mask(E: torch.Tensor, n_keep: int, free_const: bool) -> torch.Tensor:
    """Boolean ``[r_out, r_in]`` mask of the ``n_keep`` largest edges (+ constant node's edges)."""
    mask = torch.zeros(E.numel(), dtype=torch.bool)
    mask[torch.argsort(E.flatten(), descending=True)[:n_keep]] = True
    mask = mask.view_as(E)
    if free_const:
        mask[:, 0] = True
    return mask


@torch.no_grad()
def edge_ablated_next(lib, l: int, acts: torch.Tensor, fn, mask: torch.Tensor, chunk_bytes: float = 2e8):
    """Next node layer's folded activations when output feature i sees only inputs ``mask[i]``."""
    C, C_pinv = lib.basis(l).to(acts.dtype), lib.basis_pinv(l).to(acts.dtype)
    C_next, C_next_pinv = lib.basis(l + 1).to(acts.dtype), lib.basis_pinv(l + 1).to(acts.dtype)
    f_hat = acts @ C  # [N, P, r]
    N, P, r = f_hat.shape
    m = mask.to(acts.dtype)
    per_out = max(1, int(chunk_bytes // (acts.element_size() * N * P * C.shape[0] * 2)))
    cols = []
    for i0 in range(0, m.shape[0], per_out):
        mi = m[i0 : i0 + per_out]  # [o, r]
        x = (f_hat[None] * mi[:, None, None, :]) @ C_pinv  # [o, N, P, d1]
        y = fn(x.flatten(0, 1)) @ C_next[:, i0 : i0 + per_out]  # [o N, P', o]
        y = y.view(len(mi), N, y.shape[1], len(mi))
        cols.append(torch.diagonal(y, dim1=0, dim2=3))  # [N, P', o]
    return torch.cat(cols, -1) @ C_next_pinv


def edge_ablation(lib, l: int, acts: torch.Tensor, fns: Sequence, metric: Metric, n_keep: int) -> float:
    mask = edge_mask(lib.edges(l), n_keep, lib.cfg.center)
    nxt = edge_ablated_next(lib, l, acts, fns[l], mask)
    return float(metric(run_from(fns, l + 1, nxt)))


def edges_needed(
    lib,
    l: int,
    acts: torch.Tensor,
    fns: Sequence,
    metric: Metric,
    target: float,
    higher_is_better: bool = True,
    rel_tol: float = 0.0,
) -> tuple[int, list[tuple[int, float]]]:
    """Bisect for the smallest number of kept edges with metric >= target (or <= when lower is
    better), assuming monotonicity as rib does. ``rel_tol`` > 0 stops when the bracket is within
    that fraction (fewer evaluations). Returns (K, evaluated (K, metric) pairs)."""
    ok = (lambda v: v >= target) if higher_is_better else (lambda v: v <= target)
    E = lib.edges(l)
    lo, hi = 0, int((E > 0).sum())
    seen = []
    while hi - lo > max(1, int(rel_tol * hi)):
        mid = (lo + hi) // 2
        v = edge_ablation(lib, l, acts, fns, metric, mid)
        seen.append((mid, v))
        lo, hi = (lo, mid) if ok(v) else (mid, hi)
    return hi, sorted(seen)


def layer_acts(fns: Sequence, inputs: torch.Tensor, dtype=torch.float32, batch: int = 1024) -> list[torch.Tensor]:
    """Folded activations of every node layer (``inputs`` raw ``[N, P, d]``)."""
    acts = [ops.append_const(inputs.to(dtype))]
    with torch.no_grad():
        for fn in fns:
            acts.append(torch.cat([fn(acts[-1][i : i + batch]) for i in range(0, len(inputs), batch)]))
    return acts
