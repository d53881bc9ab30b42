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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float, Int

from interp.decomposers.base import Decomposer, check_fields, config_from
from interp.decomposers.sae.ops import gather_encode, sparse_decode
from interp.decomposers.sae.saelens import write_saelens
from interp.errors import ConfigError


@dataclass(frozen=True)
class SAEConfig:
    """Fields every SAE shares (a variant adds its own, e.g. ``k``)."""

    method: str = "topk"
    d_in: int | None = None  # None: taken from the data
    d_sae: int | None = None  # None: expansion_factor * d_in
    expansion_factor: int = 16
    lr: float | None = None  # None: 2e-4 / sqrt(d_sae / 2**14) (Gao et al. scaling)
    batch_size: int = 4096
    n_tokens: int = 2_000_000  # training budget
    seed: int = 0
    model: str | None = None  # provenance: the model spec the data came from
    site: str | None = None  # hook site (picks the site of a multi-site cache)
    normalize: bool = True  # scale inputs to mean squared norm d_in
    norm_scale_tokens: int = 1 << 15
    exclude_special: bool = True  # leave BOS/separator/pad tokens out of training
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 6.25e-10
    warmup_steps: int = 50
    decay_frac: float = 0.2  # linear decay to 0 over the last fraction of steps
    grad_clip: float | None = 1.0
    dead_tokens: int | None = None  # inactive this many tokens => dead; None: min(1e7, n_tokens/10)
    log_every: int = 25
    checkpoint_every: int = 500  # steps
    wandb: str = "offline"  # offline | online | disabled
    wandb_project: str = "interp"
    device: str | None = None
    autocast: str | None = None  # "bfloat16"/"float16": mixed precision for the SAE's forward
    compile: bool = False  # torch.compile the variant's step (worth it for dense variants on GPU)
    prefetch: int = 2  # batches read (and, on CUDA, uploaded) ahead on a background thread
    extra: dict = field(default_factory=dict)  # free-form provenance (kept, not interpreted)

    def __post_init__(self) -> None:
        """Types and ranges are checked at construction, before any compute (``ConfigError``)."""
        from interp.decomposers.sae.checks import check_ranges

        check_fields(self)
        check_ranges(self)

    def resolved(self, d_in: int) -> "SAEConfig":
        """A copy with every ``None`` default filled in, fixed before training starts."""
        from dataclasses import replace

        from interp.decomposers.sae.checks import check_k

        if self.d_in is not None and self.d_in != d_in:
            raise ConfigError(f"config d_in={self.d_in} but the data has width {d_in}")
        d_sae = self.d_sae or self.expansion_factor * d_in
        check_k(self, d_sae)
        lr = self.lr if self.lr is not None else 2e-4 / (d_sae / 2**14) ** 0.5
        dead = self.dead_tokens if self.dead_tokens is not None else int(min(1e7, self.n_tokens / 10))
        return replace(self, d_in=d_in, d_sae=d_sae, lr=lr, dead_tokens=dead)


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

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        d, f = cfg.d_in, cfg.d_sae
        gen = torch.Generator().manual_seed(cfg.seed)
        W_dec = torch.randn(f, d, generator=gen)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        self.W_dec = torch.nn.Parameter(W_dec)
        self.W_enc = torch.nn.Parameter(W_dec.T.clone().contiguous())  # encoder = decoder^T at init
        self.b_enc = torch.nn.Parameter(torch.zeros(f))
        self.b_dec = torch.nn.Parameter(torch.zeros(d))
        self.register_buffer("norm_scale", torch.ones(()))

    # -- the variant's part ---------------------------------------------------------------------
    def select(self, pre: Float[torch.Tensor, "B F"]) -> tuple[Float[torch.Tensor, "B K"], Int[torch.Tensor, "B K"]]:
        """Active latents per token: (pre-activation values, latent ids)."""
        raise NotImplementedError

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
        """b_dec starts at the mean of the (normalised) data."""
        self.b_dec.copy_(xn.mean(0))

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
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)


def ramp(steps_done: torch.Tensor, frac: float, cfg: SAEConfig) -> torch.Tensor:
    """Linear warm-up factor in [0, 1] over the first ``frac`` of the training steps (a tensor:
    no host sync). ``steps_done`` is a variant's step counter buffer, kept by ``after_step``."""
    n_warm = frac * max(1, cfg.n_tokens // cfg.batch_size)
    if n_warm <= 0:
        return torch.ones((), device=steps_done.device)
    return (steps_done.float() / n_warm).clamp(max=1.0)
