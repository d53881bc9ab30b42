"""Turn a finished pass's statistics into the store's files (each written atomically).

    features.parquet        one row per feature: density, mean/max, histogram, vocabulary
                            projection, nearest features, top tokens, a text of its top contexts,
                            and the offset/count of its rows in examples.parquet
    examples.parquet        one row per example, sorted by feature: kind ("top" or "quantile"),
                            rank, quantile band (bin_min/bin_max/bin_contains), token ids of the
                            window, the feature's code on every token of it, the example token's
                            index in the window
    vocab.parquet           the display string of every token id
    directions.safetensors  the decomposer's directions [F, D] at its site (steering, export)

Quantile examples follow SAEDashboard's interval groups, but by quantiles of each feature's
active-token distribution: band edges are read off the exact histogram (so they are bin edges
and ``bin_contains`` is exact), and each band shows the first ``per_quantile`` members of the
uniform sample that fall in it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import save

from interp._io import file_digest, write_atomic
from interp.browser.collect import window_start
from interp.browser.labels import describe
from interp.browser.spec import EXAMPLE_ROW_GROUP
from interp.decomposers import Decomposer
from interp.models import LoadedModel, VocabProjection, direction_logits, site_layer

N_CONTEXT = 5  # top examples whose text is searchable
LOGIT_BINS = 32
_RESIDUAL = re.compile(
    r"^blocks\.\d+\.(hook_resid_(pre|mid|post)|hook_attn_out|hook_mlp_out|hook_in|"
    r"hook_out|mlp\.hook_out|attn\.hook_out)$"
)


def write_parquet(path: Path, table: pa.Table, **kw: Any) -> None:
    """Atomically, with a CRC per page, so damaged bytes are an error when read (not values)."""
    write_atomic(path, lambda f: pq.write_table(table, f, write_page_checksum=True, **kw), binary=True)


def fixed_list(values: np.ndarray) -> pa.Array:
    """``[N, W]`` numpy array as a fixed-size-list column."""
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def vocab_strings(tokenizer: Any, n_vocab: int) -> list[str]:
    n = min(len(tokenizer), n_vocab)
    return tokenizer.batch_decode([[i] for i in range(n)]) + [f"<id {i}>" for i in range(n, n_vocab)]


def residual_directions(
    dec: Decomposer, model: LoadedModel, site: str, dirs: torch.Tensor
) -> tuple[torch.Tensor | None, dict]:
    """Directions in the residual stream for the vocabulary projection, or None with the reason."""
    if hasattr(dec, "residual_directions"):
        rd = dec.residual_directions(model, site_layer(site))
        return rd.float().cpu(), {"status": "done", "via": "residual_directions"}
    if dirs.shape[1] == model.d_model and _RESIDUAL.match(site):
        return dirs, {"status": "done", "via": "directions"}
    return None, {
        "status": "skipped",
        "reason": f"{site} (width {dirs.shape[1]}) is not in the residual "
        f"stream (d_model {model.d_model}) and {type(dec).__name__} has no residual_directions()",
    }


@torch.no_grad()
def project_vocab(
    model: LoadedModel, rdirs: torch.Tensor, k: int, n_bins: int = LOGIT_BINS, chunk: int = 256
) -> tuple[VocabProjection, np.ndarray, np.ndarray]:
    """Top/bottom ``k`` tokens of each direction's logits (as ``interp.models.vocab_projection``)
    and a histogram of its logits over the vocabulary (counts [F, B], bin centres [F, B]), from
    one ``direction_logits`` call per chunk of features."""
    parts, counts, centres = [], [], []
    for i in range(0, len(rdirs), chunk):
        logits = direction_logits(model, rdirs[i : i + chunk]).cpu()
        top, bottom = logits.topk(k, dim=1), logits.topk(k, dim=1, largest=False)
        parts.append((top.indices, top.values, bottom.indices, bottom.values))
        lo, hi = logits.min(1, keepdim=True).values, logits.max(1, keepdim=True).values
        width = ((hi - lo) / n_bins).clamp_min(1e-12)
        b = ((logits - lo) / width).long().clamp(0, n_bins - 1)
        counts.append(torch.zeros(len(b), n_bins, dtype=torch.long).scatter_add_(1, b, torch.ones_like(b)))
        centres.append(lo + width * (torch.arange(n_bins) + 0.5))
    proj = VocabProjection(*(torch.cat(p) for p in zip(*parts)))
    return proj, torch.cat(counts).numpy(), torch.cat(centres).numpy()


@torch.no_grad()
def nearest_features(dirs: torch.Tensor, n: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` features with the largest cosine to each feature (itself excluded)."""
    n = min(n, len(dirs) - 1)
    unit = dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-12)
    ids, cos = [], []
    for i in range(0, len(unit), chunk):
        sims = unit[i : i + chunk] @ unit.T
        sims[torch.arange(len(sims)), torch.arange(i, i + len(sims))] = float("-inf")
        top = sims.topk(n, dim=1)
        ids.append(top.indices.int())
        cos.append(top.values)
    return torch.cat(ids).numpy(), torch.cat(cos).numpy()


