"""Explanations on feature pages, on the user's path: the feature-quality comparison writes
``autointerp.parquet`` (offline explainer and scorer), ``interp browse ... explanations=...`` attaches
this artifact's rows to its store, and the app's feature page shows each explanation with its
detection and fuzzing scores and the offline-scorer label; features without one show none.
Bad inputs are refused before any compute, and the app reads only the copy inside the store."""

import json
import shutil

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from interp.cli.main import main
from interp.errors import ConfigError, DataError, MissingFileError
from interp.evals.quality import QualityConfig, compare
from interp.evals.quality.autointerp import OFFLINE_SCORER

from .conftest import N_TOKENS, STORE_OPTIONS, planted_topk
from .test_browser_app import APP


@pytest.fixture(scope="module")
def explained(browser_root, tiny_model, _tiny_corpus_file, tmp_path_factory):
    """``(root, store, rows, source, argv)``: the comparison's explanations of a sparse TopK SAE
    (each feature's threshold at the 97th percentile of its pre-activation over the vocabulary, so
    features stay silent in some sequences and detection has negatives), and its store built and
    explained by one ``interp browse`` command."""
    sae = planted_topk(tiny_model)
    emb = tiny_model.hf_model.get_input_embeddings().weight.detach()
    with torch.no_grad():
        sae.b_enc.copy_(-torch.quantile(emb @ sae.W_enc, 0.97, dim=0))
    art = sae.save(browser_root / "artifacts" / "topk1")
    out = tmp_path_factory.mktemp("quality")
    cfg = QualityConfig(
        artifacts=(str(art),),
        out=str(out),
        metrics=("core", "autointerp"),
        text=str(_tiny_corpus_file),
        n_tokens=2048,
        seq_len=16,
        batch_size=8,
        autointerp_features=3,
        autointerp_candidates=128,
    )
    compare(cfg, progress=False)
    rows = pd.read_parquet(out / "autointerp.parquet")
    store = browser_root / "stores" / "topk-explained"
    opts = [f"{k}={v}" for k, v in STORE_OPTIONS.items()]
    argv = ["browse", f"artifact={art}", f"out={store}", f"text={_tiny_corpus_file}", f"n_tokens={N_TOKENS}", *opts]
    assert main([*argv, f"explanations={out / 'autointerp.parquet'}"]) == 0
    return browser_root, store, rows, out / "autointerp.parquet", argv


def _page(root, monkeypatch, feature):
    monkeypatch.setenv("INTERP_RUNS", str(root))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["run"] = "stores/topk-explained"
    at.query_params["feature"] = str(feature)
    at.run()
    assert not at.exception and not at.error, ([e.message for e in at.exception], [e.value for e in at.error])
    return at


def test_feature_page_shows_explanation_and_scores(explained, monkeypatch):
    root, store, rows, _, _ = explained
    assert len(rows) >= 1 and (rows["artifact"] == "topk1").all() and (rows["scorer"] == OFFLINE_SCORER).all()
    assert rows["detection"].notna().all()  # a number on the page, not only "n/a"
    m = json.loads((store / "manifest.json").read_text())
    assert m["explanations"]["n_features"] == len(rows) and "explanations.parquet" in m["files"]
    for r in rows.itertuples():
        at = _page(root, monkeypatch, r.feature)
        assert any(x.value.startswith("#### Explanation") for x in at.markdown)
        html = "".join(h.proto.body for h in at.get("html"))
        import html as h

        assert f"<q>{h.escape(r.explanation)}</q>" in html
        for score in (r.detection, r.fuzzing):
            assert (f"<b>{score:.2f}</b>" if score == score else "<b>n/a</b>") in html
        assert "offline scorer: sentence-embedding similarity, not an LLM reader" in html
        assert h.escape(OFFLINE_SCORER) in html and h.escape(r.explainer) in html


def test_feature_without_explanation_shows_none(explained, monkeypatch):
    root, _, rows, _, _ = explained
    other = next(i for i in range(128) if i not in set(rows["feature"]))
    at = _page(root, monkeypatch, other)
    assert not any(x.value.startswith("#### Explanation") for x in at.markdown)
    assert at.header[0].value == f"Feature {other}"


def test_app_reads_only_the_copy_in_the_store(explained, monkeypatch):
    """Deleting the comparison's file changes nothing; a store whose explanations lead outside it
    (a symbolic link) is refused with a message."""
    root, store, rows, src, _ = explained
    moved = src.with_name("moved.parquet")
    src.rename(moved)
    try:
        at = _page(root, monkeypatch, int(rows["feature"].iloc[0]))
        assert any(x.value.startswith("#### Explanation") for x in at.markdown)
    finally:
        moved.rename(src)
    bad = root / "stores" / "topk-linked"
    shutil.copytree(store, bad)
    (bad / "explanations.parquet").unlink()
    (bad / "explanations.parquet").symlink_to(src)
    monkeypatch.setenv("INTERP_RUNS", str(root))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["run"] = "stores/topk-linked"
    at.query_params["feature"] = str(int(rows["feature"].iloc[0]))
    at.run()
    assert any("leads outside the store folder" in e.value for e in at.error)
    shutil.rmtree(bad)


def test_bad_explanations_are_refused_before_compute(explained, tmp_path):
    _, _, _, src, argv = explained
    fresh = [a if not a.startswith("out=") else f"out={tmp_path / 'never'}" for a in argv]
    with pytest.raises(MissingFileError):
        main([*fresh, f"explanations={tmp_path / 'none.parquet'}", "--debug"])
    other = tmp_path / "other.parquet"
    pd.read_parquet(src).assign(artifact="snmf").to_parquet(other)
    with pytest.raises(ConfigError, match="no explanations for artifact 'topk1'.*'snmf'"):
        main([*fresh, f"explanations={other}", "--debug"])
    pd.read_parquet(src).drop(columns=["fuzzing"]).to_parquet(other)
    with pytest.raises(DataError, match="fuzzing"):
        main([*fresh, f"explanations={other}", "--debug"])
    assert not (tmp_path / "never").exists()  # nothing was built


def test_explanation_in_headless_chromium(explained, tmp_path):
    """The explanation box is drawn on the real page, inside its column, overlapping nothing."""
    from interp.browser import pagecheck as pc
    from interp.browser.serve import serve

    if not pc.available():
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    root, _, rows, _, _ = explained
    r = rows.iloc[0]
    with serve(root) as url:
        for width in (1600, 1280):
            driver = pc.chrome(width)
            try:
                pc.load_page(driver, f"{url}/?run=stores/topk-explained&feature={r.feature}", f"feature-{r.feature}")
                box = driver.find_element("css selector", "div.explain")
                assert box.find_element("css selector", "q").text == r.explanation
                assert "offline scorer" in box.find_element("css selector", "div.offline").text
                assert box.size["width"] > 200 and box.location["x"] >= 0
                assert pc.overlaps(driver) == [], width
                assert pc.screenshot(driver, tmp_path / f"explained-{width}.png").stat().st_size > 10_000
            finally:
                driver.quit()
