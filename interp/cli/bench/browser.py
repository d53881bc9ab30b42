"""Benchmark the feature browser in a real browser (headless Chromium), and under load.

    interp bench browser [root=runs/bench/browser] [n_tokens=8192] [pages=8] [clients=4] [loads=6]
                         [steers=2] [shots=<folder>] [build_bench=true] [methods=[sae,snmf,itda,lib,heads]]
                         [load=true]

1. Stores: small SmolLM2 stores of five methods, built once with the project's build code
   (``build_store``): the demo TopK SAE (``make demo``; an untrained one of its shape if missing),
   and a semi-NMF, an ITDA, a LIB (its resid_mid node layer) and a head SVD (layers 3 and 8)
   fitted here on a few thousand tokens (see ``fit_artifacts``).
   With ``build_bench=1``: the SAE store's build time, cold, against the unavoidable work (the
   model's forward pass to the site plus ``encode`` over the same tokens), as a ratio.
2. Pages, timed in Chromium until the page is fully drawn (``interp.browser.pagecheck``):
   *first page* = the first feature page of a freshly started server in a fresh browser (three
   times; cold store unless the launcher opened it while the server started); *warm page* =
   in-app navigation to a feature not seen before (a similar-feature button, server and store
   warm); *warm reload* = a new browser session on an unseen feature's URL. Beside them: the CPU
   time a warm page costs the server process and the time the browser's renderer main thread is
   busy with it (wall time: inflated by load), the store read time of the same features (data
   layer, in-process) and a bare Streamlit page (one element) as the framework's floor (its first
   page on a fresh server and browser, three times; a full load; a rerun).
   Then the steering panel of the SAE store: Generate on the fresh server (model load included)
   and on three more features (model warm). Each store gets its ``steering.json`` first, as
   ``interp browse`` writes it.
3. Screenshots of each store's feature page at 1600 and 1280 px (to ``shots``), with the count of
   overlapping content boxes.
4. Load: ``clients`` browsers at once, each loading ``loads`` feature pages of the SAE store,
   while one more client submits ``steers`` steering requests on it; all on 127.0.0.1, each
   request bounded by a timeout. Latencies per kind (median / p90 / max) and errors.
Timings on a shared machine are noisy (the load average is printed); compare within one run.
"""

import os
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from interp.browser import FeatureStore, build_store, pagecheck as pc
from interp.browser.loadtest import load_test
from interp.browser.serve import APP, cpu_seconds, serve
from interp.cli import print_table
from interp.evals.steering.store_strength import FILE as STEERING_FILE
from interp.evals.steering.store_strength import calibrate_store
from interp.errors import MissingFileError
from interp.models import load as load_model
from interp.models import run_to_sites

REPO = Path(__file__).resolve().parents[3]  # the source checkout (apps/browser.py)
MODEL, TEXT, LAYER = "smollm2-135m", "builtin:stdlib-docs", 8
SITE = f"blocks.{LAYER}.hook_resid_post"
BARE_APP = """import streamlit as st
n = st.session_state["n"] = st.session_state.get("n", 0) + 1
st.button("again", key="again")
st.html(f'<div data-page-end="bare-{n}"></div>')
"""


