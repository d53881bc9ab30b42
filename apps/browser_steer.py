"""The feature page's steering panel: add the feature's direction at its site and generate, with
and without it.

The default strength is calibrated, not a raw multiple, and calibrated when the store was built
(``steering.json``, ``interp.evals.steering.store_strength``): the median over a sample of the
store's features of the α at which steering moves the next-token distribution on neutral prompts
by the chosen KL budget (the SNMF paper's protocol). A click measures the KL that α gives the
feature shown (one forward pass) and states it; "calibrate this feature" runs the full per-feature
calibration instead (cached), as does a store built before ``steering.json`` existed.

One model per server, shared by every session: it is loaded in a background thread as soon as a
panel is opened, and one lock serialises its use (a steering hook is on the shared model while it
is held), so concurrent requests queue instead of racing. The unsteered continuations do not
depend on the feature and are computed once per (prompts, length); a click then costs one batched
greedy generation of all its prompts.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import streamlit as st

from browser_views import _stamp, open_store

from interp.errors import InterpError

FALLBACK_BUDGETS = (0.025, 0.05, 0.1, 0.25, 0.5)  # = store_strength.KL_BUDGETS (not imported: torch)
DEFAULT_KL = 0.1
MAX_PROMPTS = 8


# torch's intra-op threads in the server: half the cores (1 on a 2-core machine). The server also
# draws pages, and on a busy machine OpenMP threads that wait for each other slow torch down many
# times over (measured at load 20 on 2 cores: one KL evaluation 28 s with 2 threads, 1.8 s with 1;
# a 16-token generation 132 s against 12 s).
TORCH_THREADS = max(1, (os.cpu_count() or 2) // 2)


class Engine:
    """A loaded model with the lock that serialises its use and the per-model caches."""

    def __init__(self, spec: str):
        import torch

        from interp.models import load

        torch.set_num_threads(TORCH_THREADS)
        self.model = load(spec)
        self.lock = threading.Lock()
        self._kl: Any = None
        self._plain: OrderedDict = OrderedDict()

    def kl(self) -> Any:
        """The next-token KL on the neutral prompts (hold ``lock``)."""
        if self._kl is None:
            from interp.evals.steering.store_strength import neutral_kl

            self._kl = neutral_kl(self.model)
        return self._kl

    def plain(self, prompts: tuple[str, ...], n_new: int) -> list[str]:
        """Unsteered greedy continuations, computed once per (prompts, length) (hold ``lock``)."""
        from interp.evals import steering

        key = (prompts, n_new)
        if key not in self._plain:
            self._plain[key] = steering.generate(self.model, list(prompts), max_new_tokens=n_new, seed=0, temperature=0)
            while len(self._plain) > 64:
                self._plain.popitem(last=False)
        return self._plain[key]


_LOADER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="interp-model")
_ENGINES: dict[str, Future] = {}
_GUARD = threading.Lock()


def engine(spec: str) -> Future:
    """The server's engine for model ``spec`` (a future: loading starts on the first call)."""
    with _GUARD:
        fut = _ENGINES.get(spec)
        if fut is None or (fut.done() and fut.exception() is not None):  # a failed load is retried
            while len(_ENGINES) >= 2:  # at most two models in memory
                _ENGINES.pop(next(iter(_ENGINES)))
            fut = _ENGINES[spec] = _LOADER.submit(Engine, spec)
        return fut


@st.cache_resource(max_entries=4, show_spinner=False)
def directions(path: str, stamp: float) -> Any:
    return open_store(path, stamp).directions()


def _budgets(cal: dict | None) -> dict[float, dict]:
    return {b["kl"]: b for b in cal["budgets"]} if cal else {}


@st.cache_data(max_entries=256, show_spinner=False)
def feature_alpha(path: str, stamp: float, i: int, kl: float) -> dict:
    """This feature's own calibrated α at ``kl`` (``calibrate_alpha`` with the store calibration's
    prompts and tolerance)."""
    from interp.evals.steering.calibration import calibrate_alpha
    from interp.evals.steering.store_strength import TOL

    m = open_store(path, stamp).manifest
    eng = engine(m["model"]).result()
    with eng.lock:
        cal = calibrate_alpha(
            eng.model, directions(path, stamp)[i].float(), m["site"], [kl], signs=(1,), tol=TOL, kl=eng.kl()
        )
    p = cal.points[0]
    return {"alpha": p.alpha, "kl": p.kl, "hit": p.hit, "note": p.note, "n_evals": cal.n_evals}


