"""Build a feature store: one streaming pass of a model over text, encoded by any decomposer.

    build_store("runs/demo/sae-topk", "builtin:stdlib-docs", 200_000, "runs/demo/store")

For every feature the pass collects activation density, mean and max, an exact histogram, its
top-k activating contexts and a uniform sample of its active tokens (for activation-quantile
examples), each with the feature's code on every token of a window around the token (see
``collect``). Memory is bounded by features x (k + samples) x window, never by the number of
tokens. The model, site and decomposer come from the artifact; the decomposer is used only
through the ``Decomposer`` interface (``encode`` and ``directions``), so every method works.

Resumable like the activation cache: the running state is checkpointed every ``checkpoint_tokens``
tokens into ``checkpoint/`` (``state.safetensors``, and ``state.json``: the rows done and the xxh3
of the state, checked on resume), swapped in whole (``replace_dir``); running the same
command again continues from there, and the result equals an uninterrupted build (the random
sample keys are seeded per row range). The parquet tables are written at the end, each
atomically, and the manifest is marked complete last.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xxhash
from safetensors.torch import save_file
from tqdm.auto import tqdm

import interp
from interp._io import (
    check_same_request,
    file_digest,
    folder_lock,
    load_safetensors,
    read_json,
    recover_dir,
    remove_dir,
    replace_dir,
    write_json_atomic,
)
from interp.browser.collect import NEG_INF, Histogram, Moments, SlotTopK, sink_mask
from interp.browser.labels import artifact_views
from interp.browser.spec import FORMAT
from interp.decomposers import Decomposer, load
from interp.decomposers.base import config_from
from interp.errors import ConfigError, DataError
from interp.models import LoadedModel, run_to_sites
from interp.models import load as load_model

STATE_DIR = "checkpoint"
STATE_FILE = "state.safetensors"  # the checkpoint of stores begun before STATE_DIR (read on resume)


@dataclass(frozen=True)
class StoreConfig:
    """Options of a store build (all recorded in the manifest)."""

    seq_len: int = 128  # tokens per context row
    k: int = 20  # top activating examples kept per feature
    n_samples: int = 40  # uniform sample of active tokens per feature (source of quantile examples)
    n_quantiles: int = 5  # activation-quantile bands (of the feature's active tokens)
    per_quantile: int = 5  # examples shown per band
    window_left: int = 15  # context tokens before the example token
    window_right: int = 8  # and after it (window = left + 1 + right tokens, inside the row)
    n_bins: int = 64  # histogram bins per sign (power of two)
    n_similar: int = 10  # nearest features by cosine of directions
    vocab_k: int = 10  # top / bottom tokens of the vocabulary projection
    rank: str = "value"  # top examples by code value, or "abs" (|code|: signed decomposers)
    exclude_special: bool = True  # BOS/separator tokens count as inactive
    exclude_sinks: bool = True  # attention-sink tokens count as inactive (see collect.sink_mask)
    sink_ratio: float = 5.0  # a token is a sink when its activation norm is > this x the median
    views: tuple[int, ...] | None = None  # multi-view artifacts: which layers get a store (None: all)
    batch_size: int = 8  # rows per model forward pass
    chunk_elements: int = 1 << 24  # codes encoded at once (tokens x features)
    checkpoint_tokens: int = 1 << 17  # tokens between checkpoints of the build (resume point)
    seed: int = 0  # sample keys
    shuffle_seed: int | None = None  # document order of the text source

    @property
    def width(self) -> int:
        return self.window_left + 1 + self.window_right

    def validate(self) -> None:
        if self.rank not in ("value", "abs"):
            raise ConfigError(f"rank must be 'value' or 'abs', got {self.rank!r}")
        if self.sink_ratio < 0:
            raise ConfigError(f"sink_ratio must be >= 0 (0: no norm-based sinks), got {self.sink_ratio}")
        if self.width > self.seq_len:
            raise ConfigError(f"context window {self.width} is longer than seq_len {self.seq_len}")


class FeatureStats:
    """Every running statistic of a build, with a flat state dict for checkpoints."""

    def __init__(self, n_features: int, cfg: StoreConfig, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.top = SlotTopK(n_features, cfg.k, cfg.width, device)
        self.sample = SlotTopK(n_features, cfg.n_samples, cfg.width, device)
        self.hist = Histogram(n_features, cfg.n_bins, device)
        self.moments = Moments(n_features, device)
        self.n_tokens = torch.zeros((), dtype=torch.long)
        self.n_sinks = torch.zeros((), dtype=torch.long)  # tokens left out as attention sinks

    def cpu(self) -> "FeatureStats":
        """A copy of the statistics on the CPU (for writing the tables)."""
        out = FeatureStats(self.top.score.shape[0], self.cfg)
        out.load_state_dict({k: v.cpu() for k, v in self.state_dict().items()})
        return out

    def update(self, codes: torch.Tensor, seq_len: int, first_pos: int, counted: int) -> None:
        """Add a chunk of codes ``[R*S, F]`` (special tokens already zeroed) at ``first_pos``."""
        cfg = self.cfg
        codes3 = codes.view(-1, seq_len, codes.shape[1])
        inactive = codes == 0
        if cfg.rank == "value":
            score = codes.masked_fill(codes <= 0, NEG_INF)
        else:
            score = codes.abs().masked_fill_(inactive, NEG_INF)
        self.top.update(score, codes3, first_pos, cfg.window_left)
        keys = _sample_keys(cfg.seed, first_pos // seq_len, codes3.shape).view_as(codes).to(codes.device)
        keys.masked_fill_(inactive, NEG_INF)
        self.sample.update(keys, codes3, first_pos, cfg.window_left)
        self.hist.update(codes)
        self.moments.update(codes)
        self.n_tokens += counted

    def state_dict(self) -> dict[str, torch.Tensor]:
        m, h = self.moments, self.hist
        return {
            **self.top.state_dict("top"),
            **self.sample.state_dict("sample"),
            "hist.counts": h.counts,
            "hist.exp": h.exp,
            "m.active": m.active,
            "m.total": m.total,
            "m.max": m.max,
            "n_tokens": self.n_tokens,
            "n_sinks": self.n_sinks,
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.top.load_state_dict(state, "top")
        self.sample.load_state_dict(state, "sample")
        self.hist.counts.copy_(state["hist.counts"])
        self.hist.exp = state["hist.exp"].to(self.hist.counts.device)
        self.moments.active.copy_(state["m.active"])
        self.moments.total.copy_(state["m.total"])
        self.moments.max = state["m.max"].to(self.moments.active.device)
        self.n_tokens = state["n_tokens"].cpu().clone()
        self.n_sinks = state.get("n_sinks", torch.zeros((), dtype=torch.long)).cpu().clone()


def _sample_keys(seed: int, first_row: int, shape: torch.Size) -> torch.Tensor:
    """Uniform keys ``[R, S, F]`` seeded per row, so they depend only on the token's position."""
    keys = torch.empty(shape)
    for r in range(shape[0]):
        h = hashlib.blake2b(f"{seed}:{first_row + r}".encode(), digest_size=8).digest()
        keys[r] = torch.rand(shape[1:], generator=torch.Generator().manual_seed(int.from_bytes(h, "little") >> 1))
    return keys


