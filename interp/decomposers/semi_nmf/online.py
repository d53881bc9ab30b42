"""Online mini-batch semi-NMF, for corpora whose coefficients ``G [N, k]`` do not fit in memory.

Not in the paper (whose code holds everything dense): the online dictionary-learning scheme of
Mairal et al. (2010) applied to the same objective and constraints. F starts from
``warmup_iters`` full iterations on a random batch; then, batch by batch (blocks in a seeded random
order, ``epochs`` passes), the batch's coefficients are the exact NNLS codes against the current
F, the running statistics ``A = Σ XᵀG`` and ``B = Σ GᵀG`` decay by ``forget`` and take the batch
in, and F is re-solved (least squares + winner-take-all). A last pass encodes every token, reports
the exact loss and transfers the scale so that the coefficients have unit-norm columns, as in full
mode. Memory: O(d·k + batch·d), independent of N.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.decomposers.semi_nmf import ops
from interp.decomposers.semi_nmf.fit import FitResult, fit_full
from interp.decomposers.semi_nmf.source import Rows, TensorRows


def _codes(X: torch.Tensor, F: torch.Tensor, support, cfg) -> torch.Tensor:
    return ops.nnls(ops.x_times_f(X, F, support), F.T @ F, cfg.encode_iters, cfg.encode_tol)


def fit_minibatch(rows: Rows, cfg, device, progress: bool = True) -> FitResult:
    rng = np.random.default_rng(cfg.seed)
    bs = min(cfg.batch_size, rows.n)
    sample = TensorRows(rows.rows(np.sort(rng.choice(rows.n, bs, replace=False)), device))
    warm_cfg = dataclasses.replace(cfg, max_iter=cfg.warmup_iters, patience=cfg.warmup_iters + 1)
    warm = fit_full(sample, warm_cfg, device, progress=False)
    keep = ops.keep_count(cfg.sparsity, rows.d)
    F, support = ops.wta(warm.F, keep)
    A = torch.zeros(rows.d, cfg.rank, dtype=torch.float64, device=device)
    B = torch.zeros(cfg.rank, cfg.rank, dtype=torch.float64, device=device)
    starts = np.arange(0, rows.n, bs)
    history = []
    bar = tqdm(total=cfg.epochs * len(starts), desc=f"SNMF mini-batch k={cfg.rank}", disable=not progress)
    for _ in range(cfg.epochs):
        for a in rng.permutation(starts):
            X = rows.block(int(a), min(int(a) + bs, rows.n)).to(device=device, dtype=torch.float32)
            g = _codes(X, F, support, cfg)
            history.append(((X - g @ F.T).pow(2).sum() / X.pow(2).sum().clamp(min=1e-30)).item())
            A.mul_(cfg.forget).add_((X.T @ g).double())
            B.mul_(cfg.forget).add_((g.T @ g).double())
            F, support = ops.wta(ops.f_step(A, B, cfg.ridge).float(), keep)
            bar.update()
            bar.set_postfix(batch_fvu=f"{history[-1]:.4f}")
    bar.close()
    return _final_pass(rows, F, support, cfg, device, history)


def _final_pass(rows: Rows, F, support, cfg, device, history) -> FitResult:
    """Encode every token; exact loss; scale transfer to unit-norm coefficient columns."""
    x_sq = loss = 0.0
    sq = torch.zeros(cfg.rank, dtype=torch.float64, device=device)
    for _, X in rows.chunks(cfg.chunk_tokens, device):
        g = _codes(X, F, support, cfg)
        x_sq += X.pow(2).sum(dtype=torch.float64).item()
        loss += (X - g @ F.T).pow(2).sum(dtype=torch.float64).item()
        sq += g.pow(2).sum(0, dtype=torch.float64)
    c = sq.sqrt().clamp(min=1e-8).float()
    return FitResult(
        F=F * c,
        G=None,
        history=history,
        initial_loss=float("nan"),
        best_loss=loss,
        best_iter=len(history) - 1,
        n_iter=len(history),
        x_sq=x_sq,
    )
