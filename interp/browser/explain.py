"""Attach automatic-interpretability explanations to a feature store, for the browser's feature pages.

The explanations come from the feature-quality comparison (``interp reproduce quality`` writes
``autointerp.parquet``: one row per explained feature, after Delphi, Paulo et al. 2024,
"Automatically Interpreting Millions of Features in LLMs"). ``load_explanations`` picks one
artifact's rows and checks them; ``attach_explanations`` copies them into the store as
``explanations.parquet`` (written atomically, with page checksums) and records the source in the
manifest, so the app reads only files inside its store folder. ``interp browse artifact=A out=S
explanations=runs/quality/autointerp.parquet`` does both (on a finished store it only attaches).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from interp._io import folder_lock, read_json, write_json_atomic
from interp.browser.store import EXPLANATIONS
from interp.browser.write import write_parquet
from interp.errors import ConfigError, DataError, MissingFileError

COLUMNS = ("feature", "explanation", "detection", "fuzzing", "n_activating", "n_negative", "explainer", "scorer")
"""Columns copied into the store (``artifact`` selects the rows; ``top_examples`` stays behind:
the page shows the store's own examples)."""


def load_explanations(source: str | Path, artifact: str) -> pa.Table:
    """The rows of ``source`` (an ``autointerp.parquet``) whose ``artifact`` is ``artifact`` (the
    artifact's folder name, as the comparison names its rows), ``COLUMNS`` only, sorted by feature."""
    source = Path(source)
    if not source.is_file():
        raise MissingFileError(
            f"explanations file not found: {source} (interp reproduce quality writes autointerp.parquet)"
        )
    try:
        table = pq.read_table(source)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{source} is not a readable parquet table: {e}") from e
    missing = [c for c in ("artifact", *COLUMNS) if c not in table.column_names]
    if missing:
        raise DataError(f"{source} lacks the columns {missing} of an autointerp.parquet")
    names = sorted(set(table.column("artifact").to_pylist()))
    rows = table.filter(pc.equal(table["artifact"], artifact))
    if rows.num_rows == 0:
        raise ConfigError(
            f"{source} has no explanations for artifact {artifact!r} (rows are named by the artifact's "
            f"folder name; it has {names})"
        )
    rows = rows.select(list(COLUMNS)).sort_by("feature")
    rows = rows.cast(
        pa.schema(
            [
                ("feature", pa.int64()),
                ("explanation", pa.string()),
                ("detection", pa.float64()),
                ("fuzzing", pa.float64()),
                ("n_activating", pa.int64()),
                ("n_negative", pa.int64()),
                ("explainer", pa.string()),
                ("scorer", pa.string()),
            ]
        )
    )
    ids = rows.column("feature").to_pylist()
    if len(set(ids)) != len(ids):
        raise DataError(f"{source}: artifact {artifact!r} has several rows for one feature")
    return rows


def attach_explanations(store_dir: str | Path, rows: pa.Table, source: str | Path) -> Path:
    """Write ``rows`` (from ``load_explanations``) into the finished store at ``store_dir`` as
    ``explanations.parquet``, replacing earlier ones, and record them in the manifest."""
    store = Path(store_dir)
    with folder_lock(store, "feature store folder"):
        manifest = read_json(store / "manifest.json", "feature store manifest")
        if not manifest.get("complete"):
            raise DataError(f"{store}: the store is incomplete; finish its build before attaching explanations")
        ids = rows.column("feature").to_pylist()
        bad = [i for i in ids if not 0 <= i < manifest["n_features"]]
        if bad:
            raise DataError(
                f"explanations name features {bad[:5]} that {store} does not have (0..{manifest['n_features'] - 1}): "
                "they belong to another artifact"
            )
        write_parquet(store / EXPLANATIONS, rows)
        manifest["explanations"] = {
            "source": str(Path(source).resolve()),
            "n_features": len(ids),
            "explainers": sorted(set(rows.column("explainer").to_pylist())),
            "scorers": sorted(set(rows.column("scorer").to_pylist())),
        }
        manifest["files"] = [*(f for f in manifest.get("files", []) if f != EXPLANATIONS), EXPLANATIONS]
        write_json_atomic(store / "manifest.json", manifest)
    return store / EXPLANATIONS
