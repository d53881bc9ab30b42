"""Recursive (hierarchical) semi-NMF (Shafran et al., hierchichal_snmf.py): fit SNMF on the
activations at rank k₁, then factorise the features themselves, ``F₁ ≈ F₂ G₂ᵀ`` with ``G₂ >= 0``,
at k₂ < k₁, and so on (400 → 200 → 100 → 50 in the paper), so each fine feature is a non-negative
mix of coarser ones; then fine-tune ``X ≈ G₁ G₂ … G_L F_Lᵀ`` end to end with Adam (lr 1e-3, 500
full-batch steps, MSE). The paper's fine-tune keeps neither constraint; ``project=True`` clamps
the G's to >= 0 and re-applies winner-take-all to F_L after every step (the lower levels' F, being
products, are then no longer WTA-sparse). ``neuron_overlap`` counts shared neurons of features.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from interp.decomposers.semi_nmf import ops
from interp.decomposers.semi_nmf.model import SNMF
from interp.decomposers.semi_nmf.source import Rows, as_rows


@dataclass
class Hierarchy:
    levels: list[SNMF]  # finest first: levels[0] has rank ranks[0] and was fitted on the activations
    mixing: list[torch.Tensor]  # mixing[i] = G_{i+2} [k_{i+1}, k_{i+2}] >= 0: F_{i+1} ≈ F_{i+2} mixing[i]ᵀ
    meta: dict = field(default_factory=dict)

    def codes(self, level: int) -> torch.Tensor:
        """Per-token coefficients of level ``level``'s features on the fitted tokens: G₁ G₂ … G_level."""
        g = self.levels[0].fit_codes
        for m in self.mixing[:level]:
            g = g @ m
        return g


def neuron_overlap(
    Wa: Float[torch.Tensor, "A d"], Wb: Float[torch.Tensor, "B d"], keep: int | None = None
) -> Float[torch.Tensor, "A B"]:
    """Shared-neuron counts ``M = Z̄_a Z̄_bᵀ`` of binarised features (rows of ``W_dec``).

    A neuron belongs to a feature where its weight is non-zero, or, with ``keep``, where it is among
    the feature's ``keep`` largest |weights| (use it for dense, fine-tuned features).
    """

    def binary(W: torch.Tensor) -> torch.Tensor:
        if keep is None:
            return (W != 0).float()
        return torch.zeros_like(W).scatter_(1, W.abs().topk(keep, dim=1).indices, 1.0)

    return binary(Wa) @ binary(Wb).T


def fit_hierarchy(
    acts: Any,
    ranks: Sequence[int] = (400, 200, 100, 50),
    sparsity: float = 0.01,
    init: str = "random",
    *,
    finetune_steps: int = 500,
    lr: float = 1e-3,
    project: bool = False,
    site: str | None = None,
    progress: bool = True,
    **fields: Any,
) -> Hierarchy:
    """Fit the levels one after another, then fine-tune end to end (``finetune_steps=0``: skip)."""
    if list(ranks) != sorted(ranks, reverse=True) or len(ranks) < 1:
        raise ValueError(f"hierarchy ranks must be decreasing, e.g. (400, 200, 100, 50); got {list(ranks)}")
    rows = as_rows(acts, site, fields.get("n_tokens"), fields.get("exclude_special", True))
    levels = [SNMF.fit(rows, ranks[0], sparsity, init, site=site, progress=progress, **fields)]
    if levels[0].fit_codes is None:
        raise ValueError("the hierarchy needs the level-1 coefficients: use mode='full'")
    mixing = []
    for k in ranks[1:]:
        prev = levels[-1]
        nxt = SNMF.fit(
            prev.W_dec.detach(),
            k,
            sparsity,
            init,
            progress=progress,
            **{**fields, "exclude_special": False, "n_tokens": None},
        )
        nxt.cfg = dataclasses.replace(nxt.cfg, model=prev.cfg.model, site=prev.cfg.site)
        levels.append(nxt)
        mixing.append(nxt.fit_codes)
    h = Hierarchy(levels, mixing, {"ranks": list(ranks), "level_fvu": [lv.meta["fvu"] for lv in levels]})
    if finetune_steps > 0:
        h.meta["finetune"] = finetune(h, rows, finetune_steps, lr, project, progress)
    return h


def finetune(h: Hierarchy, rows: Rows, steps: int, lr: float, project: bool, progress: bool) -> dict:
    """Adam on ``mean((X - G₁ G₂ … G_L F_Lᵀ)²)``, full batch (gradients summed over row blocks)."""
    top = h.levels[-1]
    device = top.W_dec.device
    G1 = torch.nn.Parameter(h.levels[0].fit_codes.detach().clone().to(device))
    mix = [torch.nn.Parameter(m.detach().clone().to(device)) for m in h.mixing]
    W = torch.nn.Parameter(top.W_dec.detach().clone())
    opt = torch.optim.Adam([G1, *mix, W], lr=lr)
    keep = ops.keep_count(top.cfg.sparsity, top.cfg.d_in)
    denom = rows.n * rows.d
    losses = []
    for _ in tqdm(range(steps), desc="hierarchy fine-tune", disable=not progress):
        opt.zero_grad()
        total = 0.0
        with torch.enable_grad():
            dec = W
            for m in reversed(mix):
                dec = m @ dec  # [k₁, d]: the level-1 features as products
            for a, X in rows.chunks(top.cfg.chunk_tokens, device):
                loss = ((G1[a : a + len(X)] @ dec - X) ** 2).sum() / denom
                loss.backward(retain_graph=True)
                total += loss.item()
        opt.step()
        losses.append(total)
        if project:
            with torch.no_grad():
                G1.clamp_(min=0)
                for m in mix:
                    m.clamp_(min=0)
                W.copy_(ops.wta(W.T, keep)[0].T)
    _write_back(h, G1.detach(), [m.detach() for m in mix], W.detach())
    return {"steps": steps, "lr": lr, "project": project, "mse_first": losses[0], "mse_last": losses[-1]}


def _write_back(h: Hierarchy, G1: torch.Tensor, mix: list[torch.Tensor], W: torch.Tensor) -> None:
    """Level features after the fine-tune: F_L = W, F_ℓ = F_{ℓ+1} G_{ℓ+1}ᵀ (as W_dec rows)."""
    h.mixing = mix
    h.levels[-1].W_dec.data = W
    for lv in range(len(h.levels) - 2, -1, -1):
        h.levels[lv].W_dec.data = mix[lv] @ h.levels[lv + 1].W_dec.data
    h.levels[0].fit_codes = G1
    for lv in range(1, len(h.levels)):
        h.levels[lv].fit_codes = None  # level codes are now h.codes(lv)
