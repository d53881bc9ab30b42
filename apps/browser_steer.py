"""The feature page's steering panel: add the feature's direction at its site and generate, with
and without it.

The default strength is calibrated, not a raw multiple: the α at which steering moves the
next-token distribution on neutral prompts by a chosen KL budget (``interp.evals.steering.calibration``,
the SNMF paper's protocol). The model is loaded once per server (``st.cache_resource``); each
calibration is cached per (store, feature, budget); all prompts of a request are generated in
one batch, greedily, so a click costs two short batched generations.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import streamlit as st

from browser_views import _stamp, open_store

KL_BUDGETS = (0.025, 0.05, 0.1, 0.25, 0.5)
DEFAULT_KL = 0.1
N_CALIBRATION_PROMPTS = 8  # neutral prompts the KL is averaged over (the experiment uses more)
CALIBRATION_TOL = 0.1  # relative tolerance on the KL (the experiment uses 0.05; fewer forward passes)


@st.cache_resource(max_entries=2, show_spinner="loading the model (once per server)…")
def load_model(spec: str) -> Any:
    from interp.models import load

    return load(spec)


@st.cache_resource(max_entries=2, show_spinner=False)
def model_lock(spec: str) -> threading.Lock:
    """One lock per loaded model: a steering hook is on the shared model while it is held, so two
    sessions steering at once must take turns (otherwise one's direction leaks into the other's
    generation)."""
    return threading.Lock()


@st.cache_resource(max_entries=2, show_spinner=False)
def neutral_kl(spec: str) -> Any:
    """The unsteered next-token distributions on the calibration prompts, computed once per model."""
    from interp.data.concepts import neutral_sentences
    from interp.evals.steering.calibration import NextTokenKL

    with model_lock(spec):
        return NextTokenKL(load_model(spec), neutral_sentences()[:N_CALIBRATION_PROMPTS])


@st.cache_resource(max_entries=4, show_spinner=False)
def directions(path: str, stamp: float) -> Any:
    return open_store(path, stamp).directions()


@st.cache_data(max_entries=256, show_spinner="calibrating the strength…")
def calibrated_alpha(path: str, stamp: float, i: int, kl: float) -> dict:
    """The α (positive sign) whose mean next-token KL on the neutral prompts is ``kl`` (within
    ``CALIBRATION_TOL`` of it: the page states the KL actually measured)."""
    from interp.evals.steering.calibration import calibrate_alpha

    m = open_store(path, stamp).manifest
    spec = m["model"]
    kl_fn = neutral_kl(spec)
    with model_lock(spec):
        cal = calibrate_alpha(
            load_model(spec),
            directions(path, stamp)[i].float(),
            m["site"],
            [kl],
            signs=(1,),
            tol=CALIBRATION_TOL,
            kl=kl_fn,
        )
    p = cal.points[0]
    return {"alpha": p.alpha, "kl": p.kl, "hit": p.hit, "note": p.note, "n_evals": cal.n_evals}


def generations(path: str, stamp: float, i: int, prompts: list[str], alpha: float, n_new: int) -> tuple[list, list]:
    """Greedy continuations of ``prompts`` without and with feature ``i`` added at strength ``alpha``."""
    from interp.evals import steering

    m = open_store(path, stamp).manifest
    model = load_model(m["model"])
    with model_lock(m["model"]):
        plain = steering.generate(model, prompts, max_new_tokens=n_new, seed=0, temperature=0)
        with steering.steer(model, directions(path, stamp)[i].float(), m["site"], alpha):
            steered = steering.generate(model, prompts, max_new_tokens=n_new, seed=0, temperature=0)
    return plain, steered


def panel(path: Path, i: int) -> bool:
    """The panel; True when it generated on this run."""
    if importlib.util.find_spec("interp.evals") is None:  # no import: torch loads only on Generate
        st.info("Steering is unavailable: interp.evals is not installed in this build.")
        return False
    if not st.toggle(
        "Steering: add this feature's direction and generate",
        key="steer_open",
        help="off: the page does not build the panel (faster); stays on as you browse",
    ):
        return False
    with st.form(f"steer-{i}"):
        a, b, c = st.columns([3, 1, 1])
        text = a.text_area(
            "Prompts (one per line, generated as one batch)",
            value="The\nIn my free time, I",
            key="steer_prompt",
            height=80,
        )
        kl = b.selectbox(
            "Strength: KL budget",
            KL_BUDGETS,
            index=KL_BUDGETS.index(DEFAULT_KL),
            key="steer_kl",
            help="α is calibrated so that steering shifts the next-token distribution on "
            f"{N_CALIBRATION_PROMPTS} neutral prompts by this KL (nats)",
        )
        raw = b.number_input("or raw α (0: calibrated)", value=0.0, key="steer_alpha")
        n_new = c.number_input("New tokens", 4, 64, 16, key="steer_tokens")
        go = st.form_submit_button("Generate", key="steer_go")
    if not go:
        st.caption(f"Default strength: the α at KL = {DEFAULT_KL} on neutral prompts (calibrated on Generate).")
        return False
    prompts = [p for p in text.splitlines() if p.strip()] or ["The"]
    stamp = _stamp(path)
    if raw:
        alpha, how = float(raw), f"raw α = {raw:g}"
    else:
        cal = calibrated_alpha(str(path), stamp, i, float(kl))
        alpha = cal["alpha"]
        how = (
            f"α = {alpha:.4g}, calibrated: KL {cal['kl']:.3g} on {N_CALIBRATION_PROMPTS} neutral prompts "
            f"(budget {kl:g}; {cal['n_evals']} evaluations)"
        )
        if not cal["hit"]:
            how += f" — budget missed: {cal['note']}"
    with st.spinner("generating…"):
        plain, steered = generations(str(path), stamp, i, prompts, alpha, int(n_new))
    st.caption(how)
    left, right = st.columns(2)
    left.markdown("**Without the feature**")
    right.markdown(f"**With feature {i}** ({how.split(',')[0]})")
    for p, x, y in zip(prompts, plain, steered):
        left.code(p + x, language=None, wrap_lines=True)
        right.code(p + y, language=None, wrap_lines=True)
    return True