def _artifact_digest(path: Path) -> str:
    """Identifies an artifact's contents: its config and weights."""
    h = hashlib.blake2b(digest_size=16)
    for name in ("config.json", "weights.safetensors"):
        with open(path / name, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


@torch.inference_mode()
def _encode_rows(dec: Decomposer, x: torch.Tensor, special: torch.Tensor) -> torch.Tensor:
    """Codes ``[R*S, F]`` (float32, on the model's device) of site activations ``x [R, S, D]``."""
    p = next(iter(dec.parameters()), None)
    flat = x.reshape(-1, x.shape[-1]).to(p.dtype if p is not None else torch.float32)
    codes = dec.encode_dense(flat).float()
    return codes.masked_fill_(special.reshape(-1, 1).to(codes.device), 0.0)


def _checkpoint(out: Path, stats: FeatureStats, manifest: dict, rows_done: int) -> None:
    """The statistics, the rows they cover and their digest go into one folder, replaced whole (the
    manifest's ``rows_done`` is for people: a signal between the two writes must not skew a resume)."""
    state = {k: v.cpu().contiguous() for k, v in stats.state_dict().items()}

    def fill(tmp: Path) -> None:
        save_file(state, str(tmp / "state.safetensors"))
        write_json_atomic(tmp / "state.json", {"rows_done": rows_done, "xxh3": file_digest(tmp / "state.safetensors")})

    replace_dir(out / STATE_DIR, fill)
    manifest["rows_done"] = rows_done
    write_json_atomic(out / "manifest.json", manifest)


def _restore(out: Path, stats: FeatureStats, manifest: dict) -> int:
    """Load the last checkpoint into ``stats``; the first row still to do (0: none)."""
    ckpt = recover_dir(out / STATE_DIR)
    if (ckpt / "state.json").exists():
        saved = read_json(ckpt / "state.json", "feature store checkpoint state")
        repair = f"delete {ckpt} (the build then starts over) and run the same command again"
        stats.load_state_dict(
            load_safetensors(
                ckpt / "state.safetensors", "feature store checkpoint", digest=saved["xxh3"], repair=repair
            )
        )
        return int(saved["rows_done"])
    if (out / STATE_FILE).exists():  # a build begun before checkpoints had a digest
        state = load_safetensors(out / STATE_FILE, "feature store checkpoint")
        start_row = int(state.pop("rows_done", manifest["rows_done"]))
        stats.load_state_dict(state)
        return start_row
    return 0


def build_store(
    artifact_dir: str | Path,
    text_spec: str,
    n_tokens: int,
    out_dir: str | Path,
    model: LoadedModel | str | None = None,
    progress: bool = True,
    **options: Any,
) -> Path:
    """Build (or finish building) the feature store of ``artifact_dir`` over ``text_spec``.

    ``model`` defaults to the model recorded in the artifact (``cfg.model``); the hook site is
    ``cfg.site``. ``options`` are ``StoreConfig`` fields. A multi-view artifact (an all-layer head
    SVD, a LIB fit over several hooked node layers; see ``labels.artifact_views``) gets one store
    per view, in subfolders ``out_dir/layer-LL`` or ``out_dir/node-N``. Each store folder is locked
    while it is built. Returns ``out_dir``.
    """
    from interp.data import load_text, tokenize

    cfg = config_from(StoreConfig, options)
    cfg.validate()
    artifact, out = Path(artifact_dir), Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"out_dir {out} is an existing file; a feature store is a folder: choose another path")
    dec = load(artifact)
    model = model or getattr(dec.cfg, "model", None)
    if getattr(dec.cfg, "site", None) is None or model is None:
        raise DataError(
            f"{artifact}: the artifact does not record its model and site; "
            "pass model=... (the site must be in its config)"
        )
    model = load_model(model) if isinstance(model, str) else model
    texts: list = []

    def text() -> Any:  # tokenized once, and only when a view still needs building
        if not texts:
            texts.append(
                tokenize(load_text(text_spec, shuffle_seed=cfg.shuffle_seed), model.tokenizer, cfg.seq_len, n_tokens)
            )
        return texts[0]

    digest = _artifact_digest(artifact)
    for name, view in artifact_views(dec, cfg.views):
        request = {
            "artifact_digest": digest,
            "text": text_spec,
            "n_tokens_requested": int(n_tokens),
            "model": model.spec,
            "site": view.cfg.site,
            "options": dataclasses.asdict(dataclasses.replace(cfg, views=None)),
        }  # same store whichever views
        if name:
            request["view"] = name
        _build_view(view.to(model.device).eval(), model, request, text, out / name if name else out, artifact, progress)
    return out


