"""Sparse probing: the batched pipeline against a per-text loop and scikit-learn on the same
features; a planted feature; the labelled sets."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from interp.data.concepts import load_concepts
from interp.errors import ConfigError
from interp.evals.quality import probing
from interp.evals.quality.passes import capture_texts, codes_of

SITE = "blocks.1.hook_resid_post"


def _reference_accuracy(X, y, test, feats):
    scaler = StandardScaler().fit(X[~test][:, feats])
    lr = LogisticRegression(solver="liblinear", max_iter=2000, random_state=0)
    lr.fit(scaler.transform(X[~test][:, feats]), y[~test])
    return float((lr.predict(scaler.transform(X[test][:, feats])) == y[test]).mean())


def _per_text_loop(model, dec, texts):
    """Mean-pooled raw activations and codes, one unpadded text at a time (BOS dropped)."""
    raw, codes = [], []
    bos = model.tokenizer.bos_token_id if model.tokenizer.bos_token_id is not None else model.tokenizer.eos_token_id
    for t in texts:
        ids = torch.tensor([[bos] + model.tokenizer(t, add_special_tokens=False)["input_ids"][:16]])
        _, cache = model.bridge.run_with_cache(ids, names_filter=[SITE])
        x = cache[SITE][0, 1:].float()
        raw.append(x.mean(0))
        codes.append(dec.encode(x).detach().mean(0))
    return torch.stack(raw).numpy(), torch.stack(codes).numpy()


def test_pipeline_matches_per_text_loop_and_sklearn(tiny_model, linear_decomposer):
    cs = load_concepts(["ocean", "cooking", "french"])
    texts = [s for c in cs for s in c.sentences]
    labels = np.repeat(np.arange(3), [len(c.sentences) for c in cs])
    dec = linear_decomposer(site=SITE)
    acts = capture_texts(tiny_model, texts, [SITE], max_tokens=16, batch_size=7)[SITE]
    raw = probing.mean_pool(acts).numpy()
    codes = probing.mean_pool([codes_of(dec, a) for a in acts]).numpy()
    ref_raw, ref_codes = _per_text_loop(tiny_model, dec, texts)
    np.testing.assert_allclose(raw, ref_raw, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(codes, ref_codes, rtol=1e-4, atol=1e-5)
    got = probing.sparse_probe(codes, raw, labels, 3, ks=(1, 2, 5))
    want = {"top_1": [], "top_2": [], "top_5": [], "raw": []}
    for _, rows, y, test in probing.binary_tasks(labels, 3):
        Xc, Xr = ref_codes[rows], ref_raw[rows]
        for k in (1, 2, 5):
            diff = np.abs(Xc[~test][y[~test] == 1].mean(0) - Xc[~test][y[~test] == 0].mean(0))
            want[f"top_{k}"].append(_reference_accuracy(Xc, y, test, np.argsort(-diff, kind="stable")[:k]))
        want["raw"].append(_reference_accuracy(Xr, y, test, np.arange(Xr.shape[1])))
    for k, v in want.items():
        assert got[k] == pytest.approx(np.mean(v), abs=1e-9), k


def test_planted_feature_is_selected_and_separates():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    codes = rng.exponential(size=(120, 50)) * (rng.random((120, 50)) < 0.3)
    codes[:, 7] = (labels == 2) * (1 + rng.random(120))  # feature 7 fires exactly on class 2
    raw = rng.normal(size=(120, 10))
    _, rows, y, test = probing.binary_tasks(labels, 4)[2]
    assert probing.select_features(codes[rows][~test], y[~test], 1).tolist() == [7]
    acc = probing.sparse_probe(codes, raw, labels, 4, ks=(1,))
    assert acc["raw"] < 0.8  # noise
    only2 = probing.sparse_probe(codes, raw, (labels == 2).astype(int), 2, ks=(1,))
    assert only2["top_1"] == 1.0


def test_binary_tasks_are_balanced_and_split_per_class():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    for c, rows, y, test in probing.binary_tasks(labels, 3, test_frac=0.3):
        assert (y == 1).sum() == (y == 0).sum() == (labels == c).sum()
        assert (labels[rows][y == 1] == c).all() and (labels[rows][y == 0] != c).all()
        assert test[y == 1].sum() == round(0.3 * (labels == c).sum())


def test_labelled_sets():
    bbc = probing.labelled_set("bbc-news", per_class=6)
    assert bbc.classes == ("business", "entertainment", "politics", "sports", "tech")
    assert len(bbc.texts) == 30 and np.bincount(bbc.labels).tolist() == [6] * 5
    assert all(len(t) > 200 for t in bbc.texts)
    cs = probing.labelled_set("concepts")
    assert len(cs.classes) == 22 and len(cs.texts) == len(cs.labels)
    with pytest.raises(ConfigError, match="unknown labelled set"):
        probing.labelled_set("imdb")
