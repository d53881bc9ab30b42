"""TopK sparse autoencoder (Gao et al., "Scaling and evaluating sparse autoencoders", 2024).

Each token keeps its k largest pre-activations (ReLU after the selection), the decoder has unit-
norm rows, and an auxiliary loss (AuxK) lets the top ``aux_k`` dead latents reconstruct the
residual error, scaled by ``aux_alpha``. As in the paper, the residual target is detached and
both losses are normalised by the variance of the target (so MSE terms read as FVU).

``b_dec`` starts at the geometric median of the first batch (``b_dec_init``; sparsify's start),
not the mean that the package's other SAEs start from: a few massive-activation tokens pull the
mean (on SmolLM2-135M layer 15 the ten largest of 180k training tokens hold 31% of the summed
squared norm) but barely move the median. Measured on the peer benchmark (scripts/bench_peers.py,
seeds 0-2): held-out FVU at 5 epochs 0.1328 (0.1337 / 0.1319 / 0.1326) from the median against
0.1371 (0.1385 / 0.1361 / 0.1366) from the mean, 0.1636 against 0.1637 at one epoch, and the same
bulk FVU (0.134 at 5 epochs, without the two massive held-out tokens): the gain is in how the
massive tokens are reconstructed. BatchTopK shares the default (one epoch: 0.2024 against 0.2032).

``tied`` (default False, as in the paper) makes the encoder the decoder transposed: one unit
vector per latent is both its detector and its direction, as in the tied SAEs of the GBA paper's
theory; it is an axis of the synthetic benchmark's data-model grid (issue 21).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float

from interp import distributed as _dist
from interp.decomposers.base import doc_field, register
from interp.decomposers.sae.base import SAE, SAEConfig, StepOutput
from interp.decomposers.sae.ops import Pattern, dense_encode, gather_encode, sparse_decode


@dataclass(frozen=True)
class TopKConfig(SAEConfig):
    method: str = doc_field("topk", "the SAE variant (a registered method name)")
    k: int = doc_field(32, "active latents per token")
    aux_k: int = doc_field(512, "dead latents used by the auxiliary loss (capped at the number dead; 0: no AuxK)")
    aux_alpha: float = doc_field(1 / 32, "weight of the AuxK loss (dead latents reconstruct the residual; 0: none)")
    tied: bool = doc_field(False, "encoder = decoder transposed (one trained matrix)")
    b_dec_init: str = doc_field(
        "median", "b_dec's start on the first batch: median (geometric; default, as sparsify starts) | mean | zero"
    )


def aux_on(cfg, dead: torch.Tensor | None) -> bool:
    """Whether a step adds the AuxK loss: some latent is dead and ``aux_k`` and ``aux_alpha`` are > 0."""
    return dead is not None and cfg.aux_k > 0 and cfg.aux_alpha > 0 and bool(dead.any())


# AuxK runs dense on the dead latents' block while they number at most this many times aux_k:
# per selected entry a dense block costs about 4 * D flops of matmul, the sparse kernels several
# hundred ns. Measured on one CPU thread at D 576, 9,216 latents, batch 4,096, aux_k 512, with
# 800-1,100 dead latents (the peer benchmark's 44-step run): a step with AuxK 4.0 s -> 1.3 s.
AUX_DENSE_RATIO = 4


def normalized_mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error over squared deviation from the batch mean (the batch FVU).

    The denominator is over the global batch when training is data-parallel (see ``interp.distributed``).
    """
    return (x_hat - x).pow(2).sum() / _dist.batch_sq_dev(x).clamp_min(1e-12)


@register("topk")
class TopKSAE(SAE):
    config_cls = TopKConfig
    saelens_architecture = "topk"

    def saelens_fields(self) -> dict:
        return {"k": self.cfg.k, "rescale_acts_by_decoder_norm": False}

    @classmethod
    def from_saelens(cls, fields: dict, cfg: dict, state: dict[str, torch.Tensor]) -> "TopKSAE":
        """SAELens ``topk``; with ``rescale_acts_by_decoder_norm`` the selection ranks
        ``pre * ||W_dec[i]||`` and decodes with unit rows, which folding the norms reproduces."""
        if cfg.get("rescale_acts_by_decoder_norm"):
            n = state["W_dec"].norm(dim=1).clamp_min(1e-12)
            state = {
                **state,
                "W_enc": state["W_enc"] * n,
                "b_enc": state["b_enc"] * n,
                "W_dec": state["W_dec"] / n[:, None],
            }
        return super().from_saelens({**fields, "k": int(cfg["k"])}, cfg, state)

    def select(self, pre):
        return pre.topk(self.cfg.k, dim=1, sorted=False)

    def _aux_loss(self, xn, pre, dead, err) -> torch.Tensor:
        """AuxK: each token's top ``aux_k`` dead latents reconstruct the residual ``err``.

        Worked on the dead latents' columns only. While the selection is a large share of them
        (``aux_k`` of up to ``AUX_DENSE_RATIO`` times as many dead latents: in short runs the dead
        set is often a few hundred to a thousand latents) the block is dense and plain matmuls
        are several times faster than the sparse kernels; otherwise the sparse kernels run on the
        selected entries. Both compute the same loss and gradients.
        """
        dead_ids = dead.nonzero().squeeze(1)
        k_aux = min(self.cfg.aux_k, len(dead_ids))
        sub = pre.index_select(1, dead_ids)  # [B, n_dead], no grad
        if len(dead_ids) <= AUX_DENSE_RATIO * k_aux:
            vals = dense_encode(xn, self.b_dec, self._W()[:, dead_ids], self.b_enc[dead_ids], sub)
            if k_aux < len(dead_ids):
                keep = torch.zeros_like(sub, dtype=torch.bool).scatter_(
                    1, sub.topk(k_aux, dim=1, sorted=False)[1], True
                )
                vals = vals * keep
            return normalized_mse(torch.relu(vals) @ self.W_dec[dead_ids], err)
        idx = dead_ids[sub.topk(k_aux, dim=1, sorted=False)[1]]
        vals = torch.relu(gather_encode(xn, self.b_dec, self._W(), self.b_enc, pre, idx))
        return normalized_mse(sparse_decode(vals, idx, self.W_dec), err)

    def step(self, xn: Float[torch.Tensor, "B D"], dead: torch.Tensor | None) -> StepOutput:
        with torch.no_grad():
            pre = self.pre_acts(xn)
            _, idx = self.select(pre)
        pattern = Pattern(idx, self.cfg.d_sae)  # sorted once, shared by both backward passes
        vals = torch.relu(gather_encode(xn, self.b_dec, self._W(), self.b_enc, pre, pattern))
        x_hat = self.decode_sparse(vals, pattern)
        fvu = normalized_mse(x_hat, xn)
        terms = {"fvu": fvu}
        loss = fvu
        if aux_on(self.cfg, dead):
            aux = self._aux_loss(xn, pre, dead, (xn - x_hat).detach())
            terms["aux"] = aux
            loss = loss + self.cfg.aux_alpha * aux
        fired = torch.zeros(self.cfg.d_sae, dtype=torch.bool, device=idx.device)
        fired[idx[vals > 0]] = True  # a mask, not .unique(): no sort on the hot path
        return StepOutput(loss=loss, terms=terms, x_hat=x_hat.detach(), fired=fired)
