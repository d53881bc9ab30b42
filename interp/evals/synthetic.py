"""Synthetic ground truth for dictionary learning: planted sparse features and their recovery.

``make_dataset`` draws ``x = sum_i h_i v_i (+ noise)`` with ``n`` known unit directions ``v_i`` in
``d`` dimensions (Gaussian, then normalised: the theory's model in Chen et al., "Taming
Polysemanticity in LLMs", 2025) and sparse non-negative coefficients ``h``: each sample draws its
number of active features ``s`` from a mixture (``sparsity``), picks ``s`` distinct features with
probabilities from a frequency spectrum (uniform or Zipf), and gives each a magnitude from
``coef_dist`` on ``coef_range``. The default is the GBA paper's imbalanced setting: n = 128,
d = 42, half the samples with 3 active features and half with 20 (mean frequency ~0.09). The
secondary sources confirm only n, d, the s mixture, Gaussian features and non-negative
coefficients; the coefficient distribution (``coef_dist``, ``coef_range``), the feature norms
(``feature_norm``), the noise (``noise``) and whether samples are scaled to unit norm
(``sample_norm``) are guesses, made parameters so they can be varied.

``recovery`` scores a learned dictionary: for every true direction, the best cosine over the
learned directions; the recovery rate at tau is the fraction of true directions whose best cosine
exceeds tau (the paper's FRR), and the mean max cosine summarises the whole curve.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from jaxtyping import Float

from interp.errors import ConfigError


_FEATURE_SALT, _SAMPLE_SALT = 0x5EED_F00D, 0x5EED_DA7A
COEF_DISTS = ("uniform", "constant", "exponential")


@dataclass(frozen=True)
class SyntheticData:
    x: Float[torch.Tensor, "N D"]
    directions: Float[torch.Tensor, "n D"]  # the planted unit directions v_i
    codes: torch.Tensor  # [N, n] sparse CSR: the coefficients h
    frequencies: Float[torch.Tensor, "n"]  # empirical fraction of samples where each feature is active


def _spectrum(n: int, spectrum: str | float) -> torch.Tensor:
    if spectrum == "uniform":
        return torch.ones(n)
    alpha = float(spectrum.split(":", 1)[1]) if isinstance(spectrum, str) else float(spectrum)
    return torch.arange(1, n + 1, dtype=torch.float64).pow(-alpha).float()  # Zipf with exponent alpha


def make_dataset(
    n_samples: int = 100_000,
    n_features: int = 128,
    d: int = 42,
    sparsity: tuple[tuple[float, int], ...] = ((0.5, 3), (0.5, 20)),
    spectrum: str | float = "uniform",
    coef_range: tuple[float, float] = (0.0, 1.0),
    noise: float = 0.0,
    seed: int = 0,
    feature_seed: int | None = None,
    coef_dist: str = "uniform",
    feature_norm: str = "unit",
    sample_norm: bool = False,
) -> SyntheticData:
    """Planted-feature data (see the module docstring).

    ``sparsity``: (weight, active count) pairs; each sample takes one count, in proportion to the
    weights. ``spectrum``: "uniform", or "zipf:ALPHA" / a number ALPHA for p_i ~ i^-ALPHA (features
    are then drawn without replacement in proportion to p_i). ``noise``: std of isotropic Gaussian
    noise added per coordinate. ``coef_dist``: "uniform" (on ``coef_range``), "constant" (every
    active coefficient is ``coef_range[1]``) or "exponential" (``low`` + Exp with mean ``high - low``).
    ``feature_norm``: "unit" (normalised Gaussian directions) or "gaussian" (rows of N(0, I/d),
    norms spread around 1; ``directions`` are still returned normalised). ``sample_norm``: True
    scales every sample to unit norm (its coefficients alike, so x = h V still holds), the input
    scale the paper's [-1, 0] bias clamp assumes. Everything comes from one seeded generator.
    """
    if coef_dist not in COEF_DISTS or feature_norm not in ("unit", "gaussian"):
        raise ConfigError(
            f"coef_dist must be one of {COEF_DISTS} (got {coef_dist!r}) and feature_norm "
            f"'unit' or 'gaussian' (got {feature_norm!r})"
        )
    if not isinstance(sample_norm, bool):
        raise ConfigError(f"sample_norm must be True or False, got {sample_norm!r}")
    if not sparsity or any(s < 1 or s > n_features for _, s in sparsity):
        raise ValueError(f"sparsity counts must lie in [1, n_features={n_features}], got {sparsity}")
    lo, hi = coef_range
    if lo < 0 or hi < lo:
        raise ValueError(f"coef_range must satisfy 0 <= low <= high, got {coef_range}")
    # offset seeds: an SAE initialised with torch.randn under the same seed must not start at V
    g_feat = torch.Generator().manual_seed(_FEATURE_SALT + (seed if feature_seed is None else feature_seed))
    V = torch.randn(n_features, d, generator=g_feat)
    g = torch.Generator().manual_seed(_SAMPLE_SALT + seed)
    V_unit = V / V.norm(dim=1, keepdim=True)
    V = V_unit if feature_norm == "unit" else V / d**0.5
    weights = torch.tensor([w for w, _ in sparsity], dtype=torch.float)
    counts = torch.tensor([s for _, s in sparsity])[torch.multinomial(weights, n_samples, True, generator=g)]
    s_max = int(counts.max())
    # Gumbel top-k: s distinct features per sample, drawn in proportion to the spectrum
    gumbel = -torch.log(-torch.log(torch.rand(n_samples, n_features, generator=g).clamp_min(1e-12)))
    idx = (_spectrum(n_features, spectrum).log() + gumbel).topk(s_max, dim=1).indices
    vals = _coefficients(coef_dist, lo, hi, (n_samples, s_max), g)
    keep = torch.arange(s_max) < counts[:, None]  # the first s of each row are used
    h = torch.zeros(n_samples, n_features).scatter_(1, idx, vals * keep)
    x = h @ V
    if noise > 0:
        x += noise * torch.randn(x.shape, generator=g)
    if sample_norm:
        scale = 1 / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        x, h = x * scale, h * scale
    active = torch.zeros(n_samples, n_features, dtype=torch.bool).scatter_(1, idx, keep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        codes = h.to_sparse_csr()
    return SyntheticData(x=x, directions=V_unit, codes=codes, frequencies=active.float().mean(0))


def _coefficients(dist: str, lo: float, hi: float, shape: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    if dist == "uniform":
        return lo + (hi - lo) * torch.rand(shape, generator=g)
    if dist == "constant":
        return torch.full(shape, float(hi))
    return lo + (hi - lo) * -torch.log(torch.rand(shape, generator=g).clamp_min(1e-12))


@dataclass(frozen=True)
class Recovery:
    rates: dict[float, float]  # tau -> fraction of true directions with max cosine > tau
    mean_max_cos: float
    max_cos: Float[torch.Tensor, "n"]  # per true direction, the best cosine over learned ones


@torch.no_grad()
def recovery(
    directions: Float[torch.Tensor, "F D"],
    true_directions: Float[torch.Tensor, "n D"],
    thresholds: tuple[float, ...] = (0.8, 0.9, 0.95),
) -> Recovery:
    """Feature recovery rate at each tau and the mean max cosine (signed cosines, rows normalised)."""
    if directions.shape[1] != true_directions.shape[1]:
        raise ValueError(
            f"width mismatch: learned directions have D={directions.shape[1]}, true ones D={true_directions.shape[1]}"
        )
    a = directions.double() / directions.double().norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = true_directions.double() / true_directions.double().norm(dim=1, keepdim=True).clamp_min(1e-12)
    best = (b @ a.T).max(dim=1).values
    rates = {float(t): (best > t).double().mean().item() for t in thresholds}
    return Recovery(rates=rates, mean_max_cos=best.mean().item(), max_cos=best.float())


FITTED = ("snmf", "itda")  # non-SAE methods the benchmark fits instead of training


def fit_method(spec: dict, train: dict, x: Float[torch.Tensor, "N D"], seed: int):
    """A decomposer of ``x``: the SAE trainer for SAE methods (``train`` settings under ``spec``'s),
    ``SNMF.fit`` for "snmf" (rank = ``d_sae`` unless given, dense features: sparsity 1.0 unless
    given) or ``ITDA.fit`` for "itda" (``spec``'s ITDA fields; ``train`` is not used)."""
    method, fields = spec["method"], {k: v for k, v in spec.items() if k != "method"}
    if method == "snmf":
        from interp.decomposers.semi_nmf import SNMF

        fields = {"rank": train.get("d_sae", 2 * x.shape[1]), "sparsity": 1.0, "device": "cpu", **fields}
        return SNMF.fit(x, seed=seed, progress=False, **fields)
    if method == "itda":
        from interp.decomposers.itda import ITDA

        labels = torch.stack([torch.arange(len(x)), torch.zeros(len(x), dtype=torch.long)], 1)
        bs = fields.pop("batch_size", 4096)
        pairs = ((x[a : a + bs], labels[a : a + bs]) for a in range(0, len(x), bs))
        return ITDA.fit(pairs, progress=False, **{"device": "cpu", **fields})
    from interp.decomposers.sae import train as train_sae

    return train_sae({**train, **spec, "seed": seed}, x, progress=False)


@torch.no_grad()
def _held_out(model, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(reconstruction, mean number of non-zero codes) of held-out samples."""
    codes = model.encode(x)
    if isinstance(codes, tuple):  # ITDA's SparseCodes(indices, values)
        return model.decode(codes), (codes[1] != 0).sum(1).float().mean().item()
    return model.decode(codes), (codes != 0).sum(1).float().mean().item()


def benchmark(
    methods: list[dict],
    seeds: list[int],
    data: dict,
    train: dict,
    thresholds: tuple[float, ...] = (0.8, 0.9, 0.95),
    progress: bool = True,
) -> list[dict]:
    """Fit each method (a dict: ``label``, ``method`` and config overrides, e.g. its own ``lr``) on
    ``make_dataset(**data, seed=s)`` for every seed (``fit_method``); one result row per method.

    Methods that are not registered in this build get a row saying so instead of failing the run.
    Rows hold the mean and spread over seeds of every recovery rate, the mean max cosine, and FVU
    and L0 (non-zero codes) on held-out samples of the same distribution, and the fit's seconds.
    """
    import time

    from tqdm.auto import tqdm

    from interp.decomposers import REGISTRY
    from interp.evals.reconstruction import fvu

    rows = []
    with warnings.catch_warnings():  # the trainer's multi-pass warning: the first fit's only
        for spec in methods:
            spec = dict(spec)
            label = spec.pop("label", spec.get("method", "?"))
            if spec.get("method") not in REGISTRY:
                rows.append(
                    {"label": label, "missing": f"method {spec.get('method')!r} is not registered in this build"}
                )
                continue
            runs = []
            for seed in tqdm(seeds, desc=label, disable=not progress):
                ds = make_dataset(**data, seed=seed)
                held = make_dataset(**{**data, "n_samples": 8192}, seed=seed + 10_000, feature_seed=seed)
                t0 = time.perf_counter()
                model = fit_method(spec, train, ds.x, seed)
                warnings.filterwarnings("ignore", message=r"n_tokens .* passes over", category=UserWarning)
                seconds = time.perf_counter() - t0
                x_hat, l0 = _held_out(model, held.x)
                rec = recovery(model.directions(), ds.directions, thresholds)
                runs.append(
                    {
                        **{f"frr@{t}": v for t, v in rec.rates.items()},
                        "mean_max_cos": rec.mean_max_cos,
                        "fvu": fvu(held.x, x_hat),
                        "l0": l0,
                        "seconds": seconds,
                    }
                )
            stats = {k: torch.tensor([r[k] for r in runs], dtype=torch.float64) for k in runs[0]}
            rows.append(
                {
                    "label": label,
                    "seeds": len(runs),
                    "runs": runs,
                    **{k: v.mean().item() for k, v in stats.items()},
                    **{f"{k}_min": v.min().item() for k, v in stats.items()},
                }
            )
    return rows


def format_table(rows: list[dict], thresholds: tuple[float, ...] = (0.8, 0.9, 0.95)) -> str:
    """A markdown table of ``benchmark`` rows: means over seeds, with the worst seed in brackets."""
    cols = [f"frr@{float(t)}" for t in thresholds] + ["mean_max_cos"]
    head = "| method | seeds | " + " | ".join(f"FRR τ={t}" for t in thresholds) + " | mean max cos | FVU | L0 |"
    lines = [head, "|" + "---|" * (len(thresholds) + 5)]
    for r in rows:
        if "missing" in r:
            lines.append(f"| {r['label']} | - | {r['missing']} |" + " |" * (len(thresholds) + 2))
            continue
        cells = [
            f"{100 * r[c]:.1f}% ({100 * r[c + '_min']:.1f})"
            if c != "mean_max_cos"
            else f"{r[c]:.4f} ({r[c + '_min']:.4f})"
            for c in cols
        ]
        lines.append(f"| {r['label']} | {r['seeds']} | " + " | ".join(cells) + f" | {r['fvu']:.3f} | {r['l0']:.1f} |")
    return "\n".join(lines)
