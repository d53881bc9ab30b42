"""Reproductions of the two SAE papers on planted features (``interp.evals.synthetic``).

- ``gba``: Chen et al. 2025 (GBA), synthetic feature recovery, n = 128, d = 42, s = 3 or 20: the
  paper's FRR table (TopK K = 20/30/50, GBA with the full frequency range and with a wrong one,
  which the sources do not give: one range below the features' frequency and one above) on two data
  models: samples scaled to unit norm (``sample_norm``: the input scale the paper's [-1, 0] bias
  clamp assumes, and the closest found to the paper's TopK column) and unnormalised samples; the
  sanity setting d = 84 (TopK K = 20 should recover every feature); and the paper's claim that
  bias adaptation removes the learning-rate sensitivity: recovery against Adam's learning rate for
  BA and GBA (each at its defaults) and for TopK at matched sparsity, read three ways (k = the
  data's mean number of active features; k = the smallest s of a mixture; k = BA's or GBA's own
  L0), on the two planted settings of
  ``configs/experiments/bench_synthetic_lr{_sparse,}.yaml`` (B: n = 64, d = 42, s = 3; A: the
  paper's mixture; 20 passes over 20,000 samples; the full table of every method is ``interp
  bench synthetic`` on those configs).
- ``topafa``: Lee et al. 2025 (top-AFA): the headline claim is the lowest NMSE on GPT-2 small's
  FVU-L0 frontier without tuning k. GPT-2 is not available here, so this measures the same
  comparison (top-AFA's lambda sweep against TopK's k sweep, same budget) on planted data.
"""

from __future__ import annotations

import numpy as np

from interp.evals.reproduce.report import Report
from interp.evals.synthetic import benchmark

PAPER_DATA = {"n_features": 128, "d": 42, "sparsity": ((0.5, 3), (0.5, 20))}
GBA_PUBLISHED = {
    "TopK K=20": (1.0, 0.984),
    "TopK K=30": (0.984, 0.242),
    "TopK K=50": (0.945, 0.234),
    "GBA": (1.0, 1.0),
    # the sources do not say which range the paper's "wrong frequency range" was: one below the
    # features' frequency (0.09) and one above it are both compared with its row
    "GBA (wrong range 0.01-1e-4, below f)": (0.383, 0.039),
    "GBA (wrong range 0.3-0.15, above f)": (0.383, 0.039),
}


def _sizes(quick: bool) -> tuple[dict, dict, list[int]]:
    if quick:
        return (
            {**PAPER_DATA, "n_samples": 2000},
            {
                "d_sae": 128,
                "batch_size": 256,
                "n_tokens": 5_000,
                "optimizer": "adam",
                "wandb": "disabled",
                "device": "cpu",
            },
            [0],
        )
    return (
        {**PAPER_DATA, "n_samples": 100_000},
        {
            "d_sae": 1024,
            "batch_size": 512,
            "n_tokens": 3_000_000,
            "optimizer": "adam",
            "wandb": "disabled",
            "device": "cpu",
        },
        [0, 1, 2],
    )


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# the sparser setting of the learning-rate table (configs/experiments/bench_synthetic_lr_sparse.yaml)
SPARSE_DATA = {"n_features": 64, "d": 42, "sparsity": ((1.0, 3),)}
SENSITIVITY_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


def _sensitivity(quick: bool) -> tuple[str, dict[str, list[str]]]:
    """Recovery at tau 0.9 against the learning rate on each planted setting (quick: a small one;
    full: B, the sparser setting, and A, the GBA paper's mixture): markdown tables, and for each
    reading of "TopK at matched sparsity" the settings and learning rates where that TopK recovers
    >= 90% and BA or GBA does not. The readings: k = the data's mean number of active features
    (rounded; on A, 11.5 -> 12); k = the smallest s of a mixture (A: 3; on a single-s setting the
    same TopK as the first); k = BA's or GBA's own L0 at that learning rate."""
    if quick:
        small = {"n_features": 32, "d": 16, "sparsity": ((1.0, 2),), "n_samples": 2000}
        train = {"d_sae": 128, "batch_size": 256, "n_tokens": 10_000, "optimizer": "adam"}
        settings, lrs = {"small": small}, (1e-2,)
    else:
        train = {"d_sae": 1024, "batch_size": 512, "n_tokens": 400_000, "optimizer": "adam"}
        settings = {"B": {**SPARSE_DATA, "n_samples": 20_000}, "A": {**PAPER_DATA, "n_samples": 20_000}}
        lrs = SENSITIVITY_LRS
    train |= {"wandb": "disabled", "device": "cpu"}
    tables, gaps = [], {reading: [] for reading in READINGS}
    for name, data in settings.items():
        table, missed = _sensitivity_on(name, data, train, lrs)
        tables.append(table)
        for reading in gaps:
            gaps[reading] += missed[reading]
    return "\n\n".join(tables), gaps


