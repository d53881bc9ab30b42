"""Talking Heads (Merullo, Eickhoff & Pavlick, NeurIPS 2024): composition outliers and the Laundry List.

The paper's checks are on GPT-2 small and Pythia, whose weights ship in no package this project
can install (see the issue-21 report); the same analysis runs on the built-in SmolLM2-135M (full)
or the tiny random test model (quick: a smoke test of the code path). Measured: the largest
within-head z-score of a Q-composition score (the paper's outlier: 8.6 against 9.9 at ~5 sigma on
GPT-2) and the Laundry List accuracy at N = 3 (paper: 64% on GPT-2 before its intervention).
"""

from __future__ import annotations

from interp.evals.reproduce.report import Report


def heads(quick: bool) -> Report:
    import interp.models
    from interp.decomposers.heads.laundry_list import evaluate
    from interp.decomposers.heads.laundry_prompts import make_prompts
    from interp.decomposers.heads.svd import HeadSVD, all_composition_scores, outlier_zscores

    name, n_prompts = ("tiny-llama", 2) if quick else ("smollm2-135m", 250)
    rep = Report(
        "Merullo et al. 2024, Talking Heads (composition outliers, Laundry List)",
        quick,
        {"model": name, "prompts_per_length": n_prompts, "lengths": [3]},
        [0],
    )
    model = interp.models.load(name, device="cpu", attn_implementation="eager")
    z = outlier_zscores(all_composition_scores(HeadSVD.fit(model), "q")).nan_to_num(nan=float("-inf"))
    rep.add(
        "largest within-head z-score of a Q-composition score",
        "~5 sigma (GPT-2 small)",
        f"{z.max().item():.2f}",
        f"{name}, not GPT-2",
    )
    acc3 = evaluate(model, make_prompts(3, n_prompts, 0), batch_size=8, progress=False).accuracy()[3]
    rep.add(
        "Laundry List accuracy, N = 3 (before intervention)",
        "64% (GPT-2 small)",
        f"{100 * acc3:.1f}%",
        f"{name}, not GPT-2",
    )
    rep.add("after the intervention, N = 3", "86% (GPT-2 small)", "not run", "needs GPT-2's channel")
    rep.reading = "GPT-2 / Pythia weights are not available, so no published number is checked here"
    return rep