def fit_artifacts(model, out: Path) -> dict[str, Path]:
    """One small artifact per method at layer 8 of SmolLM2 (fitted on 4k tokens: enough for a
    page to show real contexts, not a quality run)."""
    from interp.data import load_text, tokenize
    from interp.decomposers.heads import HeadSVD
    from interp.decomposers.itda import ITDA
    from interp.decomposers.lib import LIB
    from interp.decomposers.semi_nmf import SNMF
    from interp.decomposers.sae import TopKConfig, TopKSAE
    from interp.decomposers.lib.cut import residual_block_cut, site_acts

    arts = {"sae": REPO / "runs" / "demo" / "sae-topk"}
    if not (arts["sae"] / "config.json").exists():
        print("no trained demo SAE (run `make demo`): using an untrained TopK SAE of its shape")
        arts["sae"] = TopKSAE(TopKConfig(d_in=576, d_sae=4608, k=32, model=MODEL, site=SITE)).save(out / "sae")
    text = tokenize(load_text(TEXT + "?split=train"), model.tokenizer, 128, 4096)
    toks, ordinary = torch.as_tensor(text.tokens), ~torch.as_tensor(text.special_mask()).reshape(-1)
    make = {
        "snmf": lambda: SNMF.fit(
            site_acts(model, toks, f"blocks.{LAYER}.mlp.hook_post").reshape(-1, model.d_mlp)[ordinary],
            rank=64,
            max_iter=300,
            patience=50,
            model=MODEL,
            site=f"blocks.{LAYER}.mlp.hook_post",
            progress=False,
        ),
        "itda": lambda: ITDA.fit(
            [
                (
                    site_acts(model, toks, SITE).reshape(-1, model.d_model)[ordinary].float(),
                    torch.zeros(int(ordinary.sum()), 4, dtype=torch.long),
                )
            ],
            k=16,
            cos_threshold=0.7,
            max_atoms=1024,
            model=MODEL,
            site=SITE,
            progress=False,
        ),
        "heads": lambda: HeadSVD.fit(model),
        "lib": lambda: _fit_lib(model, toks[:4, :24], residual_block_cut, site_acts, LIB),
    }
    for name, fit in make.items():
        if not (out / name / "config.json").exists():
            fit().save(out / name)
        arts[name] = out / name
    return arts


def _fit_lib(model, toks, cut, site_acts, LIB):
    modules, sites = cut(model, LAYER)
    return LIB.fit(
        modules,
        site_acts(model, toks, sites[0]),
        dict(
            n_sources_pos=1,
            n_sources_hidden=16,
            edge_sources_pos=1,
            rotate_final=True,
            batch_size=2,
            truncation_relative=1e-10,
            compute_edges=False,
        ),
        node_layers=("resid_pre", "resid_mid", "resid_post"),
        sites=tuple(sites),
        model=MODEL,
        direction_layer=1,
    )


def build_stores(root: Path, arts: dict[str, Path], model, n_tokens: int) -> dict[str, Path]:
    for name, art in arts.items():
        build_store(
            art,
            TEXT,
            n_tokens,
            root / "smollm2" / name,
            model=model,
            progress=False,
            **({"heads": {"views": (3, LAYER)}, "lib": {"views": (1,)}}.get(name, {})),
        )
    base = root / "smollm2"
    stores = {
        "sae": base / "sae",
        "snmf": base / "snmf",
        "itda": base / "itda",
        "lib": base / "lib" / "node-1",
        "heads": base / "heads" / f"layer-{LAYER:02d}",
    }
    for name in arts:  # the default steering strength, as `interp browse` writes it
        if not (stores[name] / STEERING_FILE).exists():
            calibrate_store(stores[name], model)
    return stores


def _stats(xs: list[float]) -> str:
    if not xs:
        return "-"
    xs = sorted(xs)
    return (
        f"median {1e3 * statistics.median(xs):.0f} ms · p90 {1e3 * xs[math.ceil(0.9 * len(xs)) - 1]:.0f} ms"
        f" · max {1e3 * xs[-1]:.0f} ms (n={len(xs)})"
    )


def _similar_ids(driver) -> list[int]:
    return [
        int(b.get_attribute("textContent").split("·")[0].strip("# "))  # .text is empty out of view
        for b in driver.find_elements("css selector", 'div[class*="st-key-sim-"] button p')
    ]


