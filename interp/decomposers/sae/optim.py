"""Optimisers and the learning-rate schedule of SAE training, sized to the run's budget.

- ``adam``: Adam (Kingma & Ba 2015), the optimiser of Gao et al. 2024 ("Scaling and evaluating
  sparse autoencoders"), with linear warm-up and a linear decay to 0 over the final part of the run.
- ``signum``: sign descent on the gradient (signSGD, Bernstein et al. 2018) inside schedule-free
  averaging (Defazio et al. 2024, "The Road Less Scheduled", the ``schedulefree`` package) with
  momentum 0.95, as sparsify trains its SAEs. The averaging replaces the decay; the parameters hold
  the interpolated point ``y`` while training and the average ``x`` in ``eval()`` mode, so the
  trainer calls ``eval()`` before it saves the artifact and ``train()`` before the next step.
- ``muon``: Muon (Jordan et al. 2024; ``torch.optim.Muon``) orthogonalised momentum for the 2-D
  weights, with its learning rate matched to Adam's update RMS, and Adam for the rest.

Warm-up and decay are fractions of the run's steps with floors and caps (``schedule_steps``), so
a 40-step run spends 2 steps warming up rather than more than its whole budget; schedule-free
Signum does not decay and warms up over a fixed ``SIGNUM_WARMUP_STEPS``, so its start does not
depend on the budget. The default learning rate (``default_lr``) is each optimiser's long-run
rate (scaled by 1/sqrt(d_sae / 2**14), as in Gao et al.) times ``sqrt(REF_STEPS / n_steps)`` for
runs shorter than ``REF_STEPS``, capped at ``MAX_BOOST``: short runs take larger steps, long runs
keep the published rate.
"""

from __future__ import annotations

import math
from typing import Any

import torch

OPTIMIZERS = ("adam", "signum", "muon")
# Each optimiser's long-run learning rate at 2**14 latents (scaled by 1/sqrt(d_sae / 2**14)).
BASE_LR = {"adam": 2e-4, "signum": 5e-3, "muon": 2e-4}
# Runs shorter than REF_STEPS take sqrt(REF_STEPS / n_steps) times the base rate, at most MAX_BOOST.
# Signum: sign steps already move every weight by lr; its base rate holds at 44 steps (no boost).
REF_STEPS = {"adam": 5000, "signum": 0, "muon": 5000}
MAX_BOOST = 16.0
SF_MOMENTUM = 0.95  # schedule-free interpolation momentum (sparsify's)
# Warm-up as a fraction of the run's steps (within TrainConfig's warmup_min / warmup_max).
WARMUP_FRAC = 0.05
# Schedule-free Signum warms up over a fixed SIGNUM_WARMUP_STEPS at every budget (sparsify's recipe
# has none), so its first steps take the same learning rates at every budget (the 1-, 5- and
# 20-epoch runs all reach held-out FVU 0.218 at step 36), where a 5% warm-up would spend the
# 20-epoch run's first epoch ramping up. Measured on the peer benchmark (SmolLM2 L15, 9216 latents, k 32,
# 1 epoch = 44 steps, seed 0 / 1): 2 steps FVU 0.1635 / 0.1635 with 8-9% of latents dead on held-
# out tokens; no warm-up 0.1637 / 0.1642 with 14% dead, whose AuxK made the steps ~15% slower
# (full-size first sign steps move each encoder weight by half its initial scale).
SIGNUM_WARMUP_STEPS = 2
# Encoder init: the decoder's transpose scaled to this norm per latent. Sign and Adam steps move
# every weight by about lr, so a smaller encoder takes larger relative steps early. Measured on the
# peer benchmark (SmolLM2 L15, 9216 latents, k 32, Signum, 1 epoch = 44 steps), held-out FVU:
# norm 1 (Gao et al.'s transpose) 0.193, 0.577 (sparsify's Kaiming init) 0.168, 0.3 0.163,
# 0.2 0.165, 0.1 0.164 with more dead latents; 0.3 also wins at 5 epochs (0.134 vs sparsify 0.138).
ENC_INIT_NORM = 0.3


def default_lr(optimizer: str, d_sae: int, n_steps: int) -> float:
    """The learning rate when the config leaves it out: base rate, width scaling, budget boost."""
    boost = min(MAX_BOOST, max(1.0, math.sqrt(REF_STEPS[optimizer] / max(1, n_steps))))
    return BASE_LR[optimizer] / math.sqrt(d_sae / 2**14) * boost


