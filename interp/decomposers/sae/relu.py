"""ReLU SAE with a decoder-norm-weighted L1 penalty (Anthropic, "Circuits Updates - April 2024",
"Training Sparse Autoencoders"; the baseline of Gao et al. and Rajamanoharan et al.).

``f = ReLU((x - b_dec) W_enc + b_enc)``, ``x_hat = f W_dec + b_dec`` and
``loss = E_x[ ||x - x_hat||^2 + l1_coeff * sum_i f_i ||W_dec[i]|| ]`` on inputs scaled to mean squared
norm D (our ``norm_scale``, as in the update), ``l1_coeff`` warmed up linearly from 0 over the first
``l1_warmup_frac`` of the steps, decoder rows initialised in random directions with norm
``decoder_init_norm`` (0.1) and ``W_enc = W_dec^T``; the shared trainer supplies Adam, gradient-norm
clipping at 1 and the linear learning-rate decay over the last 20% of steps.

Decoder norm. The base class keeps decoder rows at unit norm; the update instead leaves them free
and weights each latent's L1 by its decoder norm, so that shrinking codes while growing rows does
not pay. That is the default here (``unit_decoder=False``): the trainer's unit-norm projection is
switched off and the norms train freely. The public interface always works in the equivalent
unit-row parametrisation: ``encode`` returns ``f_i * ||W_dec[i]||`` (each code is the norm of its
latent's contribution), ``decode`` uses the unit rows, ``directions()`` are the unit rows, and the
SAELens export folds the norms the same way (SAELens' ``fold_W_dec_norm``). ``unit_decoder=True``
gives the older constrained recipe (Bricken et al. 2023), where the weighting is moot.

One deliberate difference: the encoder sees ``x - b_dec`` (SAELens' ``standard`` form) where the
update feeds ``x``; both parametrise the same functions (``b_enc`` absorbs ``W_enc^T b_dec``).
Codes are not sparse early in training (from b_enc = 0 about half the latents fire), so steps
whose batch has more than ``ops.SPARSE_MAX_DENSITY`` of its entries active run dense; later steps
run on the sparse kernels, each token holding only its own active latents (a ragged pattern).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float

from interp.decomposers.base import doc_field, register
from interp.decomposers.sae.train_config import TrainConfig
from interp.decomposers.sae.base import SAE, SAEConfig, StepOutput, ramp
from interp.decomposers.sae.ops import Active
from interp.decomposers.sae.topk import normalized_mse


@dataclass(frozen=True)
class ReLUConfig(SAEConfig):
    method: str = doc_field("relu", "the SAE variant (a registered method name)")
    l1_coeff: float = doc_field(5.0, "lambda, for inputs of mean squared norm D (the update's value)")
    l1_warmup_frac: float = doc_field(0.05, "lambda ramps linearly from 0 over this fraction of the steps")
    unit_decoder: bool = doc_field(False, "True: unit-norm rows (trainer projection), plain L1")
    decoder_init_norm: float = doc_field(0.1, "initial decoder row norm when the rows are free")


@register("relu")
class ReLUSAE(SAE):
    config_cls = ReLUConfig
    saelens_architecture = "standard"

    def __init__(self, cfg: ReLUConfig, run: TrainConfig | None = None):
        super().__init__(cfg, run)
        if not cfg.unit_decoder:
            with torch.no_grad():
                self.W_dec.mul_(cfg.decoder_init_norm)
                self.W_enc.mul_(cfg.decoder_init_norm)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def decoder_norms(self) -> Float[torch.Tensor, "F"]:
        return self.W_dec.norm(dim=1)

    # -- public interface: the unit-row parametrisation ------------------------------------------
    def encode(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B F"]:
        xn = x.to(self.W_enc.dtype) * self.norm_scale
        return torch.relu(self.pre_acts(xn)) * self.decoder_norms()

    def decode(self, codes: Float[torch.Tensor, "B F"]) -> Float[torch.Tensor, "B D"]:
        unit = self.W_dec / self.decoder_norms().clamp_min(1e-12)[:, None]
        return (codes @ unit + self.b_dec) / self.norm_scale

    def reconstruct(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B D"]:
        return self.decode(self.encode(x))

    # -- training -----------------------------------------------------------------------------------
    def step(self, xn: Float[torch.Tensor, "B D"], dead: torch.Tensor | None) -> StepOutput:
        with torch.no_grad():
            pre = self.pre_acts(xn)
        act = Active(pre, 0.0)
        f = act.keep(torch.relu(act.encode(xn, self.b_dec, self.W_enc, self.b_enc, pre)))
        x_hat = act.decode(f, self.W_dec) + self.b_dec
        n = len(xn)
        mse = (x_hat - xn).pow(2).sum() / n
        l1 = (f * act.per_latent(self.decoder_norms())).sum() / n
        coeff = self.cfg.l1_coeff * ramp(self.steps_done, self.cfg.l1_warmup_frac, self.run)
        with torch.no_grad():
            extra = {"fvu": normalized_mse(x_hat, xn), "l0": (f > 0).sum() / n}
        return StepOutput(
            loss=mse + coeff * l1, terms={"mse": mse, "l1": l1, **extra}, x_hat=x_hat.detach(), fired=act.fired(f)
        )

    @torch.no_grad()
    def after_step(self, xn, out: StepOutput, step: int) -> None:
        self.steps_done.fill_(step)

    @torch.no_grad()
    def constrain_decoder_grad(self) -> None:
        if self.cfg.unit_decoder:
            super().constrain_decoder_grad()

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        if self.cfg.unit_decoder:
            super().normalize_decoder()

    # -- SAELens: fold the decoder norms (codes become f * ||W_dec[i]|| / norm_scale) ----------------
    @torch.no_grad()
    def saelens_state(self) -> dict[str, torch.Tensor]:
        c, n = self.norm_scale, self.decoder_norms().clamp_min(1e-12)
        return {
            "W_enc": self.W_enc * n,
            "b_enc": self.b_enc * n / c,
            "W_dec": self.W_dec / n[:, None],
            "b_dec": self.b_dec / c,
        }
