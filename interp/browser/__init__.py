"""Feature browser data layer: build a feature store for any decomposer, read it, export it.

No UI code here (the Streamlit app in ``apps/`` is a view over ``FeatureStore``).

    from interp.browser import build_store, FeatureStore
    build_store("runs/demo/sae-topk", "builtin:stdlib-docs", 200_000, "runs/demo/store")
    store = FeatureStore("runs/demo/store")

The reader (``FeatureStore``, ``find_stores``, ``resolve_under``) imports only pyarrow and numpy;
the builder and exporters (torch, the model code) are imported on first use, so the app starts
fast.
"""

import importlib
from typing import Any

from interp.browser.store import FeatureStore, StoreError, find_stores, resolve_under

_LAZY = {
    "StoreConfig": "build",
    "build_store": "build",
    "export_neuronpedia": "export",
    "export_saedashboard": "export",
}

__all__ = [
    "FeatureStore",
    "StoreConfig",
    "StoreError",
    "build_store",
    "export_neuronpedia",
    "export_saedashboard",
    "find_stores",
    "resolve_under",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"interp.browser.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'interp.browser' has no attribute {name!r}")
