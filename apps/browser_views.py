"""View layer of the feature browser: cached reads of ``interp.browser.FeatureStore`` and the
sections of the feature page.

Nothing here computes features; pages read the store (``st.cache_data``: a page already seen
is served from memory), the store object is opened once per rebuild (``st.cache_resource``).
Navigation goes through widget callbacks that set the URL's query parameters before the rerun,
so a click costs one script run, not two.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import browser_html as hx
import streamlit as st

from interp.browser import FeatureStore, StoreError
from interp.browser.labels import feature_label

PAGE_SIZE = 50

if TYPE_CHECKING:
    import pandas as pd  # imported by the list page only: a feature page does not need it


def root_folder(args: list[str]) -> Path:
    """The browser's root: ``--root`` among the app's arguments, else ``$INTERP_RUNS``, else ``runs``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--root", default=None)
    known, _ = parser.parse_known_args(args)
    return Path(known.root or os.environ.get("INTERP_RUNS") or "runs").resolve()


# -- cached reads --------------------------------------------------------------------------------
def _stamp(path: Path) -> float:
    """Changes when the store is rebuilt (cache key)."""
    return (path / "manifest.json").stat().st_mtime


@st.cache_resource(max_entries=8, show_spinner=False)
def open_store(path: str, stamp: float) -> FeatureStore:
    return FeatureStore(path)


def store_at(path: Path) -> FeatureStore:
    if not (path / "manifest.json").is_file():
        raise StoreError(
            f"{path} holds no feature store (no manifest.json); build one with `interp browse artifact=... out=...`"
        )
    return open_store(str(path), _stamp(path))


@st.cache_data(max_entries=512, show_spinner=False)
def feature_page(path: str, stamp: float, i: int) -> dict[str, Any]:
    """Everything a feature page shows, with the HTML already built (a revisit costs nothing)."""
    store = open_store(path, stamp)
    f = store.feature(i)
    ex = store.examples(i).to_pylist()
    scale = max(abs(f["max"]), max((abs(v) for e in ex for v in e["acts"]), default=0.0))
    return {
        "feature": f,
        "n_top": sum(e["kind"] == "top" for e in ex),
        "examples_html": hx.examples_html(ex, store.tokens, scale),
        "hist_html": hx.activation_hist_html(f),
        "metrics_html": hx.metrics_html(f),
        "vocab_html": hx.vocab_html(f) if store.has_vocab else None,
        "explanation_html": hx.explanation_html(e) if (e := store.explanation(i)) else None,
    }


@st.cache_data(max_entries=64, show_spinner=False)
def search(path: str, stamp: float, text: str, token: str, lo: float, hi: float, sort: str) -> "pd.DataFrame":
    """Every matching feature (the page shows ``PAGE_SIZE`` at a time), with a context snippet
    (the first top context, or the first one containing ``text``) and, for head/LIB stores, what
    the feature is."""
    store = open_store(path, stamp)
    t = store.search(text, token, lo, hi, sort, limit=store.n_features)
    ids = t.column("feature").to_pylist()
    ctx = store.features.column("context").take(ids).to_pylist() if ids else []
    df = t.to_pandas()
    df.insert(1, "context", [_snippet(c, text) for c in ctx])
    if (store.manifest.get("view") or {}).get("kind") in ("heads", "lib"):
        df.insert(1, "is", [feature_label(store.manifest, i) for i in ids])
    return df


def _snippet(context: str, text: str, width: int = 90) -> str:
    lines = [ln for ln in context.split("\n") if ln.strip()]
    hit = next((ln for ln in lines if text and text.lower() in ln.lower()), lines[0] if lines else "")
    hit = " ".join(hit.split())
    if text and text.lower() in hit.lower():  # centre the match
        k = hit.lower().index(text.lower())
        a = max(0, min(k - width // 3, len(hit) - width))
        hit = ("…" if a else "") + hit[a:]
    return hit if len(hit) <= width else hit[: width - 1] + "…"


# -- navigation ----------------------------------------------------------------------------------
def go_to(feature: int | None) -> None:
    """Widget callback: open ``feature`` (None: the list)."""
    if feature is None:
        st.query_params.pop("feature", None)
    else:
        st.query_params["feature"] = str(int(feature))


def _picked_row(key: str, ids: list[int]) -> None:
    rows = st.session_state[key].selection.rows
    if rows:
        go_to(ids[rows[0]])


# -- sections ------------------------------------------------------------------------------------
def results_table(df: "pd.DataFrame") -> None:
    """One page of the search results, with a pager; clicking a row opens the feature."""
    n_pages = max(1, -(-len(df) // PAGE_SIZE))
    page = st.columns([1, 4])[0].number_input(f"Page (of {n_pages})", 1, n_pages, 1, key="q_page") if n_pages > 1 else 1
    part = df.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    st.caption(
        f"features {(page - 1) * PAGE_SIZE + 1 if len(df) else 0}–{(page - 1) * PAGE_SIZE + len(part)} "
        f"of {len(df):,} matching"
    )
    st.dataframe(
        part,
        hide_index=True,
        on_select=lambda: _picked_row("results", part["feature"].tolist()),
        selection_mode="single-row",
        key="results",
        column_config={"context": st.column_config.TextColumn("context (top example)", width="large")},
    )


def similar(f: dict) -> None:
    """Buttons to the nearest features, each labelled with its id and cosine (two per row, so
    the labels fit at 1280 px)."""
    st.markdown("#### Similar features (cosine of directions)")
    cols = st.columns(2)
    for j, (g, c) in enumerate(zip(f["similar"], f["similar_cos"])):
        cols[j % 2].button(
            f"#{g} · cos {c:.2f}", key=f"sim-{g}", on_click=go_to, args=(int(g),), use_container_width=True
        )


def exclusion_note(m: dict) -> str:
    """What the store's statistics leave out (the sink option is stated on every page)."""
    opts = m["request"]["options"]
    if opts.get("exclude_sinks"):
        n = m.get("n_sinks", 0)
        return (
            f"Left out of every statistic and example: BOS/separator tokens and {n:,} attention-sink "
            f"tokens (the first token after BOS, and tokens whose activation norm is over "
            f"{opts['sink_ratio']:g}x their row's median). Rebuild with `exclude_sinks=false` to include them."
        )
    skipped = "BOS/separator tokens are left out; " if opts.get("exclude_special", True) else ""
    return (
        f"{skipped}attention-sink tokens are included (built with exclude_sinks off, or before the "
        "option existed); rebuild to leave them out."
    )
