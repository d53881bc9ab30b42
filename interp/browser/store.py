"""Read a feature store (see ``write``): manifest checks, feature rows, examples, search.

Every read goes through ``FeatureStore``; a missing, incomplete or corrupt store raises
``StoreError`` with a message that says what to do, so the app can show it instead of a
traceback. ``resolve_under`` keeps user-supplied paths inside a root folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from interp._io import load_safetensors, read_json
from interp.browser.spec import EXAMPLE_ROW_GROUP, FORMAT
from interp.errors import DataError

if TYPE_CHECKING:
    import torch

TABLES = ("features.parquet", "examples.parquet", "vocab.parquet")
EXPLANATIONS = "explanations.parquet"  # optional: attached by ``explain.attach_explanations``


class StoreError(DataError):
    """A store that cannot be read (missing, incomplete, corrupt, or outside the root)."""


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: Any) -> str:
    """``text`` with every Markdown character escaped, so the app shows it as it is: a store's
    manifest is data, and must not make the browser fetch an image or follow a link."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def resolve_under(root: str | Path, path: str | Path) -> Path:
    """``path`` (relative to ``root``, or absolute) resolved, refusing anything outside ``root``."""
    root = Path(root).resolve()
    full = (root / path).resolve()
    if full != root and root not in full.parents:
        raise StoreError(
            f"{path} is outside the browser's root folder {root}; only stores under the root can be opened"
        )
    return full


def find_stores(root: str | Path, max_depth: int = 4) -> list[Path]:
    """Store folders (relative to ``root``) with a manifest, complete or not, sorted; folders
    that a symbolic link leads outside the root are left out."""
    root = Path(root).resolve()
    found = []
    for depth in range(1, max_depth + 1):
        for m in root.glob("/".join(["*"] * depth) + "/manifest.json"):
            try:
                resolve_under(root, m.relative_to(root))
                if read_json(m, "manifest").get("format") == FORMAT:
                    found.append(m.parent.relative_to(root))
            except (OSError, ValueError):  # StoreError is a ValueError
                continue
    return sorted(found)


def describe(root: str | Path, store: str | Path) -> str:
    """A plain-text label for a store folder: "path — model · site · method" (never raises)."""
    try:
        m = read_json(Path(root) / store / "manifest.json", "feature store manifest")
        if m.get("complete") and "model_name" in m:
            return f"{store} — {m['model_name']} · {m.get('site')} · {m.get('method')}"
        return f"{store} (incomplete)"
    except (OSError, ValueError):
        return f"{store} (unreadable)"


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
            raise StoreError(
                f"{self.path}: the store is incomplete (its build was interrupted); "
                "re-run the same build command to finish it"
            )
        missing = [f for f in self.manifest.get("files", []) if not (self.path / f).is_file()]
        if missing:
            raise StoreError(f"{self.path}: files {missing} are missing; rebuild the store")
        for f in ("manifest.json", *TABLES, *self.manifest.get("files", [])):
            self._inside(f)
        try:
            self.features = pq.read_table(self.path / "features.parquet", page_checksum_verification=True)
            self._examples = pq.ParquetFile(self.path / "examples.parquet", page_checksum_verification=True)
            self.vocab = (
                pq.read_table(self.path / "vocab.parquet", page_checksum_verification=True).column("token").to_pylist()
            )
            self._explained: dict[int, dict[str, Any]] | None = None
            self._offsets = self.features.column("ex_offset").to_numpy()
            self._counts = self.features.column("ex_count").to_numpy()
        except (pa.ArrowException, OSError, KeyError) as e:
            raise StoreError(f"{self.path}: a table is corrupt ({e}); rebuild the store") from e

    def _inside(self, name: str) -> Path:
        """``self.path / name``, refusing a file that a symbolic link leads out of the store."""
        folder = self.path.resolve()
        full = (folder / name).resolve()
        if folder not in full.parents:
            raise StoreError(
                f"{self.path / name} leads outside the store folder (a symbolic link?); "
                "the browser only reads files inside it"
            )
        return full

    # -- facts ------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return self.features.num_rows

    @property
    def has_vocab(self) -> bool:
        return "vocab_top" in self.features.column_names

    def title(self) -> str:
        """Plain text (Markdown escaped, see ``plain``)."""
        m = self.manifest
        return plain(f"{m['model_name']} · {m['site']} · {m['method']} ({m['n_features']} features)")

    def caption(self) -> str:
        """What the store was built from, as plain text (Markdown escaped)."""
        m = self.manifest
        return plain(
            f"{m['n_tokens']:,} tokens of {m['request']['text']} · {m['n_features']:,} features · "
            f"vocabulary projection: {m['vocab_projection']['status']}"
        )

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
        try:
            table = self._examples.read_row_groups(groups)
        except (pa.ArrowException, OSError) as e:
            raise StoreError(f"{self.path}: examples.parquet is corrupt ({e}); rebuild the store") from e
        return table.slice(a - groups[0] * EXAMPLE_ROW_GROUP, n)

    def explanation(self, i: int) -> dict[str, Any] | None:
        """The feature's attached explanation (text, detection and fuzzing AUROC, explainer and
        scorer names), or None when it has none (see ``explain.attach_explanations``)."""
        i = self.check_feature(i)
        if "explanations" not in self.manifest:
            return None
        if self._explained is None:
            try:
                rows = pq.read_table(self._inside(EXPLANATIONS), page_checksum_verification=True).to_pylist()
            except (pa.ArrowException, OSError) as e:
                raise StoreError(f"{self.path}: {EXPLANATIONS} is corrupt ({e}); attach the explanations again") from e
            self._explained = {int(r["feature"]): r for r in rows}
        return self._explained.get(i)

    def tokens(self, ids: list[int]) -> list[str]:
        return [self.vocab[t] if 0 <= t < len(self.vocab) else f"<id {t}>" for t in ids]

    def directions(self, residual: bool = False) -> "torch.Tensor":
        d = load_safetensors(self._inside("directions.safetensors"), "store directions")
        return d.get("residual_directions", d["directions"]) if residual else d["directions"]

    def steering(self) -> dict[str, Any] | None:
        """The store's steering-strength calibration (``steering.json``, written after the build by
        ``interp.evals.steering.store_strength.calibrate_store``), or None when it has none."""
        path = self._inside("steering.json")
        if not path.is_file():
            return None
        try:
            return read_json(path, "store steering calibration")
        except ValueError as e:
            raise StoreError(f"{self.path}: steering.json is corrupt ({e}); rebuild it with `interp browse`") from e

    # -- search -----------------------------------------------------------------------------
    def search(
        self,
        text: str = "",
        token: str = "",
        min_density: float = 0.0,
        max_density: float = 1.0,
        sort: str = "feature",
        limit: int = 200,
    ) -> pa.Table:
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
        return t.select(
            ["feature", "density", "max", "mean_active", "top_tokens"] + (["vocab_top"] if self.has_vocab else [])
        ).slice(0, limit)

    def _has_token(self, token: str) -> pa.Array:
        hit = np.zeros(self.n_features, dtype=bool)
        cols = ["top_tokens"] + (["vocab_top"] if self.has_vocab else [])
        for col in cols:
            lists = self.features[col].combine_chunks()
            flat = pc.utf8_trim_whitespace(lists.flatten())
            parents = pc.list_parent_indices(lists).to_numpy()
            hit[parents[pc.equal(flat, token).to_numpy(zero_copy_only=False)]] = True
        return pa.array(hit)
