"""A feature store's default steering strength, calibrated once when the store is built (the SNMF
paper's KL protocol, Shafran et al. 2025; see ``calibration``), so the browser's steering panel
does not calibrate at click time.

For a seeded sample of the store's active features, ``calibrate_alpha`` finds the α (positive sign,
unit-norm direction added at every position) whose mean next-token KL on ``N_PROMPTS`` neutral
prompts is each budget of ``KL_BUDGETS``; the store's default α for a budget is the median over
the sample (its range and the misses are kept too). With a unit-norm direction the α is mostly a
property of the site (on SmolLM2's layer-8 demo SAE the α for KL 0.1 spans 21.9–33.4 over 8
features, median 27.1), so the median is a fair default for any feature; the panel states the KL
that the chosen α actually gives the feature shown (one forward pass) and can still calibrate that
feature exactly.

The result is ``steering.json`` in the store folder (written atomically). The store's files are
read directly (manifest, directions, ``n_active``), not through ``interp.browser``: the browser and
the evaluations are independent layers.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from interp._io import load_safetensors, read_json, write_json_atomic
from interp.errors import DataError
from interp.models import LoadedModel

FILE = "steering.json"  # read by interp.browser.FeatureStore.steering()
KL_BUDGETS = (0.025, 0.05, 0.1, 0.25, 0.5)
N_PROMPTS = 8  # neutral prompts the KL is averaged over (the experiment uses more)
TOL = 0.1  # relative tolerance on the KL (the experiment uses 0.05)
N_FEATURES = 8  # features calibrated per store


def neutral_kl(model: LoadedModel) -> Any:
    """The next-token KL measure on the ``N_PROMPTS`` neutral prompts (the store calibration's and
    the browser panel's)."""
    from interp.data.concepts import neutral_sentences
    from interp.evals.steering.calibration import NextTokenKL

    return NextTokenKL(model, neutral_sentences()[:N_PROMPTS])


def calibrate_store(
    store_dir: str | Path,
    model: LoadedModel | str | None = None,
    n_features: int = N_FEATURES,
    budgets: tuple[float, ...] = KL_BUDGETS,
    seed: int = 0,
) -> dict[str, Any]:
    """Calibrate the store at ``store_dir`` (see the module docstring), write ``steering.json``
    and return its contents. ``model`` defaults to the store's model."""
    import pyarrow.parquet as pq

    from interp.evals.steering.calibration import _scale, calibrate_alpha
    from interp.models import load

    store = Path(store_dir)
    manifest = read_json(store / "manifest.json", "feature store manifest")
    if not manifest.get("complete"):
        raise DataError(f"{store}: the store is incomplete; finish its build before calibrating steering")
    model = load(model or manifest["model"]) if not isinstance(model, LoadedModel) else model
    site = manifest["site"]
    dirs = load_safetensors(store / "directions.safetensors", "store directions")["directions"].float()
    live = np.flatnonzero(pq.read_table(store / "features.parquet", columns=["n_active"])["n_active"].to_numpy())
    pool = live if len(live) else np.arange(dirs.shape[0])
    pick = np.sort(np.random.default_rng(seed).choice(pool, size=min(n_features, len(pool)), replace=False))
    t0 = time.perf_counter()
    kl = neutral_kl(model)
    scale = _scale(kl, site)
    per: dict[float, list[float]] = {b: [] for b in budgets}
    misses: dict[float, int] = {b: 0 for b in budgets}
    n_evals = 0
    for i in pick:
        cal = calibrate_alpha(
            model, dirs[int(i)], site, budgets, signs=(1,), tol=TOL, kl=kl, alpha_start=scale / 8, alpha_max=scale * 64
        )
        n_evals += cal.n_evals
        for p in cal.points:
            if p.hit:
                per[p.target].append(p.alpha)
            else:
                misses[p.target] += 1
    out = {
        "method": f"median over {len(pick)} active features of the calibrated alpha (KL on {N_PROMPTS} neutral "
        f"prompts, tolerance {TOL:g}, unit-norm direction added at every position)",
        "model": manifest["model"],
        "site": site,
        "n_prompts": N_PROMPTS,
        "tol": TOL,
        "features": [int(i) for i in pick],
        "site_rms": scale,
        "budgets": [
            {
                "kl": b,
                "alpha": statistics.median(per[b]) if per[b] else None,
                "alpha_min": min(per[b], default=None),
                "alpha_max": max(per[b], default=None),
                "n_hit": len(per[b]),
                "n_missed": misses[b],
            }
            for b in budgets
        ],
        "n_evals": n_evals,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json_atomic(store / FILE, out)
    return out
