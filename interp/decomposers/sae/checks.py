"""Checks an SAE run makes before and while it trains: config ranges, budget against data, the
data fingerprint of a resumed or reused run, and loss watching (divergence, no learning).

Every check raises the project's own error types (``interp.errors``) with a message that says
what to do; nothing here trains.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from interp.errors import ConfigError, DataError, TrainingError

MAX_PASSES = 100  # a budget over this many passes through a cache is refused (almost surely a typo)
DIVERGED = 100.0  # the loss this many times its first value: the run has diverged
LEARNED = 0.95  # a final loss above this fraction of the first: the run did not learn
B_DEC_INITS = ("mean", "median", "zero")  # b_dec's possible starts (``SAEConfig.b_dec_init``)


def check_ranges(cfg: Any) -> None:
    """Ranges of an SAE's config (``SAEConfig``: widths, k) or of its run (``TrainConfig``: lr,
    budget, batch), whichever fields ``cfg`` has; ``ConfigError`` if one is out of range."""
    positive = [
        "expansion_factor",
        "batch_size",
        "n_tokens",
        "norm_scale_tokens",
        "log_every",
        "checkpoint_every",
        "d_in",
        "d_sae",
        "k",
        "dead_tokens",
        "enc_init_norm",
    ]
    for name in positive:
        value = getattr(cfg, name, None)
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value}")
    for name in ("aux_k", "aux_alpha"):  # 0 turns AuxK off
        value = getattr(cfg, name, None)
        if value is not None and value < 0:
            raise ConfigError(f"{name} must be >= 0 (0 turns AuxK off), got {value}")
    lr = getattr(cfg, "lr", None)
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr must be a positive finite number (or None for the default), got {lr}")
    n_tokens, batch = getattr(cfg, "n_tokens", None), getattr(cfg, "batch_size", None)
    if n_tokens is not None and batch is not None and n_tokens < batch:
        raise ConfigError(
            f"n_tokens {n_tokens} is less than one batch ({batch} tokens): raise n_tokens or lower batch_size"
        )
    b_dec_init = getattr(cfg, "b_dec_init", None)
    if b_dec_init is not None and b_dec_init not in B_DEC_INITS:
        raise ConfigError(f"b_dec_init must be one of {', '.join(B_DEC_INITS)}; got {b_dec_init!r}")
    decay = getattr(cfg, "decay_frac", None)
    if decay is not None and not 0 <= decay <= 1:
        raise ConfigError(f"decay_frac must be in [0, 1], got {decay}")
    if hasattr(cfg, "expansion_factor"):
        check_k(cfg, cfg.d_sae or (cfg.d_in and cfg.expansion_factor * cfg.d_in))


def check_k(cfg: Any, d_sae: int | None) -> None:
    """``k`` (when the variant has one) must not exceed the number of latents."""
    k = getattr(cfg, "k", None)
    if k is not None and d_sae and k > d_sae:
        raise ConfigError(
            f"k={k} is larger than d_sae={d_sae}: a token cannot use more latents than "
            f"exist; lower k or raise d_sae / expansion_factor"
        )


def check_budget(n_tokens: int, data_tokens: int | None, where: str) -> None:
    """Warn when the budget repeats the data; refuse a budget of more than MAX_PASSES passes."""
    if not data_tokens:
        return
    passes = n_tokens / data_tokens
    if passes > MAX_PASSES:
        raise ConfigError(
            f"n_tokens {n_tokens:,} is {passes:.0f} passes over the {data_tokens:,} tokens of "
            f"{where}; lower n_tokens or cache more tokens"
        )
    if passes > 1:
        warnings.warn(
            f"n_tokens {n_tokens:,} is {passes:.1f} passes over the {data_tokens:,} tokens of {where}: "
            f"the SAE sees each token about {math.ceil(passes)} times",
            stacklevel=3,
        )


def check_same_data(saved: str | None, current: str | None, where: Any) -> None:
    """Refuse to resume or reuse a run made on other data than ``current``."""
    if saved and current and saved != current:
        raise DataError(
            f"{where} was trained on other data (fingerprint {saved}) than the data given now "
            f"({current}); use another output folder, or give the data it was trained on"
        )


class LossWatch:
    """Remembers the first reconstruction loss (FVU, else MSE, else the loss); stops a run whose
    loss grows to DIVERGED times it, and names a run that ends above LEARNED times it."""

    def __init__(self, lr: float):
        self.lr, self.first = lr, None

    def check(self, loss: float, step: int) -> None:
        if self.first is None:
            self.first = loss
        elif self.first > 0 and loss > DIVERGED * self.first:
            raise TrainingError(
                f"SAE loss diverged: {loss:.3g} at step {step}, {loss / self.first:.0f}x its first value "
                f"{self.first:.3g} (lr {self.lr:.3g}). Lower lr; the last checkpoint (if any) is intact."
            )

    def verdict(self, last: float | None, steps: int, warmup_steps: int) -> str | None:
        """A warning when the loss barely moved (None if it fell, if nothing was logged, or if the
        run was too short to judge: under twice the warm-up, and under 50 steps)."""
        if self.first is None or last is None or last < LEARNED * self.first or steps < max(50, 2 * warmup_steps):
            return None
        return (
            f"the run did not learn: loss {last:.3g} at the end vs {self.first:.3g} at the start "
            f"(lr {self.lr:.3g}); check lr and the data"
        )


def recon_loss(values: dict[str, float]) -> float:
    """The reconstruction term of logged loss terms: FVU if the variant logs it, else MSE or loss."""
    return values.get("fvu", values.get("mse", values.get("loss", float("nan"))))