def quantile_examples(stats: Any) -> dict[str, torch.Tensor]:
    """Pick ``per_quantile`` sampled examples per activation-quantile band of every feature."""
    cfg, hist = stats.cfg, stats.hist
    counts = hist.counts[:, 0] if cfg.rank == "value" else hist.counts.sum(1)  # [F, nb]
    total = counts.sum(1).clamp_min(1)
    cum = torch.cat([torch.zeros(len(counts), 1, dtype=torch.long), counts.cumsum(1)], dim=1)  # [F, nb+1]
    q = torch.arange(1, cfg.n_quantiles, dtype=torch.float64) / cfg.n_quantiles
    inner = (cum[:, None, 1:].double() / total[:, None, None] < q[None, :, None]).sum(2) + 1  # [F, Q-1]
    edge_bins = torch.cat(
        [
            torch.zeros(len(counts), 1, dtype=torch.long),
            inner.clamp(max=hist.n_bins),
            torch.full((len(counts), 1), hist.n_bins),
        ],
        dim=1,
    )  # [F, Q+1]
    width = torch.exp2(hist.exp.double()) / hist.n_bins
    edges = (edge_bins.double() * width[:, None]).float()
    contains = (cum.gather(1, edge_bins[:, 1:]) - cum.gather(1, edge_bins[:, :-1])).double() / total[:, None]
    score, value, pos, window = stats.sample.sorted()  # random order (sorted by key)
    mag = value if cfg.rank == "value" else value.abs()
    valid = torch.isfinite(score) & (mag > 0)
    band = torch.searchsorted(edges[:, 1:-1].contiguous(), mag.contiguous(), right=True)
    onehot = torch.nn.functional.one_hot(band, cfg.n_quantiles) * valid[..., None]
    rank = (onehot.cumsum(1) * onehot).sum(2) - 1  # order within the band, -1 if invalid
    f, slot = (valid & (rank < cfg.per_quantile)).nonzero(as_tuple=True)
    b = band[f, slot]
    return {
        "feature": f,
        "band": b,
        "rank": rank[f, slot],
        "value": value[f, slot],
        "pos": pos[f, slot],
        "window": window[f, slot],
        "bin_min": edges[f, b],
        "bin_max": edges[f, b + 1],
        "bin_contains": contains[f, b].float(),
    }


def top_examples(stats: Any) -> dict[str, torch.Tensor]:
    score, value, pos, window = stats.top.sorted()
    f, slot = torch.isfinite(score).nonzero(as_tuple=True)
    return {
        "feature": f,
        "band": torch.full_like(f, -1),
        "rank": slot,
        "value": value[f, slot],
        "pos": pos[f, slot],
        "window": window[f, slot],
        "bin_min": torch.full((len(f),), -1.0),
        "bin_max": value.max(1).values[f] if len(f) else torch.zeros(0),
        "bin_contains": torch.full((len(f),), -1.0),
    }


