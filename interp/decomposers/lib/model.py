"""Local Interaction Basis (LIB): computationally relevant bases and interaction graphs.

Follows Bushnaq, Heimersheim, Goldowsky-Dill et al. 2024 ("The Local Interaction Basis",
arXiv 2405.10928) as implemented in ApolloResearch/rib (``basis_formula="jacobian"``,
``edge_formula="squared"``). A model is cut into node layers ``f^0 .. f^L`` and modules
``F_l: f^l -> f^{l+1}``. For each layer, from the output backwards:

1. Gram matrix of the centred activations with the bias folded in as a constant last coordinate,
   float64 eigendecomposition ``G = U D U^T`` (the constant direction, and optionally other
   coordinates such as a LayerNorm scale, kept isolated), truncation, whitening ``R = Y U D^-1/2``.
2. Interaction matrix ``M = E_{x, s}[ J_s^T J_s ]`` of the next layer's LIB coordinates
   ``f^{l+1} C^{l+1}`` with respect to the whitened coordinates (within-position products),
   with a plain or integrated (trapezoid / Gauss-Legendre) Jacobian and optional Rademacher
   stochastic sources over output positions and hidden dims; ``M = V L V^T``.
3. ``C^l = R V L^1/2``: LIB coordinates ``f_hat = f C`` ordered by importance ``L``.
4. Edges ``E^l[i, j] = E_{x, t}[(sum_s dF_hat_{t,i}/df_hat_{s,j} f_hat_{s,j})^2]``.

``basis="pca"`` gives the PCA baseline (``C = Y U``) with its own edges. The last node layer is the
raw output (``rotate_final=False``, mod-add) or its PCA (``rotate_final=True``, LMs).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch
from jaxtyping import Float
from tqdm import tqdm

from interp.decomposers.lib import ops
from interp.decomposers.base import Decomposer, config_from, register


@dataclasses.dataclass(frozen=True)
class LIBConfig:
    model: str = ""  # model spec, or a model-local name (e.g. a mod-add checkpoint)
    site: str = ""  # hook site of ``directions()`` (node layer ``direction_layer``)
    node_layers: tuple[str, ...] = ()  # names of node layers 0..L
    sites: tuple[str, ...] = ()  # hook site per node layer ("" where it is not a hook)
    direction_layer: int = 0  # node layer whose basis directions() returns
    basis: str = "jacobian"  # "jacobian" (LIB) or "pca" (baseline)
    center: bool = True  # centre each node layer (the constant becomes its own direction, not returned)
    isolate_coords: tuple[int, ...] = ()  # raw coordinates kept as their own direction (LN scale)
    isolate_layers: tuple[int, ...] = ()  # ... at these node layers
    truncation_threshold: float = 1e-15  # drop Gram eigenvalues at or below this (rib's default)
    truncation_relative: float | None = None  # also drop eigenvalues <= this x the largest (not rib)
    integration: str = "gradient"  # "gradient" (alpha=1, rib's shipped configs), "trapezoidal", "gauss-legendre"
    n_intervals: int = 0  # integration points for the non-gradient rules (0 with "gradient")
    n_sources_pos: int | None = None  # Rademacher sources for M (None: exact)
    n_sources_hidden: int | None = None  # Rademacher sources over hidden dimensions for M (None: exact)
    edge_sources_pos: int | None = None  # sources over output positions for edges
    rotate_final: bool = False  # also rotate the last node layer (False: keep it raw, e.g. logits)
    fold: str = "passthrough"  # how unfolded modules see the constant (ops.fold)
    compute_edges: bool = True  # compute the attribution edges between adjacent node layers
    batch_size: int = 256  # samples per batched Jacobian pass
    seed: int = 0  # seed of the Rademacher sources
    dims: tuple[int, ...] = ()  # folded width d_l + 1 per node layer (set by fit)
    ranks: tuple[int, ...] = ()  # basis size r_l per node layer (set by fit)


@register("lib")
class LIB(Decomposer):
    """Fitted LIB (or PCA) bases of every node layer, their eigenvalues and interaction edges."""

    config_cls = LIBConfig

    def __init__(self, cfg: LIBConfig):
        super().__init__(cfg)
        for l, (d, r) in enumerate(zip(cfg.dims, cfg.ranks)):
            self.register_buffer(f"C_{l}", torch.zeros(d, r, dtype=torch.float64))
            self.register_buffer(f"C_pinv_{l}", torch.zeros(r, d, dtype=torch.float64))
            self.register_buffer(f"eig_{l}", torch.zeros(r, dtype=torch.float64))
            if l + 1 < len(cfg.ranks):
                self.register_buffer(f"edges_{l}", torch.zeros(cfg.ranks[l + 1], r, dtype=torch.float64))

    # ----------------------------------------------------------------------------- accessors
    def basis(self, l: int) -> Float[torch.Tensor, "d1 r"]:
        """``C^l`` on folded activations ``[x, 1]`` (last row: the constant coordinate)."""
        return getattr(self, f"C_{l}")

    def basis_pinv(self, l: int) -> Float[torch.Tensor, "r d1"]:
        return getattr(self, f"C_pinv_{l}")

    def eigenvalues(self, l: int) -> Float[torch.Tensor, "r"]:
        return getattr(self, f"eig_{l}")

    def edges(self, l: int) -> Float[torch.Tensor, "r_next r"]:
        return getattr(self, f"edges_{l}")

    @property
    def n_layers(self) -> int:
        return len(self.cfg.ranks)

    def to_lib(self, l: int, x: Float[torch.Tensor, "... d"]) -> Float[torch.Tensor, "... r"]:
        C = self.basis(l)
        return ops.append_const(x.to(C.dtype)) @ C

    def from_lib(self, l: int, f_hat: Float[torch.Tensor, "... r"]) -> Float[torch.Tensor, "... d"]:
        return (f_hat.to(self.basis(l).dtype) @ self.basis_pinv(l))[..., :-1]

    # ------------------------------------------------------------------ Decomposer interface
    def _skip(self) -> int:
        return 1 if self.cfg.center else 0  # the constant feature is not a direction

    def encode(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B F"]:
        return self.to_lib(self.cfg.direction_layer, x)[..., self._skip() :].to(x.dtype)

    def decode(self, codes: Float[torch.Tensor, "B F"]) -> Float[torch.Tensor, "B D"]:
        l = self.cfg.direction_layer
        const = self.basis(l)[-1, : self._skip()].expand(*codes.shape[:-1], self._skip())
        return self.from_lib(l, torch.cat([const, codes.to(const.dtype)], -1)).to(codes.dtype)

    def directions(self) -> Float[torch.Tensor, "F D"]:
        """Each LIB feature's direction at ``cfg.site``: rows of ``C^+`` (a unit of feature j adds
        ``C^+[j]`` to the activation), constant feature and coordinate dropped, unit-normalised."""
        rows = self.basis_pinv(self.cfg.direction_layer)[self._skip() :, :-1]
        return (rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-30)).float()

    # ------------------------------------------------------------------------------ fitting
    fit_data = "modules"

    @classmethod
    def fit_config(cls, data: Any, cfg: Any, *, progress: bool = True) -> "LIB":
        """``fit(modules, inputs, cfg)`` with ``data = (modules, inputs)``."""
        modules, inputs = data
        return cls.fit(modules, inputs, cfg)

    @classmethod
    def fit(
        cls, modules: Sequence, inputs: Float[torch.Tensor, "N P d"], cfg: LIBConfig | dict | None = None, **overrides
    ) -> "LIB":
        """Fit on node-layer-0 activations ``inputs`` (``[N, P, d]`` or ``[N, d]``); module l maps
        node layer l to l+1 (``[B, P_l, d_l] -> [B, P_{l+1}, d_{l+1}]``; see ``ops.fold``).
        Everything runs in float64: ``nn.Module``s of another precision are run as float64 copies,
        other callables receive float64 inputs (``ops.in_float64``)."""
        cfg = dataclasses.replace(config_from(LIBConfig, cfg or {}), **overrides)
        if cfg.basis not in ("jacobian", "pca"):
            raise ValueError(f"basis {cfg.basis!r}: use 'jacobian' (LIB) or 'pca'")
        if inputs.dim() == 2:
            inputs = inputs[:, None]
        if inputs.dim() != 3:
            raise ValueError(f"inputs must be [N, P, d] or [N, d], got {tuple(inputs.shape)}")
        fns = [ops.fold(ops.in_float64(m), cfg.fold) for m in modules]
        names = cfg.node_layers or tuple(f"layer{l}" for l in range(len(fns) + 1))
        if len(names) != len(fns) + 1:
            raise ValueError(f"{len(fns)} modules need {len(fns) + 1} node_layers names, got {len(names)}")
        acts = _forward_all(fns, ops.append_const(inputs.double()), cfg.batch_size)
        bases = [None] * len(acts)
        bases[-1] = _final_basis(cfg, len(fns), acts[-1])
        edges = [None] * len(fns)
        for l in tqdm(range(len(fns) - 1, -1, -1), desc="LIB layers"):
            bases[l] = _layer_basis(cfg, l, fns[l], acts[l], bases[l + 1][0])
            if cfg.compute_edges:
                edges[l] = _edges(cfg, fns[l], acts[l], bases[l], bases[l + 1][0])
        dims = tuple(a.shape[-1] for a in acts)
        cfg = dataclasses.replace(
            cfg,
            node_layers=names,
            dims=dims,
            ranks=tuple(b[0].shape[1] for b in bases),
            site=cfg.site or (cfg.sites[cfg.direction_layer] if cfg.sites else ""),
        )
        lib = cls(cfg)
        for l, (C, C_pinv, lam) in enumerate(bases):
            lib.basis(l).copy_(C), lib.basis_pinv(l).copy_(C_pinv), lib.eigenvalues(l).copy_(lam)
            if l < len(fns) and edges[l] is not None:
                lib.edges(l).copy_(edges[l])
        return lib.eval()


@torch.no_grad()
def _forward_all(fns, f0, batch):
    acts = [f0]
    for fn in fns:
        acts.append(torch.cat([fn(acts[-1][i : i + batch]) for i in range(0, len(f0), batch)]).double())
    return acts


def _pca(cfg: LIBConfig, l: int, acts: torch.Tensor):
    """Centred Gram eigenbasis: (U, D, Y, Y_inv), isolated constant (and LN-scale) directions first."""
    d = acts.shape[-1] - 1
    mean = ops.data_mean(acts[..., :-1]) if cfg.center else torch.zeros(d, dtype=torch.float64)
    Y, Y_inv = ops.centering(mean)
    iso = ([d] if cfg.center else []) + (list(cfg.isolate_coords) if l in cfg.isolate_layers else [])
    U, D = ops.masked_eigh(ops.gram(acts, Y), iso, cfg.truncation_threshold, cfg.truncation_relative)
    return U, D, Y, Y_inv, len(iso)


def _final_basis(cfg: LIBConfig, l: int, acts: torch.Tensor):
    if cfg.rotate_final:
        U, D, Y, Y_inv, _ = _pca(cfg, l, acts)
        return Y @ U, U.T @ Y_inv, D
    d = acts.shape[-1] - 1  # raw outputs (e.g. logits), constant dropped
    C = torch.eye(d + 1, d, dtype=torch.float64)
    second_moment = acts[..., :-1].pow(2).mean(dim=(0, 1))
    return C, C.T.clone(), second_moment


def _layer_basis(cfg: LIBConfig, l: int, fn, acts: torch.Tensor, C_next: torch.Tensor):
    U, D, Y, Y_inv, n_iso = _pca(cfg, l, acts)
    if cfg.basis == "pca":
        return Y @ U, U.T @ Y_inv, D
    sqrt_D = D.sqrt()
    R, R_pinv = Y @ U / sqrt_D, sqrt_D[:, None] * (U.T @ Y_inv)
    M = _interaction_matrix(cfg, fn, acts, C_next, R_pinv)
    V, lam = ops.masked_eigh(M, list(range(n_iso)), cfg.truncation_threshold, cfg.truncation_relative)
    s = ops.safe_sqrt(lam, cfg.truncation_threshold)
    return R @ V * s, (V.T @ R_pinv) / s[:, None], lam


def _jacobian_pass(cfg: LIBConfig, fn, acts, C_next, n_pos, n_hidden, consume, seed_offset):
    """Run integrated VJPs of ``fn(f) @ C_next`` over the data; ``consume(grads, batch_slice, mask)``."""
    alphas, weights = ops.integration_rule(cfg.integration, cfg.n_intervals)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + seed_offset)
    out_fn = lambda f: fn(f) @ C_next  # noqa: E731
    with torch.no_grad():
        P_out = fn(acts[:1]).shape[1]
    for i in range(0, len(acts), cfg.batch_size):
        f = acts[i : i + cfg.batch_size]
        cot, mask = ops.cotangents(len(f), P_out, C_next.shape[1], n_pos, n_hidden, gen)
        chunk = ops.vjp_chunk(len(f), f.shape[1], f.shape[2])
        for k0 in range(0, cot.shape[0], chunk):
            grads = ops.integrated_vjps(out_fn, f, cot[k0 : k0 + chunk], alphas, weights, chunk)
            consume(grads, slice(i, i + len(f)), mask[k0 : k0 + chunk])


def _interaction_matrix(cfg, fn, acts, C_next, R_pinv):
    M = torch.zeros(R_pinv.shape[0], R_pinv.shape[0], dtype=torch.float64)

    def consume(grads, _, __):
        M.add_(ops.accumulate_M(grads, R_pinv))

    _jacobian_pass(cfg, fn, acts, C_next, cfg.n_sources_pos, cfg.n_sources_hidden, consume, 0)
    return M / (acts.shape[0] * acts.shape[1] * ops.n_sources_scale(cfg.n_sources_pos, cfg.n_sources_hidden))


def _edges(cfg, fn, acts, basis, C_next):
    C, C_pinv, _ = basis
    f_hat = acts @ C
    f_proj = f_hat @ C_pinv  # the activations on the kept subspace
    E = torch.zeros(C_next.shape[1], C.shape[1], dtype=torch.float64)

    def consume(grads, sl, mask):
        E.add_(ops.accumulate_edges(grads, C_pinv, f_hat[sl], mask))

    _jacobian_pass(cfg, fn, f_proj, C_next, cfg.edge_sources_pos, None, consume, 1)
    return E / (acts.shape[0] * acts.shape[1] * (cfg.edge_sources_pos or 1))


def pca_basis(
    acts: Float[torch.Tensor, "N D"], center: bool = True, threshold: float = 1e-15
) -> tuple[Float[torch.Tensor, "D r"], Float[torch.Tensor, "r"]]:
    """PCA baseline in raw coordinates: orthonormal eigenvectors of the (centred) second-moment
    matrix, descending, eigenvalues > ``threshold`` (float64)."""
    x = acts.double().reshape(-1, acts.shape[-1])
    if center:
        x = x - x.mean(0)
    U, D = ops.masked_eigh(x.T @ x / len(x), [], threshold)
    return U, D
