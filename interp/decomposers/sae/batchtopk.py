"""BatchTopK sparse autoencoder (Bussmann, Leask, Nanda, "BatchTopK Sparse Autoencoders", 2024).

Training keeps the ``k * B`` largest ReLU pre-activations of the whole batch of B tokens rather
than k per token, so the number of active latents adapts to each token while the batch mean L0 is
k. The loss is TopK's (normalised MSE plus AuxK on dead latents). Because a token's code then
depends on the rest of its batch, inference uses a JumpReLU with one global threshold theta
instead: ``f = z * 1[z > theta]``. theta estimates the smallest activation the batch top-k keeps;
the paper averages that minimum over training batches, and here ``after_step`` keeps an
exponential moving average of it with rate ``threshold_lr`` (0.01, as SAELens), bias-corrected as
in Adam so that short runs are not pulled toward the zero it starts from.

``encode`` uses the batch top-k while the module is in training mode and the threshold in eval
mode (``train`` and ``load`` return modules in eval mode). Steps run on the sparse kernels: the
batch threshold is found exactly from per-token shortlists (top 2k, and every entry above a lower
bound for the few tokens that may hold more); the kept entries form a ragged pattern, so each
token costs what it holds however unevenly the batch top-k spreads them. SAELens has no
BatchTopK inference class (it saves BatchTopK SAEs as JumpReLU), so the export is a JumpReLU with
theta in every latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float

from interp.decomposers.base import doc_field, register
from interp.decomposers.sae.train_config import TrainConfig
from interp.decomposers.sae.base import StepOutput
from interp import distributed as _dist
from interp.decomposers.sae.ops import Active
from interp.decomposers.sae.topk import TopKConfig, TopKSAE, aux_on, normalized_mse


@dataclass(frozen=True)
class BatchTopKConfig(TopKConfig):
    method: str = doc_field("batchtopk", "the SAE variant (a registered method name)")
    threshold_lr: float = doc_field(0.01, "EMA rate of the inference threshold")


def batch_threshold(acts: Float[torch.Tensor, "B F"], n_keep: int) -> torch.Tensor:
    """The ``n_keep``-th largest entry of ``acts`` (0-d tensor), found exactly from a shortlist."""
    return _shortlist(acts, n_keep)[0]


def _shortlist(acts: torch.Tensor, n_keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(threshold, per-token candidate ids holding every entry >= threshold).

    The n_keep-th largest entry of each token's top 2k (k = n_keep / B) is a lower bound t of the
    batch threshold. Tokens with all of their shortlist at or above t may hold more: their entries
    >= t join the other tokens' shortlists, a pool that then holds every entry at or above the
    exact threshold, which is its n_keep-th largest. Candidates are each token's top w, w the
    largest count at or above it (early in training a few tokens fire far more than k).
    Data-parallel: ``acts`` is this rank's slice and ``n_keep`` its share; the threshold is that
    of the global batch (the ranks' pools are gathered), as in one process.
    """
    B, F = acts.shape
    n_keep = max(1, min(n_keep, acts.numel())) * _dist.world()[1]
    m = min(F, 2 * math.ceil(n_keep / (B * _dist.world()[1])))
    short = acts.topk(m, dim=1, sorted=False)
    t = _kth_largest(short.values.reshape(-1), n_keep)
    over = (short.values.min(1).values >= t) & (t > 0) & (m < F)
    if _dist.all_reduce(over.any().float(), "max") == 0:
        return t, short.indices
    rows = acts[over]
    t = _kth_largest(torch.cat([short.values[~over].reshape(-1), rows[rows >= t]]), n_keep)
    width = max(m, int((rows >= t).sum(1).max()) if len(rows) else 0)
    return t, (short.indices if width == m else acts.topk(width, dim=1, sorted=False).indices)


def _kth_largest(values: Float[torch.Tensor, "N"], n: int) -> torch.Tensor:
    """The n-th largest of ``values`` gathered over the ranks (padded with -inf to equal length)."""
    if _dist.world()[1] > 1:
        length = int(_dist.all_reduce(torch.tensor(float(values.numel()), device=values.device), "max"))
        values = _dist.all_gather_cat(torch.cat([values, values.new_full((length - values.numel(),), -math.inf)]))
    return values.kthvalue(values.numel() - n + 1).values


