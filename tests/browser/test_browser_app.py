"""The Streamlit app under ``streamlit.testing.v1.AppTest``: every page for every decomposer type,
search, navigation, the steering panel, and clear messages for bad input."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from .conftest import PLANTED_TOKEN

APP = str(Path(__file__).resolve().parents[2] / "apps" / "browser.py")
NAMES = ["topk", "dense", "dense_res", "snmf", "itda", "attn_svd", "lib"]


@pytest.fixture
def app(browser_root, monkeypatch):
    monkeypatch.setenv("INTERP_RUNS", str(browser_root))

    def make(**params):
        at = AppTest.from_file(APP, default_timeout=120)
        for k, v in params.items():
            at.query_params[k] = v
        return at.run()
    return make


def _ok(at):
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize("name", NAMES)
def test_list_and_feature_pages_render(app, name):
    at = app(run=f"stores/{name}")
    _ok(at)
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) > 0
    for feature in ("0", "7") if name == "topk" else ("0",):
        at = app(run=f"stores/{name}", feature=feature)
        _ok(at)
        assert at.header[0].value == f"Feature {feature}"
        assert any("Activation histogram" == s.value for s in at.subheader)
    if name == "dense":
        assert any("No vocabulary projection" in i.value for i in at.info)


def test_default_run_is_picked(app):
    at = app()
    _ok(at)
    assert at.sidebar.selectbox[0].value == "stores/attn_svd"  # first store, sorted


def test_search_finds_planted_feature(app):
    at = app(run="stores/topk")
    at.text_input(key="q_token").input(PLANTED_TOKEN).run()
    _ok(at)
    assert 0 in at.dataframe[0].value["feature"].tolist()
    at.text_input(key="q_token").input("").run()
    at.text_input(key="q_text").input("quest").run()
    assert 0 in at.dataframe[0].value["feature"].tolist()


def test_open_feature_by_id_and_back(app):
    at = app(run="stores/topk")
    at.number_input(key="q_id").set_value(3).run()
    at.button(key="q_open").click().run()
    _ok(at)
    assert at.query_params["feature"] == ["3"] or at.query_params["feature"] == "3"
    assert at.header[0].value == "Feature 3"
    at.button(key="back").click().run()
    _ok(at)
    assert len(at.dataframe) == 1


def test_feature_page_highlights_contexts(app):
    at = app(run="stores/topk", feature="0")
    _ok(at)
    htmls = [h.proto.body for h in at.get("html")]
    qual = [h for h in htmls if 'class="tok qual"' in h]
    assert qual and all(f">{PLANTED_TOKEN}</span>" in h.split('class="tok qual"')[1][:200] for h in qual)


def test_bad_paths_and_stores_show_messages(app, browser_root, tmp_path, monkeypatch):
    at = app(run="../../etc")
    assert not at.exception and "outside" in at.error[0].value
    at = app(run="stores/topk", feature="99999")
    assert not at.exception and "does not exist" in at.error[0].value
    at = app(run="stores/topk", feature="abc")
    assert not at.exception and "not a feature id" in at.error[0].value
    bad = browser_root / "stores" / "broken"
    bad.mkdir(exist_ok=True)
    (bad / "manifest.json").write_text("{oops")
    try:
        at = app(run="stores/broken")
        assert not at.exception and "not a readable feature store" in at.error[0].value
    finally:
        (bad / "manifest.json").unlink()
        bad.rmdir()
    monkeypatch.setenv("INTERP_RUNS", str(tmp_path / "nowhere"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and "does not exist" in at.error[0].value


def test_steering_panel_generates_two_texts(app):
    pytest.importorskip("interp.evals.steering", reason="interp.evals.steering is not on this branch yet")
    at = app(run="stores/topk", feature="0")
    _ok(at)
    at.text_input(key="steer_prompt").input("The river")  # form values are sent on submit
    at.button(key="steer_go").click().run()
    _ok(at)
    assert len(at.code) == 2
    assert all(c.value.startswith("The river") for c in at.code)