def steered(path: str, stamp: float, i: int, prompts: list[str], alpha: float, n_new: int) -> dict:
    """Greedy continuations of ``prompts`` without and with feature ``i`` added at ``alpha``
    (``interp.evals.steering.generate`` inside ``steer``), and the feature's KL at that α."""
    from interp.evals import steering

    m = open_store(path, stamp).manifest
    eng = engine(m["model"]).result()
    direction = directions(path, stamp)[i].float()
    if not eng.lock.acquire(blocking=False):
        with st.spinner("queued: the model is generating for another request…"):
            eng.lock.acquire()
    try:
        kl = eng.kl()(direction, m["site"], alpha)
        plain = eng.plain(tuple(prompts), n_new)
        with steering.steer(eng.model, direction, m["site"], alpha):
            out = steering.generate(eng.model, prompts, max_new_tokens=n_new, seed=0, temperature=0)
    finally:
        eng.lock.release()
    return {"plain": plain, "steered": out, "kl": kl}


def panel(path: Path, i: int) -> bool:
    """The panel; True when it generated on this run."""
    if importlib.util.find_spec("interp.evals") is None:  # no import: torch loads only when the panel opens
        st.info("Steering is unavailable: interp.evals is not installed in this build.")
        return False
    if not st.toggle(
        "Steering: add this feature's direction and generate",
        key="steer_open",
        help="off: the page does not build the panel (faster); stays on as you browse",
    ):
        return False
    stamp = _stamp(path)
    store = open_store(str(path), stamp)
    engine(store.manifest["model"])  # start loading the model now, while the user types
    cal = store.steering()
    budgets = _budgets(cal)
    choices = tuple(budgets) or FALLBACK_BUDGETS
    with st.form(f"steer-{i}"):
        a, b, c = st.columns([3, 1, 1])
        text = a.text_area(
            f"Prompts (one per line, at most {MAX_PROMPTS}, generated as one batch)",
            value="The\nIn my free time, I",
            key="steer_prompt",
            height=80,
        )
        kl = b.selectbox(
            "Strength: KL budget",
            choices,
            index=choices.index(DEFAULT_KL) if DEFAULT_KL in choices else 0,
            key="steer_kl",
            help="α is calibrated so that steering shifts the next-token distribution on neutral prompts by "
            "this KL (nats)" + (f": {cal['method']}" if cal else ""),
        )
        raw = b.number_input("or raw α (0: calibrated)", value=0.0, key="steer_alpha")
        n_new = c.number_input("New tokens", 4, 64, 16, key="steer_tokens")
        exact = c.checkbox(
            "calibrate this feature",
            value=not cal,
            disabled=not cal,
            key="steer_exact",
            help="the α at this budget for this feature itself (a few forward passes, then cached)"
            if cal
            else "this store has no steering.json (built before it existed): every feature is calibrated",
        )
        go = st.form_submit_button("Generate", key="steer_go")
    if not go:
        where = "calibrated when the store was built" if cal else "calibrated for this feature on Generate"
        st.caption(f"Default strength: the α at KL = {DEFAULT_KL} on neutral prompts ({where}).")
        return False
    prompts = [p for p in text.splitlines() if p.strip()][:MAX_PROMPTS] or ["The"]
    n_prompts = cal["n_prompts"] if cal else 8
    if raw:
        alpha, how = float(raw), f"raw α = {raw:g}"
    elif exact or not budgets.get(kl, {}).get("alpha"):
        try:
            with st.spinner("calibrating the strength for this feature…"):
                fc = feature_alpha(str(path), stamp, i, float(kl))
        except (InterpError, OSError) as e:
            st.error(f"Steering failed: {e}")
            return False
        alpha = fc["alpha"]
        how = f"α = {alpha:.4g}, calibrated for this feature (budget {kl:g}; {fc['n_evals']} evaluations)"
        if not fc["hit"]:
            how += f" — budget missed: {fc['note']}"
    else:
        bk = budgets[kl]
        alpha = bk["alpha"]
        how = (
            f"α = {alpha:.4g}, the store's calibration for budget {kl:g}: median over {bk['n_hit']} features "
            f"(range {bk['alpha_min']:.3g}–{bk['alpha_max']:.3g})"
        )
    try:
        with st.spinner("generating…"):
            res = steered(str(path), stamp, i, prompts, alpha, int(n_new))
    except (InterpError, OSError) as e:  # e.g. the store's model cannot be loaded here
        st.error(f"Steering failed: {e}")
        return False
    how += f"; this feature's KL at that α: {res['kl']:.3g} on {n_prompts} neutral prompts"
    st.caption(how)
    left, right = st.columns(2)
    left.markdown("**Without the feature**")
    right.markdown(f"**With feature {i}** ({how.split(',')[0]})")
    for p, x, y in zip(prompts, res["plain"], res["steered"]):
        left.code(p + x, language=None, wrap_lines=True)
        right.code(p + y, language=None, wrap_lines=True)
    return True
