"""View layer of the feature browser: Streamlit widgets over ``interp.browser.FeatureStore``.

Nothing here computes features; pages read the store (cached with ``st.cache_data``), the model
for the steering panel is loaded once (``st.cache_resource``).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from interp.browser import FeatureStore, StoreError


# -- cached reads --------------------------------------------------------------------------------
def _stamp(path: Path) -> float:
    """Changes when the store is rebuilt (cache key)."""
    return (path / "manifest.json").stat().st_mtime


@st.cache_resource(max_entries=8, show_spinner=False)
def open_store(path: str, stamp: float) -> FeatureStore:
    return FeatureStore(path)


def store_at(path: Path) -> FeatureStore:
    if not (path / "manifest.json").is_file():
        raise StoreError(f"{path} holds no feature store (no manifest.json); build one with "
                         "`interp browse artifact=... out=...`")
    return open_store(str(path), _stamp(path))


@st.cache_data(max_entries=256, show_spinner=False)
def feature_page(path: str, stamp: float, i: int) -> dict[str, Any]:
    store = open_store(path, stamp)
    return {"feature": store.feature(i), "examples": store.examples(i).to_pylist()}


@st.cache_data(max_entries=64, show_spinner=False)
def search(path: str, stamp: float, text: str, token: str, lo: float, hi: float, sort: str) -> pd.DataFrame:
    return open_store(path, stamp).search(text, token, lo, hi, sort).to_pandas()


@st.cache_resource(max_entries=2, show_spinner="loading the model (once)…")
def load_model(spec: str) -> Any:
    from interp.models import load

    return load(spec)


@st.cache_resource(max_entries=4, show_spinner=False)
def directions(path: str, stamp: float) -> Any:
    return open_store(path, stamp).directions()


# -- rendering -----------------------------------------------------------------------------------
def _token_html(tok: str) -> str:
    return html.escape(tok).replace("\n", "↵").replace("\t", "⇥").replace(" ", "&nbsp;") or "∅"


def context_html(tokens: list[str], acts: list[float], at: int, scale: float) -> str:
    """One context with each token's background set by its activation (hover shows the value)."""
    spans = []
    for j, (tok, a) in enumerate(zip(tokens, acts)):
        alpha = min(abs(a) / scale, 1.0) if scale > 0 else 0.0
        colour = "255,140,0" if a >= 0 else "30,120,255"
        border = "border-bottom:2px solid #000;" if j == at else ""
        spans.append(f'<span class="tok{" qual" if j == at else ""}" title="{a:.3f}" '
                     f'style="background:rgba({colour},{alpha:.2f});{border}">{_token_html(tok)}</span>')
    return '<div class="ctx" style="font-family:monospace;line-height:1.9">' + "".join(spans) + "</div>"


def render_examples(store: FeatureStore, examples: list[dict], scale: float) -> None:
    top = [e for e in examples if e["kind"] == "top"]
    st.subheader(f"Top activations ({len(top)})")
    if not top:
        st.info("This feature never activated on the store's text.")
    for e in top:
        st.html(f'<div style="display:flex;gap:1em"><code>{e["value"]:.3f}</code>'
                + context_html(store.tokens(e["tokens"]), e["acts"], e["token_index"], scale) + "</div>")
    bands = sorted({e["band"] for e in examples if e["kind"] == "quantile"}, reverse=True)
    for b in bands:
        rows = [e for e in examples if e["kind"] == "quantile" and e["band"] == b]
        r = rows[0]
        with st.expander(f"Quantile band {b + 1}: activations {r['bin_min']:.3g} – {r['bin_max']:.3g} "
                         f"({100 * r['bin_contains']:.1f}% of active tokens)"):
            for e in rows:
                st.html(f'<div style="display:flex;gap:1em"><code>{e["value"]:.3f}</code>'
                        + context_html(store.tokens(e["tokens"]), e["acts"], e["token_index"], scale) + "</div>")


def render_histogram(f: dict) -> None:
    n = len(f["hist_pos"])
    if not f["hist_range"]:
        st.caption("No activations to plot.")
        return
    w = f["hist_range"] / n
    rows = [(-(b + 0.5) * w, h) for b, h in enumerate(f["hist_neg"]) if h]
    rows += [((b + 0.5) * w, h) for b, h in enumerate(f["hist_pos"]) if h]
    df = pd.DataFrame(rows, columns=["activation", "count"])
    spec = {"mark": {"type": "bar", "width": {"band": 1}}, "height": 200,  # raw Vega-Lite: no altair validation
            "encoding": {"x": {"field": "activation", "type": "quantitative"},
                         "y": {"field": "count", "type": "quantitative"}}}
    st.vega_lite_chart(df, spec, width="stretch")


def render_vocab(store: FeatureStore, f: dict) -> None:
    if not store.has_vocab:
        info = store.manifest.get("vocab_projection", {})
        st.info(f"No vocabulary projection: {info.get('reason', 'not computed')}")
        return
    rows = "".join(f"<tr><td><code>{_token_html(a)}</code></td><td>{x:+.3f}</td>"
                   f"<td><code>{_token_html(b)}</code></td><td>{y:+.3f}</td></tr>"
                   for a, x, b, y in zip(f["vocab_top"], f["vocab_top_logits"], f["vocab_bottom"],
                                         f["vocab_bottom_logits"]))
    st.html('<table class="vocab"><tr><th>promoted</th><th>logit</th><th>suppressed</th><th>logit</th></tr>'
            + rows + "</table>")


def render_similar(f: dict) -> None:
    cols = st.columns(5)
    for j, (g, c) in enumerate(zip(f["similar"], f["similar_cos"])):
        if cols[j % 5].button(f"#{g} · cos {c:.2f}", key=f"sim-{g}"):
            st.query_params["feature"] = str(g)
            st.rerun()


def render_steering(store: FeatureStore, path: Path, i: int, f: dict) -> None:
    try:
        from interp.evals import steering
    except ImportError:
        st.info("Steering is unavailable: interp.evals.steering is not installed in this build.")
        return
    default = float(round(max(f["max"], 1.0) * 4, 1))
    with st.form(f"steer-{i}"):
        prompt = st.text_input("Prompt", value="The", key="steer_prompt")
        alpha = st.number_input("Strength (added multiple of the unit direction)", value=default, step=1.0,
                                key="steer_alpha")
        n_new = st.slider("New tokens", 4, 64, 24, key="steer_tokens")
        go = st.form_submit_button("Generate", key="steer_go")
    if not go:
        return
    model = load_model(store.manifest["model"])
    d = directions(str(path), _stamp(path))[i]
    with st.spinner("generating…"):
        plain = steering.generate(model, [prompt], max_new_tokens=n_new, seed=0)[0]
        with steering.steer(model, d, store.manifest["site"], alpha):
            steered = steering.generate(model, [prompt], max_new_tokens=n_new, seed=0)[0]
    left, right = st.columns(2)
    left.markdown("**Without the feature**")
    left.code(prompt + plain, language=None)
    right.markdown(f"**With feature {i} at strength {alpha:g}**")
    right.code(prompt + steered, language=None)