def page_timings(root: Path, stores: dict[str, Path], pages: int) -> dict:
    rel = {k: str(p.relative_to(root)) for k, p in stores.items()}
    nav, reload_, seen, read, cpu_srv, cpu_tab = [], [], set(), [], [], []
    with serve(root) as url:
        d = pc.chrome(1600)
        try:
            for name, run in rel.items():
                cur = 2
                pc.load_page(d, f"{url}/?run={run}&feature={cur}", f"feature-{cur}", 120)
                seen |= {(name, 1), (name, 2)}
                for _ in range(pages):  # in-app: follow the first similar feature not seen yet
                    nxt = next((g for g in _similar_ids(d) if (name, g) not in seen), None)
                    if nxt is None:
                        break
                    seen.add((name, nxt))
                    c_srv, c_tab = cpu_seconds(url.pid), pc.renderer_cpu(d)
                    nav.append(pc.click_and_time(d, f"div.st-key-sim-{nxt} button", f"feature-{nxt}"))
                    time.sleep(0.3)  # let the server finish the run before reading its CPU time
                    cpu_srv.append(cpu_seconds(url.pid) - c_srv)
                    cpu_tab.append(pc.renderer_cpu(d) - c_tab)
                store = FeatureStore(stores[name])  # store read of the same kind of page, in-process
                for g in {g for n, g in seen if n == name}:
                    t0 = time.perf_counter()
                    store.feature(g), store.examples(g).to_pylist()
                    read.append(time.perf_counter() - t0)
                live = np.flatnonzero(store.features["n_active"].to_numpy())
                for g in [int(g) for g in live if (name, int(g)) not in seen][:2]:
                    reload_.append(pc.load_page(d, f"{url}/?run={run}&feature={g}", f"feature-{g}"))
                    seen.add((name, g))
            steer = steering_timings(d, url, rel["sae"], stores["sae"], seen)
        finally:
            d.quit()
    first = first_pages(root, f"?run={rel['sae']}&feature=1", "feature-1")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bare.py").write_text(BARE_APP)
        bare_first = first_pages(root, "", "bare-1", app=Path(tmp) / "bare.py")
        with serve(root, app=Path(tmp) / "bare.py") as url:
            d = pc.chrome(1600)
            try:
                bare_load = [pc.load_page(d, url, "bare-1") for _ in range(3)]
                bare_rerun = [_rerun(d, n) for n in range(2, 7)]
            finally:
                d.quit()
    return {
        "first page (fresh server and browser, cold store)": _stats(first) + " (target 1500)",
        "warm page (in-app, unseen feature)": _stats(nav) + " (target 300)",
        "  its CPU: server process (all threads)": _stats(cpu_srv),
        "  browser renderer main thread busy (wall)": _stats(cpu_tab),
        "warm reload (new session, unseen feature)": _stats(reload_),
        **steer,
        "store read (feature + examples, in-process)": _stats(read),
        "floor: bare Streamlit first page (fresh server and browser)": _stats(bare_first),
        "floor: bare Streamlit page, full load": _stats(bare_load),
        "floor: bare Streamlit rerun (button)": _stats(bare_rerun),
    }


def first_pages(root: Path, query: str, key: str, app: Path = APP, n: int = 3) -> list[float]:
    """Seconds to the first page of ``n`` freshly started servers, each in a fresh browser."""
    times = []
    for _ in range(n):
        with serve(root, app=app) as url:
            d = pc.chrome(1600)
            try:
                times.append(pc.load_page(d, f"{url}/{query}", key, 180))
            finally:
                d.quit()
    return times


def steering_timings(d, url: str, run: str, path: Path, seen: set) -> dict:
    """The steering panel on the SAE store: Generate on a fresh server (the model loads on the
    panel's opening, so this includes most of it), then Generate on other features reached in-app
    (the panel stays open): store-calibrated α, the feature's KL, one batched greedy generation."""
    live = [int(g) for g in np.flatnonzero(FeatureStore(path).features["n_active"].to_numpy())]
    feats = [g for g in live if ("sae", g) not in seen][:4]
    pc.load_page(d, f"{url}/?run={run}&feature={feats[0]}", f"feature-{feats[0]}", 120)
    pc.open_steering(d)
    first = pc.click_and_time(d, "div.st-key-steer_go button", f"feature-{feats[0]}-steered", 600)
    warm = []
    for g in feats[1:]:
        pc.load_page(d, f"{url}/?run={run}&feature={g}", f"feature-{g}", 120)  # new session: panel closed
        pc.open_steering(d)
        warm.append(pc.click_and_time(d, "div.st-key-steer_go button", f"feature-{g}-steered", 300))
    return {
        "steering: first Generate (fresh server: model load included)": f"{first:.2f} s",
        "steering: Generate, model warm (16 tokens x 2 prompts)": _stats(warm) + " (target: seconds)",
    }


def _rerun(d, n: int) -> float:
    """Seconds for a rerun of the bare app (its ``n``-th run in this session) by its button."""
    return pc.click_and_time(d, "div.st-key-again button", f"bare-{n}")


