"""Semi-NMF of MLP activations (Shafran, Geiger & Geva, "Decomposing MLP Activations into
Interpretable Features via Semi-Nonnegative Matrix Factorization", arXiv 2506.10920).

Hidden activations ``X [N, d_mlp]`` at ``blocks.{L}.mlp.hook_post`` are factorised as
``X ≈ G Fᵀ`` with signed, winner-take-all sparse features ``F [d_mlp, k]`` (groups of neurons) and
non-negative per-token coefficients ``G [N, k]``. In interp's row convention the artifact stores
``W_dec = Fᵀ [k, d_mlp]``; F carries the magnitude and the fitted G has unit-norm columns, as in the
paper. New text is encoded by non-negative least squares against the fixed F.

    snmf = SNMF.fit(cache, rank=100, sparsity=0.01, init="random", site="blocks.15.mlp.hook_post")
    snmf.save("runs/snmf"); snmf = interp.decomposers.load("runs/snmf")
    codes = snmf.encode(acts)                                # [B, k] >= 0
    resid = snmf.residual_directions(model, layer=15)        # [k, d_model], through W_out
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int

from interp.decomposers.base import Decomposer, config_from, register
from interp.decomposers.semi_nmf import ops
from interp.decomposers.semi_nmf.fit import INITS, FitResult, fit_restarts
from interp.models.readout import to_residual
from interp.decomposers.semi_nmf.source import as_rows
from interp.models import site_layer

MODES = ("full", "minibatch")


@dataclass(frozen=True)
class SNMFConfig:
    """Semi-NMF fit settings. Defaults are the authors' except ``max_iter``/``patience``, which
    follow their tutorial (20,000 / 500) rather than their scripts (200,000 / 1,500), and
    ``n_init`` (the authors fit once): multiplicative updates stall in local optima. On a planted
    factorisation (80 neurons, 8 features of 8 neurons, 3,000 tokens, 30% density; data seeds
    0-19, start seed 42) one random start failed (min |cos| < 0.95) on 3 of 20 data seeds and one
    k-means start on 6 of 20, each failure with a loss far above the successes' (FVU ~0.1 vs
    < 0.05); the best of 3 random starts recovered all four data seeds it was run on (1, 17, 18,
    19, the three failures among them), so the best of 3 starts is kept."""

    method: str = "snmf"  # the registry name
    model: str | None = None  # provenance: the model spec the activations came from
    site: str | None = None  # hook site, normally blocks.{L}.mlp.hook_post
    d_in: int | None = None  # d_mlp; None: taken from the data
    rank: int = 100  # k, the number of features
    sparsity: float = 0.01  # winner-take-all keep fraction of neurons per feature (not an L1 weight)
    init: str = "random"  # random | svd | kmeans
    mode: str = "full"  # full: the paper's iteration (streamed); minibatch: online, O(d·k) memory
    max_iter: int = 20_000  # most iterations of the multiplicative updates
    patience: int = 500  # stop after this many iterations without an improvement > tol
    tol: float = 1e-4  # absolute improvement of ||X - G Fᵀ||² that counts (the paper's choice)
    ridge: float = 1e-6  # λ in F = XᵀG (GᵀG + λI)⁻¹
    eps: float = 1e-6  # denominator floor of the multiplicative G update
    seed: int = 42  # seed of the random / k-means start
    n_init: int = 3  # full mode: starts (seeds seed, seed+1, ...), the lowest loss kept; svd runs once
    kmeans_iters: int = 15  # k-means iterations of the kmeans start
    n_tokens: int | None = None  # use the first n tokens of the data (None: all)
    exclude_special: bool = True  # leave BOS/separator/pad tokens out (as the paper does)
    chunk_tokens: int = 16384  # rows per streamed block
    keep_best: bool = True  # restore the best iterate (False: return the last one)
    batch_size: int = 4096  # minibatch mode: tokens per update
    epochs: int = 1  # minibatch mode: passes over the data
    forget: float = 0.95  # minibatch mode: decay of the running XᵀG, GᵀG statistics per batch
    warmup_iters: int = 100  # minibatch mode: full iterations on the first batch to start F
    encode_iters: int = 300  # NNLS projected-gradient iterations in encode
    encode_tol: float = 1e-6  # NNLS stopping tolerance (relative projected-gradient norm)
    device: str | None = None  # None: CUDA when available
    extra: dict = field(default_factory=dict)  # free-form provenance

    def __post_init__(self):
        if self.init not in INITS:
            raise ValueError(f"unknown SNMF init {self.init!r}; choose one of {INITS}")
        if self.mode not in MODES:
            raise ValueError(f"unknown SNMF mode {self.mode!r}; choose one of {MODES}")
        if self.n_init < 1:
            raise ValueError(f"n_init must be >= 1, got {self.n_init}")
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        ops.keep_count(self.sparsity, 1)  # validates the range


@register("snmf")
class SNMF(Decomposer):
    """Semi-NMF features of MLP activations. ``fit`` is a classmethod returning a fitted instance.

    After ``fit``: ``fit_codes`` ([N, k] coefficients of the fitted tokens, or None in minibatch
    mode), ``token_index`` (flat cache positions of those tokens when fitted from a cache) and
    ``meta`` (losses, iterations). Neither ``fit_codes`` nor ``token_index`` is saved.
    """

    config_cls = SNMFConfig

    def __init__(self, cfg: SNMFConfig):
        super().__init__(cfg)
        if cfg.d_in is None:
            raise ValueError("SNMFConfig.d_in (d_mlp) must be set to build an SNMF; use SNMF.fit")
        self.W_dec = torch.nn.Parameter(torch.zeros(cfg.rank, cfg.d_in), requires_grad=False)
        self.fit_codes: torch.Tensor | None = None
        self.token_index = None
        self.meta: dict = {}

    # -- fitting ------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        acts: Any,
        rank: int = 100,
        sparsity: float = 0.01,
        init: str = "random",
        *,
        site: str | None = None,
        progress: bool = True,
        **fields: Any,
    ) -> "SNMF":
        """Fit on ``acts``: a ``[N, d_mlp]`` tensor, an ``ActivationCache`` or a cache path.

        ``fields`` are any other ``SNMFConfig`` fields (max_iter, patience, mode, seed, ...).
        """
        cfg = config_from(SNMFConfig, {**fields, "rank": rank, "sparsity": sparsity, "init": init, "site": site})
        rows = as_rows(acts, cfg.site, cfg.n_tokens, cfg.exclude_special)
        if cfg.d_in is not None and cfg.d_in != rows.d:
            raise ValueError(f"config d_in={cfg.d_in} but the data has width {rows.d}")
        cfg = dataclasses.replace(cfg, d_in=rows.d, model=cfg.model or rows.model, site=cfg.site or rows.site)
        device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if cfg.mode == "full":
            res = fit_restarts(rows, cfg, device, progress)
        else:
            from interp.decomposers.semi_nmf.online import fit_minibatch

            res = fit_minibatch(rows, cfg, device, progress)
        snmf = cls(cfg)
        snmf.W_dec.data = res.F.T.contiguous().float()
        snmf.fit_codes, snmf.token_index = res.G, rows.token_index
        snmf.meta = _fit_meta(res, rows.n)
        return snmf.to(device)

    # -- the decomposer interface -----------------------------------------------------------------
    @property
    def F(self) -> Float[torch.Tensor, "d k"]:
        return self.W_dec.T

    @torch.no_grad()
    def encode(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B F"]:
        """Non-negative least-squares coefficients of ``x`` against the fixed features."""
        if x.shape[-1] != self.cfg.d_in:
            raise ValueError(f"activations have width {x.shape[-1]}, this SNMF expects d_mlp={self.cfg.d_in}")
        F = self.F
        x = x.to(device=F.device, dtype=F.dtype)
        XF = ops.x_times_f(x, F, self.support()[0] if self.is_wta() else None)
        return ops.nnls(XF, F.T @ F, self.cfg.encode_iters, self.cfg.encode_tol)

    def decode(self, codes: Float[torch.Tensor, "B F"]) -> Float[torch.Tensor, "B D"]:
        return codes.to(self.W_dec.dtype) @ self.W_dec

    def directions(self) -> Float[torch.Tensor, "F D"]:
        """Unit features in neuron space ``[k, d_mlp]``."""
        W = self.W_dec.detach()
        return W / W.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def residual_directions(
        self, model, layer: int | None = None, normalize: bool = False, post_norm: bool = True
    ) -> Float[torch.Tensor, "F d_model"]:
        """Each unit feature mapped to the residual stream through ``W_out`` (``ẑ W_out``; then the
        post-MLP norm for Gemma-style blocks when ``post_norm``). ``layer`` defaults to the
        artifact's site; ``normalize`` returns unit rows."""
        layer = site_layer(self.cfg.site or "") if layer is None else layer
        if layer is None:
            raise ValueError("give layer=...: the SNMF's site does not name a block")
        out = to_residual(model, layer, self.directions(), post_norm)
        return out / out.norm(dim=1, keepdim=True).clamp(min=1e-12) if normalize else out

    def save(self, path, meta: dict | None = None):
        """Write the artifact; ``meta`` defaults to the fit's ``meta`` (losses, iterations)."""
        return super().save(path, self.meta if meta is None else meta)

    def is_wta(self) -> bool:
        """True while every feature has at most ``ceil(sparsity·d)`` non-zero neurons."""
        return bool(((self.W_dec != 0).sum(1) <= ops.keep_count(self.cfg.sparsity, self.cfg.d_in)).all())

    def support(self, max_neurons: int | None = None) -> tuple[Int[torch.Tensor, "F s"], Float[torch.Tensor, "F s"]]:
        """Neuron support of each feature: ids and signed weights, largest |weight| first.

        ``s`` is the largest non-zero count over features (``ceil(sparsity·d)`` after a WTA fit)
        unless ``max_neurons`` caps it; entries beyond a feature's support have weight 0.
        """
        W = self.W_dec.detach()
        s = int((W != 0).sum(1).max().clamp(min=1)) if max_neurons is None else max_neurons
        idx = W.abs().topk(min(s, W.shape[1]), dim=1).indices
        return idx, W.gather(1, idx)


def _fit_meta(res: FitResult, n: int) -> dict:
    return {
        "tokens": n,
        "iterations": res.n_iter,
        "best_iter": res.best_iter,
        "restarts": res.restarts,
        "initial_loss": res.initial_loss,
        "loss": res.best_loss,
        "x_sq": res.x_sq,
        "fvu": res.best_loss / res.x_sq if res.x_sq > 0 else None,
        "history": res.history[-1000:],
    }
