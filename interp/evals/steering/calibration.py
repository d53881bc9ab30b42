"""Steering-strength calibration: the α at which a direction moves the next-token distribution by a
given KL budget (the SNMF paper's protocol, Shafran et al. 2025, section 3 of our notes).

KL(p_base ‖ p_steered) of the next-token distribution at the last position of each neutral prompt,
averaged over the prompts, is measured as a function of α. For each sign and each target the α is
found by bracketing (α grows from ``alpha_start`` by at least 2x per step until the KL passes the
target, up to ``alpha_max``) and then bisecting in log space (the split point interpolated in
log KL vs log α, kept inside the inner 80% of the bracket) until the KL is within ``tol``
(relative) of the target. Every evaluated α is shared between the targets of one sign, so a sorted list of targets
costs little more than the largest one. Differences from the paper's code, on purpose: the start of
the bracket scales with the site's activation norm instead of a fixed [1, 2000], KL is averaged
over many prompts instead of one, and a target that is not hit is reported as a miss (with the
closest α found and why), never silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float

from interp.evals.steering.interventions import check_direction, steer
from interp.models.prompts import batches, encode_prompts, forward, left_pad, pad_id
from interp.models import LoadedModel, run_to_sites

DEFAULT_KL_TARGETS = (0.025, 0.05, 0.1, 0.15, 0.25, 0.35, 0.5)


@dataclass(frozen=True)
class AlphaPoint:
    """The α found for one (target, sign); ``hit`` False means a miss (``note`` says why)."""

    target: float
    sign: int
    alpha: float  # signed; the closest α found when missed
    kl: float  # KL measured at ``alpha``
    hit: bool
    note: str = ""


@dataclass
class Calibration:
    points: list[AlphaPoint]
    tol: float
    n_evals: int
    evals: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # sign -> [(|α|, KL)]

    def alpha(self, target: float, sign: int = 1) -> float | None:
        """The calibrated α for ``target`` and ``sign``, or None when that target was missed."""
        for p in self.points:
            if p.sign == sign and math.isclose(p.target, target) and p.hit:
                return p.alpha
        return None

    @property
    def misses(self) -> list[AlphaPoint]:
        return [p for p in self.points if not p.hit]

    def to_dict(self) -> dict[str, Any]:
        return {"tol": self.tol, "n_evals": self.n_evals, "points": [asdict(p) for p in self.points]}


class NextTokenKL:
    """Mean KL(p_base ‖ p_steered) at the last position of each prompt, for any α."""

    def __init__(self, model: LoadedModel, prompts: Sequence[str], batch_size: int = 32, add_bos: bool = True):
        self.model, self.prompts = model, list(prompts)
        seqs = encode_prompts(model, prompts, add_bos)
        self.batches = [
            left_pad(seqs[s], pad_id(model.tokenizer), model.device) for s in batches(len(seqs), batch_size)
        ]
        self.base = self.logprobs()

    @torch.no_grad()
    def logprobs(self) -> Float[torch.Tensor, "P V"]:
        """Next-token log-probabilities at the last position of every prompt (current hooks apply)."""
        return torch.cat(
            [
                F.log_softmax(forward(self.model, ids, mask, last_only=True)[:, -1].float(), -1)
                for ids, mask in self.batches
            ]
        )

    def __call__(self, direction: torch.Tensor, site: str, alpha: float, **steer_kw: Any) -> float:
        with steer(self.model, direction, site, alpha, **steer_kw):
            lp = self.logprobs()
        kl = F.kl_div(lp, self.base, log_target=True, reduction="none").sum(-1).mean().item()
        if not math.isfinite(kl):
            raise FloatingPointError(f"KL is {kl} at alpha={alpha}: the steered model produced NaN/inf")
        return max(kl, 0.0)


def _next_alpha(lo: float, k_lo: float, hi: float, k_hi: float, target: float) -> float:
    """Interpolate log KL against log α inside the bracket (KL ~ α² near 0 when lo is 0), clamped
    to the inner 80% of the bracket in log space so every step shrinks it."""
    if lo <= 0 or k_lo <= 0:
        guess = hi * math.sqrt(target / k_hi)
        return min(max(guess, 0.1 * hi), 0.9 * hi)
    a, b = math.log(lo), math.log(hi)
    x = a + (math.log(target) - math.log(k_lo)) * (b - a) / max(math.log(k_hi) - math.log(k_lo), 1e-12)
    return math.exp(min(max(x, a + 0.1 * (b - a)), b - 0.1 * (b - a)))


def _search(
    kl_of, target: float, evals: dict[float, float], start: float, alpha_max: float, tol: float, max_iter: int
) -> tuple[float, float, bool, str]:
    """Find |α| with KL within tol·target of ``target``; ``evals`` caches |α| -> KL."""

    def f(a: float) -> float:
        if a not in evals:
            evals[a] = kl_of(a)
        return evals[a]

    close = [a for a, k in evals.items() if a > 0 and abs(k - target) <= tol * target]
    if close:
        a = min(close, key=lambda a: abs(evals[a] - target))
        return a, evals[a], True, ""
    above = [a for a, k in evals.items() if k >= target]
    hi = min(above) if above else None
    a = max(start, max(evals))
    while hi is None:  # expand the bracket: at least x2, more when the KL is far below the target
        if a > alpha_max:
            best = max(evals, key=lambda x: evals[x])
            return (
                best,
                evals[best],
                False,
                (f"unreachable: KL reached at most {evals[best]:.4g} for |alpha| <= {alpha_max:.4g}"),
            )
        k = f(a)
        if k >= target:
            hi = a
        else:
            a *= min(16.0, max(2.0, 1.25 * math.sqrt(target / k))) if k > 0 else 16.0
    lo = max([a for a, k in evals.items() if a < hi and k < target], default=0.0)
    for _ in range(max_iter):
        mid = _next_alpha(lo, evals[lo], hi, evals[hi], target)
        k = f(mid)
        if abs(k - target) <= tol * target:
            return mid, k, True, ""
        lo, hi = (mid, hi) if k < target else (lo, mid)
    best = min((a for a in evals if a > 0), key=lambda a: abs(evals[a] - target))
    return best, evals[best], False, f"not within tolerance after {max_iter} bisection steps"


def calibrate_alpha(
    model: LoadedModel,
    direction: Float[torch.Tensor, "D"],
    site: str,
    kl_targets: Sequence[float] = DEFAULT_KL_TARGETS,
    prompts: Sequence[str] | None = None,
    *,
    signs: Sequence[int] = (1, -1),
    tol: float = 0.05,
    max_iter: int = 20,
    alpha_start: float | None = None,
    alpha_max: float | None = None,
    batch_size: int = 32,
    kl: NextTokenKL | None = None,
    **steer_kw: Any,
) -> Calibration:
    """α per (sign, KL target) for steering ``direction`` at ``site`` (see the module docstring).

    ``prompts`` are the neutral prompts (default: the concept set's neutral sentences).
    ``alpha_start``/``alpha_max`` default to 1/8 and 64x the site's RMS activation norm over the
    prompts. ``steer_kw`` go to ``steer`` (positions, mode, normalize). Pass a prepared ``kl`` to
    reuse the base distribution across directions.
    """
    check_direction(model, direction, site)
    targets = sorted(float(t) for t in kl_targets)
    if not targets or any(not t > 0 for t in targets):
        raise ValueError(f"KL targets must be a non-empty list of positive numbers, got {list(kl_targets)}")
    if any(s not in (1, -1) for s in signs) or not signs:
        raise ValueError(f"signs must be a non-empty subset of (1, -1), got {signs}")
    if kl is None:
        if prompts is None:
            from interp.data.concepts import neutral_sentences

            prompts = neutral_sentences()
        kl = NextTokenKL(model, prompts, batch_size)
    if alpha_start is None or alpha_max is None:
        scale = _scale(kl, site)
        alpha_start = alpha_start or scale / 8
        alpha_max = alpha_max or scale * 64
    points, n, all_evals = [], 0, {}
    for sign in signs:
        evals: dict[float, float] = {0.0: 0.0}
        for t in targets:
            a, k, hit, note = _search(
                lambda a: kl(direction, site, sign * a, **steer_kw), t, evals, alpha_start, alpha_max, tol, max_iter
            )
            points.append(AlphaPoint(t, sign, sign * a, k, hit, note))
        n += len(evals) - 1
        all_evals[sign] = sorted(evals.items())
    return Calibration(points, tol, n, all_evals)


@torch.no_grad()
def _scale(kl: NextTokenKL, site: str) -> float:
    """RMS activation norm at ``site`` over the calibration prompts' tokens (pads and each row's
    first token, the BOS, left out: its activations are often outliers)."""
    sq = []
    for ids, mask in kl.batches:
        x = run_to_sites(kl.model, ids, [site], mask)[site].float()
        keep = mask.bool() & (mask.cumsum(-1) > 1)
        sq.append(x.pow(2).sum(-1)[keep if keep.any() else mask.bool()])
    return torch.cat(sq).mean().sqrt().item()
