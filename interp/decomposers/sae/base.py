"""What every sparse autoencoder shares: its config fields, parameters, normalisation and step result.

Parameters follow DESIGN.md: ``W_enc [D, F]``, ``b_enc [F]``, ``W_dec [F, D]`` (unit-norm rows),
``b_dec [D]``. The SAE works internally on inputs multiplied by ``norm_scale`` (estimated before
training so that the scaled inputs have mean squared norm D); ``encode``/``decode`` take and return
the site's raw activations, so users never see the scaling. A variant implements ``select`` (which
latents fire, and with what values) and may override ``step`` (the training loss); the one trainer
in ``trainer.py`` does the rest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from jaxtyping import Bool, Float, Int

from interp.decomposers.base import Decomposer, check_fields, config_from, doc_field
from interp.decomposers.sae.checks import B_DEC_INITS
from interp.decomposers.sae.train_config import TRAIN_FIELDS, TrainConfig
from interp.decomposers.sae.ops import gather_encode, sparse_decode
from interp.decomposers.sae.saelens import write_saelens
from interp.errors import ConfigError


@dataclass(frozen=True)
class SAEConfig:
    """Fields every SAE shares, all that rebuilds one (a variant adds its own, e.g. ``k``). The
    run's settings (optimiser, lr, budget, seed, device...) are a ``TrainConfig``."""

    method: str = doc_field("topk", "the SAE variant (a registered method name)")
    d_in: int | None = doc_field(None, "input width; None: taken from the data")
    d_sae: int | None = doc_field(None, "number of latents; None: expansion_factor * d_in")
    expansion_factor: int = doc_field(16, "d_sae / d_in when d_sae is left out")
    model: str | None = doc_field(None, "provenance: the model spec the activations came from")
    site: str | None = doc_field(None, "hook site (picks the site of a multi-site cache)")
    normalize: bool = doc_field(True, "scale inputs to mean squared norm d_in (factor kept in the weights)")
    exclude_special: bool = doc_field(True, "BOS/separator/pad tokens are left out of training and use")
    b_dec_init: str = doc_field(
        "mean", "b_dec's start on the first batch: mean | median (geometric, as sparsify starts) | zero"
    )
    extra: dict = doc_field(
        {}, "free-form provenance kept with the artifact (e.g. where it was imported from)", runtime=True
    )

    def __post_init__(self) -> None:
        """Types and ranges are checked at construction, before any compute (``ConfigError``)."""
        from interp.decomposers.sae.checks import check_ranges

        check_fields(self)
        check_ranges(self)

    def resolved(self, d_in: int) -> "SAEConfig":
        """A copy with the widths filled in, fixed before training starts."""
        from dataclasses import replace

        from interp.decomposers.sae.checks import check_k

        if self.d_in is not None and self.d_in != d_in:
            raise ConfigError(f"config d_in={self.d_in} but the data has width {d_in}")
        d_sae = self.d_sae or self.expansion_factor * d_in
        check_k(self, d_sae)
        return replace(self, d_in=d_in, d_sae=d_sae)


def geometric_median(x: Float[torch.Tensor, "B D"], iters: int = 100, tol: float = 1e-6) -> Float[torch.Tensor, "D"]:
    """The point minimising the summed Euclidean distance to the rows of ``x`` (Weiszfeld's
    iteration from the mean, in float64; stops when a step moves it less than ``tol`` times its
    norm). Unlike the mean, a few massive-norm rows barely move it."""
    xd = x.double()
    y = xd.mean(0)
    for _ in range(iters):
        w = 1 / (xd - y).norm(dim=1).clamp_min(1e-12)
        new = (w[:, None] * xd).sum(0) / w.sum()
        done = (new - y).norm() <= tol * new.norm().clamp_min(1e-12)
        y = new
        if done:
            break
    return y.to(x.dtype)


def data_centre(x: Float[torch.Tensor, "B D"], how: str) -> Float[torch.Tensor, "D"]:
    """``x``'s mean, geometric median or zero (``how``, one of ``B_DEC_INITS``)."""
    assert how in B_DEC_INITS, how
    if how == "median":
        return geometric_median(x)
    return x.mean(0) if how == "mean" else torch.zeros_like(x[0])


