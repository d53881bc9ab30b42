"""Read a feature store (see ``write``): manifest checks, feature rows, examples, search.

Every read goes through ``FeatureStore``; a missing, incomplete or corrupt store raises
``StoreError`` with a message that says what to do, so the app can show it instead of a
traceback. ``resolve_under`` keeps user-supplied paths inside a root folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from interp._io import read_json
from interp.browser.spec import EXAMPLE_ROW_GROUP, FORMAT

if TYPE_CHECKING:
    import torch

TABLES = ("features.parquet", "examples.parquet", "vocab.parquet")


class StoreError(Exception):
    """A store that cannot be read (missing, incomplete, corrupt, or outside the root)."""


def resolve_under(root: str | Path, path: str | Path) -> Path:
    """``path`` (relative to ``root``, or absolute) resolved, refusing anything outside ``root``."""
    root = Path(root).resolve()
    full = (root / path).resolve()
    if full != root and root not in full.parents:
        raise StoreError(f"{path} is outside the browser's root folder {root}; "
                         "only stores under the root can be opened")
    return full


def find_stores(root: str | Path, max_depth: int = 4) -> list[Path]:
    """Store folders (relative to ``root``) with a manifest, complete or not, sorted."""
    root = Path(root).resolve()
    found = []
    for depth in range(1, max_depth + 1):
        for m in root.glob("/".join(["*"] * depth) + "/manifest.json"):
            try:
                if read_json(m, "manifest").get("format") == FORMAT:
                    found.append(m.parent.relative_to(root))
            except (OSError, ValueError):
                continue
    return sorted(found)


class FeatureStore:
    """One store folder: ``manifest``, ``features`` table, ``examples(i)``, ``search(...)``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.manifest = read_json(self.path / "manifest.json", "feature store manifest")
        except (FileNotFoundError, ValueError) as e:
            raise StoreError(f"{self.path} is not a readable feature store: {e}") from e
        if self.manifest.get("format") != FORMAT:
            raise StoreError(f"{self.path}: manifest format {self.manifest.get('format')!r}, expected {FORMAT!r}")
        if not self.manifest.get("complete"):
            raise StoreError(f"{self.path}: the store is incomplete (its build was interrupted); "
                             "re-run the same build command to finish it")
        missing = [f for f in self.manifest.get("files", []) if not (self.path / f).is_file()]
        if missing:
            raise StoreError(f"{self.path}: files {missing} are missing; rebuild the store")
        try:
            self.features = pq.read_table(self.path / "features.parquet")
            self._examples = pq.ParquetFile(self.path / "examples.parquet")
            self.vocab = pq.read_table(self.path / "vocab.parquet").column("token").to_pylist()
        except (pa.ArrowException, OSError) as e:
            raise StoreError(f"{self.path}: a table is corrupt ({e}); rebuild the store") from e
        self._offsets = self.features.column("ex_offset").to_numpy()
        self._counts = self.features.column("ex_count").to_numpy()

    # -- facts ------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return self.features.num_rows

    @property
    def has_vocab(self) -> bool:
        return "vocab_top" in self.features.column_names

    def title(self) -> str:
        m = self.manifest
        return f"{m['model_name']} · {m['site']} · {m['method']} ({m['n_features']} features)"

    # -- one feature ------------------------------------------------------------------------
    def check_feature(self, i: int) -> int:
        if not 0 <= int(i) < self.n_features:
            raise StoreError(f"feature {i} does not exist: this store has features 0..{self.n_features - 1}")
        return int(i)

    def feature(self, i: int) -> dict[str, Any]:
        return self.features.slice(self.check_feature(i), 1).to_pylist()[0]

    def examples(self, i: int) -> pa.Table:
        """The feature's example rows (top first, then quantile bands), read by row group."""
        i = self.check_feature(i)
        a, n = int(self._offsets[i]), int(self._counts[i])
        if n == 0:
            return self._examples.schema_arrow.empty_table()
        groups = list(range(a // EXAMPLE_ROW_GROUP, (a + n - 1) // EXAMPLE_ROW_GROUP + 1))
        table = self._examples.read_row_groups(groups)
        return table.slice(a - groups[0] * EXAMPLE_ROW_GROUP, n)

    def tokens(self, ids: list[int]) -> list[str]:
        return [self.vocab[t] if 0 <= t < len(self.vocab) else f"<id {t}>" for t in ids]

    def directions(self, residual: bool = False) -> "torch.Tensor":
        from safetensors.torch import load_file

        d = load_file(str(self.path / "directions.safetensors"))
        return d.get("residual_directions", d["directions"]) if residual else d["directions"]

    # -- search -----------------------------------------------------------------------------
    def search(self, text: str = "", token: str = "", min_density: float = 0.0,
               max_density: float = 1.0, sort: str = "feature", limit: int = 200) -> pa.Table:
        """Features matching every given filter: a substring of the top contexts (``text``, case-
        insensitive), a top-activating or top-vocabulary token (``token``, whitespace-stripped,
        exact), a density range. ``sort``: feature | density | max (descending for the last two)."""
        t = self.features
        mask = pc.and_(pc.greater_equal(t["density"], min_density), pc.less_equal(t["density"], max_density))
        if text:
            mask = pc.and_(mask, pc.match_substring(t["context"], text, ignore_case=True))
        if token:
            mask = pc.and_(mask, self._has_token(token.strip()))
        t = t.filter(mask)
        if sort in ("density", "max"):
            t = t.sort_by([(sort, "descending")])
        return t.select(["feature", "density", "max", "mean_active", "top_tokens"]
                        + (["vocab_top"] if self.has_vocab else [])).slice(0, limit)

    def _has_token(self, token: str) -> pa.Array:
        hit = np.zeros(self.n_features, dtype=bool)
        cols = ["top_tokens"] + (["vocab_top"] if self.has_vocab else [])
        for col in cols:
            lists = self.features[col].combine_chunks()
            flat = pc.utf8_trim_whitespace(lists.flatten())
            parents = pc.list_parent_indices(lists).to_numpy()
            hit[parents[pc.equal(flat, token).to_numpy(zero_copy_only=False)]] = True
        return pa.array(hit)
