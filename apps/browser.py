"""Feature browser (Streamlit): pick a run, search its features, open a feature page.

    make browse                                   # root folder: runs/ (or $INTERP_RUNS)
    python apps/launch.py --server.address 127.0.0.1 -- --root runs   (= streamlit run apps/browser.py ...)

Stores are built by ``interp browse artifact=RUN out=STORE``. The app reads only under its root folder; the
URL carries the state (``?run=<store folder under the root>&feature=<id>``), so pages can be
linked. This file and ``browser_views.py`` are the view layer; the data layer is
``interp.browser``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser_steer as steer  # noqa: E402
import browser_views as views  # noqa: E402

from interp.browser import StoreError, find_stores, resolve_under  # noqa: E402
from interp.browser.labels import basis_text, feature_label  # noqa: E402
from interp.browser.store import describe, plain  # noqa: E402


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
        raise StoreError(
            f"no feature stores under {root}; build one with "
            "`interp browse artifact=<decomposer dir> out=<folder under the root>`"
        )
    labels = stores_under(str(root))
    if asked is not None and st.query_params.get("feature") is not None:
        # A feature page names its run in the sidebar and builds the picker only on demand: the
        # select box is the costliest element of a first page (about 0.15-0.2 s, measured).
        st.sidebar.caption(f"Run: {plain(labels.get(asked, asked))}")
        if not st.sidebar.toggle("Change run", key="change_run"):
            return resolve_under(root, asked)
    choice = st.sidebar.selectbox(
        "Run (model · site · method)",
        runs,
        format_func=lambda r: labels.get(r, r),
        index=runs.index(asked) if asked in runs else 0,
    )
    if choice != asked:
        st.query_params["run"] = choice
        if asked is not None:  # another run picked: its feature ids mean something else
            st.query_params.pop("feature", None)
    return resolve_under(root, choice)


def list_page(store, path: Path) -> None:
    st.header(store.title())
    st.caption(store.caption())
    st.caption(plain(basis_text(store.manifest)))
    c1, c2, c3 = st.columns([2, 1, 1])
    text = c1.text_input("Text in top contexts", key="q_text")
    token = c2.text_input("Top token", key="q_token", help="a top-activating or top-promoted token")
    sort = c3.selectbox("Sort by", ["feature", "density", "max"], key="q_sort")
    c1, c2, c3 = st.columns([2, 1, 1])
    lo, hi = c1.slider("Density range", 0.0, 1.0, (0.0, 1.0), step=0.001, format="%.3f", key="q_density")
    c2.number_input("Open feature by id", 0, store.n_features - 1, 0, key="q_id")
    c3.button("Open", key="q_open", on_click=lambda: views.go_to(st.session_state["q_id"]))
    views.results_table(views.search(str(path), views._stamp(path), text, token, lo, hi, sort))
    st.html('<div data-page-end="list"></div>')


def feature_page(store, path: Path, i: int) -> None:
    data = views.feature_page(str(path), views._stamp(path), i)
    f = data["feature"]
    st.button("← all features", key="back", on_click=views.go_to, args=(None,))
    st.header(f"Feature {i}")
    label = feature_label(store.manifest, i)
    if label:
        st.markdown(f"**{label}**")
    st.caption(f"{store.title()} · {plain(basis_text(store.manifest))}")
    st.html(data["metrics_html"])
    if data["explanation_html"]:
        st.markdown("#### Explanation (automatic interpretability)")
        st.html(data["explanation_html"])
    st.caption(views.exclusion_note(store.manifest))
    left, right = st.columns([3, 2], gap="medium")
    left.markdown(f"#### Top activations ({data['n_top']})")
    left.html(data["examples_html"])
    with right:
        st.markdown("#### Activation histogram")
        st.html(data["hist_html"])
        st.markdown("#### Vocabulary projection")
        if data["vocab_html"] is None:
            info = store.manifest.get("vocab_projection", {})
            st.info(f"No vocabulary projection: {info.get('reason', 'not computed')}")
        else:
            st.html(data["vocab_html"])
        views.similar(f)
    steered = steer.panel(path, i)
    st.html(f'<div data-page-end="feature-{i}{"-steered" if steered else ""}"></div>')


def main() -> None:
    st.set_page_config(page_title="interp feature browser", layout="wide")
    root = views.root_folder(sys.argv[1:])
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
