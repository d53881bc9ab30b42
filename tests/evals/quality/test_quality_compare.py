"""The comparison end to end on the tiny model: two methods at two sites of one block, every file
written, the core files readable, not-applicable metrics explained; bad configs refused."""

import json

import pytest
import torch

from interp.decomposers.sae.topk import TopKConfig, TopKSAE
from interp.decomposers.semi_nmf import SNMF
from interp.decomposers.semi_nmf.model import SNMFConfig
from interp.errors import ConfigError
from interp.evals.quality import QualityConfig, compare, read_core


def _artifacts(tmp_path, model):
    torch.manual_seed(0)
    sae = TopKSAE(TopKConfig(d_in=model.d_model, d_sae=96, k=8, model="tiny-llama", site="blocks.1.hook_resid_mid"))
    sae.save(tmp_path / "topk")
    snmf = SNMF(SNMFConfig(d_in=model.d_mlp, rank=24, model="tiny-llama", site="blocks.1.mlp.hook_post"))
    snmf.W_dec.data = torch.randn(24, model.d_mlp).clamp_min(0)
    snmf.save(tmp_path / "snmf")
    return (str(tmp_path / "topk"), str(tmp_path / "snmf"))


@pytest.mark.slow
def test_compare_writes_one_table_for_all_methods(tmp_path, tiny_model, tiny_corpus):
    arts = _artifacts(tmp_path, tiny_model)
    cfg = QualityConfig(
        artifacts=arts,
        model="tiny-llama",
        out=str(tmp_path / "q"),
        text=tiny_corpus,
        n_tokens=1024,
        seq_len=64,
        batch_size=4,
        probing_sets=("concepts",),
        ks=(1, 5),
        autointerp_features=1,
        autointerp_candidates=24,
    )
    res = compare(cfg, progress=False)
    out = tmp_path / "q"
    for f in ("table.md", "table.csv", "results.json", "quality.png", "autointerp.csv", "autointerp.parquet"):
        assert (out / f).is_file(), f
    rows = res["results"]
    assert set(rows) == {"topk", "snmf"} and rows["snmf"]["site"] == "blocks.1.mlp.hook_post"
    for name in rows:
        flat = read_core(rows[name]["core_file"])
        assert flat["hook_name"] == rows[name]["site"] and flat["total_tokens_eval_reconstruction"] > 0
        assert set(rows[name]["probing"]["concepts"]) == {"top_1", "top_5", "raw"}
        assert "single-token words" in rows[name]["na"]["absorption"]  # the tiny tokenizer is bytes
    table = (out / "table.md").read_text()
    assert "n/a" in table and "Not applicable:" in table and "offline: all-MiniLM-L6-v2" in table
    import pandas as pd

    ai = pd.read_parquet(out / "autointerp.parquet")
    assert {"artifact", "feature", "explanation", "detection", "fuzzing", "explainer", "scorer"} <= set(ai.columns)
    assert json.loads((out / "results.json").read_text())["seconds"]["total"] > 0


def test_bad_configs_are_refused(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="give artifacts"):
        compare(QualityConfig())
    arts = _artifacts(tmp_path, tiny_model)
    with pytest.raises(ConfigError, match="unknown metrics"):
        compare(QualityConfig(artifacts=arts, metrics=("core", "vibes")))
    with pytest.raises(ConfigError, match="must differ"):
        compare(QualityConfig(artifacts=(arts[0], arts[0])))
