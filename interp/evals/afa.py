"""The AFA evaluation of any SAE: per-token εLBO and the ZF data (code norm vs input norm).

Follows Lee et al., "Evaluating and Designing Sparse Autoencoders by Approximating
Quasi-Orthogonality" (2025), as their ZF-plot code computes it. For a token with SAE input z and
code f, the augmented code f~ = [f_i ||W_dec[i]|| for all i] ++ [||b_dec||] treats the decoder
bias as one more unit feature and rescales non-unit decoder rows. If the dictionary is
ε-quasi-orthogonal, (1 - ε(h-1)) ||f~||^2 <= ||z||^2 <= (1 + ε(h-1)) ||f~||^2 (h = d_sae), so

    εLBO = | ||z||^2 - ||f~||^2 | / ((h - 1) ||f~||^2)

is the smallest ε consistent with the token. The ZF plot scatters ||f~|| against ||z||: below the
diagonal the SAE under-activates, above it over-activates.

Works on every SAE through the shared API only (W_dec, b_dec, norm_scale, encode): z is the input
in the SAE's own space (raw activations times ``norm_scale``, or the per-token standardised input
for SAEs that define ``prepare_input``, such as top-AFA), which is the space its codes and b_dec
live in. SAEs read from SAELens files have their normalisation folded in (norm_scale 1), so z is
the raw activation, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float

from interp.decomposers.sae import SAE


@dataclass(frozen=True)
class ZFData:
    input_norm: Float[torch.Tensor, "N"]  # ||z||
    code_norm: Float[torch.Tensor, "N"]  # ||f~||
    elbo: Float[torch.Tensor, "N"]  # per-token εLBO
    nmse: Float[torch.Tensor, "N"]  # per-token ||z - z_hat||^2 / ||z||^2

    def medians(self) -> dict[str, float]:
        """Medians of εLBO, of ||f~|| / ||z|| and of NMSE (the paper quotes εLBO * (h - 1))."""
        return {
            "elbo": self.elbo.median().item(),
            "norm_ratio": (self.code_norm / self.input_norm).median().item(),
            "nmse": self.nmse.median().item(),
        }


def _sae_input(sae: SAE, x: torch.Tensor) -> torch.Tensor:
    prepare = getattr(sae, "prepare_input", None)
    if prepare is not None:
        return prepare(x)[0]
    return x.to(sae.W_dec.dtype) * sae.norm_scale


@torch.no_grad()
def zf_data(sae: SAE, x: Float[torch.Tensor, "N D"], batch_size: int = 4096) -> ZFData:
    """Input norms, augmented code norms, εLBO and NMSE for every token of ``x`` (raw activations)."""
    if x.ndim != 2 or x.shape[1] != sae.W_dec.shape[1]:
        raise ValueError(f"x must be [N, {sae.W_dec.shape[1]}] activations at the SAE's site, got {tuple(x.shape)}")
    h = sae.W_dec.shape[0]
    row_norms = sae.W_dec.norm(dim=1)
    bias_sq = sae.b_dec.pow(2).sum()
    parts: list[tuple[torch.Tensor, ...]] = []
    device = sae.W_dec.device
    for chunk in x.split(batch_size):
        chunk = chunk.to(device)
        z = _sae_input(sae, chunk)
        codes = sae.encode(chunk).to(sae.W_dec.dtype)
        code_sq = (codes * row_norms).pow(2).sum(1) + bias_sq
        z_sq = z.pow(2).sum(1)
        elbo = (z_sq - code_sq).abs() / ((h - 1) * code_sq.clamp_min(1e-30))
        z_hat = codes @ sae.W_dec + sae.b_dec
        nmse = (z - z_hat).pow(2).sum(1) / z_sq.clamp_min(1e-30)
        parts.append((z_sq.sqrt(), code_sq.sqrt(), elbo, nmse))
    cols = [torch.cat(c).float().cpu() for c in zip(*parts)]
    return ZFData(*cols)


def elbo(sae: SAE, x: Float[torch.Tensor, "N D"], batch_size: int = 4096) -> Float[torch.Tensor, "N"]:
    """Per-token εLBO of ``sae`` on raw activations ``x`` (see the module docstring)."""
    return zf_data(sae, x, batch_size).elbo