def _build_view(
    dec: Decomposer, model: LoadedModel, request: dict, text: Any, out: Path, artifact: Path, progress: bool
) -> None:
    cfg, site = StoreConfig(**request["options"]), request["site"]
    model.validate_site(site)
    model.check_seq_len(cfg.seq_len)
    with folder_lock(out, "feature store folder"):
        _build(dec, model, site, cfg, request, text, out, artifact, progress)


def _build(
    dec: Decomposer,
    model: LoadedModel,
    site: str,
    cfg: StoreConfig,
    request: dict,
    text: Any,
    out: Path,
    artifact: Path,
    progress: bool,
) -> None:
    """Build or finish the store at ``out`` (held by this process) from the resolved request."""
    from interp.browser.write import write_tables

    if (out / "manifest.json").exists():
        manifest = read_json(out / "manifest.json", "feature store manifest")
        check_same_request(manifest["request"], request, out, "feature store")
        if manifest.get("complete"):
            return
    else:
        manifest = {"format": FORMAT, "request": request, "complete": False, "rows_done": 0}
    text = text()
    data_id = "tokens:" + xxhash.xxh3_64_hexdigest(np.ascontiguousarray(text.tokens).tobytes())
    if manifest.setdefault("data", data_id) != data_id:
        raise DataError(
            f"{out} was started on other text (the tokens of {request['text']!r} changed since): "
            f"delete the folder to rebuild it, or restore the text it was built from"
        )
    tokens = torch.from_numpy(text.tokens)
    special = (
        torch.from_numpy(text.special_mask()) if cfg.exclude_special else torch.zeros_like(tokens, dtype=torch.bool)
    )
    stats = FeatureStats(dec.directions().shape[0], cfg, model.device)  # statistics live where the codes are
    start_row = _restore(out, stats, manifest)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "manifest.json", manifest)
    t0 = time.time()
    _stream(dec, model, site, tokens, special, stats, start_row, out, manifest, progress)
    write_tables(out, dec, model, site, stats.cpu(), text, manifest, artifact)
    manifest.update(
        complete=True,
        rows_done=len(tokens),
        n_tokens=int(stats.n_tokens),
        n_sinks=int(stats.n_sinks),
        interp_version=interp.__version__,
        pass_seconds=round(time.time() - t0, 2),
    )
    write_json_atomic(out / "manifest.json", manifest)
    remove_dir(out / STATE_DIR)
    (out / STATE_FILE).unlink(missing_ok=True)