def examples_table(stats: Any, tokens: np.ndarray) -> pa.Table:
    """Top and quantile examples of every feature in one table, sorted by (feature, kind, rank)."""
    top, qua = top_examples(stats), quantile_examples(stats)
    ex = {k: torch.cat([top[k], qua[k]]) for k in top}
    kind = torch.cat(
        [torch.zeros(len(top["feature"]), dtype=torch.long), torch.ones(len(qua["feature"]), dtype=torch.long)]
    )
    order = np.lexsort((ex["rank"].numpy(), ex["band"].numpy(), kind.numpy(), ex["feature"].numpy()))
    ex = {k: v.numpy()[order] for k, v in ex.items()}
    seq_len, width = tokens.shape[1], stats.cfg.width
    row, p = ex["pos"] // seq_len, ex["pos"] % seq_len
    start = window_start(torch.from_numpy(p), seq_len, stats.cfg.window_left, width).numpy()
    ids = tokens[row[:, None], start[:, None] + np.arange(width)]
    return pa.table(
        {
            "feature": pa.array(ex["feature"].astype(np.int32)),
            "kind": pa.array(np.where(kind.numpy()[order] == 0, "top", "quantile")).dictionary_encode(),
            "rank": pa.array(ex["rank"].astype(np.int16)),
            "band": pa.array(ex["band"].astype(np.int8)),
            "bin_min": pa.array(ex["bin_min"].astype(np.float32)),
            "bin_max": pa.array(ex["bin_max"].astype(np.float32)),
            "bin_contains": pa.array(ex["bin_contains"].astype(np.float32)),
            "value": pa.array(ex["value"].astype(np.float32)),
            "row": pa.array(row.astype(np.int32)),
            "pos": pa.array(p.astype(np.int16)),
            "token_index": pa.array((p - start).astype(np.int16)),
            "tokens": fixed_list(ids.astype(np.int32)),
            "acts": fixed_list(ex["window"].astype(np.float32)),
        }
    )


def feature_table(
    stats: Any, examples: pa.Table, vocab: list[str], proj: Any, similar: tuple, logit_hist: tuple | None
) -> pa.Table:
    n_features = stats.top.score.shape[0]
    m, n_tok = stats.moments, max(int(stats.n_tokens), 1)
    feat = examples.column("feature").to_numpy()
    offset = np.searchsorted(feat, np.arange(n_features))
    count = np.searchsorted(feat, np.arange(n_features), side="right") - offset
    cols: dict[str, Any] = {
        "feature": pa.array(np.arange(n_features, dtype=np.int32)),
        "n_active": pa.array(m.active.numpy()),
        "density": pa.array(m.active.double().numpy() / n_tok),
        "mean_active": pa.array((m.total / m.active.clamp_min(1)).float().numpy()),
        "mean": pa.array((m.total / n_tok).float().numpy()),
        "max": pa.array(torch.where(m.active > 0, m.max, torch.zeros_like(m.max)).numpy()),
        "hist_pos": fixed_list(stats.hist.counts[:, 0].numpy()),
        "hist_neg": fixed_list(stats.hist.counts[:, 1].numpy()),
        "hist_range": pa.array(stats.hist.edges().numpy()),
        "ex_offset": pa.array(offset.astype(np.int64)),
        "ex_count": pa.array(count.astype(np.int32)),
        "similar": fixed_list(similar[0]),
        "similar_cos": fixed_list(similar[1].astype(np.float32)),
    }
    cols.update(_top_token_columns(stats, examples, vocab, offset, count))
    if proj is not None:
        voc = np.array(vocab, dtype=object)
        cols.update(
            {
                "vocab_top_ids": fixed_list(proj.top_ids.int().numpy()),
                "vocab_top_logits": fixed_list(proj.top_logits.numpy()),
                "vocab_bottom_ids": fixed_list(proj.bottom_ids.int().numpy()),
                "vocab_bottom_logits": fixed_list(proj.bottom_logits.numpy()),
                "vocab_top": pa.array(voc[proj.top_ids.numpy()].tolist(), pa.list_(pa.string())),
                "vocab_bottom": pa.array(voc[proj.bottom_ids.numpy()].tolist(), pa.list_(pa.string())),
                "logit_hist_heights": fixed_list(logit_hist[0]),
                "logit_hist_values": fixed_list(logit_hist[1]),
            }
        )
    return pa.table(cols)