@register("batchtopk")
class BatchTopKSAE(TopKSAE):
    config_cls = BatchTopKConfig
    saelens_architecture = "jumprelu"

    def __init__(self, cfg: BatchTopKConfig, run: TrainConfig | None = None):
        super().__init__(cfg, run)
        self.register_buffer("threshold", torch.zeros(()))  # theta on normalised inputs
        self.register_buffer("threshold_ema", torch.zeros((), dtype=torch.float64))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long))

    def saelens_fields(self) -> dict:
        return {}

    def _batch_lower(self, pre: torch.Tensor) -> torch.Tensor:
        """Entries above the returned bound are this batch's top k * B (ReLU'd, so never <= 0)."""
        t = batch_threshold(torch.relu(pre), self.cfg.k * len(pre))
        return torch.nextafter(t, t.new_full((), -math.inf)).clamp_min(0.0)

    def encode(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B F"]:
        pre = self.pre_acts(x.to(self.W_enc.dtype) * self.norm_scale)
        lower = self._batch_lower(pre) if self.training else self.threshold
        return pre * (pre > lower)

    def reconstruct(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B D"]:
        return self.decode(self.encode(x))

    def _select(self, pre: torch.Tensor) -> Active:
        """This batch's top k * B entries (the shortlist holds every one of them)."""
        t, ids = _shortlist(torch.relu(pre), self.cfg.k * len(pre))
        lower = torch.nextafter(t, t.new_full((), -math.inf)).clamp_min(0.0)
        return Active.from_candidates(ids, pre.gather(1, ids) > lower, pre.shape[1])

    def step(self, xn: Float[torch.Tensor, "B D"], dead: torch.Tensor | None) -> StepOutput:
        with torch.no_grad():
            pre = self.pre_acts(xn)
            act = self._select(pre)
        f = act.keep(torch.relu(act.encode(xn, self.b_dec, self._W(), self.b_enc, pre)))
        x_hat = act.decode(f, self.W_dec) + self.b_dec
        fvu = normalized_mse(x_hat, xn)
        with torch.no_grad():  # the smallest kept activation (0: fewer than k * B were positive)
            kept_min = torch.where(f > 0, f, torch.full_like(f, math.inf)).min()
            kept_min = -_dist.all_reduce(-kept_min, "max")  # the global batch's (data-parallel)
            kept_min = torch.where(torch.isfinite(kept_min), kept_min, torch.zeros_like(kept_min))
        terms = {"fvu": fvu, "batch_threshold": kept_min, "l0": (f > 0).sum() / len(xn)}
        loss = fvu
        if aux_on(self.cfg, dead):
            aux = self._aux_loss(xn, pre, dead, (xn - x_hat).detach())
            terms["aux"] = aux
            loss = loss + self.cfg.aux_alpha * aux
        return StepOutput(loss=loss, terms=terms, x_hat=x_hat.detach(), fired=act.fired(f))

    @torch.no_grad()
    def after_step(self, xn, out: StepOutput, step: int) -> None:
        """theta <- bias-corrected EMA of the smallest activation kept by the batch top-k."""
        t, lr = out.terms["batch_threshold"].to(self.threshold_ema.dtype), self.cfg.threshold_lr
        seen = t > 0
        self.threshold_ema.copy_(torch.where(seen, (1 - lr) * self.threshold_ema + lr * t, self.threshold_ema))
        self.threshold_updates.add_(seen.long())
        correction = 1 - (1 - lr) ** self.threshold_updates.double()
        theta = torch.where(self.threshold_updates > 0, self.threshold_ema / correction, self.threshold_ema)
        self.threshold.copy_(theta.to(self.threshold.dtype))

    @torch.no_grad()
    def saelens_state(self) -> dict[str, torch.Tensor]:
        theta = (self.threshold / self.norm_scale).expand(self.cfg.d_sae).contiguous()
        return {**super().saelens_state(), "threshold": theta}