def _stream(
    dec: Decomposer,
    model: LoadedModel,
    site: str,
    tokens: torch.Tensor,
    special: torch.Tensor,
    stats: FeatureStats,
    start_row: int,
    out: Path,
    manifest: dict,
    progress: bool,
) -> None:
    cfg = stats.cfg
    n_rows, seq_len = tokens.shape
    n_features = stats.top.score.shape[0]
    chunk_rows = max(1, cfg.chunk_elements // (seq_len * n_features))
    ckpt_rows = max(cfg.batch_size, cfg.checkpoint_tokens // seq_len)
    last_ckpt = start_row
    with tqdm(
        total=n_rows * seq_len,
        initial=start_row * seq_len,
        unit="tok",
        disable=not progress,
        desc=f"feature store ({n_features} features)",
    ) as bar:
        for a in range(start_row, n_rows, cfg.batch_size):
            b = min(a + cfg.batch_size, n_rows)
            x = run_to_sites(model, tokens[a:b], [site])[site]
            skip = special[a:b].to(x.device)
            if cfg.exclude_sinks:
                sinks = sink_mask(x, skip, cfg.sink_ratio)
                stats.n_sinks += int(sinks.sum())
                skip = skip | sinks
            for c in range(0, b - a, chunk_rows):
                rows = slice(c, min(c + chunk_rows, b - a))
                sp = skip[rows]
                codes = _encode_rows(dec, x[rows], sp)
                stats.update(codes, seq_len, (a + rows.start) * seq_len, int((~sp).sum()))
            bar.update((b - a) * seq_len)
            if b - last_ckpt >= ckpt_rows and b < n_rows:
                _checkpoint(out, stats, manifest, b)
                last_ckpt = b