def screenshots(root: Path, stores: dict[str, Path], out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    with serve(root) as url:
        for width in (1600, 1280):
            d = pc.chrome(width)
            try:
                for name, path in stores.items():
                    feat = int(np.argmax(FeatureStore(path).features["n_active"].to_numpy() > 0))
                    pc.load_page(d, f"{url}/?run={path.relative_to(root)}&feature={feat}", f"feature-{feat}", 120)
                    pc.expand_all(d)
                    bad = len(pc.overlaps(d)) + len(pc.clipped_contexts(d))
                    shot = pc.screenshot(d, out / f"{name}-{width}.png")
                    rows[f"{name} @ {width}px"] = f"{shot.name}: {bad} overlapping/clipped"
                    d.set_window_size(width, 1000)
            finally:
                d.quit()
    return rows


def reference_pass(model, dec, n_tokens: int, seq_len: int = 128, batch: int = 8) -> float:
    """Forward to the site + encode over the same tokens, nothing else."""
    from interp.browser.build import _encode_rows
    from interp.data import load_text, tokenize

    text = tokenize(load_text(TEXT), model.tokenizer, seq_len, n_tokens)
    tokens, special = torch.from_numpy(text.tokens), torch.from_numpy(text.special_mask())
    t0 = time.perf_counter()
    for a in range(0, len(tokens), batch):
        x = run_to_sites(model, tokens[a : a + batch], [SITE])[SITE]
        for r in range(len(x)):
            _encode_rows(dec, x[r : r + 1], special[a + r : a + r + 1])
    return time.perf_counter() - t0


def bench_build(model, artifact: Path, out: Path, n_tokens: int) -> dict:
    """Store build of the demo SAE, cold, against the unavoidable work (forward + encode)."""
    from interp._io import remove_dir
    from interp.decomposers import load

    remove_dir(out)
    t0 = time.perf_counter()
    build_store(artifact, TEXT, n_tokens, out, model=model, progress=False)
    t_build = time.perf_counter() - t0
    t_ref = reference_pass(model, load(artifact), n_tokens)
    return {
        "store build (s)": round(t_build, 2),
        "reference: forward + encode (s)": round(t_ref, 2),
        "build / reference": round(t_build / t_ref, 2),
    }


@dataclass(frozen=True)
class Config:
    root: str = "runs/bench/browser"
    """Folder of the benchmark's artifacts and stores (built once, reused)."""
    n_tokens: int = 8192
    """Tokens per store."""
    pages: int = 8
    """Feature pages timed per kind (first / warm / reload)."""
    methods: tuple[str, ...] = ("sae", "snmf", "itda", "lib", "heads")
    """Which methods' stores to build and time."""
    build_bench: bool = True
    """Also time the SAE store's build against the forward pass + encode it needs."""
    shots: str | None = None
    """Folder for screenshots of each store's feature page at 1600 and 1280 px (None: none)."""
    load: bool = True
    """Run the load test (several browsers and steering requests at once, on 127.0.0.1)."""
    clients: int = 4
    """Load test: concurrent browsers."""
    loads: int = 6
    """Load test: page loads per browser."""
    steers: int = 2
    """Load test: steering requests."""


def run(cfg: Config) -> None:
    if not pc.available():
        raise MissingFileError(
            "needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver"
        )
    root = Path(cfg.root)
    model = load_model(MODEL)
    arts = fit_artifacts(model, root / "artifacts")
    keep = list(cfg.methods)
    stores = {
        k: v
        for k, v in build_stores(root, {k: a for k, a in arts.items() if k in keep}, model, cfg.n_tokens).items()
        if k in keep
    }
    load = lambda: f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"  # noqa: E731 (1-minute load average)
    rows = {"load average (1 min), start": load()}
    if cfg.build_bench:
        rows |= bench_build(model, arts["sae"], root / "build-bench", cfg.n_tokens)
    rows |= page_timings(root, stores, cfg.pages)
    rows["load average (1 min), after the pages"] = load()
    print_table(rows, "bench browser: pages (headless Chromium, 127.0.0.1)")
    if cfg.shots:
        rows |= screenshots(root, stores, Path(cfg.shots))
    if cfg.load:
        rows |= load_test(root, stores["sae"], cfg.clients, cfg.loads, cfg.steers)
        rows["load average (1 min), after the load test"] = load()
    print_table(rows, "bench browser (headless Chromium, 127.0.0.1)")
