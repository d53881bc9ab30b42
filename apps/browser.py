"""Feature browser (Streamlit): pick a run, search its features, open a feature page.

    make browse                                   # root folder: runs/ (or $INTERP_RUNS)
    streamlit run apps/browser.py --server.address 127.0.0.1 -- --root runs

Stores are built by ``interp browse artifact=RUN out=STORE``. The app reads only under its root folder; the
URL carries the state (``?run=<store folder under the root>&feature=<id>``), so pages can be
linked. This file and ``browser_views.py`` are the view layer; the data layer is
``interp.browser``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser_views as views  # noqa: E402

from interp.browser import StoreError, find_stores, resolve_under  # noqa: E402
from interp.browser.store import describe  # noqa: E402


def root_folder() -> Path:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--root", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return Path(args.root or os.environ.get("INTERP_RUNS") or "runs").resolve()


@st.cache_data(ttl=30, show_spinner=False)
def stores_under(root: str) -> dict[str, str]:
    """Store folder (relative to the root) -> label "model · site · method"."""
    return {str(p): describe(root, p) for p in find_stores(root)}


def pick_run(root: Path) -> Path:
    runs = list(stores_under(str(root)))
    asked = st.query_params.get("run")
    if asked is not None:
        resolve_under(root, asked)  # refuses paths outside the root
        if asked not in runs:
            runs = [asked, *runs]
    if not runs:
        raise StoreError(f"no feature stores under {root}; build one with "
                         "`interp browse artifact=<decomposer dir> out=<folder under the root>`")
    labels = stores_under(str(root))
    choice = st.sidebar.selectbox("Run (model · site · method)", runs, format_func=lambda r: labels.get(r, r),
                                  index=runs.index(asked) if asked in runs else 0)
    if choice != asked:
        st.query_params["run"] = choice
        st.query_params.pop("feature", None)
    return resolve_under(root, choice)


def list_page(store, path: Path) -> None:
    st.header(store.title())
    st.caption(store.caption())
    c1, c2, c3 = st.columns([2, 1, 1])
    text = c1.text_input("Text in top contexts", key="q_text")
    token = c2.text_input("Top token", key="q_token", help="a top-activating or top-promoted token")
    sort = c3.selectbox("Sort by", ["feature", "density", "max"], key="q_sort")
    lo, hi = st.slider("Density range", 0.0, 1.0, (0.0, 1.0), step=0.001, format="%.3f", key="q_density")
    go = st.number_input("Open feature by id", 0, store.n_features - 1, 0, key="q_id")
    if st.button("Open", key="q_open"):
        st.query_params["feature"] = str(int(go))
        st.rerun()
    df = views.search(str(path), views._stamp(path), text, token, lo, hi, sort)
    st.caption(f"{len(df)} features shown (first 200 matches)")
    event = st.dataframe(df, hide_index=True, on_select="rerun", selection_mode="single-row", key="results")
    rows = event.selection.rows if event is not None and hasattr(event, "selection") else []
    if rows:
        st.query_params["feature"] = str(int(df.iloc[rows[0]]["feature"]))
        st.rerun()


def feature_page(store, path: Path, i: int) -> None:
    data = views.feature_page(str(path), views._stamp(path), i)
    f = data["feature"]
    if st.button("← all features", key="back"):
        st.query_params.pop("feature", None)
        st.rerun()
    st.header(f"Feature {i}")
    st.caption(store.title())
    a, b, c, d = st.columns(4)
    a.metric("density", f"{f['density']:.3%}")
    b.metric("max activation", f"{f['max']:.3g}")
    c.metric("mean (when active)", f"{f['mean_active']:.3g}")
    d.metric("active tokens", f"{f['n_active']:,}")
    scale = max(abs(f["max"]), max((abs(v) for e in data["examples"] for v in e["acts"]), default=0.0))
    left, right = st.columns([3, 2])
    with left:
        views.render_examples(store, data["examples"], scale)
    with right:
        st.subheader("Activation histogram")
        views.render_histogram(f)
        st.subheader("Vocabulary projection")
        views.render_vocab(store, f)
        st.subheader("Similar features (cosine of directions)")
        views.render_similar(f)
    st.subheader("Steering")
    views.render_steering(store, path, i, f)


def main() -> None:
    st.set_page_config(page_title="interp feature browser", layout="wide")
    root = root_folder()
    st.sidebar.title("interp · features")
    st.sidebar.caption(f"root: {root}")
    try:
        if not root.is_dir():
            raise StoreError(f"the root folder {root} does not exist; set INTERP_RUNS or pass --root")
        path = pick_run(root)
        store = views.store_at(path)
        feature = st.query_params.get("feature")
        if feature is None:
            list_page(store, path)
        else:
            if not feature.lstrip("-").isdigit():
                raise StoreError(f"feature {feature!r} is not a feature id (an integer)")
            feature_page(store, path, store.check_feature(int(feature)))
    except StoreError as e:
        st.error(str(e))


main()
