"""The Streamlit app under ``streamlit.testing.v1.AppTest``: every page for every decomposer type,
search, navigation, the steering panel, and clear messages for bad input."""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from .conftest import PLANTED_TOKEN

APP = str(Path(__file__).resolve().parents[2] / "apps" / "browser.py")
NAMES = ["topk", "dense", "dense_res", "snmf", "itda", "attn_svd/layer-00", "attn_svd/layer-01", "lib/node-0"]


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
        assert any("Activation histogram" in m.value for m in at.markdown)
        assert any("attention-sink tokens" in c.value for c in at.caption)  # the exclusion is stated
    if name == "dense":
        assert any("No vocabulary projection" in i.value for i in at.info)


@pytest.mark.parametrize("name", ["attn_svd/layer-01", "lib/node-0"])
def test_feature_pages_say_what_the_feature_is(app, browser_root, name):
    from interp.browser import FeatureStore

    view = FeatureStore(browser_root / "stores" / name).manifest["view"]
    want = "LIB direction 7 of node layer 0"
    if view["kind"] == "heads":  # feature 7 is head 7 // d_head, component 7 % d_head
        head, comp = divmod(7, view["d_head"])
        want = f"layer 1 · head {head} · OV write · component {comp}"
    at = app(run=f"stores/{name}", feature="7")
    _ok(at)
    assert any(m.value.startswith(f"**{want}") for m in at.markdown), [m.value for m in at.markdown][:4]
    from interp.browser.store import plain  # captions escape Markdown: a manifest is data, not markup

    site = plain("blocks.1.hook_resid_post" if view["kind"] == "heads" else "blocks.0.hook_resid_post")
    assert any(site in c.value and ("OV circuit" in c.value or "LIB" in c.value) for c in at.caption)


def test_default_run_is_picked(app):
    at = app()
    _ok(at)
    assert at.sidebar.selectbox[0].value == "stores/attn_svd/layer-00"  # first store, sorted


def test_feature_page_builds_the_run_picker_on_demand(app):
    """A feature page names its run and builds the select box only when asked; picking another
    run there opens that run's list page (feature ids of one run mean nothing in another)."""
    at = app(run="stores/topk", feature="3")
    _ok(at)
    assert not at.sidebar.selectbox
    assert any(c.value.startswith("Run: ") and "topk" in c.value for c in at.sidebar.caption)
    at.sidebar.toggle(key="change_run").set_value(True).run()
    _ok(at)
    assert at.sidebar.selectbox[0].value == "stores/topk"
    at.sidebar.selectbox[0].set_value("stores/attn_svd/layer-00").run()
    _ok(at)
    assert at.query_params["run"] == "stores/attn_svd/layer-00" and "feature" not in at.query_params
    assert len(at.dataframe) == 1  # the other run's list page


def test_search_finds_planted_feature(app):
    at = app(run="stores/topk")
    at.text_input(key="q_token").input(PLANTED_TOKEN).run()
    _ok(at)
    assert 0 in at.dataframe[0].value["feature"].tolist()
    at.text_input(key="q_token").input("").run()
    at.text_input(key="q_text").input("quest").run()
    df = at.dataframe[0].value
    assert 0 in df["feature"].tolist()
    assert all("quest" in c.lower() for c in df["context"])  # the snippet shows the match


