"""JumpReLU SAE (Rajamanoharan et al., "Jumping Ahead: Improving Reconstruction Fidelity with
JumpReLU Sparse Autoencoders", 2024; the recipe of Gemma Scope).

``f_i = z_i * H(z_i - theta_i)`` with ``z = (x - b_dec) W_enc + b_enc`` and a learned threshold
``theta = exp(log_threshold)`` per latent; ``loss = E_x[ ||x - x_hat||^2 + l0_coeff * ||f||_0 ]``.
The step function H has no useful derivative, so both the JumpReLU and the L0 term use straight-
through estimators with the rectangle kernel ``K(u) = 1[|u| < 1/2]`` of bandwidth ``eps``:
``d JumpReLU / d theta = -(theta / eps) K((z - theta) / eps)``, ``d H / d theta = -(1 / eps)
K((z - theta) / eps)``, ``d JumpReLU / d z = H(z - theta)`` and no gradient of H with respect to z.

Units. The paper scales inputs to unit mean squared norm; ours are scaled to mean squared norm D,
i.e. by sqrt(D) more. ``bandwidth`` and ``init_threshold`` are given in the paper's units (0.001
each) and multiplied by sqrt(D) inside, and the reconstruction term is divided by D, so
``l0_coeff`` means what it means in the paper. Decoder rows are kept at unit norm by the trainer
(the L0 penalty is blind to decoder scale), W_enc starts as W_dec^T, b_enc at 0, and Adam uses the
paper's ``betas = (0, 0.999)``. ``l0_warmup_frac`` ramps the coefficient from 0 (Gemma Scope warmed
it up over its first 10k steps; the paper does not; default off).

Thresholds move slowly: the L0 gradient reaches theta only through the narrow kernel window and
Adam moves ``log_threshold`` by about ``lr`` per step, so from the paper's tiny initial theta codes
stay dense for thousands of steps (the paper trains for hundreds of thousands). ``init_l0`` is an
option of ours for short runs: on the first training batch each latent's theta starts at the
quantile of its pre-activations that makes it fire on ``init_l0 / d_sae`` of the tokens, so codes
start at about ``init_l0`` active latents per token and the L0 penalty moves them from there.

Only latents above ``theta - eps / 2`` (active, or inside the kernel window) take part in a step, so
steps run on the sparse kernels once codes are sparse; dense steps (early training, when the
initial threshold lets about half of the latents fire) use plain matmuls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from interp.decomposers.base import doc_field, register
from interp.decomposers.sae.train_config import TrainConfig
from interp.decomposers.sae.base import SAE, SAEConfig, StepOutput, ramp
from interp.decomposers.sae.ops import Active
from interp.decomposers.sae.topk import normalized_mse


@dataclass(frozen=True)
class JumpReLUConfig(SAEConfig):
    method: str = doc_field("jumprelu", "the SAE variant (a registered method name)")
    l0_coeff: float = doc_field(1e-3, "lambda on the mean L0 (reconstruction in unit-mean-squared-norm units)")
    bandwidth: float = doc_field(1e-3, "eps of the rectangle kernel, for inputs of unit mean squared norm")
    init_threshold: float = doc_field(1e-3, "initial theta, same units")
    l0_warmup_frac: float = doc_field(0.0, "ramp lambda linearly from 0 over this fraction of the steps")
    init_l0: float | None = doc_field(None, "None: theta = init_threshold; else per-latent quantiles (see docstring)")


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


def _theta_grad(grad_theta: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Sum a [B, ...] gradient back onto a theta that was broadcast over the batch."""
    return grad_theta.sum(0) if theta.dim() < grad_theta.dim() else grad_theta


class JumpReLUFn(torch.autograd.Function):
    """z * H(z - theta); STE: d/dz = H(z - theta), d/dtheta = -(theta / eps) K((z - theta) / eps)."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        z, theta = ctx.saved_tensors
        grad_theta = -(theta / ctx.eps) * _rectangle((z - theta) / ctx.eps) * grad
        return (z > theta) * grad, _theta_grad(grad_theta, theta), None


class StepFn(torch.autograd.Function):
    """H(z - theta); STE: no gradient to z, d/dtheta = -(1 / eps) K((z - theta) / eps)."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        z, theta = ctx.saved_tensors
        grad_theta = -(1.0 / ctx.eps) * _rectangle((z - theta) / ctx.eps) * grad
        return None, _theta_grad(grad_theta, theta), None