# each reading of "TopK at matched sparsity" -> the row of _sensitivity_on's results it compares with
READINGS = {
    "k = the data's mean L0": "TopK k=mean",
    "k = the smallest s": "TopK k=min",
    "k = their own L0": "TopK at {name}'s L0",
}


def _sensitivity_on(setting: str, data: dict, train: dict, lrs: tuple[float, ...]) -> tuple[str, dict[str, list[str]]]:
    """One setting's table and gaps (see ``_sensitivity``)."""
    k_min = min(count for _, count in data["sparsity"])
    k_mean = max(1, round(sum(frac * count for frac, count in data["sparsity"])))

    def run(specs: dict[tuple[str, float], dict]) -> dict[tuple[str, float], dict]:
        rows = benchmark(
            [{**v, "label": repr(k), "lr": k[1]} for k, v in specs.items()], [0], data, train, progress=False
        )
        return {key: row for key, row in zip(specs, rows)}

    # TopK at the data's sparsity: one row where the setting has one s, two on a mixture
    topk = {"TopK k=mean": (k_mean, "the data's s" if k_min == k_mean else "the data's mean L0")}
    if k_min != k_mean:
        topk["TopK k=min"] = (k_min, "the smallest s")
    base = {label: {"method": "topk", "k": k} for label, (k, _) in topk.items()}
    base |= {"BA": {"method": "ba"}, "GBA": {"method": "gba"}}
    res = run({(label, lr): spec for label, spec in base.items() for lr in lrs})
    # TopK at each variant's own L0 at that learning rate (one run per distinct k)
    ks = {(name, lr): max(1, round(res[name, lr]["l0"])) for name in ("BA", "GBA") for lr in lrs}
    by_k = run({(f"TopK k={k}", lr): {"method": "topk", "k": k} for (_, lr), k in ks.items()})
    for (name, lr), k in ks.items():
        res[f"TopK at {name}'s L0", lr] = by_k[f"TopK k={k}", lr] | {"k": k}
    for lr in lrs:
        res.setdefault(("TopK k=min", lr), res["TopK k=mean", lr])

    def cell(label: str, lr: float) -> str:
        r = res[label, lr]
        return _pct(r["frr@0.9"]) + (f" (k {r['k']})" if "k" in r else f" (L0 {r['l0']:.0f})")

    names = {label: f"TopK k={k} ({why})" for label, (k, why) in topk.items()}
    names |= {label: label for label in ("TopK at BA's L0", "TopK at GBA's L0", "BA", "GBA")}
    mix = " or ".join(str(count) for _, count in data["sparsity"])
    lines = [
        f"Setting {setting}: recovery at tau 0.9 against Adam's learning rate (n = {data['n_features']}, "
        f"d = {data['d']}, s = {mix}, {train['n_tokens'] // data['n_samples']} passes over "
        f"{data['n_samples']} samples, seed 0):",
        "",
        "| method | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
        "|---|" + "---|" * len(lrs),
    ]
    lines += [f"| {name} | " + " | ".join(cell(label, lr) for lr in lrs) + " |" for label, name in names.items()]
    gaps = {
        reading: [
            f"{name} at lr {lr:g} on {setting}"
            for name in ("BA", "GBA")
            for lr in lrs
            if res[ref.format(name=name), lr]["frr@0.9"] >= 0.9 and res[name, lr]["frr@0.9"] < 0.9
        ]
        for reading, ref in READINGS.items()
    }
    return "\n".join(lines), gaps


