"""SAEBench core metrics: sums against direct formulas, CE/KL against the reconstruction eval and a
per-sequence loop, and the JSON layout against SAEBench's published schema (and its own reader)."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from interp.data import load_text, tokenize
from interp.errors import DataError, MissingFileError
from interp.evals.quality.core import CoreTotals, core_output, max_cosine, read_core, write_core
from interp.evals.quality.passes import token_pass
from interp.evals.reconstruction import evaluate

SITE = "blocks.0.hook_resid_post"
HERE = Path(__file__).parent
# SAEBench 0.6.0, sae_bench/evals/core/eval_output.py and base_eval_output.py, transcribed by hand
SAEBENCH_TOP = {
    "eval_type_id",
    "eval_config",
    "eval_id",
    "datetime_epoch_millis",
    "eval_result_metrics",
    "eval_result_details",
    "sae_bench_commit_hash",
    "sae_lens_id",
    "sae_lens_release_id",
    "sae_lens_version",
    "sae_cfg_dict",
    "eval_result_unstructured",
}
SAEBENCH_METRICS = {
    "model_behavior_preservation": {"kl_div_score", "kl_div_with_ablation", "kl_div_with_sae"},
    "model_performance_preservation": {
        "ce_loss_score",
        "ce_loss_with_ablation",
        "ce_loss_with_sae",
        "ce_loss_without_sae",
    },
    "reconstruction_quality": {"explained_variance", "explained_variance_legacy", "mse", "cossim"},
    "shrinkage": {"l2_norm_in", "l2_norm_out", "l2_ratio", "relative_reconstruction_bias"},
    "sparsity": {"l0", "l1"},
    "token_stats": {"total_tokens_eval_reconstruction", "total_tokens_eval_sparsity_variance"},
    "misc_metrics": {
        "freq_over_1_percent",
        "freq_over_10_percent",
        "normalized_freq_over_1_percent",
        "normalized_freq_over_10_percent",
        "average_max_encoder_cosine_sim",
        "average_max_decoder_cosine_sim",
        "frac_alive",
    },
}
SAEBENCH_FEATURE = {
    "index",
    "feature_density",
    "consistent_activation_heuristic",
    "encoder_bias",
    "encoder_norm",
    "encoder_decoder_cosine_sim",
    "max_decoder_cosine_sim",
    "max_encoder_cosine_sim",
}


def test_totals_match_direct_formulas():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 8, generator=g) + 1.0
    x_hat = x + 0.3 * torch.randn(60, 8, generator=g)
    codes = torch.relu(torch.randn(60, 5, generator=g) - 0.5)
    seq = torch.arange(60) // 10
    tot = CoreTotals(5)
    tot.add_acts(x[:30], x_hat[:30], codes[:30], seq[:30])
    tot.add_acts(x[30:], x_hat[30:], codes[30:], seq[30:])
    tot.add_loss(1.0, 2.0, 4.0, 0.5, 2.0, 1)
    m = tot.metrics()
    X, Xh, C = x.double().numpy(), x_hat.double().numpy(), codes.double().numpy()
    assert m["reconstruction_quality"]["explained_variance"] == pytest.approx(
        1 - ((X - Xh) ** 2).sum() / ((X - X.mean(0)) ** 2).sum(), rel=1e-9
    )
    legacy = [
        1 - ((b - bh) ** 2).sum(1) / ((b - b.mean(0)) ** 2).sum(1) for b, bh in ((X[:30], Xh[:30]), (X[30:], Xh[30:]))
    ]
    assert m["reconstruction_quality"]["explained_variance_legacy"] == pytest.approx(np.concatenate(legacy).mean())
    cos = (X * Xh).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(Xh, axis=1)
    assert m["reconstruction_quality"]["cossim"] == pytest.approx(cos.mean())
    assert m["shrinkage"]["l2_ratio"] == pytest.approx((np.linalg.norm(Xh, axis=1) / np.linalg.norm(X, axis=1)).mean())
    assert m["shrinkage"]["relative_reconstruction_bias"] == pytest.approx(
        (np.linalg.norm(Xh, axis=1) ** 2).mean() / (X * Xh).sum(1).mean()
    )
    assert m["sparsity"]["l0"] == pytest.approx((C != 0).sum(1).mean())
    assert m["sparsity"]["l1"] == pytest.approx(np.abs(C).sum(1).mean())
    assert m["model_performance_preservation"]["ce_loss_score"] == pytest.approx((4 - 2) / (4 - 1))
    assert m["model_behavior_preservation"]["kl_div_score"] == pytest.approx((2 - 0.5) / 2)
    d = tot.feature_details()
    fires = (C != 0).sum(0)
    per_seq = np.array([[(C[seq.numpy() == s, f] != 0).any() for f in range(5)] for s in range(6)]).sum(0)
    np.testing.assert_allclose(d["feature_density"].numpy(), fires / 60)
    np.testing.assert_allclose(d["consistent_activation_heuristic"].numpy(), fires / np.maximum(per_seq, 1))
    dens = fires / 60
    assert m["misc_metrics"]["freq_over_10_percent"] == pytest.approx((dens > 0.1).mean())
    assert m["misc_metrics"]["normalized_freq_over_10_percent"] == pytest.approx(dens[dens > 0.1].sum() / dens.sum())


def test_max_cosine_against_dense_matrix():
    rows = torch.randn(37, 6, generator=torch.Generator().manual_seed(1))
    u = F.normalize(rows.double(), dim=-1)
    sims = u @ u.T
    sims.fill_diagonal_(-2)
    torch.testing.assert_close(max_cosine(rows, chunk=5), sims.max(1).values)


def _kl_ablation_reference(model, tokens, special):
    """KL(clean || zero-ablated) per scored target, one sequence at a time."""
    total, n = 0.0, 0
    for row, sp in zip(tokens, special):
        row, keep = row[None], ~sp
        clean = model.bridge.run_with_hooks(row)
        abl = model.bridge.run_with_hooks(
            row, fwd_hooks=[(SITE, lambda a, hook, keep=keep: a * (~keep)[None, :, None])]
        )
        p, q = F.log_softmax(clean[0, :-1].float(), -1), F.log_softmax(abl[0, :-1].float(), -1)
        scored = keep[1:]
        total += (p.exp() * (p - q)).sum(-1)[scored].sum().item()
        n += int(scored.sum())
    return total / n


def test_token_pass_agrees_with_reconstruction_eval(tiny_model, tiny_corpus, linear_decomposer):
    dec = linear_decomposer()
    want = evaluate(
        dec, tiny_model, SITE, text_spec=tiny_corpus, n_tokens=1024, seq_len=64, batch_size=4, progress=False
    )
    text = tokenize(load_text(tiny_corpus, shuffle_seed=1), tiny_model.tokenizer, 64, 1024)
    (tot,), _ = token_pass(tiny_model, [dec], [SITE], text.tokens, text.special_mask(), batch_size=4, progress=False)
    m = tot.metrics()
    assert m["model_performance_preservation"]["ce_loss_score"] == pytest.approx(want["ce_loss_recovered"], rel=1e-6)
    assert m["model_behavior_preservation"]["kl_div_with_sae"] == pytest.approx(want["kl"], rel=1e-6)
    assert m["reconstruction_quality"]["explained_variance"] == pytest.approx(want["explained_variance"], rel=1e-6)
    assert m["sparsity"]["l0"] == pytest.approx(want["l0"])
    ref = _kl_ablation_reference(tiny_model, torch.from_numpy(text.tokens), torch.from_numpy(text.special_mask()))
    assert m["model_behavior_preservation"]["kl_div_with_ablation"] == pytest.approx(ref, rel=1e-4)


def _sample_output(linear_decomposer):
    dec = linear_decomposer()
    tot = CoreTotals(48)
    x = torch.randn(40, 64, generator=torch.Generator().manual_seed(2))
    tot.add_acts(x, dec.reconstruct(x).detach(), dec.encode(x).detach(), torch.arange(40) // 8)
    tot.add_loss(3.0, 3.5, 6.0, 0.1, 1.0, 40)
    return core_output(tot, dec, model="tiny-llama", site=SITE, dataset="t", context_size=8, batch_size=5, name="lin")


def test_written_file_has_saebench_layout_and_reads_back(tmp_path, linear_decomposer):
    out = _sample_output(linear_decomposer)
    path = write_core(out, tmp_path / "core")
    assert path.name == "interp_lin_eval_results.json"
    data = json.loads(path.read_text())
    assert set(data) == SAEBENCH_TOP and data["eval_type_id"] == "core"
    assert {k: set(v) for k, v in data["eval_result_metrics"].items()} == SAEBENCH_METRICS
    assert len(data["eval_result_details"]) == 48 and set(data["eval_result_details"][0]) == SAEBENCH_FEATURE
    na = data["eval_result_unstructured"]["not_applicable"]
    assert "encoder_norm" in na and data["eval_result_details"][0]["encoder_norm"] == -1.0
    flat = read_core(path)
    assert flat["source"] == "interp" and flat["d_sae"] == 48 and flat["hook_name"] == SITE
    assert flat["ce_loss_score"] == pytest.approx((6 - 3.5) / (6 - 3))


def test_reads_a_file_written_by_saebench():
    flat = read_core(HERE / "saebench_core_sample_eval_results.json")  # made by scripts/saebench_check.py
    assert flat["source"] == "saebench" and flat["l0"] == 32.0 and flat["ce_loss_score"] == 0.8
    assert flat["sae_class"] == "topk"


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(MissingFileError):
        read_core(tmp_path / "nope_eval_results.json")
    data = json.loads((HERE / "saebench_core_sample_eval_results.json").read_text())
    del data["eval_result_metrics"]["shrinkage"]["l2_ratio"]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="l2_ratio"):
        read_core(tmp_path / "bad.json")


SAEBENCH_PY = os.environ.get("INTERP_SAEBENCH_PYTHON", "runs/saebench-venv/bin/python")


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(SAEBENCH_PY).is_file(),
    reason="SAEBench's environment is not installed "
    "(python -m venv runs/saebench-venv && runs/saebench-venv/bin/pip install sae-bench)",
)
def test_saebench_own_reader_accepts_our_file(tmp_path, linear_decomposer):
    path = write_core(_sample_output(linear_decomposer), tmp_path / "core")
    script = Path(__file__).parents[3] / "scripts" / "saebench_check.py"
    done = subprocess.run(
        [SAEBENCH_PY, str(script), str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["valid"] == "CoreEvalOutput" and got["n_feature_details"] == 48
    assert got["ce_loss_score"] == pytest.approx((6 - 3.5) / (6 - 3))
