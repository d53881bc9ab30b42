"""One comparison of feature quality across decomposers at one layer: SAEBench's core metrics,
sparse probing, first-letter absorption and automatic interpretability, on the same tokens.

``compare(QualityConfig(artifacts=(...)))`` loads every artifact (any registered method; each is
read at its own hook site, e.g. semi-NMF at ``mlp.hook_post``), makes one pass over the evaluation
tokens (every site captured at once; one spliced pass per decomposer for CE/KL), one pass over the
labelled texts and one over the first-letter prompts, and writes into ``out``:
``core/interp_{name}_eval_results.json`` (SAEBench core schema), ``table.md``, ``table.csv``,
``results.json`` (every number, the reasons where a metric does not apply, stage timings),
``quality.png`` and ``autointerp.csv`` / ``autointerp.parquet`` (one row per explained feature).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp._io import write_json_atomic
from interp.errors import ConfigError, InterpError
from interp.evals.quality import absorption as absn
from interp.evals.quality import autointerp as ai
from interp.evals.quality import probing
from interp.evals.quality.core import core_output, write_core
from interp.evals.quality.passes import capture_texts, codes_of, row_dot, token_pass
from interp.evals.quality.table import write_figure, write_tables


@dataclass(frozen=True)
class QualityConfig:
    """What to compare and how much data each metric uses."""

    artifacts: tuple[str, ...] = ()
    """Decomposer artifact folders (any registered method), all on the same model."""
    model: str = ""
    """Model spec; empty: the one the first artifact records."""
    out: str = "runs/quality"
    """Output folder."""
    metrics: tuple[str, ...] = ("core", "probing", "absorption", "autointerp")
    """Which metrics to run."""
    text: str = "builtin:stdlib-docs?split=test"
    """Text spec of the evaluation tokens (core metrics and autointerp contexts)."""
    n_tokens: int = 16_384
    """Evaluation tokens."""
    seq_len: int = 128
    """Tokens per evaluation sequence (SAEBench's context_size)."""
    batch_size: int = 8
    """Sequences per model pass."""
    probing_sets: tuple[str, ...] = ("concepts", "bbc-news")
    """Labelled text sets (``probing.labelled_set`` names)."""
    probing_per_class: int = 60
    """Texts per class of the bbc-news set."""
    probing_max_tokens: int = 128
    """Tokens of each labelled text that are mean-pooled."""
    ks: tuple[int, ...] = probing.KS
    """Feature counts of the sparse probes."""
    absorption_words: int = 2000
    """Vocabulary words for the first-letter task (80% train, 20% test)."""
    autointerp_features: int = 6
    """Features explained per decomposer (sampled among those firing in 8+ sequences)."""
    autointerp_candidates: int = 96
    """Random features per decomposer whose activations are kept during the token pass."""
    explainer_url: str = ""
    """OpenAI-compatible base URL for explainer and scorer; empty: offline (local model + embeddings)."""
    explainer_model: str = ""
    """Model name at ``explainer_url``."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the endpoint's API key (never stored in outputs)."""
    seed: int = 0
    """Seed of every sampling step."""


def _load(cfg: QualityConfig) -> tuple[Any, list[Any], list[str], list[str]]:
    from interp.decomposers import load
    from interp.models import load as load_model

    if not cfg.artifacts:
        raise ConfigError("give artifacts=[path, ...]: the decomposer folders to compare")
    unknown = set(cfg.metrics) - {"core", "probing", "absorption", "autointerp"}
    if unknown:
        raise ConfigError(f"unknown metrics {sorted(unknown)}: use core, probing, absorption, autointerp")
    decs = [load(a) for a in cfg.artifacts]
    names = [Path(a).name for a in cfg.artifacts]
    if len(set(names)) != len(names):
        raise ConfigError(f"artifact folder names must differ (they name the rows): {names}")
    spec = cfg.model or getattr(decs[0].cfg, "model", "")
    if not spec:
        raise ConfigError("give model=...: the first artifact does not record its model")
    model = load_model(spec)
    sites = [getattr(d.cfg, "site", "") for d in decs]
    for n, s, d in zip(names, sites, decs):
        if not s:
            raise ConfigError(f"{n}: the artifact records no hook site")
        model.validate_site(s)
        if d.directions().shape[1] != model.site_width(s):
            raise ConfigError(f"{n}: directions have width {d.directions().shape[1]}, {s} has {model.site_width(s)}")
    return model, [d.to(model.device).eval() for d in decs], names, sites


def _reconstructs(dec: Any) -> str | None:
    try:
        dec.decode(codes_of(dec, torch.zeros(1, dec.directions().shape[1])))
    except NotImplementedError as e:
        return f"{type(dec).__name__} does not reconstruct ({e})"
    return None


def _core(cfg, model, decs, names, sites, res) -> tuple[np.ndarray, list]:
    from interp.data import load_text, tokenize

    text = tokenize(load_text(cfg.text, shuffle_seed=cfg.seed), model.tokenizer, cfg.seq_len, cfg.n_tokens)
    ok = []
    for i, dec in enumerate(decs):
        why = _reconstructs(dec)
        if why:
            res[names[i]]["na"]["core"] = res[names[i]]["na"]["autointerp"] = why
        else:
            ok.append(i)
    g = torch.Generator().manual_seed(cfg.seed)
    sampled = [torch.randperm(decs[i].directions().shape[0], generator=g)[: cfg.autointerp_candidates] for i in ok]
    totals, acts = token_pass(
        model, [decs[i] for i in ok], [sites[i] for i in ok], text.tokens, text.special_mask(), cfg.batch_size, sampled
    )
    for i, tot in zip(ok, totals):
        out = core_output(
            tot,
            decs[i],
            model=model.name,
            site=sites[i],
            dataset=cfg.text,
            context_size=cfg.seq_len,
            batch_size=cfg.batch_size,
            name=names[i],
        )
        res[names[i]]["core_file"] = str(write_core(out, Path(cfg.out) / "core"))
        res[names[i]]["core"] = {k: v for c in out["eval_result_metrics"].values() for k, v in c.items()}
    return text.tokens, [(i, s, a) for i, s, a in zip(ok, sampled, acts)]


def _probing(cfg, model, decs, names, sites, res) -> None:
    for set_name in cfg.probing_sets:
        data = probing.labelled_set(set_name, cfg.probing_per_class, cfg.seed)
        acts = capture_texts(model, data.texts, sites, cfg.probing_max_tokens, desc=f"quality: {set_name}")
        for i, dec in enumerate(decs):
            raw = probing.mean_pool(acts[sites[i]])
            codes = probing.mean_pool([codes_of(dec, a) for a in acts[sites[i]]])
            res[names[i]].setdefault("probing", {})[set_name] = probing.sparse_probe(
                codes.numpy(), raw.numpy(), data.labels, len(data.classes), cfg.ks, cfg.seed
            )


def _absorption(cfg, model, decs, names, sites, res) -> None:
    words = absn.vocab_words(model.tokenizer, cfg.absorption_words, cfg.seed)
    if len(words) < 26 * 4:
        for n in names:
            res[n]["na"]["absorption"] = f"the tokenizer has {len(words)} single-token words; the task needs 104+"
        return
    prompts = absn.prompts(words, seed=cfg.seed)
    acts = capture_texts(model, prompts, sites, max_tokens=10_000, desc="quality: first-letter prompts")
    ids = [s[1:] for s in _token_ids(model, prompts)]
    good = [j for j, (w, t) in enumerate(zip(words, ids)) if model.tokenizer.decode([t[absn.WORD_POS]]) == " " + w]
    letters = np.array([absn.LETTERS.index(words[j][0].lower()) for j in good])
    train = np.random.default_rng(cfg.seed).random(len(good)) < 0.8
    for i, dec in enumerate(decs):
        x = torch.stack([acts[sites[i]][j][absn.WORD_POS] for j in good])
        try:
            codes = codes_of(dec, x)
            res[names[i]]["absorption"] = absn.absorption(
                x, codes, dec.directions().detach(), letters, train, seed=cfg.seed, row_dot=row_dot(dec, codes)
            )
        except InterpError as e:
            res[names[i]]["na"]["absorption"] = str(e)


def _token_ids(model, prompts):
    from interp.models.prompts import encode_prompts

    return encode_prompts(model, prompts)


def _reader(cfg: QualityConfig, model: Any) -> tuple[Any, Any]:
    if cfg.explainer_url:
        llm = ai.LLMReader(cfg.explainer_url, cfg.explainer_model, os.environ.get(cfg.api_key_env))
        return llm, llm
    return ai.LocalExplainer(model), ai.EmbeddingScorer()


def _autointerp(cfg, model, tokens, kept, names, res) -> list[dict]:
    explainer, scorer = _reader(cfg, model)
    rows = []
    for i, sampled, acts in kept:
        cols = ai.pick_features(acts, sampled.tolist(), cfg.autointerp_features)
        if not cols:
            res[names[i]]["na"]["autointerp"] = "no sampled feature fired in 8 or more evaluation sequences"
            continue
        got = ai.interpret(
            tokens,
            acts[..., cols].numpy(),
            [int(sampled[c]) for c in cols],
            model.tokenizer,
            explainer,
            scorer,
            cfg.seed,
        )
        rows += [{"artifact": names[i], **r} for r in got]
        res[names[i]]["autointerp"] = {
            "detection": _nanmean([r["detection"] for r in got]),
            "fuzzing": _nanmean([r["fuzzing"] for r in got]),
            "n_features": len(got),
            "explainer": explainer.name,
            "scorer": scorer.name,
        }
    return rows


def _nanmean(values: list[float]) -> float:
    """Mean of the defined scores (NaN: the AUROC had no positives or negatives); NaN if none."""
    ok = [v for v in values if v == v]
    return float(np.mean(ok)) if ok else float("nan")


def _write(cfg: QualityConfig, model: Any, res: dict, times: dict) -> dict[str, Any]:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"config": dataclasses.asdict(cfg), "model": model.name, "results": res, "seconds": times}
    write_json_atomic(out / "results.json", results)
    write_tables(results, out)
    return results