def schedule_steps(n_steps: int, frac: float, floor: int, cap: int | None) -> int:
    """``frac`` of ``n_steps``, at least ``floor`` and at most ``cap`` steps, never over half the run."""
    steps = max(floor, round(frac * n_steps))
    if cap is not None:
        steps = min(steps, cap)
    return max(0, min(steps, n_steps // 2))


def lr_factor(step: int, n_steps: int, warmup: int, decay: int) -> float:
    """Multiplier of the learning rate at ``step`` (0-based): linear ramp up over ``warmup`` steps
    (the first step already takes 1 / warmup), linear decay to 0 over the last ``decay`` steps."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    left = n_steps - step
    return warm * (min(1.0, left / decay) if decay > 0 else 1.0)


class _SignSGD(torch.optim.Optimizer):
    """p <- p - lr * sign(grad): the base step of Signum (momentum comes from the averaging)."""

    def __init__(self, params: Any, lr: float):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:  # + 0 * grad: a NaN gradient poisons p (sign(NaN) is 0)
                    p.add_(p.grad.sign().add_(p.grad, alpha=0.0), alpha=-group["lr"])


class Optimizers:
    """One or two torch optimisers driven as one: learning rate, step, modes, extra state.

    ``state`` maps each parameter to its optimiser state (what a checkpoint stores per parameter);
    ``group_state`` holds the per-group scalars schedule-free keeps (step count, weight sum).
    """

    def __init__(self, parts: list[Any], lrs: list[float], averaged: bool = False):
        self.parts, self.lrs, self.averaged = parts, lrs, averaged
        self.train()

    @property
    def state(self) -> dict:
        return {p: s for part in self.parts for p, s in part.state.items()}

    @property
    def param_groups(self) -> list[dict]:
        return [g for part in self.parts for g in part.param_groups]

    def load_param_state(self, p: torch.nn.Parameter, state: dict) -> None:
        """Restore one parameter's state (from a checkpoint) into the optimiser that owns it."""
        for part in self.parts:
            if any(p is q for g in part.param_groups for q in g["params"]):
                part.state[p] = state

    def set_lr(self, factor: float) -> None:
        for part, lr in zip(self.parts, self.lrs):
            for group in part.param_groups:
                group["lr"] = lr * factor

    def zero_grad(self) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=True)

    def step(self) -> None:
        for part in self.parts:
            part.step()

    def train(self) -> None:
        """Parameters at the training point (schedule-free: the interpolation ``y``)."""
        for part in self.parts:
            if hasattr(part, "train"):
                part.train()

    def eval(self) -> None:
        """Parameters at the point to evaluate and save (schedule-free: the average ``x``)."""
        for part in self.parts:
            if hasattr(part, "eval"):
                part.eval()

    _GROUP_KEYS = ("k", "weight_sum", "lr_max")

    def group_state(self) -> dict[str, float]:
        """Per-group scalars beyond the learning rate, keyed ``"<group index>.<name>"``."""
        return {f"{i}.{k}": float(g[k]) for i, g in enumerate(self.param_groups) for k in self._GROUP_KEYS if k in g}

    def load_group_state(self, saved: dict[str, float]) -> None:
        for key, value in saved.items():
            i, name = key.split(".", 1)
            self.param_groups[int(i)][name] = int(value) if name == "k" else value


def make_optimizers(sae: torch.nn.Module, name: str, lr: float, betas: tuple[float, float], eps: float) -> Optimizers:
    """The optimiser ``name`` (one of ``OPTIMIZERS``) over ``sae``'s parameters at rate ``lr``."""
    params = list(sae.parameters())
    if name == "adam":
        return Optimizers([torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)], [lr])
    if name == "signum":
        from schedulefree import ScheduleFreeWrapper

        return Optimizers([ScheduleFreeWrapper(_SignSGD(params, lr), momentum=SF_MOMENTUM)], [lr], averaged=True)
    if name == "muon":
        if not hasattr(torch.optim, "Muon"):
            raise ValueError(f"optimizer 'muon' needs torch >= 2.9 (this is {torch.__version__})")
        matrices = [p for p in params if p.ndim == 2]
        rest = [p for p in params if p.ndim != 2]
        muon = torch.optim.Muon(matrices, lr=lr, weight_decay=0.0, adjust_lr_fn="match_rms_adamw")
        return Optimizers([muon, torch.optim.Adam(rest, lr=lr, betas=betas, eps=eps)], [lr, lr])
    raise ValueError(f"unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}")