@dataclass
class StepOutput:
    """What a variant's training step hands to the trainer."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]  # named loss terms, logged as they are
    x_hat: Float[torch.Tensor, "B D"]
    fired: Bool[torch.Tensor, "F"]  # latents active in this batch (for dead tracking)


class SAE(Decomposer):
    """Base class of the SAE family (k-sparse variants use the sparse kernels in ``ops``)."""

    @classmethod
    def fit_config(cls, data: Any, cfg: Any, *, progress: bool = True) -> "SAE":
        """Train this variant on ``data`` with ``cfg`` (``interp.decomposers.sae.train`` without an
        output folder; give ``train`` an ``out`` to checkpoint and resume)."""
        from interp.decomposers.sae.trainer import train

        fields = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
        return train({**fields, "method": cls.method}, data, progress=progress)

    # TrainConfig defaults this variant changes (e.g. JumpReLU's Adam betas)
    train_defaults: ClassVar[dict[str, Any]] = {}

    @property
    def first_loss_is_a_baseline(self) -> bool:
        """Whether a run that ends near its first loss did not learn (the trainer then warns).
        False where the start reconstructs with a dense code that training makes sparse."""
        return True

    def __init__(self, cfg: SAEConfig, run: TrainConfig | None = None):
        super().__init__(cfg)
        self.run = run or TrainConfig()  # the training run's settings (seed, budget, batch)
        d, f = cfg.d_in, cfg.d_sae
        gen = torch.Generator().manual_seed(self.run.seed)
        W_dec = torch.randn(f, d, generator=gen)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        self.W_dec = torch.nn.Parameter(W_dec)
        # encoder = decoder^T at init, scaled to ``enc_init_norm`` (see ``optim.ENC_INIT_NORM``);
        # tied: exactly W_dec^T, an untrained copy (see ``_W``)
        tied = getattr(cfg, "tied", False)
        scale = 1.0 if tied else self.run.enc_init_norm
        self.W_enc = torch.nn.Parameter((W_dec.T * scale).contiguous(), requires_grad=not tied)
        self.b_enc = torch.nn.Parameter(torch.zeros(f))
        self.b_dec = torch.nn.Parameter(torch.zeros(d))
        self.register_buffer("norm_scale", torch.ones(()))

    # -- the variant's part ---------------------------------------------------------------------
    def select(self, pre: Float[torch.Tensor, "B F"]) -> tuple[Float[torch.Tensor, "B K"], Int[torch.Tensor, "B K"]]:
        """Active latents per token: (pre-activation values, latent ids)."""
        raise NotImplementedError

    def _W(self) -> Float[torch.Tensor, "D F"]:
        """The encoder weights a training step differentiates: ``W_enc``, or ``W_dec^T`` for a
        variant with ``tied`` set (its ``W_enc`` is then an untrained copy, kept equal to
        ``W_dec^T`` by ``normalize_decoder`` for the shared API)."""
        return self.W_dec.t() if getattr(self.cfg, "tied", False) else self.W_enc

    def activation(self, vals: Float[torch.Tensor, "B K"]) -> Float[torch.Tensor, "B K"]:
        return torch.relu(vals)

    # -- shared maths on normalised inputs ------------------------------------------------------
    def pre_acts(self, xn: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B F"]:
        return (xn - self.b_dec) @ self.W_enc + self.b_enc

    def encode_sparse(self, xn: Float[torch.Tensor, "B D"]) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable k-sparse code of normalised inputs: (values [B, K], ids [B, K])."""
        with torch.no_grad():
            pre = self.pre_acts(xn)
            _, idx = self.select(pre)
        vals = gather_encode(xn, self.b_dec, self.W_enc, self.b_enc, pre, idx)
        return self.activation(vals), idx

    def decode_sparse(self, vals: torch.Tensor, idx: torch.Tensor) -> Float[torch.Tensor, "B D"]:
        return sparse_decode(vals, idx, self.W_dec) + self.b_dec

    # -- public interface (raw activations) -----------------------------------------------------
    def encode(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B F"]:
        vals, idx = self.encode_sparse(x.to(self.W_enc.dtype) * self.norm_scale)
        codes = torch.zeros(len(x), self.cfg.d_sae, dtype=vals.dtype, device=vals.device)
        return codes.scatter_(1, idx, vals)

    def decode(self, codes: Float[torch.Tensor, "B F"]) -> Float[torch.Tensor, "B D"]:
        return (codes @ self.W_dec + self.b_dec) / self.norm_scale

    def reconstruct(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B D"]:
        vals, idx = self.encode_sparse(x.to(self.W_enc.dtype) * self.norm_scale)
        return self.decode_sparse(vals, idx) / self.norm_scale

    def directions(self) -> Float[torch.Tensor, "F D"]:
        """Unit decoder rows (rows are unit already for unit-decoder variants)."""
        W = self.W_dec.detach()
        return W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)

    # -- training hooks -------------------------------------------------------------------------
    @torch.no_grad()
    def init_from_data(self, xn: Float[torch.Tensor, "B D"]) -> None:
        """b_dec starts at the mean, the geometric median or zero of the (normalised) first batch
        (``b_dec_init``)."""
        self.b_dec.copy_(data_centre(xn, self.cfg.b_dec_init))

    def step(self, xn: Float[torch.Tensor, "B D"], dead: torch.Tensor | None) -> StepOutput:
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, xn: Float[torch.Tensor, "B D"], out: StepOutput, step: int) -> None:
        """Called by the trainer after each optimiser step (``step`` counts from 1).

        Variants with non-gradient updates hook in here: bias adaptation's periodic threshold
        updates, BatchTopK's running inference threshold. Default: nothing.
        """

    @torch.no_grad()
    def constrain_decoder_grad(self) -> None:
        """Remove the gradient component parallel to each unit-norm decoder row."""
        if self.W_dec.grad is not None:
            w, g = self.W_dec, self.W_dec.grad
            g -= (g * w).sum(1, keepdim=True) * w

    @classmethod
    def saved_config(cls, fields: dict) -> SAEConfig:
        """Artifacts written before the config split also hold the run's fields: drop those."""
        return config_from(cls.config_cls, {k: v for k, v in fields.items() if k not in TRAIN_FIELDS})

    # -- SAELens interchange (the format itself lives in ``saelens.py``) ------------------------
    saelens_architecture: str | None = None  # set by variants SAELens can run
    saelens_exact: bool = True  # False: the SAELens files only approximate the SAE (say so in docs)

    def saelens_fields(self) -> dict:
        """Architecture-specific cfg.json fields (e.g. ``k``)."""
        return {}

    @torch.no_grad()
    def saelens_state(self) -> dict[str, torch.Tensor]:
        """Weights for raw activations with the normalisation folded in and unit decoder rows:
        SAELens codes are ours divided by ``norm_scale`` (TopK/ReLU selection is unchanged)."""
        c = self.norm_scale
        return {"W_enc": self.W_enc, "b_enc": self.b_enc / c, "W_dec": self.W_dec, "b_dec": self.b_dec / c}

    def save_saelens(self, path) -> Path:
        """Write ``cfg.json`` + ``sae_weights.safetensors`` (SAELens v6 layout) into ``path``."""
        return write_saelens(self, path)

    def write_extra(self, path) -> None:
        """Artifacts of variants SAELens can run also carry the SAELens files."""
        if self.saelens_architecture is not None:
            write_saelens(self, path)

    @classmethod
    def from_saelens(cls, fields: dict, cfg: dict, state: dict[str, torch.Tensor]) -> "SAE":
        """Build from SAELens weights already in our layout (raw activations, ``b_dec`` subtracted
        at the input); ``fields`` holds the config fields, ``cfg`` the SAELens cfg.json."""
        sae = cls(config_from(cls.config_cls, fields))
        with torch.no_grad():
            for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
                getattr(sae, name).copy_(state[name])
        return sae

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Decoder rows back to unit norm (after every step and at the end); a tied variant's
        ``W_enc`` then follows as ``W_dec^T``."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
        if getattr(self.cfg, "tied", False):
            self.W_enc.copy_(self.W_dec.t())


def ramp(steps_done: torch.Tensor, frac: float, run: TrainConfig) -> torch.Tensor:
    """Linear warm-up factor in [0, 1] over the first ``frac`` of the training steps (a tensor:
    no host sync). ``steps_done`` is a variant's step counter buffer, kept by ``after_step``."""
    n_warm = frac * run.n_steps
    if n_warm <= 0:
        return torch.ones((), device=steps_done.device)
    return (steps_done.float() / n_warm).clamp(max=1.0)
