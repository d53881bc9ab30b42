"""ITDA (Leask, Nanda & Al Moubayed, ICML 2025) on planted features.

The paper's numbers (SAEBench CE scores on Pythia / Gemma-2, layer matching on the Stanford-CRFM
GPT-2 seeds) need models not available here; they are listed as not run. What is measured: how
well ITDA's atoms (unit-normalised samples) recover planted directions, with one feature per
sample (atoms can be the features themselves) and in the GBA paper's setting (s = 3 or 20, where
every sample mixes several features), beside its held-out FVU and L0.
"""

from __future__ import annotations

from interp.evals.reproduce.report import Report
from interp.evals.synthetic import benchmark


def itda(quick: bool) -> Report:
    n = 1000 if quick else 100_000
    seeds = [0] if quick else [0, 1, 2]
    settings = {
        "one feature per sample": {"n_features": 128, "d": 42, "sparsity": ((1.0, 1),), "n_samples": n},
        "GBA setting (s = 3 or 20)": {"n_features": 128, "d": 42, "sparsity": ((0.5, 3), (0.5, 20)), "n_samples": n},
    }
    method = {"label": "ITDA", "method": "itda", "k": 8 if quick else 40, "cos_threshold": 0.85}
    rep = Report("Leask et al. 2025, ITDA (planted-feature recovery)", quick, {"data": settings, "itda": method}, seeds)
    rep.add(
        "layer matching, ITDA Jaccard (GPT-2 small / medium seeds)",
        "0.88 / 0.89",
        "not run",
        "needs the Stanford-CRFM GPT-2 seeds",
    )
    rep.add(
        "SAEBench CE score, 4k atoms, L0 40 (Pythia-70m L3 / Gemma-2-2B L12)",
        "0.94 / 0.76",
        "not run",
        "needs Pythia / Gemma-2",
    )
    frr = {}
    for name, data in settings.items():
        r = benchmark([method], seeds, data, {}, progress=False)[0]
        frr[name] = r["frr@0.9"]
        rep.add(
            f"{name}: FRR at tau 0.9 / held-out FVU / L0",
            "-",
            f"{100 * r['frr@0.9']:.1f}% / {r['fvu']:.3f} / {r['l0']:.1f}",
        )
    rep.reading = (
        f"atoms recover {100 * frr['one feature per sample']:.0f}% of planted features when samples are "
        f"single features and {100 * frr['GBA setting (s = 3 or 20)']:.0f}% when they mix several"
    )
    return rep
