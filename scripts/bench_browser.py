"""Benchmark the feature browser: store build time for the demo SAE, and feature-page render time
for a 16k-feature dictionary from a warm store.

    python scripts/bench_browser.py [artifact=runs/demo/sae-topk] [n_tokens=20000]
                                    [big_features=16384] [big_tokens=8192] [pages=12]

1. Build: the store of ``artifact`` (``make demo`` trains it; if it is missing, an untrained TopK
   SAE of the demo's shape is used and the output says so) over ``n_tokens`` tokens, cold.
   Reference, timed in the same run: the unavoidable work, the model's forward pass to the site
   plus the decomposer's ``encode`` over the same tokens. Printed as build time / reference.
2. Render: a store of a 16k-feature TopK dictionary (untrained: page cost depends on the store's
   shape, not on the weights) is opened once (warm); then feature pages of features not seen
   before are rendered by the real app script under Streamlit's ``AppTest`` (median over
   ``pages``). Also the data layer alone, against a reference read of the same rows with a
   pyarrow filter on the parquet file. Target: a page in under 300 ms.
Timings on a shared machine are noisy; compare ratios from one run.
"""

from interp.decomposers.sae.train_config import TrainConfig
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from interp.browser import FeatureStore, build_store
from interp.browser.build import _encode_rows, _site_acts
from interp.cli import print_table
from interp.data import load_text, tokenize
from interp.decomposers import load
from interp.decomposers.sae import TopKConfig, TopKSAE
from interp.models import load as load_model

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "runs" / "bench" / "browser"
SITE, MODEL, TEXT = "blocks.8.hook_resid_post", "smollm2-135m", "builtin:stdlib-docs"


def untrained_topk(n_features: int, path: Path, k: int = 32) -> Path:
    cfg = TopKConfig(d_in=576, d_sae=n_features, k=k, model=MODEL, site=SITE)
    return TopKSAE(cfg, TrainConfig(seed=0)).save(path)


def reference_pass(model, dec, n_tokens: int, seq_len: int = 128, batch: int = 8) -> float:
    """Forward to the site + encode over the same tokens, nothing else."""
    text = tokenize(load_text(TEXT), model.tokenizer, seq_len, n_tokens)
    tokens, special = torch.from_numpy(text.tokens), torch.from_numpy(text.special_mask())
    t0 = time.perf_counter()
    for a in range(0, len(tokens), batch):
        x = _site_acts(model, tokens[a:a + batch], SITE)
        for r in range(len(x)):
            _encode_rows(dec, x[r:r + 1], special[a + r:a + r + 1])
    return time.perf_counter() - t0


def bench_build(model, artifact: Path, n_tokens: int) -> dict:
    note = ""
    if not (artifact / "config.json").exists():
        note = " (untrained TopK of the demo's shape: run `make demo` for the trained one)"
        artifact = untrained_topk(4608, OUT / "demo-shape-topk")
    out = OUT / "demo-store"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    build_store(artifact, TEXT, n_tokens, out, model=model, progress=False)
    t_build = time.perf_counter() - t0
    t_ref = reference_pass(model, load(artifact), n_tokens)
    store = FeatureStore(out)
    return {f"demo SAE{note}": f"{store.n_features} features, {store.manifest['n_tokens']} tokens",
            "store build (s)": round(t_build, 2), "reference: forward + encode (s)": round(t_ref, 2),
            "build / reference": round(t_build / t_ref, 2),
            "build tokens/s": round(store.manifest["n_tokens"] / t_build)}


def bench_render(model, n_features: int, n_tokens: int, pages: int) -> dict:
    out = OUT / f"store-{n_features}"
    if not (out / "manifest.json").exists() or not FeatureStore(out).n_features == n_features:
        shutil.rmtree(out, ignore_errors=True)
        art = untrained_topk(n_features, OUT / f"topk-{n_features}")
        build_store(art, TEXT, n_tokens, out, model=model, progress=True)
    store = FeatureStore(out)
    live = np.flatnonzero(store.features["n_active"].to_numpy())
    feats = np.random.default_rng(0).choice(live, size=min(pages + 1, len(live)), replace=False).tolist()
    data_ms, ref_ms = [], []
    for f in feats:
        t0 = time.perf_counter()
        store.feature(f), store.examples(f).to_pylist()
        data_ms.append(1e3 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        pq.read_table(out / "examples.parquet", filters=[("feature", "==", f)]).to_pylist()
        ref_ms.append(1e3 * (time.perf_counter() - t0))
    page_ms = app_render(out, feats)
    med = statistics.median(page_ms)
    return {"16k store": f"{store.n_features} features, {len(live)} active, {store.manifest['n_tokens']} tokens",
            "feature page, full app run (ms, median)": round(med, 1),
            "  vs 300 ms target": f"{med / 300:.2f}x of budget",
            "data layer: feature + examples (ms)": round(statistics.median(data_ms), 2),
            "reference: pyarrow filter read (ms)": round(statistics.median(ref_ms), 2),
            "data layer speed-up vs reference": round(statistics.median(ref_ms) / statistics.median(data_ms), 1)}


def app_render(store_dir: Path, feats: list[int]) -> list[float]:
    """Run the real app script on feature pages; the first run warms the store (not timed)."""
    from streamlit.testing.v1 import AppTest

    os.environ["INTERP_RUNS"] = str(store_dir.parent)
    at = AppTest.from_file(str(REPO / "apps" / "browser.py"), default_timeout=120)
    at.query_params["run"] = store_dir.name
    times = []
    for j, f in enumerate(feats):
        at.query_params["feature"] = str(f)
        t0 = time.perf_counter()
        at.run()
        if at.exception or at.error:
            sys.exit(f"the page failed: {at.exception or at.error}")
        if j:
            times.append(1e3 * (time.perf_counter() - t0))
    return times


def main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv)
    model = load_model(MODEL)
    rows = bench_build(model, Path(args.get("artifact", REPO / "runs" / "demo" / "sae-topk")),
                       int(args.get("n_tokens", 20_000)))
    rows |= bench_render(model, int(args.get("big_features", 16384)), int(args.get("big_tokens", 8192)),
                         int(args.get("pages", 12)))
    print_table(rows, f"bench_browser ({torch.get_num_threads()} torch threads; shared machine: noisy)")


if __name__ == "__main__":
    main(sys.argv[1:])
