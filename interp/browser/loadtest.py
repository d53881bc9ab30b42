"""A bounded local load test of the browser app: several real browsers (headless Chromium) at once
on one store, loading feature pages while other browsers submit steering requests at the same
time (the app queues them on its one shared model); 127.0.0.1 only.

Every request has a timeout and the number of requests is fixed, so the test ends in bounded
time whatever the server does; a request that fails or times out is counted as an error.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from interp.browser import pagecheck as pc
from interp.browser.serve import serve
from interp.browser.store import FeatureStore

TIMEOUT = 180.0  # seconds per request


def _pages(url: str, run: str, feats: list[int], out: list, errors: list) -> None:
    d = pc.chrome(1400)
    try:
        for f in feats:
            try:
                out.append(pc.load_page(d, f"{url}/?run={run}&feature={f}", f"feature-{f}", TIMEOUT))
            except Exception as e:  # noqa: BLE001 (a failed request is a measured outcome)
                errors.append(f"page {f}: {type(e).__name__} {str(e)[:80]}")
    finally:
        d.quit()


def _steers(url: str, run: str, feats: list[int], out: list, errors: list) -> None:
    d = pc.chrome(1400)
    try:
        for f in feats:
            try:
                pc.load_page(d, f"{url}/?run={run}&feature={f}", f"feature-{f}", TIMEOUT)
                pc.open_steering(d)
                out.append(pc.click_and_time(d, "div.st-key-steer_go button", f"feature-{f}-steered", TIMEOUT))
            except Exception as e:  # noqa: BLE001
                errors.append(f"steer {f}: {type(e).__name__} {str(e)[:80]}")
    finally:
        d.quit()


def _summary(xs: list[float]) -> str:
    if not xs:
        return "none completed"
    xs = sorted(xs)
    return (
        f"median {statistics.median(xs):.2f} s · p90 {xs[math.ceil(0.9 * len(xs)) - 1]:.2f} s · "
        f"max {xs[-1]:.2f} s (n={len(xs)})"
    )


def load_test(
    root: str | Path, store: str | Path, clients: int = 4, loads: int = 6, steers: int = 2, seed: int = 0
) -> dict[str, str]:
    """``clients`` browsers each load ``loads`` distinct feature pages of ``store`` (under ``root``)
    while ``steers`` more browsers each submit one steering request (on a fresh server: the first
    also waits for the model to load); all start together. Returns the latencies (page drawn /
    steered generations drawn, from the click) and errors, as table rows."""
    root, store = Path(root), Path(store)
    live = np.flatnonzero(FeatureStore(store).features["n_active"].to_numpy())
    pick = np.random.default_rng(seed).choice(live, size=min(len(live), clients * loads + steers), replace=False)
    run = str(store.relative_to(root))
    pages, steered, errors = [], [], []
    with serve(root) as url:
        threads = [
            threading.Thread(
                target=_pages, args=(url, run, [int(x) for x in pick[c * loads : (c + 1) * loads]], pages, errors)
            )
            for c in range(clients)
        ]
        threads += [
            threading.Thread(target=_steers, args=(url, run, [int(x)], steered, errors))
            for x in pick[clients * loads :]
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    return {
        f"load: {clients} clients x {loads} page loads + {steers} concurrent steering requests": f"{wall:.1f} s wall, {len(errors)} errors {errors[:3] if errors else ''}",
        "load: page latency under load": _summary(pages),
        "load: steering latency under load (queued on one model; the first loads it)": _summary(steered),
    }
