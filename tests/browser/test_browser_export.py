"""Export to SAEDashboard's batch JSON and Neuronpedia's bulk-import layout."""

import gzip
import json

import pytest

from interp.browser import FeatureStore, export_neuronpedia, export_saedashboard

ACTIVATION_KEYS = {"tokens", "values", "bin_min", "bin_max", "bin_contains", "qualifying_token_index"}
FEATURE_KEYS = {
    "feature_index",
    "pos_str",
    "pos_values",
    "neg_str",
    "neg_values",
    "frac_nonzero",
    "freq_hist_data_bar_values",
    "freq_hist_data_bar_heights",
    "logits_hist_data_bar_values",
    "logits_hist_data_bar_heights",
    "activations",
    "n_prompts_total",
    "n_tokens_in_prompt",
    "dataset",
    "vector",
}


@pytest.mark.parametrize("name", ["topk", "dense"])
def test_saedashboard_batches(name, browser_root, tmp_path):
    store = FeatureStore(browser_root / "stores" / name)
    out = export_saedashboard(store, tmp_path / "sd", batch_size=20)
    files = sorted(out.glob("batch-*.json"))
    assert len(files) == -(-store.n_features // 20)
    feats = [f for p in files for f in json.loads(p.read_text())["features"]]
    assert [f["feature_index"] for f in feats] == list(range(store.n_features))
    for f in feats:
        assert FEATURE_KEYS <= set(f)
        row = store.feature(f["feature_index"])
        assert abs(f["frac_nonzero"] - row["density"]) < 1e-9
        assert sum(f["freq_hist_data_bar_heights"]) == row["n_active"]
        assert len(f["activations"]) == row["ex_count"]
        for a in f["activations"]:
            assert ACTIVATION_KEYS <= set(a) and len(a["tokens"]) == len(a["values"])
            assert 0 <= a["qualifying_token_index"] < len(a["tokens"])
        assert len(f["vector"]) == store.manifest["d"]
        assert (len(f["pos_str"]) > 0) == store.has_vocab


def test_neuronpedia_layout(browser_root, tmp_path):
    store = FeatureStore(browser_root / "stores" / "topk")
    src = export_neuronpedia(store, tmp_path / "np", batch_size=50)
    assert src == tmp_path / "np" / "tiny-llama" / f"0-interp-topk-{store.n_features}"
    for name in ("release.jsonl", "model.jsonl", "sourceset.jsonl", "source.jsonl"):
        rows = [json.loads(line) for line in (src / name).read_text().splitlines()]
        assert len(rows) == 1
    assert json.loads((src / "source.jsonl").read_text())["id"] == src.name
    feats = [
        json.loads(line)
        for p in sorted((src / "features").glob("*.jsonl.gz"))
        for line in gzip.decompress(p.read_bytes()).decode().splitlines()
    ]
    acts = [
        json.loads(line)
        for p in sorted((src / "activations").glob("*.jsonl.gz"))
        for line in gzip.decompress(p.read_bytes()).decode().splitlines()
    ]
    assert sorted(int(f["index"]) for f in feats) == list(range(store.n_features))
    f0 = next(f for f in feats if f["index"] == "0")
    assert f0["hookName"] == "blocks.0.hook_resid_pre" and f0["hasVector"] and f0["layer"] == src.name
    assert f0["topkCosSimIndices"] == store.feature(0)["similar"]
    assert len(acts) == sum(store.features["ex_count"].to_pylist())
    a = next(a for a in acts if a["index"] == "0")
    assert {
        "maxValue",
        "maxValueTokenIndex",
        "minValue",
        "binMin",
        "binMax",
        "binContains",
        "qualifyingTokenIndex",
        "tokens",
        "values",
        "modelId",
        "layer",
    } <= set(a)
    assert a["values"][a["maxValueTokenIndex"]] == a["maxValue"]
    assert a["tokens"][a["qualifyingTokenIndex"]] == "Q"
