"""Store builds over the tiny Llama for decomposers of different shapes: statistics against a
direct computation, vocabulary projection, resume after an interruption, clear errors."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import interp.browser.build as build_mod
from interp.browser import FeatureStore, StoreError, build_store, resolve_under
from interp.data import load_text, tokenize
from interp.decomposers import load
from interp.models import vocab_projection

from .conftest import N_TOKENS, PLANTED_TOKEN, SEQ_LEN, STORE_OPTIONS

NAMES = ["topk", "dense", "dense_res", "snmf", "itda", "attn_svd/layer-00", "attn_svd/layer-01", "lib/node-0"]
SINK_RATIO = 5.0


def _artifact(root, name):
    """The decomposer a store was built from: the artifact, or its per-layer view."""
    dec = load(root / "artifacts" / name.split("/")[0])
    if name.startswith("attn_svd/"):
        return dec.view(layer=int(name.split("-")[1]))
    return dec


def _reference_sinks(x, special):
    """Per-row loop: the token after a leading BOS, and tokens whose norm is > SINK_RATIO x the
    (lower) median norm of the row's ordinary tokens."""
    out = torch.zeros_like(special)
    for r in range(x.shape[0]):
        norms = [float(x[r, s].float().norm()) for s in range(x.shape[1])]
        ordinary = sorted(n for n, sp in zip(norms, special[r].tolist()) if not sp)
        med = ordinary[(len(ordinary) - 1) // 2]
        for s, n in enumerate(norms):
            if not special[r, s] and ((s == 1 and special[r, 0]) or n > SINK_RATIO * med):
                out[r, s] = True
    return out


def _direct_codes(model, dec, corpus):
    """All codes [N, S, F] at once (special and sink tokens zeroed): the brute-force reference."""
    text = tokenize(load_text(corpus), model.tokenizer, SEQ_LEN, N_TOKENS)
    tokens = torch.from_numpy(text.tokens)
    _, cache = model.bridge.run_with_cache(tokens, names_filter=[dec.cfg.site])
    x = cache[dec.cfg.site].reshape(*tokens.shape, -1)
    with torch.no_grad():
        codes = dec.encode_dense(x.reshape(-1, x.shape[-1])).reshape(*tokens.shape, -1)
    special = torch.from_numpy(text.special_mask())
    skip = special | _reference_sinks(x, special)
    codes[skip] = 0
    return codes, text, skip


@pytest.mark.parametrize("name", NAMES)
def test_store_matches_direct_computation(name, browser_root, tiny_model, tiny_corpus):
    store = FeatureStore(browser_root / "stores" / name)
    dec = _artifact(browser_root, name)
    codes, text, skip = _direct_codes(tiny_model, dec, tiny_corpus)
    flat = codes.reshape(-1, codes.shape[-1])
    n_tok = int((~skip).sum())
    feats = store.features
    assert store.manifest["n_tokens"] == n_tok
    assert store.manifest["n_sinks"] == int(skip.sum()) - int(torch.from_numpy(text.special_mask()).sum())
    hist = np.stack(feats["hist_pos"].to_numpy(zero_copy_only=False)).sum(1) + np.stack(
        feats["hist_neg"].to_numpy(zero_copy_only=False)
    ).sum(1)
    active = (flat != 0).sum(0).numpy()
    assert (hist == active).all() and (hist + (n_tok - active) == n_tok).all()  # sums to token count
    np.testing.assert_allclose(feats["density"].to_numpy(), active / n_tok)
    np.testing.assert_allclose(feats["max"].to_numpy(), flat.max(0).values.numpy(), rtol=1e-5)
    k = STORE_OPTIONS["k"]
    ref = flat.masked_fill(flat <= 0, float("-inf")).T.topk(k, dim=1).values
    for f in range(store.n_features):
        ex = store.examples(f).to_pylist()
        top = [e for e in ex if e["kind"] == "top"]
        want = ref[f][torch.isfinite(ref[f])]
        torch.testing.assert_close(torch.tensor([e["value"] for e in top]).reshape(-1), want, rtol=1e-5, atol=1e-5)
        for e in ex:
            row, p = e["row"], e["pos"]
            a = p - e["token_index"]
            assert e["tokens"] == text.tokens[row, a : a + len(e["tokens"])].tolist()
            torch.testing.assert_close(
                torch.tensor(e["acts"]), codes[row, a : a + len(e["acts"]), f], rtol=1e-5, atol=1e-5
            )


def _independent_logits(model, dirs):
    hf = model.hf_model
    normed = hf.model.norm(dirs)  # Llama RMSNorm with its weight
    return normed @ hf.lm_head.weight.T


def test_vocab_projection_against_direct_computation(browser_root, tiny_model):
    for name, via in (("topk", "directions"), ("dense_res", "residual_directions")):
        store = FeatureStore(browser_root / "stores" / name)
        assert store.manifest["vocab_projection"] == {"status": "done", "via": via}
        dec = load(browser_root / "artifacts" / name)
        dirs = dec.directions() if name == "topk" else dec.residual_directions(tiny_model, 0)
        with torch.no_grad():
            logits = _independent_logits(tiny_model, dirs.float())
        k = STORE_OPTIONS["vocab_k"]
        top = logits.topk(k, dim=1)
        feats = store.features
        got_ids = np.stack(feats["vocab_top_ids"].to_numpy(zero_copy_only=False))
        got_logits = np.stack(feats["vocab_top_logits"].to_numpy(zero_copy_only=False))
        np.testing.assert_allclose(got_logits, top.values.numpy(), rtol=1e-4, atol=1e-5)
        assert (got_ids == top.indices.numpy()).mean() > 0.99  # ids may swap only on near-ties
        ref = vocab_projection(tiny_model, dirs.float(), k=k)  # the shared helper agrees
        np.testing.assert_allclose(got_logits, ref.top_logits.numpy(), rtol=1e-5, atol=1e-6)
        bottom = np.stack(feats["vocab_bottom_logits"].to_numpy(zero_copy_only=False))
        np.testing.assert_allclose(bottom, logits.topk(k, dim=1, largest=False).values.numpy(), rtol=1e-4, atol=1e-5)


def test_neuron_space_without_residual_directions_skips_projection(browser_root):
    store = FeatureStore(browser_root / "stores" / "dense")
    info = store.manifest["vocab_projection"]
    assert info["status"] == "skipped" and "residual_directions" in info["reason"]
    assert not store.has_vocab


def test_similar_features_and_search(browser_root):
    store = FeatureStore(browser_root / "stores" / "topk")
    dirs = store.directions()
    unit = dirs / dirs.norm(dim=1, keepdim=True)
    cos = unit @ unit.T
    cos.fill_diagonal_(-2)
    f = store.feature(5)
    assert f["similar"][0] == int(cos[5].argmax())
    assert abs(f["similar_cos"][0] - float(cos[5].max())) < 1e-5
    planted = store.feature(0)
    assert planted["top_tokens"] == [PLANTED_TOKEN]
    assert 0 in store.search(token=PLANTED_TOKEN).column("feature").to_pylist()
    assert 0 in store.search(text="quest").column("feature").to_pylist()
    hits = store.search(min_density=0.5).column("density").to_numpy()
    assert (hits >= 0.5).all()


def test_resume_after_interruption_equals_uninterrupted(tiny_model, tiny_corpus, browser_root, tmp_path, monkeypatch):
    art = browser_root / "artifacts" / "topk"
    opts = {**STORE_OPTIONS, "checkpoint_tokens": 16 * SEQ_LEN}
    full = build_store(art, tiny_corpus, N_TOKENS, tmp_path / "full", model=tiny_model, progress=False, **opts)
    real, calls = build_mod.run_to_sites, []

    def dying(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(build_mod, "run_to_sites", dying)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        build_store(art, tiny_corpus, N_TOKENS, out, model=tiny_model, progress=False, **opts)
    assert (out / "state.safetensors").exists() and not (out / "features.parquet").exists()
    with pytest.raises(StoreError, match="incomplete"):
        FeatureStore(out)
    monkeypatch.setattr(build_mod, "run_to_sites", real)
    build_store(art, tiny_corpus, N_TOKENS, out, model=tiny_model, progress=False, **opts)
    assert not (out / "state.safetensors").exists()
    for table in ("features.parquet", "examples.parquet"):
        assert pq.read_table(out / table).equals(pq.read_table(full / table))
    with pytest.raises(ValueError, match="different feature store"):
        build_store(art, tiny_corpus, N_TOKENS // 2, out, model=tiny_model, progress=False, **opts)


def test_store_errors_are_clear(tmp_path, browser_root):
    with pytest.raises(StoreError, match="not a readable feature store"):
        FeatureStore(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="corrupt"):
        FeatureStore(tmp_path)
    with pytest.raises(StoreError, match="outside"):
        resolve_under(browser_root, "../elsewhere")
    with pytest.raises(StoreError, match="outside"):
        resolve_under(browser_root, "/etc")
    assert resolve_under(browser_root, "stores/topk") == (browser_root / "stores" / "topk").resolve()
    with pytest.raises(StoreError, match="does not exist"):
        FeatureStore(browser_root / "stores" / "topk").feature(10_000)


def test_multi_view_artifacts_get_one_store_per_view(browser_root, tiny_model, tiny_corpus, tmp_path):
    from interp.browser import find_stores

    assert [str(p) for p in find_stores(browser_root / "stores" / "attn_svd")] == ["layer-00", "layer-01"]
    assert [str(p) for p in find_stores(browser_root / "stores" / "lib")] == ["node-0"]  # last: raw outputs
    for l in (0, 1):
        m = FeatureStore(browser_root / "stores" / "attn_svd" / f"layer-{l:02d}").manifest
        assert m["site"] == f"blocks.{l}.hook_resid_post" and m["view"]["layer"] == l
        assert m["n_features"] == m["view"]["n_heads"] * m["view"]["d_head"]
    art = browser_root / "artifacts" / "attn_svd"
    out = build_store(
        art,
        tiny_corpus,
        N_TOKENS // 4,
        tmp_path / "heads",
        model=tiny_model,
        progress=False,
        **{**STORE_OPTIONS, "views": (1,)},
    )
    assert [str(p) for p in find_stores(out)] == ["layer-01"]
    with pytest.raises(ValueError, match="selects none"):
        build_store(
            art,
            tiny_corpus,
            N_TOKENS // 4,
            tmp_path / "none",
            model=tiny_model,
            progress=False,
            **{**STORE_OPTIONS, "views": (7,)},
        )


def test_browse_command_writes_the_default_steering_strength(browser_root, _tiny_corpus_file, tmp_path, capsys):
    """``interp browse artifact=... out=...`` (the command's own build function) leaves a store
    with its steering.json, which the browser's reader returns."""
    pytest.importorskip("interp.evals.steering")
    from interp.cli.browse import Config, build
    from interp.evals.steering.store_strength import KL_BUDGETS, N_FEATURES

    out = tmp_path / "store"
    cfg = Config(
        artifact=str(browser_root / "artifacts" / "topk"),
        out=str(out),
        text=str(_tiny_corpus_file),
        n_tokens=N_TOKENS,
        model="tiny-llama",
        params=STORE_OPTIONS,
    )
    build(cfg)
    cal = FeatureStore(out).steering()
    assert cal is not None and [b["kl"] for b in cal["budgets"]] == list(KL_BUDGETS)
    assert len(cal["features"]) == N_FEATURES and cal["site"] == "blocks.0.hook_resid_pre"
    assert all(b["n_hit"] + b["n_missed"] == N_FEATURES for b in cal["budgets"])
    assert "default steering strength" in capsys.readouterr().out
