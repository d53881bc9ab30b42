"""top-AFA sparse autoencoder (Lee, Davies, Canby, Hockenmaier, "Evaluating and Designing Sparse
Autoencoders by Approximating Quasi-Orthogonality", 2025).

No k: each token keeps its k(x) largest ReLU pre-activations, with k(x) the prefix whose norm
best matches the input norm: with a the pre-activations sorted in decreasing order and
C_j = sqrt(sum_{t<=j} a_t^2), k(x) = argmin_j |C_j - ||target||| + 1 (decoder rows have unit
norm, so a_t^2 is each latent's squared contribution). The loss adds the AFA term
lambda_afa * mean (||f|| - ||x||)^2 to the plain MSE and the AuxK dead-latent loss. Inputs are
standardised per token (subtract the mean, divide by the unbiased std + 1e-5; undone on output),
exactly as SAELens' ``layer_norm`` activation normalisation does.

The authors' options, with their code's choices as defaults:
- ``k_target`` "centred" (||x - b_dec||, used by their k selection) or "uncentred" (||x||);
- ``afa_target`` "uncentred" (||x||, used by their AFA loss) or "centred" -- the authors' code mixes
  the two on purpose or not; the theory treats b_dec as one more feature;
- ``b_dec_init`` "zero" (theirs), "mean" (the data mean, as this package's other SAEs start) or
  "median" (the geometric median).
  The start decides whether the mixed targets train where a few massive dimensions dominate x:
  from the mean, k is chosen against ||x - b_dec|| while the AFA loss pulls ||f|| toward the much
  larger ||x||, and training can collapse to one latent (SmolLM2-135M layer 15, massive dimensions
  247 and 507: L0 1, 94% dead, FVU 1.06); from zero both targets start equal (same site: L0 ~130,
  6% dead, FVU 0.35; measurements of issue 21 at `interp reproduce sweep_sae`'s budget);
- ``use_b_enc`` False: their forward never adds the encoder bias (it stays zero here);
- ``standardize`` True (per-token standardisation); False uses the trainer's norm scaling.
Selection is vectorised: a partial sort (``topk``) of a prefix just long enough to settle every
token's k (twice the previous batch's largest k, grown while too short; see ``select_k``), bounded
by ``k_max`` (default min(d_sae - 1, 4 d_in); the authors' L0 peaked at ~3.1 d_in), cumulative
sums, one argmin. k never reaches d_sae, which is what the authors' 1e8 sentinel on the last
cumulative sum ensures.
Deviations: AuxK is this package's (detached
residual, FVU-normalised, as in ``topk.py``); the fraction of tokens whose k hit ``k_max`` is
logged as ``k_capped`` so a too-small bound shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int

from interp.decomposers.base import doc_field, register
from interp.decomposers.sae.train_config import TrainConfig
from interp.errors import ConfigError
from interp.decomposers.sae.base import SAE, SAEConfig, StepOutput, data_centre
from interp.decomposers.sae.ops import Active, gather_encode
from interp.decomposers.sae.topk import TopKSAE, aux_on


@dataclass(frozen=True)
class TopAFAConfig(SAEConfig):
    method: str = doc_field("topafa", "the SAE variant (a registered method name)")
    lambda_afa: float = doc_field(1 / 32, "weight of the AFA loss (the authors swept 1/128 .. 1/16)")
    standardize: bool = doc_field(True, "standardise inputs per token (False: the trainer's norm scaling)")
    k_target: str = doc_field("centred", "centred | uncentred")
    afa_target: str = doc_field("uncentred", "centred | uncentred")
    use_b_enc: bool = doc_field(False, "train and add the encoder bias (the authors' forward has none)")
    b_dec_init: str = doc_field("zero", "zero (the authors') | mean | median, of the standardised first batch")
    k_max: int | None = doc_field(None, "None: min(d_sae - 1, 4 * d_in)")
    std_eps: float = doc_field(1e-5, "added to the per-token std when standardising")
    aux_k: int = doc_field(512, "dead latents used by the auxiliary loss (capped at the number dead; 0: no AuxK)")
    aux_alpha: float = doc_field(1 / 32, "weight of the AuxK loss (dead latents reconstruct the residual; 0: none)")
    sparse_frac: float = doc_field(0.125, "sparse kernels while the batch's mean k is below this * d_sae")


def select_k(
    acts: Float[torch.Tensor, "B F"], target: Float[torch.Tensor, "B"], k_max: int, start: int = 64
) -> tuple[Int[torch.Tensor, "B K"], Int[torch.Tensor, "B"]]:
    """Latents sorted by activation (the first ``max k`` of the batch) and each token's k.

    The cumulative norms C_j only grow, so |C_j - target| is smallest at or before the first j with
    C_j >= target, and nothing past a zero activation changes C. A partial sort of the first
    ``start`` latents therefore settles every token whose prefix reaches its target or a zero; the
    prefix grows 4x until all are settled (or it reaches ``k_max``). Exact for any ``start``.
    """
    m = max(1, min(k_max, start))
    while True:
        vals, idx = acts.topk(m, dim=1, sorted=True)
        norms = vals.pow(2).cumsum(1).sqrt()
        if m == k_max or bool(((norms[:, -1] >= target) | (vals[:, -1] <= 0)).all()):
            break
        m = min(k_max, 4 * m)
    k = (norms - target[:, None]).abs().argmin(1) + 1
    return idx[:, : int(k.max())], k


@register("topafa")
class TopAFASAE(SAE):
    config_cls = TopAFAConfig
    saelens_architecture = "topk"
    saelens_exact = False  # SAELens has no per-token k: exported as TopK at the running-mean k

    def __init__(self, cfg: TopAFAConfig, run: TrainConfig | None = None):
        super().__init__(cfg, run)
        for name, options in (
            ("k_target", ("centred", "uncentred")),
            ("afa_target", ("centred", "uncentred")),
        ):
            if getattr(cfg, name) not in options:
                raise ConfigError(f"{name} must be one of {options}, got {getattr(cfg, name)!r}")
        self.b_enc.requires_grad_(cfg.use_b_enc)
        self.register_buffer("mean_k", torch.zeros(()))  # running mean of k (for the SAELens export)
        self._ln: tuple[torch.Tensor, torch.Tensor] | None = None
        self._k: torch.Tensor | None = None
        self._start = 64  # select_k's first prefix length (speed only: the selection is exact)

    @property
    def k_max(self) -> int:
        cfg = self.cfg
        return max(1, min(cfg.d_sae - 1, cfg.k_max or 4 * cfg.d_in))

    # -- input standardisation ------------------------------------------------------------------
    def prepare_input(self, x: Float[torch.Tensor, "B D"]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(SAE-space input, mean, scale) with x = x_sae * scale + mean."""
        x = x.to(self.W_enc.dtype)
        if not self.cfg.standardize:
            return x * self.norm_scale, torch.zeros_like(x[:, :1]), (1 / self.norm_scale).expand(len(x), 1)
        mu = x.mean(-1, keepdim=True)
        sd = (x - mu).std(-1, keepdim=True)
        return (x - mu) / (sd + self.cfg.std_eps), mu, sd

    def _target(self, xs: torch.Tensor, which: str) -> torch.Tensor:
        return (xs - self.b_dec if which == "centred" else xs).norm(dim=1)

    # -- selection and code ---------------------------------------------------------------------
    @torch.no_grad()
    def _select(self, xs: torch.Tensor, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids [B, K] sorted by activation, which of them each token keeps [B, K], k [B])."""
        idx, k = select_k(torch.relu(pre), self._target(xs, self.cfg.k_target), self.k_max, self._start)
        self._start = max(32, 2 * idx.shape[1])  # next batch's first prefix: twice this one's max k
        return idx, torch.arange(idx.shape[1], device=idx.device) < k[:, None], k

    def encode_sparse(self, xs):
        """Differentiable codes of SAE-space inputs: (values [B, K], zero past each token's k; ids)."""
        with torch.no_grad():
            pre = self.pre_acts(xs)
        idx, kept, _ = self._select(xs, pre)
        return torch.relu(gather_encode(xs, self.b_dec, self.W_enc, self.b_enc, pre, idx)) * kept, idx

    # -- public interface (raw activations) -----------------------------------------------------
    def encode(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B F"]:
        """Codes of raw activations; the per-token mean/std are kept for ``decode`` (as SAELens'
        ``layer_norm`` mode does), so ``decode(encode(x))`` reconstructs x."""
        xs, mu, sd = self.prepare_input(x)
        self._ln = (mu, sd)
        vals, idx = self.encode_sparse(xs)
        return torch.zeros(len(x), self.cfg.d_sae, dtype=vals.dtype, device=vals.device).scatter_(1, idx, vals)

    def decode(self, codes: Float[torch.Tensor, "B F"]) -> Float[torch.Tensor, "B D"]:
        x_hat = codes @ self.W_dec + self.b_dec
        if not self.cfg.standardize:
            return x_hat / self.norm_scale
        if self._ln is None or self._ln[0].shape[0] != len(codes):
            raise ValueError(
                "top-AFA decodes with the per-token mean/std of the batch last passed to "
                "encode(); call encode() on this batch first, or use reconstruct(x)"
            )
        mu, sd = self._ln
        return x_hat * sd + mu

    def reconstruct(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B D"]:
        xs, mu, sd = self.prepare_input(x)
        vals, idx = self.encode_sparse(xs)
        return self.decode_sparse(vals, idx) * sd + mu

    # -- training -------------------------------------------------------------------------------
    @torch.no_grad()
    def init_from_data(self, xn):
        """b_dec starts at zero (the authors' choice), or at the mean or geometric median of the
        SAE-space inputs (``b_dec_init``)."""
        self.b_dec.copy_(data_centre(self.prepare_input(xn / self.norm_scale)[0], self.cfg.b_dec_init))

    def step(self, xn: Float[torch.Tensor, "B D"], dead: torch.Tensor | None) -> StepOutput:
        xs = self.prepare_input(xn / self.norm_scale)[0] if self.cfg.standardize else xn
        with torch.no_grad():
            pre = self.pre_acts(xs)
        idx, kept, k = self._select(xs, pre)
        act = Active.from_candidates(idx, kept, self.cfg.d_sae, self.cfg.sparse_frac)  # ragged: k per token
        vals = act.keep(torch.relu(act.encode(xs, self.b_dec, self.W_enc, self.b_enc, pre)))
        x_hat = act.decode(vals, self.W_dec) + self.b_dec
        mse = (x_hat - xs).pow(2).mean()
        afa = (act.row_norm(vals) - self._target(xs, self.cfg.afa_target)).pow(2).mean()
        loss = mse + self.cfg.lambda_afa * afa
        terms = {"mse": mse, "afa": afa, "l0": (vals > 0).sum() / len(xs), "k_capped": (k >= self.k_max).float().mean()}
        if aux_on(self.cfg, dead):
            terms["aux"] = TopKSAE._aux_loss(self, xs, pre, dead, (xs - x_hat).detach())  # type: ignore[arg-type]
            loss = loss + self.cfg.aux_alpha * terms["aux"]
        self._k = k
        return StepOutput(loss=loss, terms=terms, x_hat=x_hat.detach(), fired=act.fired(vals))

    @torch.no_grad()
    def after_step(self, xn, out, step: int) -> None:
        if self._k is not None:
            batch_k = self._k.float().mean()
            self.mean_k.copy_(batch_k if step == 1 else 0.99 * self.mean_k + 0.01 * batch_k)
            self._k = None

    # -- SAELens interchange: a TopK SAE with k = the mean training k ------------------------------
    def saelens_fields(self) -> dict:
        """SAELens has no per-token k; the closest SAE it runs exactly is TopK with the running
        mean k, under its ``layer_norm`` normalisation (the same standardisation as ours)."""
        fields = {"k": max(1, round(self.mean_k.item())), "rescale_acts_by_decoder_norm": False}
        return fields | ({"normalize_activations": "layer_norm"} if self.cfg.standardize else {})

    @torch.no_grad()
    def saelens_state(self) -> dict[str, torch.Tensor]:
        if not self.cfg.standardize:
            return super().saelens_state()
        return {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