def test_landing_table_pages_through_all_features(app, browser_root):
    from interp.browser import FeatureStore

    n = FeatureStore(browser_root / "stores" / "topk").n_features  # 128 > one page of 50
    at = app(run="stores/topk")
    seen = []
    for page in range(1, -(-n // 50) + 1):
        at.number_input(key="q_page").set_value(page).run()
        _ok(at)
        seen += at.dataframe[0].value["feature"].tolist()
    assert seen == list(range(n))


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


def test_steering_panel_generates_with_calibrated_strength(app, browser_root):
    pytest.importorskip("interp.evals.steering", reason="interp.evals.steering is not on this branch yet")
    at = app(run="stores/topk", feature="0")
    _ok(at)
    at.toggle(key="steer_open").set_value(True).run()
    _ok(at)
    at.text_area(key="steer_prompt").input("The river\nOnce upon")  # form values are sent on submit
    at.button(key="steer_go").click().run()
    _ok(at)
    assert len(at.code) == 4  # two prompts, without and with the feature
    assert [c.value.split()[0] for c in at.code] == ["The", "Once", "The", "Once"]  # left column, then right
    how = next(c.value for c in at.caption if "calibrated" in c.value)
    assert "KL" in how and "budget 0.1" in how
    alpha = float(how.split("α = ")[1].split(",")[0])
    # the stated α is the calibration code's answer for this direction and budget
    from interp.browser import FeatureStore
    from interp.data.concepts import neutral_sentences
    from interp.evals.steering.calibration import calibrate_alpha
    from interp.models import load

    store = FeatureStore(browser_root / "stores" / "topk")
    cal = calibrate_alpha(
        load("tiny-llama", device="cpu"),
        store.directions()[0].float(),
        store.manifest["site"],
        [0.1],
        neutral_sentences()[:8],
        signs=(1,),
        tol=0.1,
    )
    assert abs(alpha - cal.points[0].alpha) <= 1e-3 * abs(alpha)


@pytest.fixture
def calibrated_store(browser_root, tiny_model):
    """A copy of the topk store with its steering.json (the store-level default strength)."""
    import shutil

    pytest.importorskip("interp.evals.steering")
    from interp.evals.steering.store_strength import calibrate_store

    dst = browser_root / "stores" / "topk_steer"
    shutil.copytree(browser_root / "stores" / "topk", dst)
    try:
        # the tiny model's next-token KL saturates near 0.02 at this site: budgets below it
        cal = calibrate_store(dst, tiny_model, n_features=6, budgets=(0.002, 0.005, 0.01))
        yield dst, cal
    finally:
        shutil.rmtree(dst)


def test_store_strength_is_the_median_of_per_feature_calibrations(calibrated_store, tiny_model):
    import statistics

    from interp.browser import FeatureStore
    from interp.data.concepts import neutral_sentences
    from interp.evals.steering.calibration import calibrate_alpha

    path, cal = calibrated_store
    store = FeatureStore(path)
    assert store.steering() == cal  # written to the store, read back by the browser's reader
    live = set(np.flatnonzero(store.features["n_active"].to_numpy()).tolist())
    assert len(cal["features"]) == 6 and set(cal["features"]) <= live
    dirs = store.directions()
    budgets = [b["kl"] for b in cal["budgets"]]
    per_feature = [  # independently: calibrate each sampled feature by itself
        calibrate_alpha(
            tiny_model, dirs[i].float(), store.manifest["site"], budgets, neutral_sentences()[:8], signs=(1,), tol=0.1
        )
        for i in cal["features"]
    ]
    for k, b in enumerate(cal["budgets"]):  # the store's α is the median of the features' α's
        alphas = [c.points[k].alpha for c in per_feature if c.points[k].hit]
        assert b["n_hit"] == len(alphas) and b["n_hit"] + b["n_missed"] == 6
        assert b["alpha"] == (pytest.approx(statistics.median(alphas), rel=1e-6) if alphas else None)
    assert cal["budgets"][0]["n_hit"] == 6


def test_steering_panel_uses_the_store_strength_and_equals_direct_generation(app, calibrated_store, tiny_model):
    """The panel's text is exactly ``generate`` without and inside ``steer`` at the stated α, and
    the stated KL is the feature's KL at that α."""
    from interp.browser import FeatureStore
    from interp.evals import steering
    from interp.evals.steering.store_strength import neutral_kl

    path, cal = calibrated_store
    at = app(run="stores/topk_steer", feature="3")
    at.toggle(key="steer_open").set_value(True).run()
    assert at.checkbox(key="steer_exact").value is False  # the store's strength is the default
    prompts = ["The river", "Once upon a time"]
    at.text_area(key="steer_prompt").input("\n".join(prompts))
    at.number_input(key="steer_tokens").set_value(12)
    at.button(key="steer_go").click().run()
    _ok(at)
    how = next(c.value for c in at.caption if "store's calibration" in c.value)
    alpha = cal["budgets"][0]["alpha"]  # the store's budgets replace the panel's (0.1 is not among them)
    assert f"α = {alpha:.4g}, the store's calibration for budget 0.002" in how
    store = FeatureStore(path)
    d, site = store.directions()[3].float(), store.manifest["site"]
    plain = steering.generate(tiny_model, prompts, max_new_tokens=12, seed=0, temperature=0)
    with steering.steer(tiny_model, d, site, alpha):
        steered = steering.generate(tiny_model, prompts, max_new_tokens=12, seed=0, temperature=0)
    assert plain != steered  # the direction does something at this strength
    assert [c.value for c in at.code] == [p + x for p, x in zip(prompts, plain)] + [
        p + y for p, y in zip(prompts, steered)
    ]
    kl = neutral_kl(tiny_model)(d, site, alpha)
    assert f"this feature's KL at that α: {kl:.3g}" in how


def test_vocabulary_cells_show_tokens_made_of_spaces():
    """A token of spaces (' ', a no-break space) would be an empty-looking cell; it shows as ␣ / ⍽."""
    import re
    import sys

    sys.path.insert(0, str(Path(APP).parent))
    import browser_html

    f = {"vocab_top": [" ", "\xa0", " a"], "vocab_top_logits": [1.0] * 3}
    f |= {"vocab_bottom": ["x", "\n", "y"], "vocab_bottom_logits": [-1.0] * 3}
    cells = re.findall(r"<code>(.*?)</code>", browser_html.vocab_html(f))
    assert cells == ["␣", "x", "⍽", "↵", "&nbsp;a", "y"]


def test_activation_histogram_uses_a_log_scale_for_long_tails():
    """A dense feature's top examples sit in a tail of a few tokens beside thousands: on a linear
    scale those bars are invisible, so such a histogram is drawn on a log scale and says so."""
    import base64
    import re
    import sys

    sys.path.insert(0, str(Path(APP).parent))
    import browser_html

    def svg(f):
        return base64.b64decode(re.search(r"base64,([^\"]+)", browser_html.activation_hist_html(f)).group(1)).decode()

    tail = {"hist_range": 4.0, "hist_neg": [0, 0, 0, 0], "hist_pos": [3000, 0, 0, 2]}
    even = {"hist_range": 4.0, "hist_neg": [0, 0, 0, 0], "hist_pos": [3, 0, 0, 2]}
    heights = lambda s: [float(h) for h in re.findall(r'height="([\d.]+)"', s)]  # noqa: E731
    assert "log scale" in svg(tail) and "log scale" not in svg(even)
    assert min(heights(svg(tail))) > 0.1 * max(heights(svg(tail)))  # the 2-token bar is visible
