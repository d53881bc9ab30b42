"""Build a feature store for the browser, optionally exporting it for publication.

    python scripts/build_browser.py configs/browser.yaml artifact=runs/demo/sae-topk \
        out=runs/demo/store [n_tokens=... k=... export=neuronpedia ...]

The model and hook site come from the artifact. A head-SVD artifact over every layer gets one
store per layer (``out/layer-LL``), a LIB artifact one per hooked node layer (``out/node-N``);
``views=[3,8]`` builds only those. Re-running the same command after an interruption resumes
the build. Open the result with ``make browse`` (root: runs/).
"""

import sys
import time
from pathlib import Path

from interp.browser import FeatureStore, build_store, export_neuronpedia, export_saedashboard, find_stores
from interp.cli import load_config, print_table

EXPORTERS = {"neuronpedia": export_neuronpedia, "saedashboard": export_saedashboard}


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    cfg = load_config(argv[0], argv[1:])
    artifact, out = cfg.pop("artifact", None), cfg.pop("out", None)
    if artifact is None or out is None:
        sys.exit("give artifact=<decomposer dir> and out=<store dir>")
    text, n_tokens = cfg.pop("text"), int(cfg.pop("n_tokens"))
    export, export_out = cfg.pop("export", None), cfg.pop("export_out", None)
    t0 = time.time()
    build_store(artifact, text, n_tokens, out, **cfg)
    out = Path(out)  # a multi-view artifact (all-layer heads, LIB) gets one store per view below it
    paths = [out] if (out / "manifest.json").exists() else [out / p for p in find_stores(out)]
    for path in paths:
        store = FeatureStore(path)
        m = store.manifest
        live = sum(1 for n in store.features["n_active"].to_pylist() if n > 0)
        print_table({"store": path, "run": store.title(), "tokens": m["n_tokens"],
                     "attention-sink tokens left out": m.get("n_sinks", 0),
                     "features active": f"{live} / {store.n_features}",
                     "vocabulary projection": m["vocab_projection"].get("reason", m["vocab_projection"]["status"]),
                     "time so far (s)": round(time.time() - t0, 1)}, "feature store")
        for fmt in [export] if isinstance(export, str) else export or []:
            if fmt not in EXPORTERS:
                sys.exit(f"unknown export format {fmt!r}; choose from {sorted(EXPORTERS)}")
            dest = EXPORTERS[fmt](store, Path(export_out) / path.relative_to(out) if export_out
                                  else path / f"export-{fmt}")
            print(f"exported ({fmt}): {dest}")

if __name__ == "__main__":
    main(sys.argv[1:])