@register("jumprelu")
class JumpReLUSAE(SAE):
    config_cls = JumpReLUConfig
    saelens_architecture = "jumprelu"
    train_defaults = {"betas": (0.0, 0.999)}  # the paper's Adam betas

    def __init__(self, cfg: JumpReLUConfig, run: TrainConfig | None = None):
        super().__init__(cfg, run)
        self.unit = math.sqrt(cfg.d_in)  # our input scale over the paper's
        self.log_threshold = torch.nn.Parameter(torch.full((cfg.d_sae,), math.log(cfg.init_threshold * self.unit)))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    @property
    def threshold(self) -> Float[torch.Tensor, "F"]:
        """theta per latent, on the normalised inputs."""
        return self.log_threshold.exp()

    @property
    def eps(self) -> float:
        return self.cfg.bandwidth * self.unit

    def encode(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B F"]:
        pre = self.pre_acts(x.to(self.W_enc.dtype) * self.norm_scale)
        return pre * (pre > self.threshold)

    def reconstruct(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B D"]:
        return self.decode(self.encode(x))

    def step(self, xn: Float[torch.Tensor, "B D"], dead: torch.Tensor | None) -> StepOutput:
        theta, eps = self.threshold, self.eps
        with torch.no_grad():
            pre = self.pre_acts(xn)
        act = Active(pre, theta.detach() - eps / 2)  # active, or inside the kernel window
        z = act.encode(xn, self.b_dec, self.W_enc, self.b_enc, pre)
        th = act.per_latent(theta)
        f = act.keep(JumpReLUFn.apply(z, th, eps))
        x_hat = act.decode(f, self.W_dec) + self.b_dec
        n = len(xn)
        recon = (x_hat - xn).pow(2).sum() / (n * self.cfg.d_in)
        l0 = act.keep(StepFn.apply(z, th, eps)).sum() / n
        coeff = self.cfg.l0_coeff * ramp(self.steps_done, self.cfg.l0_warmup_frac, self.run)
        with torch.no_grad():
            fvu = normalized_mse(x_hat, xn)
        return StepOutput(
            loss=recon + coeff * l0,
            terms={"recon": recon, "l0": l0, "fvu": fvu},
            x_hat=x_hat.detach(),
            fired=act.fired(f),
        )

    @torch.no_grad()
    def init_from_data(self, xn: Float[torch.Tensor, "B D"]) -> None:
        super().init_from_data(xn)
        if self.cfg.init_l0 is not None:
            pre = self.pre_acts(xn)
            rank = min(len(pre), max(1, round(len(pre) * (1.0 - self.cfg.init_l0 / self.cfg.d_sae))))
            theta = pre.kthvalue(rank, dim=0).values  # (torch.quantile refuses > 2^24 entries)
            self.log_threshold.copy_(theta.clamp_min(self.eps).log())

    @torch.no_grad()
    def after_step(self, xn, out: StepOutput, step: int) -> None:
        self.steps_done.fill_(step)

    # -- SAELens: the same architecture; thresholds scale with the inputs -------------------------
    @torch.no_grad()
    def saelens_state(self) -> dict[str, torch.Tensor]:
        return {**super().saelens_state(), "threshold": self.threshold / self.norm_scale}

    @classmethod
    def from_saelens(cls, fields: dict, cfg: dict, state: dict[str, torch.Tensor]) -> "JumpReLUSAE":
        """Fold non-unit decoder rows into the encoder and thresholds (an exact rewrite)."""
        n = state["W_dec"].norm(dim=1).clamp_min(1e-12)
        state = {
            **state,
            "W_enc": state["W_enc"] * n,
            "b_enc": state["b_enc"] * n,
            "W_dec": state["W_dec"] / n[:, None],
        }
        threshold = state.get("threshold", torch.zeros(cfg["d_sae"])) * n
        sae = super().from_saelens(fields, cfg, state)
        with torch.no_grad():  # theta <= 0 acts as 0 after SAELens' ReLU
            sae.log_threshold.copy_(threshold.clamp_min(1e-30).log())
        return sae
