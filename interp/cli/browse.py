"""Build a feature store for the browser, or open the browser (``interp browse``).

``interp browse configs/experiments/browser.yaml artifact=RUN out=runs/stores/NAME`` builds the
store of a decomposer artifact (model and hook site from the artifact; re-running resumes an
interrupted build), optionally exporting it (``export=neuronpedia``). A head-SVD artifact over every
layer gets one store per layer (``out/layer-LL``), a LIB artifact one per hooked node layer
(``out/node-N``); ``views=[3,8]`` builds only those. ``explanations=runs/quality/autointerp.parquet``
attaches the explanations of this artifact (rows named by its folder name) from the feature-quality
comparison, which the feature pages then show (a finished store is not rebuilt: only the explanations are attached). Without ``artifact`` it serves
the Streamlit browser on localhost over every store under ``root``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Config:
    artifact: str | None = None
    """Decomposer folder to build a store for (None: serve the browser instead)."""
    out: str | None = None
    """The store folder to build (under the browser's root to see it there)."""
    text: str = "builtin:stdlib-docs"
    """Text source the store's examples come from."""
    n_tokens: int = 200_000
    """Tokens run through the model and the decomposer."""
    model: str | None = None
    """Model spec (None: the one recorded in the artifact)."""
    export: tuple[str, ...] = ()
    """Also export the store: neuronpedia and/or saedashboard."""
    export_out: str | None = None
    """Export folder (None: <out>/export-<format>)."""
    steering: bool = True
    """Also calibrate the store's default steering strength (steering.json: the median α per KL budget
    over a sample of features; the browser's panel uses it instead of calibrating at click time)."""
    explanations: str | None = None
    """autointerp.parquet of ``interp reproduce quality``: its rows for this artifact (by folder name) go into the store."""
    root: str = "runs"
    """Serving: the folder whose stores the browser lists (it reads nothing outside it)."""
    port: int = 8501
    """Serving: the localhost port."""
    params: dict = field(default_factory=dict, metadata={"internal": True})
    """The StoreConfig fields given."""


def extra_configs(raw: dict[str, Any]) -> list[type]:
    """Every ``StoreConfig`` field (k, n_quantiles, window_left, batch_size, ...) is a key too."""
    from interp.browser.build import StoreConfig

    return [StoreConfig]


def run(cfg: Config) -> int | None:
    if cfg.artifact is None:
        return serve(cfg)
    if cfg.out is None:
        from interp.errors import ConfigError

        raise ConfigError("interp browse artifact=... needs out=STORE_DIR (the store to build)")
    build(cfg)
    return None


def serve(cfg: Config) -> int:
    import subprocess
    import sys
    from pathlib import Path

    import interp

    launcher = Path(interp.__file__).resolve().parents[1] / "apps" / "launch.py"  # streamlit run apps/browser.py
    if not launcher.is_file():
        from interp.errors import MissingFileError

        raise MissingFileError(f"{launcher} not found: serving needs a source checkout of interp (apps/)")
    cmd = [
        sys.executable,
        str(launcher),
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(cfg.port),
        "--",
        "--root",
        cfg.root,
    ]
    return subprocess.call(cmd)


def build(cfg: Config) -> None:
    import time
    from pathlib import Path

    from interp.browser import FeatureStore, build_store, export_neuronpedia, export_saedashboard, find_stores
    from interp.cli import print_table
    from interp.errors import ConfigError

    exporters = {"neuronpedia": export_neuronpedia, "saedashboard": export_saedashboard}
    for fmt in cfg.export:
        if fmt not in exporters:
            raise ConfigError(f"unknown export format {fmt!r}; choose from {sorted(exporters)}")
    rows = None
    if cfg.explanations:  # checked before any compute
        from interp.browser.explain import load_explanations

        rows = load_explanations(cfg.explanations, Path(str(cfg.artifact)).name)
    t0 = time.time()
    build_store(cfg.artifact, cfg.text, cfg.n_tokens, cfg.out, model=cfg.model, **cfg.params)
    out = Path(str(cfg.out))  # a multi-view artifact (all-layer heads, LIB) gets one store per view below it
    paths = [out] if (out / "manifest.json").exists() else [out / p for p in find_stores(out)]
    if rows is not None:
        from interp.browser.explain import attach_explanations

        if len(paths) != 1:
            raise ConfigError(
                f"{cfg.artifact} has {len(paths)} views (one store each); explanations attach to a single-site store"
            )
        attach_explanations(out, rows, str(cfg.explanations))
    models: dict = {}  # one model load for every view's calibration
    for path in paths:
        store = FeatureStore(path)
        m = store.manifest
        strength = _calibrate_steering(path, models) if cfg.steering else "not calibrated (steering=false)"
        live = sum(1 for n in store.features["n_active"].to_pylist() if n > 0)
        print_table(
            {
                "store": path,
                "run": f"{m['model_name']} · {m['site']} · {m['method']} ({store.n_features} features)",  # plain text, not Markdown
                "tokens": m["n_tokens"],
                "attention-sink tokens left out": m.get("n_sinks", 0),
                "features active": f"{live} / {store.n_features}",
                "vocabulary projection": m["vocab_projection"].get("reason", m["vocab_projection"]["status"]),
                "default steering strength": strength,
                "explained features": m.get("explanations", {}).get("n_features", 0),
                "time so far (s)": round(time.time() - t0, 1),
            },
            "feature store",
        )
        for fmt in cfg.export:
            dest = exporters[fmt](
                store, Path(cfg.export_out) / path.relative_to(out) if cfg.export_out else path / f"export-{fmt}"
            )
            print(f"exported ({fmt}): {dest}")


def _calibrate_steering(path: Any, models: dict) -> str:
    """Write the store's steering.json; a one-line summary for the table (``models``: spec -> loaded)."""
    import importlib.util

    if importlib.util.find_spec("interp.evals") is None:
        return "not calibrated (interp.evals is not installed)"
    from interp._io import read_json
    from interp.evals.steering.store_strength import calibrate_store
    from interp.models import load

    spec = read_json(path / "manifest.json", "feature store manifest")["model"]
    if spec not in models:
        models[spec] = load(spec)
    cal = calibrate_store(path, models[spec])
    b = next((b for b in cal["budgets"] if b["kl"] == 0.1), cal["budgets"][0])
    return (
        f"alpha {b['alpha']:.3g} at KL {b['kl']:g} (median of {b['n_hit']} features, "
        f"range {b['alpha_min']:.3g}-{b['alpha_max']:.3g}; {cal['seconds']:.0f} s)"
        if b["alpha"] is not None
        else f"KL {b['kl']:g} missed for every sampled feature"
    )