def compare(cfg: QualityConfig, progress: bool = True) -> dict[str, Any]:
    """Run the configured metrics on every artifact; write the files; return ``results.json``'s dict."""
    t0 = time.perf_counter()
    model, decs, names, sites = _load(cfg)
    res: dict[str, dict] = {
        n: {"method": d.method, "site": s, "n_features": int(d.directions().shape[0]), "na": {}}
        for n, d, s in zip(names, decs, sites)
    }
    times: dict[str, float] = {"load": time.perf_counter() - t0}
    kept, tokens, rows = [], None, []
    results = _write(cfg, model, res, times | {"total": time.perf_counter() - t0})
    for stage in ("core", "probing", "absorption", "autointerp"):
        if stage not in cfg.metrics:
            continue
        t = time.perf_counter()
        if stage == "core":
            tokens, kept = _core(cfg, model, decs, names, sites, res)
        elif stage == "probing":
            _probing(cfg, model, decs, names, sites, res)
        elif stage == "absorption":
            _absorption(cfg, model, decs, names, sites, res)
        elif tokens is not None:
            rows = _autointerp(cfg, model, tokens, kept, names, res)
        else:
            raise ConfigError("autointerp reads the contexts of the core token pass: add 'core' to metrics")
        times[stage] = time.perf_counter() - t
        times["total"] = time.perf_counter() - t0
        results = _write(cfg, model, res, times)  # after every stage: an interrupted run keeps its results
    out = Path(cfg.out)
    write_figure(results, out / "quality.png")
    if rows:
        ai.write_rows(rows, out)
    return results