def gba(quick: bool) -> Report:
    raw, train, seeds = _sizes(quick)
    data = {**raw, "sample_norm": True}
    methods = [{"label": f"TopK K={k}", "method": "topk", "k": k, "lr": 1e-3} for k in (20, 30, 50)]
    methods.append({"label": "GBA", "method": "gba", "update_every": 2, "lr": 0.05})
    methods += [
        {"label": label, "method": "gba", "update_every": 2, "htf": htf, "ltf": ltf, "lr": 0.05}
        for label, htf, ltf in (
            ("GBA (wrong range 0.01-1e-4, below f)", 0.01, 1e-4),
            ("GBA (wrong range 0.3-0.15, above f)", 0.3, 0.15),
        )
    ]
    rep = Report(
        "Chen et al. 2025, Taming Polysemanticity (GBA): synthetic feature recovery",
        quick,
        {"data": data, "control_data": raw, "train": train, "methods": methods},
        seeds,
    )
    # the data model the paper leaves open: every row on unit-norm and on unnormalised samples
    results = {
        "unit-norm samples": benchmark(methods, seeds, data, train, progress=False),
        "unnormalised samples": benchmark(methods, seeds, raw, train, progress=False),
    }
    sanity = benchmark(
        [{"label": "TopK K=20, d=84", "method": "topk", "k": 20, "lr": 1e-3}],
        seeds,
        {**data, "d": 84},
        train,
        progress=False,
    )[0]
    off: dict[str, list[str]] = {model: [] for model in results}
    for model, rows in results.items():
        for r in rows:
            for tau, p in zip((0.8, 0.9), GBA_PUBLISHED[r["label"]]):
                ours = r[f"frr@{tau}"]
                rep.add(
                    f"{r['label']} FRR at tau {tau}, {model}",
                    _pct(p),
                    f"{_pct(ours)} (worst seed {_pct(r[f'frr@{tau}_min'])})",
                    f"L0 {r['l0']:.1f}, FVU {r['fvu']:.3f}",
                )
                if abs(ours - p) > 0.1:
                    off[model].append(f"{r['label']} at {tau}")
    rep.add(
        "sanity: TopK K=20 at d = 84, FRR at tau 0.9",
        "(expected 100%)",
        f"{_pct(sanity['frr@0.9'])} (worst seed {_pct(sanity['frr@0.9_min'])})",
        f"L0 {sanity['l0']:.1f}, FVU {sanity['fvu']:.3f}",
    )
    table, gaps = _sensitivity(quick)
    rep.tables.append(table)
    for reading, missed in gaps.items():
        rep.add(
            f"BA/GBA recover wherever TopK at {reading} does (lr 1e-4 .. 1e-2, settings A and B)",
            "yes (the paper's claim: no sensitivity to hyperparameters)",
            "yes" if not missed else "no: " + ", ".join(missed),
            "table below",
        )
    rep.reading = (
        "; ".join(
            f"{model}: "
            + (
                "every published FRR matched within 10 points"
                if not missed
                else "not within 10 points: " + ", ".join(missed)
            )
            for model, missed in off.items()
        )
        + " (the paper's data model is only partly known: see interp/evals/synthetic.py)"
    )
    return rep


def _frontier_gap(topk: list[tuple[float, float]], l0: float, fvu: float) -> float | None:
    """top-AFA's FVU minus TopK's FVU interpolated (in log L0) at the same L0; None outside the sweep."""
    pts = sorted(topk)
    xs, ys = np.log([p[0] for p in pts]), [p[1] for p in pts]
    if not xs[0] <= np.log(l0) <= xs[-1]:
        return None
    return fvu - float(np.interp(np.log(l0), xs, ys))


def topafa(quick: bool) -> Report:
    data, train, seeds = _sizes(quick)
    train = {**train, "lr": 1e-3}
    # top-AFA picks L0 ~ 3.8 d on this data (k_max is 4 d); TopK k = 160 puts that L0 inside the sweep
    ks = (3, 10, 20, 40, 160) if not quick else (3, 20)
    lams = (1 / 128, 1 / 32, 1 / 16) if not quick else (1 / 32,)
    methods = [{"label": f"TopK k={k}", "method": "topk", "k": k} for k in ks]
    methods += [{"label": f"top-AFA lambda={lam:.4g}", "method": "topafa", "lambda_afa": lam} for lam in lams]
    rep = Report(
        "Lee et al. 2025, top-AFA (FVU-L0 frontier against TopK at the same budget)",
        quick,
        {"data": data, "train": train, "methods": methods},
        seeds,
    )
    rows = benchmark(methods, seeds, data, train, progress=False)
    topk = [(r["l0"], r["fvu"]) for r in rows if r["label"].startswith("TopK")]
    gaps = []
    for r in rows:
        note = ""
        if r["label"].startswith("top-AFA"):
            gap = _frontier_gap(topk, r["l0"], r["fvu"])
            note = "outside TopK's L0 range" if gap is None else f"FVU - TopK's at this L0: {gap:+.3g}"
            gaps.append(gap)
        rep.add(
            f"{r['label']}: L0 / FVU",
            "GPT-2 L6: top-AFA 2037 / 1.64e-4 (lambda 1/32); TopK k=1024 1023 / 1.74e-4",
            f"{r['l0']:.1f} / {r['fvu']:.3g}",
            note,
        )
    known = [g for g in gaps if g is not None]
    rep.reading = (
        "published numbers are on GPT-2 small (not available here); on planted data top-AFA is "
        + (
            "below TopK's frontier"
            if known and max(known) < 0
            else "on or above TopK's frontier"
            if known
            else "outside TopK's L0 range"
        )
        + " at the L0 it picks itself"
        + _past_width(rows, data["d"])
    )
    return rep


def _past_width(rows: list[dict], d: int) -> str:
    """A remark when top-AFA's L0 exceeds the input width, where any SAE reconstructs almost exactly."""
    l0 = max(r["l0"] for r in rows if r["label"].startswith("top-AFA"))
    if l0 <= d:
        return ""
    return f" (its L0, up to {l0:.0f}, exceeds the input width d = {d}: past d every code reconstructs almost exactly)"