def _top_token_columns(
    stats: Any, examples: pa.Table, vocab: list[str], offset: np.ndarray, count: np.ndarray
) -> dict[str, pa.Array]:
    """Tokens at the top examples and the text of the top ``N_CONTEXT`` windows (for search)."""
    toks = examples.column("tokens").combine_chunks().flatten().to_numpy().reshape(len(examples), -1)
    at = toks[np.arange(len(examples)), examples.column("token_index").to_numpy()]
    voc = np.array(vocab, dtype=object)
    top_tokens, context = [], []
    for o, c in zip(offset.tolist(), count.tolist()):
        n = min(c, N_CONTEXT) if c and examples["kind"][o].as_py() == "top" else 0
        top_tokens.append(list(dict.fromkeys(voc[at[o : o + n]].tolist())))
        context.append("\n".join("".join(voc[w].tolist()) for w in toks[o : o + n]))
    return {"top_tokens": pa.array(top_tokens, pa.list_(pa.string())), "context": pa.array(context)}


def write_tables(
    out: Path, dec: Decomposer, model: LoadedModel, site: str, stats: Any, text: Any, manifest: dict, artifact: Path
) -> None:
    dirs = dec.directions().detach().float().cpu()
    n_vocab = model.hf_model.get_output_embeddings().weight.shape[0]
    vocab = vocab_strings(model.tokenizer, n_vocab)
    rdirs, vocab_info = residual_directions(dec, model, site, dirs)
    proj, logit_hist = None, None
    if rdirs is not None:
        proj, *logit_hist = project_vocab(model, rdirs, stats.cfg.vocab_k)
    examples = examples_table(stats, text.tokens)
    features = feature_table(stats, examples, vocab, proj, nearest_features(dirs, stats.cfg.n_similar), logit_hist)
    write_parquet(out / "vocab.parquet", pa.table({"token": pa.array(vocab)}))
    write_parquet(out / "examples.parquet", examples, row_group_size=EXAMPLE_ROW_GROUP)
    write_parquet(out / "features.parquet", features)
    tensors = {"directions": dirs.contiguous()}
    if rdirs is not None and rdirs is not dirs:
        tensors["residual_directions"] = rdirs.contiguous()
    write_atomic(out / "directions.safetensors", lambda f: f.write(save(tensors)), binary=True)
    manifest.update(
        {
            "model": model.spec,
            "model_name": model.name,
            "site": site,
            "layer": site_layer(site),
            "method": dec.method,
            "n_features": int(dirs.shape[0]),
            "d": int(dirs.shape[1]),
            "artifact": str(artifact.resolve()),
            "decomposer_config": _jsonable(dataclasses.asdict(dec.cfg)),
            "vocab_projection": vocab_info,
            "view": describe(dec, site, int(dirs.shape[1])),
            "n_rows": int(text.tokens.shape[0]),
            "seq_len": int(text.tokens.shape[1]),
            "files": ["features.parquet", "examples.parquet", "vocab.parquet", "directions.safetensors"],
            "xxh3": {"directions.safetensors": file_digest(out / "directions.safetensors")},
        }
    )


def _jsonable(d: dict) -> dict:
    ok = (str, int, float, bool, type(None), list, tuple, dict)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if isinstance(v, ok)}
