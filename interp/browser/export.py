"""Export a feature store for publication: SAEDashboard's Neuronpedia JSON, and Neuronpedia's
bulk-import layout.

- ``export_saedashboard(store, out)``: ``batch-N.json`` files in the format SAEDashboard's
  ``NeuronpediaRunner`` writes (``model_id``, ``layer``, ``sae_set``, ``features`` with
  ``feature_index``, ``pos_str/pos_values``, ``neg_str/neg_values``, ``frac_nonzero``,
  ``freq_hist_data_bar_*``, ``logits_hist_data_bar_*``, ``activations`` with ``tokens``,
  ``values``, ``bin_min``, ``bin_max``, ``bin_contains``, ``qualifying_token_index``), plus the
  feature's ``vector``. Top examples use SAEDashboard's convention ``bin_min = -1``,
  ``bin_contains = -1``.
- ``export_neuronpedia(store, out)``: ``{model}/{source}/release.jsonl, model.jsonl,
  sourceset.jsonl, source.jsonl, features/batch-N.jsonl.gz, activations/batch-N.jsonl.gz`` with
  the row fields of SAEDashboard's ``neuronpedia_export`` (camelCase activations, feature rows
  with ``topkCosSimIndices/Values``, ``hookName``, ``vectorDefaultSteerStrength``). The source id
  is ``{layer}-{source_set}``. Non-SAE decomposers go through the same rows (their directions as
  vectors), which Neuronpedia accepts for any direction set.
Every file is written atomically.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from interp._io import write_atomic
from interp.browser.store import FeatureStore

BATCH = 128


def _r(xs: Any, nd: int = 3) -> list[float]:
    return [round(float(x), nd) for x in xs]


def _activations(store: FeatureStore, i: int) -> list[dict]:
    rows = store.examples(i).to_pylist()
    return [
        {
            "tokens": store.tokens(r["tokens"]),
            "values": _r(r["acts"]),
            "bin_min": round(r["bin_min"], 4),
            "bin_max": round(r["bin_max"], 4),
            "bin_contains": round(r["bin_contains"], 4),
            "qualifying_token_index": r["token_index"],
        }
        for r in rows
    ]


def _hist(f: dict) -> tuple[list[float], list[float]]:
    """Histogram of nonzero codes as (bar centres, heights), negative side first."""
    n = len(f["hist_pos"])
    w = f["hist_range"] / n if f["hist_range"] else 0.0
    centres = [w * (b + 0.5) for b in range(n)]
    neg = [(-c, h) for c, h in zip(centres, f["hist_neg"]) if h][::-1]
    pos = [(c, h) for c, h in zip(centres, f["hist_pos"]) if h]
    bars = neg + pos
    return _r([c for c, _ in bars], 4), [float(h) for _, h in bars]


def saedashboard_feature(store: FeatureStore, i: int, vector: list[float] | None = None) -> dict:
    f = store.feature(i)
    values, heights = _hist(f)
    out = {
        "feature_index": i,
        "frac_nonzero": f["density"],
        "pos_str": f.get("vocab_top") or [],
        "pos_values": _r(f.get("vocab_top_logits") or []),
        "neg_str": f.get("vocab_bottom") or [],
        "neg_values": _r(f.get("vocab_bottom_logits") or []),
        "freq_hist_data_bar_values": values,
        "freq_hist_data_bar_heights": heights,
        "logits_hist_data_bar_values": _r(f.get("logit_hist_values") or []),
        "logits_hist_data_bar_heights": [float(h) for h in f.get("logit_hist_heights") or []],
        "correlated_features_indices": list(f["similar"]),
        "correlated_features_l1": _r(f["similar_cos"]),
        "correlated_features_pearson": [],
        "neuron_alignment_indices": [],
        "neuron_alignment_values": [],
        "neuron_alignment_l1": [],
        "correlated_neurons_indices": [],
        "correlated_neurons_l1": [],
        "correlated_neurons_pearson": [],
        "decoder_weights_dist": [],
        "n_prompts_total": store.manifest["n_rows"],
        "n_tokens_in_prompt": store.manifest["seq_len"],
        "dataset": store.manifest["request"]["text"],
        "activations": _activations(store, i),
    }
    if vector is not None:
        out["vector"] = _r(vector, 6)
    return out


def _batches(n: int, size: int) -> Iterator[tuple[int, range]]:
    for b, a in enumerate(range(0, n, size)):
        yield b, range(a, min(a + size, n))


def _source_set(store: FeatureStore) -> str:
    m = store.manifest
    return re.sub(r"[^a-z0-9-]+", "-", f"interp-{m['method']}-{m['n_features']}".lower())


def export_saedashboard(
    store: FeatureStore | str | Path, out_dir: str | Path, batch_size: int = BATCH, sae_set: str | None = None
) -> Path:
    """Write SAEDashboard/Neuronpedia ``batch-N.json`` files for every feature into ``out_dir``."""
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    out = Path(out_dir)
    vectors = store.directions()
    m = store.manifest
    for b, ids in _batches(store.n_features, batch_size):
        batch = {
            "model_id": m["model_name"],
            "layer": m["layer"],
            "sae_set": sae_set or _source_set(store),
            "features": [saedashboard_feature(store, i, vectors[i].tolist()) for i in ids],
        }
        write_atomic(out / f"batch-{b}.json", lambda f, o=batch: json.dump(o, f))
    return out


def _jsonl(path: Path, rows: list[dict], gz: bool = False) -> None:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    write_atomic(path, lambda f: f.write(gzip.compress(data, 5) if gz else data), binary=True)


def export_neuronpedia(
    store: FeatureStore | str | Path,
    out_dir: str | Path,
    model_id: str | None = None,
    source_set: str | None = None,
    creator_id: str = "interp",
    creator_name: str = "interp",
    release_id: str | None = None,
    batch_size: int = BATCH,
) -> Path:
    """Write the Neuronpedia bulk-import layout under ``out_dir``; returns the source folder."""
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    m = store.manifest
    model_id = model_id or m["model_name"]
    source_set = source_set or _source_set(store)
    source_id = f"{m['layer']}-{source_set}"
    src = Path(out_dir) / model_id / source_id
    now = datetime.now(timezone.utc).isoformat()
    release = release_id or source_set
    desc = f"{m['method']} features of {m['model_name']} at {m['site']}, built by interp"
    _jsonl(
        src / "release.jsonl",
        [
            {
                "name": release,
                "description": desc,
                "descriptionShort": desc,
                "creatorName": creator_name,
                "creatorNameShort": creator_name,
                "creatorId": creator_id,
                "visibility": "PUBLIC",
                "urls": [],
                "createdAt": now,
            }
        ],
    )
    _jsonl(
        src / "model.jsonl",
        [
            {
                "id": model_id,
                "instruct": model_id.endswith("-it"),
                "creatorId": creator_id,
                "displayName": model_id,
                "displayNameShort": model_id,
                "layers": 0,
                "neuronsPerLayer": 0,
                "visibility": "PUBLIC",
                "createdAt": now,
                "updatedAt": now,
            }
        ],
    )
    _jsonl(
        src / "sourceset.jsonl",
        [
            {
                "modelId": model_id,
                "name": source_set,
                "creatorId": creator_id,
                "creatorName": creator_name,
                "releaseName": release,
                "description": desc,
                "hasDashboards": True,
                "visibility": "PUBLIC",
                "createdAt": now,
            }
        ],
    )
    _jsonl(
        src / "source.jsonl",
        [
            {
                "id": source_id,
                "modelId": model_id,
                "setName": source_set,
                "creatorId": creator_id,
                "hasDashboards": True,
                "visibility": "PUBLIC",
                "dataset": m["request"]["text"],
                "num_prompts": m["n_rows"],
                "num_tokens_in_prompt": m["seq_len"],
                "createdAt": now,
            }
        ],
    )
    vectors = store.directions()
    for b, ids in _batches(store.n_features, batch_size):
        feats, acts = [], []
        for i in ids:
            sd = saedashboard_feature(store, i)
            f, a = _neuronpedia_rows(sd, vectors[i].tolist(), model_id, source_id, m["site"], creator_id, now)
            feats.append(f)
            acts.extend(a)
        _jsonl(src / "features" / f"batch-{b}.jsonl.gz", feats, gz=True)
        _jsonl(src / "activations" / f"batch-{b}.jsonl.gz", acts, gz=True)
    return src


def _neuronpedia_rows(
    sd: dict, vector: list[float], model_id: str, source_id: str, hook: str, creator_id: str, now: str
) -> tuple[dict, list[dict]]:
    acts, max_act = [], 0.0
    for j, a in enumerate(sd["activations"]):
        vals = a["values"]
        top = max(range(len(vals)), key=vals.__getitem__)
        max_act = max(max_act, vals[top])
        acts.append(
            {
                "id": f"{source_id}-{sd['feature_index']}-{j}",
                "tokens": a["tokens"],
                "values": vals,
                "index": str(sd["feature_index"]),
                "layer": source_id,
                "modelId": model_id,
                "maxValue": vals[top],
                "maxValueTokenIndex": top,
                "minValue": min(vals),
                "creatorId": creator_id,
                "createdAt": now,
                "binMin": a["bin_min"],
                "binMax": a["bin_max"],
                "binContains": a["bin_contains"],
                "qualifyingTokenIndex": a["qualifying_token_index"],
                "dfaValues": [],
                "lossValues": [],
                "dataSource": None,
                "dataIndex": None,
            }
        )
    feat = {
        "modelId": model_id,
        "layer": source_id,
        "index": str(sd["feature_index"]),
        "creatorId": creator_id,
        "createdAt": now,
        "maxActApprox": max_act,
        "hasVector": True,
        "vector": _r(vector, 6),
        "vectorLabel": None,
        "vectorDefaultSteerStrength": max_act,
        "hookName": hook,
        "topkCosSimIndices": sd["correlated_features_indices"],
        "topkCosSimValues": sd["correlated_features_l1"],
        **{
            k: sd[k]
            for k in (
                "neg_str",
                "neg_values",
                "pos_str",
                "pos_values",
                "frac_nonzero",
                "freq_hist_data_bar_heights",
                "freq_hist_data_bar_values",
                "logits_hist_data_bar_heights",
                "logits_hist_data_bar_values",
                "neuron_alignment_indices",
                "neuron_alignment_values",
                "neuron_alignment_l1",
                "correlated_neurons_indices",
                "correlated_neurons_pearson",
                "correlated_neurons_l1",
                "correlated_features_indices",
                "correlated_features_pearson",
                "correlated_features_l1",
                "decoder_weights_dist",
            )
        },
    }
    return feat, acts
