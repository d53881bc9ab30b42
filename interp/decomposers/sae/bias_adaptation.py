"""Bias adaptation (BA) and Group Bias Adaptation (GBA) SAEs (Chen, Sheen, Xiong, Wang, Yang,
"Taming Polysemanticity in LLMs: Provable Feature Recovery via Sparse Autoencoders", 2025).

No sparsity penalty: the encoder biases ``b`` get no gradient and instead act as firing
thresholds steered toward target activation frequencies. Every ``update_every`` steps each neuron
m compares its firing frequency p_m over a buffer of recent pre-activations y_m with its group's
target p_k (GBA: ``n_groups`` groups of randomly assigned neurons, targets geometrically spaced
from ``htf`` down to ``ltf``; BA: one group at ``htf``):
- over-active (p_m > p_k): b_m <- max(b_m - gamma_down * r_m, bias_min), r_m = max(y_m, 0) peak;
- dead (p_m < dead_eps):    b_m <- min(b_m + gamma_up * mean_k(r), 0), the mean of the group's
  positive peaks;
- otherwise b_m is left alone (a stable band, not exact frequency matching).
Weights (and the tied output scale) train by the shared trainer's Adam on the reconstruction
loss (here the batch FVU, a rescaled 1/2||x - x_hat||^2, which Adam does not see).

What the sources leave open (see the method notes) and the defaults chosen here:
- ``tied`` (default True): the paper's Section 2 writes one vector w_m as detector and decoder
  direction, with an output scale a_m (``train_scale``, default trainable); a reviewer suspects
  the experiments were untied, so ``tied=False`` gives a standard untied encoder.
- ``activation``: "relu" (default; the theory's model, f = a ReLU(w.(x - b_dec) + b)) or
  "jumprelu" (the paper's LLM runs; the bias is then only a threshold: f = a u 1[u + b > 0] with
  u = w.(x - b_dec)). Which quantity the paper adapts under JumpReLU is not stated; here it is
  the threshold.
- GBA: ``htf``/``ltf`` 0.1 / 1e-3 with 10 groups (arXiv v1; the ICLR text may use 0.5 / 1e-4).
- BA: one target, ``htf`` 0.04 (the sources give BA's target only as a band: the theory needs
  n^-1 <~ p <~ n^-(1+1/s)/2 for n features active s at a time, [0.016, 0.063] on the sparse planted
  setting of issue 21 and [0.031, 0.074] on the small one). At 0.1, above both bands, BA's neurons
  fire on several features: at lr 3e-4 / 1e-3 on the sparse setting (seeds 0 and 1) BA recovered
  0.8 / 95% at tau 0.9 against 90 / 100% at 0.04; on the small one (seeds 0-3, lr 1e-3 / 3e-3 /
  1e-2) 34 / 87 / 95% against 88 / 100 / 100%. A lower target fails where features are more
  frequent: on the GBA paper's mixture (n = 128, half s = 3 / half s = 20, frequency 0.09; 781
  steps, seeds 0 and 1, lr 1e-3 / 3e-3 / 1e-2) BA recovered 5.1 / 37.5 / 39.8% at 0.04 (L0 20;
  TopK at that L0, k = 20: 0 / 5.1 / 0.4%) but 3.1 / 21.5 / 27.3% at 0.03 (L0 15), below TopK at
  its L0 at 1e-2 (k = 15: 35.2%, seed 1). 0.03 was the default until this measurement; it
  recovers 100% on the sparse setting at lr 3e-4, where 0.04 recovers 90% and TopK k = 3 92%.
  0.05 recovers 39 / 41% on the mixture (seed 0, lr 3e-3 / 1e-2, L0 26) but 62% at lr 3e-4 on the
  sparse setting. The LLM sweep sets its own BA targets (0.003-0.03); 0.04 is not measured on an LLM.
- ``bias_min`` (default None: -sqrt(d_in)): the paper clamps b to [-1, 0] for unit-scale inputs;
  the trainer scales inputs to mean squared norm d_in, so -1 in unit-norm units is -sqrt(d_in).
- The buffer is kept as per-batch firing counts and peaks in a ring of
  ceil(buffer_tokens / batch_size) batches (default buffer: the batches since the last update);
  it is exact for the statistics the rule needs and small enough for any width. Data-parallel,
  each entry is the global batch's (summed counts, largest peaks), so every rank adapts alike.
  A buffer longer than the update period reads stale frequencies and keeps lowering a bias after
  its neuron has fallen below target: with the unofficial script's 40,960 tokens (80 batches of
  512, updates every step) GBA recovered 61% at lr 3e-4 on the sparse setting (seeds 0 and 1)
  against 83%, and 1.6% against 66% on the GBA paper's mixture at lr 1e-2 (seed 0), at L0 2-7.
- Peaks r_m are those of y_m = w.(x - b_dec) + b_m (with the bias), clamped at 0.
- ``bias_init`` "zero" (default: b = 0, where the sources start) or "quantile". From zero about
  half the neurons fire at once; with a = 1 the first reconstructions then overshoot the input
  hundreds of times over (measured on the sparse planted setting of issue 21, n = 64, d = 42,
  s = 3, width 1024: L0 513, FVU 141 at step 1) and nothing is recovered, which is why "quantile"
  was the default until the least-squares ``scale_init`` (below) took the overshoot away.
  "quantile" starts each b_m at minus the (1 - p_k) quantile of its pre-activations on the first
  batch, so every neuron fires near its group's target from step one (the state the bias rule
  converges to); but each neuron then gets a gradient from its few firing tokens only, and the
  dictionary aligns slowly. With the least-squares scale, GBA's recovery at tau 0.9 (Adam) on the
  sparse setting (20,000 samples, seeds 0 and 1) at lr 3e-4 / 1e-3 is 2 / 84% from "quantile"
  against 83 / 100% from "zero"; on the small setting of tests/evals/test_synthetic.py (4 seeds) at 1e-3 / 3e-3,
  12 / 77% against 77 / 99%.
- ``scale_init`` (default None): the tied output scale a_m starts at the one common value that
  reconstructs the first batch best in least squares (through the initial dictionary, biases and
  activation); a float fixes it (1.0: the sources' a = 1). The theory takes a small (a -> 0); a = 1
  with ~L0 random unit directions per token overshoots, and the gradient then goes to cancelling
  the overshoot rather than to aligning the neurons (same setting, quantile start, T = 2, lr 1e-3:
  recovery at tau 0.9 39% with a = 1, 81% with the least-squares start). A start below the
  least-squares one (the theory's small a) helps at low learning rates, where a stays small and
  each firing neuron moves towards its inputs (sparse setting, lr 3e-4, gamma 0.01, seeds 0 and 1:
  97% recovered from a = 0.01 against 83%), but it costs reconstruction everywhere (SmolLM2-135M
  layer 15, 5 epochs: FVU 0.282 at L0 141 against 0.207 at L0 160), so it is not the
  default.
- ``update_every`` (default None): the bias update period T. The sources give T = 50 for the LLM
  runs (tens of thousands of steps) and nothing for the synthetic ones. With the sources' step
  (gamma = 0.01) each update moves a bias by 1% of a peak, so the rule needs hundreds of updates
  per run to follow the weights; None takes T = n_steps // 500 within [1, 50] (50 from 25,000
  steps up). Measured on the sparse setting (781 steps, lr 1e-3): T = 50 (15 updates) left the
  biases at -0.3 against pre-activations of scale ~2.5 (L0 309 of 1024, 0% recovered, GBA and BA
  alike, since every neuron was over-active); with the quantile start T = 50 recovered 42%, T = 2
  81%.
- ``gamma_up`` / ``gamma_down`` (default 0.01, the sources', for BA; 0.02 for GBA): an update's
  step, as a fraction of a peak. With 0.01 the biases take ~100 steps to come down from zero
  (sparse setting, lr 3e-4: L0 72 at step 61, against 15 with 0.1), and the dictionary's alignment
  lags TopK's by about as long: at lr 3e-4, where recovery at tau 0.9 is still rising when the run
  ends, GBA recovered 83% with 0.01 (seed 0 / 1: 80 / 86%), 92% with 0.02 (91 / 94%) and with
  0.03, against TopK k = 3's 92% (94 / 91%); over seeds 0-7, 82% with 0.01 and 93% with 0.1
  against TopK's 90%. A larger step also leaves a neuron further below its target when it stops
  being over-active (the stable band), so the code is sparser; on SmolLM2-135M layer 15
  (scripts/bench_peers.py, 5 epochs, width 9,216, seed 0) it reconstructed better at the same L0:
  FVU 0.228 at L0 100 with 0.1, 0.214 at L0 122 with 0.03, 0.210 at L0 133 with 0.02, 0.207 at
  L0 160 with 0.01, and 0.276 at L0 84 with 0.01 and halved targets (so ~0.257 at L0 100 in log-L0
  interpolation). But on the GBA paper's mixture (n = 128, half s = 3 / half s = 20; 781 steps,
  seeds 0 and 1, lr 1e-3 / 3e-3 / 1e-2) a larger step recovers less at 3e-3: GBA 4.3 / 45.0 /
  67.6% at L0 14 / 13 / 14 with 0.01, 1.6 / 36.3 / 71.1% at L0 13 / 12 / 13 with 0.02, 2.0 / 33.2
  / 69.5% at L0 13 / 11 / 12 with 0.03 (seed 0: 1.6 / 21.9 / 50.0% with 0.1), against TopK at
  those L0s: k = 11 2.7 / 39.5 / 69.5%, k = 12 2.0 / 33.2 / 62.9%, k = 13 1.6 / 30.5 / 52.0%,
  k = 14 1.6 / 21.9 / 42.6%. So 0.03 falls below TopK at its own L0 there (33.2% against 39.5%),
  and 0.02 is the one step tried that stays at or above it on the mixture while matching TopK
  k = s on the sparse setting at 3e-4 (where 0.01 trails it): GBA's default. BA keeps the
  sources' 0.01, with which its target (above) was chosen; with 0.1 it recovered 3.9 / 13.3 /
  7.8% on the mixture against 7.0 / 39.8 / 38.3% (seed 0). On the small setting of
  tests/evals/test_synthetic.py (seeds 0-3, lr 3e-4 / 1e-3 / 3e-3 / 1e-2) GBA recovers 1.6 / 73.4
  / 100 / 99.2% with 0.02 and 1.6 / 77.3 / 99.2 / 99.2% with 0.01. On a narrow SAE (width = the
  number of planted atoms, each sample with 2; tests/decomposers/sae/test_sae_contract.py's
  problem) 0.1 takes the code to L0 ~1 within 40 steps, under the atoms' 2, since the stable band
  leaves each neuron below its target: loss 0.65, against 0.22 with 0.01, whose biases are still
  coming down (L0 9.5).
- ``train_b_dec`` (default False): b_dec stays at the data mean it is initialised to. Trained,
  it drifted so as to raise every pre-activation against the adapted thresholds (measured on the
  synthetic benchmark: L0 grew from 28 to 46 while the biases fell, and recovery stalled); the
  unofficial JSALT script also leaves it untrained (by accident, per the method notes).

With these defaults (tau 0.9, Adam, lr 1e-4 / 3e-4 / 1e-3 / 3e-3 / 1e-2), on the sparse setting
(seeds 0 and 1) GBA recovers 0 / 92 / 100 / 100 / 100% and BA 0 / 90 / 100 / 100 / 100%, against
TopK k = 3's 0 / 92 / 100 / 100 / 100%. Against TopK at their own L0 (seed 0, GBA's k = 11 to 16:
at most 97%; BA's k = 22 to 26: at most 36%), GBA and BA recover as much or more at every rate, and on
the paper's mixture likewise (seeds 0 and 1, lr 1e-3 / 3e-3 / 1e-2: GBA 1.6 / 36.3 / 71.1%
against TopK k = 13 / 12 / 13's 1.6 / 33.2 / 52.0%; BA, above). On that mixture TopK with k = 3
recovers more than either at this budget (seed 0: 56 / 96 / 100%); TopK at the data's mean L0
(k = 12) does not reach 90% at any rate. On the small setting of tests/evals/test_synthetic.py
(n = 32, d = 16, s = 2, width 256; seeds 0-3, lr 3e-4 / 1e-3 / 3e-3 / 1e-2) GBA recovers 2 / 73 /
100 / 99%, BA 2 / 88 / 100 / 100%, TopK k = 2 2 / 80 / 99 / 100%. BA's target decides whether it
does (small setting, lr 3e-3: 100% with htf <= 1/16, 87% at 0.1, 7% at 0.2): the sensitivity
GBA's spread of targets removes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float

from interp import distributed as _dist
from interp.decomposers.base import doc_field, register
from interp.decomposers.sae.train_config import TrainConfig
from interp.decomposers.sae.base import SAE, SAEConfig, StepOutput
from interp.decomposers.sae.ops import Active
from interp.decomposers.sae.topk import normalized_mse


@dataclass(frozen=True)
class BAConfig(SAEConfig):
    method: str = doc_field("ba", "the SAE variant (a registered method name)")
    n_groups: int = doc_field(1, "number of target-frequency groups (1: BA, >1: GBA)")
    htf: float = doc_field(0.04, "highest target frequency (BA's single target)")
    ltf: float = doc_field(1e-3, "lowest target frequency (GBA)")
    tied: bool = doc_field(True, "encoder = decoder transposed")
    activation: str = doc_field("relu", "relu | jumprelu")
    train_scale: bool = doc_field(True, "tied only: the per-neuron output scale a_m is trained (else a = 1)")
    train_b_dec: bool = doc_field(False, "True: b_dec also trains (it then drifts against the thresholds)")
    bias_init: str = doc_field("zero", "zero (the sources') | quantile (start each neuron at its target frequency)")
    scale_init: float | None = doc_field(
        None, "initial output scale a_m (tied); None: least squares on the first batch"
    )
    gamma_up: float = doc_field(0.01, "step of a dead neuron's bias towards 0 (times its group's mean peak)")
    gamma_down: float = doc_field(0.01, "step of an over-active neuron's bias down (times its peak)")
    dead_eps: float = doc_field(1e-6, "a neuron firing at a rate below this is dead (its bias is raised)")
    bias_min: float | None = doc_field(None, "None: -sqrt(d_in)")
    update_every: int | None = doc_field(None, "steps between bias updates; None: n_steps // 500 within [1, 50]")
    buffer_tokens: int | None = doc_field(None, "None: (bias update period) * batch_size")
    sparse_frac: float = doc_field(0.125, "use the sparse kernels when a batch's mean L0 is below this * d_sae")


@dataclass(frozen=True)
class GBAConfig(BAConfig):
    method: str = doc_field("gba", "the SAE variant (a registered method name)")
    n_groups: int = doc_field(10, "number of target-frequency groups (1: BA, >1: GBA)")
    htf: float = doc_field(0.1, "highest target frequency (the first group's)")
    gamma_up: float = doc_field(0.02, "step of a dead neuron's bias towards 0 (times its group's mean peak)")
    gamma_down: float = doc_field(0.02, "step of an over-active neuron's bias down (times its peak)")


def group_targets(n_groups: int, htf: float, ltf: float) -> torch.Tensor:
    """Target frequencies geometrically spaced from ``htf`` down to ``ltf`` (one group: htf)."""
    if n_groups == 1:
        return torch.tensor([htf])
    return torch.logspace(math.log10(htf), math.log10(ltf), n_groups)


@register("ba")
class BiasAdaptationSAE(SAE):
    config_cls = BAConfig
    # Adam, as in the paper: with schedule-free Signum GBA recovered 9% of the planted features at
    # tau 0.9 (tests/evals/test_synthetic.py's setting) against >= 95% with Adam
    train_defaults = {"optimizer": "adam"}

    def __init__(self, cfg: BAConfig, run: TrainConfig | None = None):
        super().__init__(cfg, run)
        if cfg.activation not in ("relu", "jumprelu"):
            raise ValueError(f"activation must be 'relu' or 'jumprelu', got {cfg.activation!r}")
        if cfg.bias_init not in ("zero", "quantile"):
            raise ValueError(f"bias_init must be 'zero' or 'quantile', got {cfg.bias_init!r}")
        if not 0 < cfg.ltf <= cfg.htf <= 1 or cfg.n_groups < 1:
            raise ValueError(f"need n_groups >= 1 and 0 < ltf <= htf <= 1, got {cfg.n_groups}, {cfg.ltf}, {cfg.htf}")
        if (cfg.update_every is not None and cfg.update_every < 1) or (
            cfg.scale_init is not None and cfg.scale_init <= 0
        ):
            raise ValueError(f"need update_every >= 1 and scale_init > 0, got {cfg.update_every}, {cfg.scale_init}")
        f = cfg.d_sae
        self.b_enc.requires_grad_(False)  # set by adaptation, never by the gradient
        self.b_dec.requires_grad_(cfg.train_b_dec)
        self.scale = torch.nn.Parameter(
            torch.full((f,), 1.0 if cfg.scale_init is None else float(cfg.scale_init)),
            requires_grad=cfg.tied and cfg.train_scale,
        )
        gen = torch.Generator().manual_seed(self.run.seed + 7)
        group = torch.arange(f) * cfg.n_groups // f  # equal groups of randomly permuted neurons
        self.register_buffer("group", group[torch.randperm(f, generator=gen)])
        self.register_buffer("targets", group_targets(cfg.n_groups, cfg.htf, cfg.ltf))
        batch = self.run.batch_size
        slots = max(1, math.ceil((cfg.buffer_tokens or self.update_every * batch) / batch))
        self.register_buffer("ring_fired", torch.zeros(slots, f))  # firing counts per batch
        self.register_buffer("ring_peak", torch.zeros(slots, f))  # max(y, 0) per batch
        self.register_buffer("ring_tokens", torch.zeros(slots))
        self._pending: tuple[torch.Tensor, torch.Tensor, int] | None = None

    @property
    def first_loss_is_a_baseline(self) -> bool:
        """From b = 0 about half the neurons fire, and the least-squares scale makes that dense
        first code reconstruct well; the loss then rises as the biases make the code sparse."""
        return self.cfg.bias_init != "zero"

    @property
    def update_every(self) -> int:
        """The bias update period T: the config's, or n_steps // 500 within [1, 50]."""
        if self.cfg.update_every is not None:
            return self.cfg.update_every
        return min(50, max(1, self.run.n_steps // 500))

    @property
    def bias_min(self) -> float:
        return self.cfg.bias_min if self.cfg.bias_min is not None else -math.sqrt(self.cfg.d_in)

    def _code(self, y: torch.Tensor, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Code values from pre-activations y (with bias b) and output scales a."""
        if self.cfg.activation == "relu":
            return a * torch.relu(y)
        return a * (y - b) * (y > 0)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        """Ring buffers take the saved slot count: it follows the run's batch size, which lives in
        the run's train_config.json, not in the SAE's config."""
        for name in ("ring_fired", "ring_peak", "ring_tokens"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args)

    @torch.no_grad()
    def init_from_data(self, xn: Float[torch.Tensor, "B D"]) -> None:
        """b_dec at the data mean; with ``bias_init="quantile"`` each b_m at minus the (1 - p_k)
        quantile of its pre-activations on ``xn`` (within [bias_min, 0]); tied with ``scale_init``
        None, every a_m at the least-squares scale of the initial reconstruction of ``xn``."""
        super().init_from_data(xn)
        if self.cfg.bias_init == "quantile":
            y = (xn - self.b_dec) @ self._W()
            rank = ((1 - self.targets[self.group]) * (len(y) - 1)).round().long()
            b = -y.sort(dim=0).values.gather(0, rank[None]).squeeze(0)
            self.b_enc.copy_(b.clamp(self.bias_min, 0.0))
        if self.cfg.tied and self.cfg.scale_init is None:
            xc = xn - self.b_dec
            z = self._code(self.pre_acts(xn), self.b_enc, torch.ones_like(self.scale)) @ self.W_dec
            a = (xc * z).sum() / (z * z).sum().clamp_min(1e-12)
            self.scale.fill_(float(a.clamp_min(1e-3)))

    # -- forward --------------------------------------------------------------------------------
    def pre_acts(self, xn):
        return (xn - self.b_dec) @ self._W() + self.b_enc

    def encode(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B F"]:
        pre = self.pre_acts(x.to(self.W_enc.dtype) * self.norm_scale)
        return self._code(pre, self.b_enc, self.scale)

    def reconstruct(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B D"]:
        return self.decode(self.encode(x))

    def step(self, xn: Float[torch.Tensor, "B D"], dead: torch.Tensor | None) -> StepOutput:
        with torch.no_grad():
            pre = self.pre_acts(xn)
            act = Active(pre, 0.0, self.cfg.sparse_frac)  # the firing neurons, sparse once codes are
            count = act.count()
            self._pending = (count, act.peak(pre), len(xn))  # the bias update's buffer entry
        y = act.encode(xn, self.b_dec, self._W(), self.b_enc, pre)
        vals = self._code(y, act.per_latent(self.b_enc), act.per_latent(self.scale))
        x_hat = act.decode(vals, self.W_dec) + self.b_dec
        fvu = normalized_mse(x_hat, xn)
        return StepOutput(
            loss=fvu, terms={"fvu": fvu, "l0": count.sum() / len(xn)}, x_hat=x_hat.detach(), fired=count > 0
        )

    # -- bias adaptation ------------------------------------------------------------------------
    @torch.no_grad()
    def after_step(self, xn, out, step: int) -> None:
        if self._pending is None:
            return
        count, peak, n = self._pending
        self._pending = None
        # data-parallel: the buffer holds the global batch's statistics, the same on every rank
        counted = _dist.all_reduce(torch.cat([count.to(peak.dtype), peak.new_tensor([n])]))
        count, n, peak = counted[:-1], counted[-1], _dist.all_reduce(peak, "max")
        slot = (step - 1) % self.ring_tokens.numel()
        self.ring_fired[slot], self.ring_peak[slot], self.ring_tokens[slot] = count, peak, n
        if step % self.update_every == 0:
            self.adapt_biases()

    @torch.no_grad()
    def adapt_biases(self) -> None:
        """One bias update from the buffered statistics (the rule in the module docstring)."""
        tokens = self.ring_tokens.sum().clamp_min(1)
        p = self.ring_fired.sum(0) / tokens
        r = self.ring_peak.max(0).values
        n_groups = self.targets.numel()
        pos = (r > 0).float()
        group_sum = torch.zeros(n_groups, device=r.device).index_add_(0, self.group, r * pos)
        group_cnt = torch.zeros(n_groups, device=r.device).index_add_(0, self.group, pos)
        overall = (r * pos).sum() / pos.sum().clamp_min(1)
        mean_peak = torch.where(group_cnt > 0, group_sum / group_cnt.clamp_min(1), overall)
        b = self.b_enc
        target = self.targets[self.group]
        lowered = torch.clamp(b - self.cfg.gamma_down * r, min=self.bias_min)
        raised = torch.clamp(b + self.cfg.gamma_up * mean_peak[self.group], max=0.0)
        new = torch.where(p > target, lowered, b)
        b.copy_(torch.where(p < self.cfg.dead_eps, raised, new))

    # -- SAELens interchange: ReLU -> "standard", JumpReLU -> "jumprelu", both exact ----------------
    @property
    def saelens_architecture(self) -> str:  # type: ignore[override]
        return "standard" if self.cfg.activation == "relu" else "jumprelu"

    @torch.no_grad()
    def saelens_state(self) -> dict[str, torch.Tensor]:
        """Scale |a_m| folded into the encoder column (and threshold), sign(a_m) into the decoder
        row; biases divided by norm_scale: SAELens codes are ours / norm_scale."""
        c, a = self.norm_scale, self.scale
        state = {
            "W_enc": self._W() * a.abs(),
            "W_dec": self.W_dec * torch.where(a < 0, -1.0, 1.0)[:, None],
            "b_dec": self.b_dec / c,
        }
        if self.cfg.activation == "relu":
            return state | {"b_enc": self.b_enc * a.abs() / c}
        return state | {"b_enc": torch.zeros_like(self.b_enc), "threshold": -self.b_enc * a.abs() / c}


@register("gba")
class GroupBiasAdaptationSAE(BiasAdaptationSAE):
    config_cls = GBAConfig
