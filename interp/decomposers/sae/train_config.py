"""The settings of one SAE training run, kept apart from the SAE's own config.

An artifact's ``config.json`` holds what rebuilds the model (``SAEConfig`` and the variant's
fields); ``train_config.json`` beside it holds this ``TrainConfig``: optimiser, schedule, batch,
budget, seed, device, logging. Each field documents itself in ``metadata["doc"]`` (read them with
``interp.decomposers.base.field_docs``: a command line's ``--help`` shows them); fields marked ``metadata["runtime"]``
change how a run is carried out but not the weights it produces, so a finished or interrupted
run may be resumed or reused with other values for them. The split of a flat dict (the form
``train`` and the YAML configs take) is by name: TrainConfig's fields train, the rest build. The optimisers and the schedule rules
are in ``optim.py`` (Gao et al. 2024; Defazio et al. 2024; Jordan et al. 2024).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from interp.decomposers.base import doc_field as _f
from interp.decomposers.sae.optim import (
    ENC_INIT_NORM,
    OPTIMIZERS,
    SIGNUM_WARMUP_STEPS,
    WARMUP_FRAC,
    default_lr,
    schedule_steps,
)
from interp.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """How to train an SAE: optimiser, learning-rate schedule, data budget, runtime."""

    optimizer: str = _f("signum", "adam | signum (sign descent, schedule-free averaging) | muon")
    lr: float | None = _f(None, "learning rate; None: the optimiser's rate for this width and budget")
    warmup_frac: float | None = _f(
        None, "linear warm-up over this fraction of the steps; None: 0.05, or 2 steps at every budget for signum"
    )
    warmup_min: int = _f(1, "warm-up floor in steps")
    warmup_max: int = _f(1000, "warm-up cap in steps")
    warmup_steps: int | None = _f(None, "fixed warm-up in steps, overriding the fraction")
    decay_frac: float | None = _f(None, "linear decay to 0 over this last fraction; None: 0.2, 0 for signum")
    decay_max: int | None = _f(None, "decay cap in steps (None: no cap)")
    betas: tuple[float, float] | None = _f(None, "Adam betas; None: (0.9, 0.999) or the variant's")
    eps: float = _f(6.25e-10, "Adam epsilon")
    grad_clip: float | None = _f(1.0, "clip the gradient norm to this (None: no clipping)")
    batch_size: int = _f(4096, "tokens per optimiser step")
    n_tokens: int = _f(2_000_000, "training budget in tokens")
    seed: int = _f(0, "seed of the initial weights and of the data order")
    enc_init_norm: float = _f(
        ENC_INIT_NORM,
        "norm of each latent's encoder weights at the start (decoder rows are unit; 1: the decoder's transpose)",
    )
    norm_scale_tokens: int = _f(1 << 15, "tokens used to estimate the input scaling")
    dead_tokens: int | None = _f(None, "a latent inactive this many tokens is dead; None: min(1e7, n_tokens/10)")
    autocast: str | None = _f(None, "bfloat16 | float16: mixed precision for the SAE's forward")
    log_every: int = _f(25, "steps between logged losses", runtime=True)
    checkpoint_every: int = _f(500, "steps between checkpoints", runtime=True)
    wandb: str = _f("offline", "offline | online | disabled", runtime=True)
    wandb_project: str = _f("interp", "wandb project name", runtime=True)
    device: str | None = _f(None, "cpu | cuda | cuda:N; None: cuda when available", runtime=True)
    compile: bool = _f(False, "torch.compile the variant's step (pays for dense variants on GPU)", runtime=True)
    prefetch: int = _f(2, "batches read (and uploaded) ahead on a background thread", runtime=True)

    def __post_init__(self) -> None:
        """Types and ranges are checked at construction, before any compute (``ConfigError``)."""
        from interp.decomposers.base import check_fields
        from interp.decomposers.sae.checks import check_ranges

        check_fields(self)
        check_ranges(self)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r} is not one of {list(OPTIMIZERS)}")
        if not (0 <= (self.warmup_frac or 0) <= 1 and 0 <= (self.decay_frac or 0) <= 1):
            raise ConfigError("warmup_frac and decay_frac must lie in [0, 1]")

    @property
    def n_steps(self) -> int:
        return max(1, self.n_tokens // self.batch_size)

    def warmup(self) -> int:
        """Warm-up steps: ``warmup_steps`` if set, else the fraction within its floor and cap.

        Schedule-free Signum, unless given a fraction, warms up over ``optim.SIGNUM_WARMUP_STEPS``
        at every budget (never over half the run)."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        if self.warmup_frac is None and self.optimizer == "signum":
            return schedule_steps(self.n_steps, 0.0, SIGNUM_WARMUP_STEPS, None)
        frac = WARMUP_FRAC if self.warmup_frac is None else self.warmup_frac
        return schedule_steps(self.n_steps, frac, self.warmup_min, self.warmup_max)

    def decay(self) -> int:
        """Decay steps at the end of the run (0 for schedule-free Signum unless asked for)."""
        frac = self.decay_frac if self.decay_frac is not None else (0.0 if self.optimizer == "signum" else 0.2)
        return schedule_steps(self.n_steps, frac, 0, self.decay_max) if frac else 0

    def resolved(self, d_sae: int) -> "TrainConfig":
        """A copy with the learning rate, betas and dead-latent window filled in."""
        lr = self.lr if self.lr is not None else default_lr(self.optimizer, d_sae, self.n_steps)
        dead = self.dead_tokens if self.dead_tokens is not None else int(min(1e7, self.n_tokens / 10))
        betas = tuple(self.betas) if self.betas is not None else (0.9, 0.999)
        return dataclasses.replace(self, lr=lr, dead_tokens=dead, betas=betas)


def result_fields(cfg: object) -> dict:
    """A config's fields that decide the trained weights (those marked ``runtime`` left out)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if not f.metadata.get("runtime")}


TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


def split_config(fields: dict) -> tuple[dict, dict]:
    """A flat dict into (model fields, training fields): training fields are TrainConfig's."""
    train = {k: v for k, v in fields.items() if k in TRAIN_FIELDS}
    return {k: v for k, v in fields.items() if k not in TRAIN_FIELDS}, train
