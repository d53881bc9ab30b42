"""Feature browser data layer: build a feature store for any decomposer, read it, export it.

No UI code here (the Streamlit app in ``apps/`` is a view over ``FeatureStore``).

    from interp.browser import build_store, FeatureStore
    build_store("runs/demo/sae-topk", "builtin:stdlib-docs", 200_000, "runs/demo/store")
    store = FeatureStore("runs/demo/store")
"""

from interp.browser.build import StoreConfig, build_store
from interp.browser.export import export_neuronpedia, export_saedashboard
from interp.browser.store import FeatureStore, StoreError, find_stores, resolve_under

__all__ = ["FeatureStore", "StoreConfig", "StoreError", "build_store", "export_neuronpedia",
           "export_saedashboard", "find_stores", "resolve_under"]
