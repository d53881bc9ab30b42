"""The on-disk activation cache: reading it, checking it, and streaming shuffled batches from it.

``ActivationCache(path)`` opens a directory written by ``cache_activations`` (layout in
``interp.activations.cache``). Arrays are memory-mapped, never loaded whole; nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import xxhash
from jaxtyping import Float, Int

from interp._io import read_json, write_json_atomic
from interp.activations.disk import npy_data_offset, npy_header, allocate, reserve
from interp.errors import ConfigError, DataError

FORMAT = "interp-activations/1"
TOKEN_FILES = ("tokens", "doc_ids", "char_start", "char_end")
_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}  # bf16 as raw bits
STORAGE_TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_REQUIRED = ("format", "model", "sites_info", "n_seqs", "seq_len", "dtype", "shard_ranges", "shards")


def check_manifest(m: dict, where: Path) -> None:
    """Field types of a manifest (a hand-edited or damaged one fails here, not in a reshape)."""

    def bad(what: str) -> DataError:
        return DataError(f"activation cache manifest {where} is corrupted ({what}); delete the directory and re-cache")

    for key in ("n_seqs", "seq_len"):
        if not isinstance(m[key], int) or isinstance(m[key], bool) or m[key] < 1:
            raise bad(f"{key} must be a positive integer, got {m[key]!r}")
    if m["dtype"] not in _DTYPES:
        raise bad(f"unknown dtype {m['dtype']!r}")
    if not isinstance(m["sites_info"], dict) or not all(
        isinstance(i, dict) and isinstance(i.get("width"), int) and i["width"] > 0 and isinstance(i.get("file"), str)
        for i in m["sites_info"].values()
    ):
        raise bad("sites_info must map each site to a positive integer width and a file")
    if not isinstance(m["shards"], list) or not all(
        isinstance(s, dict) and {"start", "end", "xxh3_64"} <= set(s) for s in m["shards"]
    ):
        raise bad("shards must be a list of {start, end, xxh3_64}")


def storage_dtype(name: str) -> np.dtype:
    if name not in _DTYPES:
        raise ConfigError(f"unknown cache dtype {name!r}; choose one of {', '.join(_DTYPES)}")
    return np.dtype(_DTYPES[name])


def site_file(site: str) -> str:
    return f"acts/{site}.npy"


def from_storage(arr: np.ndarray, dtype: str) -> torch.Tensor:
    t = torch.from_numpy(arr)
    return t.view(torch.int16).view(torch.bfloat16) if dtype == "bfloat16" else t


class ActivationCache:
    """A cache directory: ``.manifest``, ``.tokens()``, ``.activations(site)``, ``.batches(...)``."""

    def __init__(self, path: str | Path, check: bool = True):
        self.path = Path(path)
        self.manifest = read_json(self.path / "manifest.json", "activation cache manifest")
        missing = [k for k in _REQUIRED if k not in self.manifest]
        if missing or self.manifest["format"] != FORMAT:
            raise DataError(
                f"activation cache manifest {self.path / 'manifest.json'} is corrupted "
                f"(missing {missing} or unknown format); delete the directory and re-cache"
            )
        check_manifest(self.manifest, self.path / "manifest.json")
        self._verified: set[tuple[str, int]] = set()  # (site, shard) whose checksum matched
        if check:
            self._check_complete()
            for site in self.sites:
                self._check_header(site)

    # -- facts -------------------------------------------------------------------------------
    @property
    def sites(self) -> list[str]:
        return list(self.manifest["sites_info"])

    @property
    def n_tokens(self) -> int:
        return self.manifest["n_seqs"] * self.manifest["seq_len"]

    def width(self, site: str) -> int:
        return self._site_info(site)["width"]

    def _site_info(self, site: str) -> dict:
        if site not in self.manifest["sites_info"]:
            raise ConfigError(f"site {site!r} is not in the cache at {self.path}; it has {self.sites}")
        return self.manifest["sites_info"][site]

    def _expected_bytes(self, site: str) -> int:
        m = self.manifest
        return m["n_seqs"] * m["seq_len"] * self.width(site) * storage_dtype(m["dtype"]).itemsize

    def _truncated(self, site: str) -> tuple[int, int] | None:
        """(bytes present, bytes expected) if the site's data file is short, else None."""
        path = self.path / self._site_info(site)["file"]
        if not path.exists():
            return (0, self._expected_bytes(site))
        have = path.stat().st_size - npy_data_offset(path)
        want = self._expected_bytes(site)
        return (have, want) if have < want else None

    def _check_header(self, site: str) -> None:
        """The site's .npy header must agree with the manifest (shape [N, S, width], dtype)."""
        path = self.path / self._site_info(site)["file"]
        m = self.manifest
        shape, dtype, _ = npy_header(path)
        want = (m["n_seqs"], m["seq_len"], self.width(site))
        if tuple(shape) != want or dtype != storage_dtype(m["dtype"]):
            raise DataError(
                f"{path} holds a {dtype} array of shape {tuple(shape)} but the manifest "
                f"{self.path / 'manifest.json'} says {storage_dtype(m['dtype'])} {want}: one of them "
                f"was edited or replaced; delete the directory and re-cache"
            )

    @property
    def fingerprint(self) -> str:
        """Identifies the cached data: the request and every shard's checksum (cheap: no data read)."""
        m = self.manifest
        keys = ("model", "sites", "text", "seq_len", "n_seqs", "dtype", "shuffle_seed")
        shards = sorted((s["start"], s["end"], sorted(s["xxh3_64"].items())) for s in m["shards"])
        blob = json.dumps([[m.get(k) for k in keys], shards], sort_keys=True, default=str)
        return "cache:" + xxhash.xxh3_64_hexdigest(blob.encode())

    def _check_complete(self) -> None:
        for site in self.sites:
            if (t := self._truncated(site)) is not None:
                raise DataError(
                    f"activation file for {site} in {self.path} is truncated ({t[0]} of {t[1]} bytes). "
                    f"Re-run the same cache command to recompute the damaged shards."
                )
        if not self.manifest.get("complete") or len(self.manifest["shards"]) != len(self.manifest["shard_ranges"]):
            done, total = len(self.manifest["shards"]), len(self.manifest["shard_ranges"])
            raise DataError(
                f"activation cache {self.path} is incomplete ({done} of {total} shards); "
                f"re-run the same cache command to finish it"
            )

    # -- arrays ------------------------------------------------------------------------------
    def token_array(self, name: str = "tokens") -> np.ndarray:
        try:
            return np.load(self.path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(
                f"{name}.npy in {self.path} is missing or damaged ({e}); delete the directory and re-cache"
            ) from e

    def tokens(self) -> Int[torch.Tensor, "N S"]:
        return torch.from_numpy(np.array(self.token_array("tokens")))

    def special_mask(self) -> np.ndarray:
        """[N, S] bool: BOS/separator tokens (char offset -1) and padding."""
        mask = np.asarray(self.token_array("char_start")) < 0
        pad = self.manifest.get("pad_id")
        if pad is not None:
            mask |= np.asarray(self.token_array("tokens")) == pad
        return mask

    def _raw(self, site: str, mode: str = "r") -> np.memmap:
        return np.load(self.path / self._site_info(site)["file"], mmap_mode=mode, allow_pickle=False)

    def activations(self, site: str, verify: bool = True) -> Float[torch.Tensor, "N S D"]:
        """Memory-mapped activations, row-aligned with ``tokens()``. ``verify`` first checks every
        shard of the site against its checksum once (a sequential read); ``False`` skips that."""
        import warnings

        if verify:
            self.verify(site)
        with warnings.catch_warnings():  # read-only memmap: torch warns it is not writable
            warnings.simplefilter("ignore", UserWarning)
            return from_storage(self._raw(site), self.manifest["dtype"])

    def writable(self, site: str) -> np.memmap:
        return self._raw(site, mode="r+")

    # -- corruption checks on read -------------------------------------------------------------
    def verify(self, site: str, rows: np.ndarray | None = None) -> None:
        """Check the shards holding sequences ``rows`` (default: all) against their checksums,
        each shard once per ``ActivationCache``; ``DataError`` naming the shard if one differs."""
        shards = self.manifest["shards"]
        if rows is None:
            ids = range(len(shards))
        else:
            if not hasattr(self, "_starts"):
                shards.sort(key=lambda sh: sh["start"])
                self._starts = np.array([sh["start"] for sh in shards])
            ids = np.unique(np.searchsorted(self._starts, rows, side="right") - 1).tolist()
        for i in ids:
            if (site, i) in self._verified:
                continue
            sh = shards[i]
            if self._digest(site, sh["start"], sh["end"]) != sh["xxh3_64"].get(site):
                raise DataError(
                    f"activation cache {self.path}: rows {sh['start']}..{sh['end']} of {site} "
                    f"({self._site_info(site)['file']}) are corrupt (checksum mismatch). Repair it by "
                    f"re-running the command that made it, which recomputes damaged shards: {self.command()}"
                )
            self._verified.add((site, i))

    def command(self) -> str:
        """The ``cache_activations`` call that made (and repairs) this cache."""
        m = self.manifest
        return (
            f"interp.activations.cache_activations({m['model']!r}, {m.get('text')!r}, {m['sites']!r}, "
            f"{m.get('n_tokens_requested')}, {str(self.path)!r}, seq_len={m['seq_len']}, "
            f"dtype={m['dtype']!r}, shuffle_seed={m.get('shuffle_seed')!r})"
        )

    # -- shard bookkeeping (used by cache_activations) ---------------------------------------
    def _digest(self, site: str, start: int, end: int) -> str:
        """xxh3-64 of rows ``[start, end)`` of the site's file, read in 8 MiB blocks (plain reads
        are several times faster than faulting the pages of a memory map in)."""
        path = self.path / self._site_info(site)["file"]
        row = self.manifest["seq_len"] * self.width(site) * storage_dtype(self.manifest["dtype"]).itemsize
        h, buf = xxhash.xxh3_64(), bytearray(1 << 23)
        with open(path, "rb", buffering=0) as f:
            f.seek(npy_data_offset(path) + start * row)
            left = (end - start) * row
            while left > 0:
                got = f.readinto(memoryview(buf)[: min(left, len(buf))])
                if not got:
                    break  # a short file: the digest differs, as it should
                h.update(memoryview(buf)[:got])
                left -= got
        return h.hexdigest()

    def repair(self) -> None:
        """Restore truncated or missing files to full size and forget shards whose data is damaged."""
        before = list(self.manifest["shards"])
        for site in self.sites:
            if self._truncated(site) is not None:
                path = self.path / self._site_info(site)["file"]
                if not path.exists():
                    self.manifest["shards"] = []
                    allocate(
                        path,
                        storage_dtype(self.manifest["dtype"]),
                        (self.manifest["n_seqs"], self.manifest["seq_len"], self.width(site)),
                    )
                else:
                    with open(path, "r+b") as f:
                        f.truncate(npy_data_offset(path) + self._expected_bytes(site))
                    reserve(path)
        good = [
            s
            for s in self.manifest["shards"]
            if all(self._digest(site, s["start"], s["end"]) == s["xxh3_64"].get(site) for site in self.sites)
        ]
        if good != before:
            self.manifest.update(shards=good, complete=False)
            write_json_atomic(self.path / "manifest.json", self.manifest)

    def missing_shards(self) -> list[tuple[int, int]]:
        done = {(s["start"], s["end"]) for s in self.manifest["shards"]}
        return [(a, b) for a, b in self.manifest["shard_ranges"] if (a, b) not in done]

    def record_shard(self, start: int, end: int, sums: dict[str, str], rank: int = 0) -> None:
        """List a written shard: rank 0 in the manifest, other ranks in their own journal file
        (``manifest.rank<r>.json``) that rank 0 folds into the manifest (``merge_journals``)."""
        entry = {"start": start, "end": end, "xxh3_64": sums}
        self.manifest["shards"].append(entry)
        if rank == 0:
            write_json_atomic(self.path / "manifest.json", self.manifest)
            return
        journal = self.path / f"manifest.rank{rank}.json"
        old = read_json(journal, "activation cache shard journal")["shards"] if journal.exists() else []
        write_json_atomic(journal, {"shards": [*old, entry]})

    def merge_journals(self) -> None:
        """Fold other ranks' shard journals into the manifest (rank 0 only), then remove them."""
        journals = sorted(self.path.glob("manifest.rank*.json"))
        if not journals:
            return
        known = {(s["start"], s["end"]) for s in self.manifest["shards"]}
        for j in journals:
            for shard in read_json(j, "activation cache shard journal")["shards"]:
                if (shard["start"], shard["end"]) not in known:
                    known.add((shard["start"], shard["end"]))
                    self.manifest["shards"].append({k: shard[k] for k in ("start", "end", "xxh3_64")})
        self.manifest["shards"].sort(key=lambda sh: sh["start"])
        write_json_atomic(self.path / "manifest.json", self.manifest)
        for j in journals:
            j.unlink()

    def finish(self) -> None:
        if not self.missing_shards() and not self.manifest["complete"]:
            self.manifest["complete"] = True
            write_json_atomic(self.path / "manifest.json", self.manifest)

    # -- streaming -----------------------------------------------------------------------------
    def batches(
        self,
        site: str,
        batch_size: int,
        shuffle: bool = True,
        *,
        seed: int = 0,
        exclude_special: bool = False,
        epochs: int | None = 1,
        skip: int = 0,
        drop_last: bool = False,
        buffer_tokens: int = 1 << 18,
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[Float[torch.Tensor, "B D"]]:
        """Yield ``[B, D]`` batches of one site's activations.

        Shuffling permutes sequences, then tokens within a buffer of ``buffer_tokens`` tokens, so
        reads stay local. ``epochs=None`` streams forever (a new permutation each epoch);
        ``skip`` drops the first batches without reading them (exact resume); ``exclude_special``
        leaves out BOS/separator and pad tokens. Each shard is checked against its checksum the
        first time a batch reads from it (``verify``).
        """
        from interp.activations.order import batch_indices

        keep = (
            ~self.special_mask()
            if exclude_special
            else np.ones((self.manifest["n_seqs"], self.manifest["seq_len"]), dtype=bool)
        )
        flat = self._raw(site).reshape(-1, self.width(site))
        seq_len = self.manifest["seq_len"]
        for idx in batch_indices(keep, batch_size, shuffle, seed, epochs, skip, drop_last, buffer_tokens):
            idx = np.sort(idx)
            self.verify(site, idx // seq_len)
            rows = flat[idx]
            yield from_storage(rows, self.manifest["dtype"]).to(dtype)
