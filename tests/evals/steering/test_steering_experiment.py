"""The method comparison's pieces: AUROC and feature selection against direct computations, the
summary's miss counting, and a miniature end-to-end run on the tiny model with the report written."""

import json

import pytest
import torch

from interp.evals.steering.experiment import SteerExperimentConfig, auroc, run_experiment, select_feature, summarise
from interp.evals.steering.report import write_report


def test_auroc_matches_pairwise_count():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randint(0, 4, (7, 5), generator=g).float(), torch.randint(0, 4, (9, 5), generator=g).float()
    got = auroc(pos, neg)
    for f in range(5):
        wins = sum((p > n) + 0.5 * (p == n) for p in pos[:, f].tolist() for n in neg[:, f].tolist())
        assert got[f].item() == pytest.approx(wins / (7 * 9))


def test_select_feature_finds_planted_feature():
    g = torch.Generator().manual_seed(1)
    pos, neg = torch.rand(10, 50, generator=g), torch.rand(20, 50, generator=g)
    pos[:, 17] += 2.0  # separates perfectly
    pos[:, 3] += 0.5
    f, a, d = select_feature(pos, neg)
    assert f == 17 and a == 1.0 and d > 0
    pos2, neg2 = torch.zeros(4, 3), torch.zeros(6, 3)
    pos2[:, 1], pos2[:, 2] = 1.0, 5.0  # two perfect separators: the larger effect wins
    pos2[0, 2] = 0.5
    assert select_feature(pos2, neg2)[0] == 1  # smaller spread, larger standardised difference


def test_summarise_counts_misses_and_keeps_them():
    recs = [
        {
            "method": "m",
            "sign": 1,
            "target": 0.1,
            "hit": h,
            "concept_score": [0.5, 0.7] if h else None,
            "fluency": [1.0, 0.8] if h else None,
            "combined": [0.6, 0.7] if h else None,
            "output_score": 0.01,
            "perplexity": [5.0, 7.0],
            "selection_auroc": 0.9,
            "concept": c,
        }
        for c, h in (("a", True), ("b", False), ("c", True))
    ]
    (row,) = summarise({"records": recs}, n_boot=200)
    assert row["n"] == 3 and row["misses"] == 1
    assert row["concept"][0] == pytest.approx(0.6) and row["combined"][0] == pytest.approx(0.65)


def test_miniature_run_end_to_end(tiny_model, tmp_path, monkeypatch, keyword_judge):
    from interp.decomposers.sae import TopKConfig, TopKSAE
    from interp.evals.steering import judge as llm_judge

    calls = []
    monkeypatch.setattr(
        llm_judge,
        "http_transport",
        lambda: (
            lambda url, payload, headers: (
                calls.append(url) or {"choices": [{"message": {"content": "Fine. Rating: [[2]]"}}]}
            )
        ),
    )

    sae = TopKSAE(TopKConfig(d_in=tiny_model.d_model, d_sae=16, k=4, site="blocks.1.hook_mlp_out"))
    cfg = SteerExperimentConfig(
        model="tiny-llama",
        layer=1,
        n_concepts=2,
        methods=("diffmeans", "sae"),
        kl_targets=(0.002, 1e3),
        steer_prompts=("I think",),
        samples_per_prompt=2,
        max_new_tokens=4,
        n_select_neutral=6,
        max_iter=8,
        tol=0.2,
        n_boot=50,
        llm_judge={"base_url": "http://judge.invalid/v1", "model": "stub"},
    )
    result = run_experiment(
        tiny_model, {"diffmeans": None, "sae": sae}, cfg, keyword_judge(tuple("aeiou"), 1.0), progress=False
    )
    recs = result["records"]
    assert len(recs) == 2 * 2 * 2  # methods x concepts x targets, misses included
    assert all(not r["hit"] for r in recs if r["target"] == 1e3)
    hits = [r for r in recs if r["hit"]]
    assert hits and all(len(r["generations"]) == 2 and len(r["combined"]) == 2 for r in hits)
    assert all(
        r["success"] == [float(c >= 0.5 and f >= 0.5) for c, f in zip(r["concept_score"], r["fluency"])] for r in hits
    )
    assert all(r["feature"] is not None for r in recs if r["method"] == "sae")
    rows = summarise(result, n_boot=50)
    assert {(r["method"], r["kl_target"]) for r in rows} == {(m, t) for m in ("diffmeans", "sae") for t in (0.002, 1e3)}
    assert calls and set(calls) == {"http://judge.invalid/v1/chat/completions"}
    assert all(r["llm_combined"][0] == 2.0 for r in rows if r["kl_target"] == 0.002)
    assert all(0 <= r["success"][0] <= 1 for r in rows if r["kl_target"] == 0.002)
    paths = write_report(tmp_path, result, rows, {"concept": 0.0, "fluency": 1.0, "perplexity": 3.0})
    assert json.loads(paths["results"].read_text())["summary"][0]["method"] == "diffmeans"
    assert "| diffmeans | + | 0.002 |" in paths["table"].read_text() and "LLM judge" in paths["table"].read_text()
    assert paths["plot"].stat().st_size > 1000 and "## sae" in paths["examples"].read_text()
