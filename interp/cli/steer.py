"""Compare steering methods at matched KL budgets (``interp steer configs/experiments/steer.yaml``).

Methods (``methods``): ``sae`` (a TopK SAE at ``blocks.L.hook_mlp_out``: ``sae_artifact=PATH``, or
trained here on the built-in corpus), ``snmf`` (``blocks.L.mlp.hook_post``: ``snmf_artifact=PATH``,
or fitted here on the concept sentences), ``itda`` (``hook_mlp_out``, built on the SAE's activation
cache), ``heads`` (the OV write vectors of layer L's heads, at ``blocks.L.hook_resid_post``), ``lib``
(LIB around block L, directions at ``blocks.L.hook_resid_mid``, fitted on the concept sentences)
and ``diffmeans`` vectors, on the same concepts, each calibrated to every KL target, then generated
and scored offline.
Writes ``out/``: config.yaml (the resolved config: re-running it reproduces the run), results.json,
table.md, examples.md, plot.png. Every stage is seeded by ``seed``.
"""

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from interp._io import write_atomic
from interp.activations import ActivationCache, cache_activations
from interp.decomposers import load as load_decomposer
from interp.decomposers.sae import train
from interp.errors import ConfigError
from interp.evals.steering import embedding_judge
from interp.evals.steering.directions import site_activations
from interp.evals.steering.experiment import SteerExperimentConfig as Config
from interp.evals.steering.experiment import run_experiment, split_concepts, summarise
from interp.evals.steering.report import table_markdown, write_report
from interp.models import load

__all__ = ["Config", "run"]


SAE_DEFAULTS = {
    "text": "builtin:stdlib-docs",
    "n_tokens": 60_000,
    "seq_len": 128,
    "method": "topk",
    "expansion_factor": 8,
    "k": 32,
    "train_tokens": 240_000,
    "lr": 1e-3,
    "warmup_steps": 5,
    "optimizer": "adam",
}


def mlp_out_cache(model, cfg: Config, out: Path) -> ActivationCache:
    """``blocks.L.hook_mlp_out`` activations of the SAE's training text (resumable, shared by ITDA)."""
    s = {**SAE_DEFAULTS, **cfg.sae}
    site = f"blocks.{cfg.layer}.hook_mlp_out"
    return ActivationCache(
        cache_activations(
            model, s["text"], [site], s["n_tokens"], out / "sae-cache", seq_len=s["seq_len"], shuffle_seed=cfg.seed
        )
    )


def sae_for(model, cfg: Config, out: Path):
    if cfg.sae_artifact:
        return load_decomposer(cfg.sae_artifact, device=model.device)
    s = {**SAE_DEFAULTS, **cfg.sae}
    for key in ("text", "n_tokens", "seq_len"):
        s.pop(key)
    s["n_tokens"] = s.pop("train_tokens")
    return train(
        {**s, "seed": cfg.seed, "wandb": "disabled", "model": cfg.model, "site": f"blocks.{cfg.layer}.hook_mlp_out"},
        mlp_out_cache(model, cfg, out),
        out=out / "sae",
    )


def itda_for(model, cfg: Config, out: Path):
    """ITDA from an artifact, or built on the SAE's ``hook_mlp_out`` cache (same tokens as the SAE)."""
    if cfg.itda_artifact:
        return load_decomposer(cfg.itda_artifact, device=model.device)
    from interp.decomposers.itda import ITDA

    itda = ITDA.fit(
        mlp_out_cache(model, cfg, out),
        site=f"blocks.{cfg.layer}.hook_mlp_out",
        **{"k": 32, "cos_threshold": 0.7, **cfg.itda},
    )
    itda.save(out / "itda")
    return itda


def heads_for(model, cfg: Config):
    """Layer L's attention heads: every OV singular write vector is a feature (at hook_resid_post)."""
    from interp.decomposers.heads import HeadSVD

    return HeadSVD.fit(model, **{"circuit": "ov", "side": "write", "layer": cfg.layer, **cfg.heads})


def lib_for(model, cfg: Config, out: Path):
    """LIB around block L (resid_pre -> resid_mid -> resid_post), directions at resid_mid, fitted on
    the concept corpus packed into ``n_seqs`` rows of ``seq_len`` tokens (rank <= tokens)."""
    if cfg.lib_artifact:
        return load_decomposer(cfg.lib_artifact, device=model.device)
    from interp.data import tokenize
    from interp.decomposers.lib import LIB
    from interp.decomposers.lib.cut import residual_block_cut, site_acts

    s = {
        "n_seqs": 8,
        "seq_len": 24,
        "n_sources_pos": 1,
        "n_sources_hidden": 16,
        "edge_sources_pos": 1,
        "rotate_final": True,
        "integration": "gradient",
        "batch_size": 2,
        "truncation_relative": 1e-10,
        "compute_edges": False,
        **cfg.lib,
    }
    n_seqs, seq_len = s.pop("n_seqs"), s.pop("seq_len")
    concepts, neutral, _ = split_concepts(dataclasses.replace(cfg, concepts=None, n_concepts=None))
    text = [x for c in concepts for x in c.train] + neutral
    toks = torch.as_tensor(tokenize(text, model.tokenizer, seq_len, n_seqs * seq_len).tokens)
    modules, sites = residual_block_cut(model, cfg.layer)
    lib = LIB.fit(
        modules,
        site_acts(model, toks, sites[0]),
        s,
        sites=tuple(sites),
        model=cfg.model,
        node_layers=("resid_pre", "resid_mid", "resid_post"),
        direction_layer=1,
    )
    lib.save(out / "lib")
    return lib


def snmf_for(model, cfg: Config):
    """SNMF from an artifact, or fitted on the concept corpus (every concept's training sentences and
    the neutral selection sentences, as the paper fits on its concept corpus); None when absent."""
    if cfg.snmf_artifact:
        return load_decomposer(cfg.snmf_artifact, device=model.device)
    try:
        from interp.decomposers.semi_nmf import SNMF
    except ImportError:
        return None
    site = f"blocks.{cfg.layer}.mlp.hook_post"
    concepts, neutral, _ = split_concepts(dataclasses.replace(cfg, concepts=None, n_concepts=None))
    acts = torch.cat(site_activations(model, site, [s for c in concepts for s in c.train] + neutral))
    return SNMF.fit(acts, **{"model": cfg.model, "site": site, "seed": cfg.seed, **cfg.snmf})


FITTERS = {  # method -> (model, cfg, out) -> decomposer (None: difference-in-means needs none)
    "diffmeans": lambda model, cfg, out: None,
    "sae": sae_for,
    "snmf": lambda model, cfg, out: snmf_for(model, cfg),
    "itda": itda_for,
    "heads": lambda model, cfg, out: heads_for(model, cfg),
    "lib": lib_for,
}


def run(cfg: Config) -> None:
    unknown = [m for m in cfg.methods if m not in FITTERS]
    if unknown:
        raise ConfigError(f"unknown steering method(s) {unknown}: use any of {list(FITTERS)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "config.yaml", lambda f: yaml.safe_dump(dataclasses.asdict(cfg), f, sort_keys=False))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    t0 = time.time()
    model = load(cfg.model)
    decomposers, absent = {}, []
    for method in cfg.methods:
        dec = FITTERS[method](model, cfg, out)
        if dec is None and method == "snmf":
            absent.append(
                "snmf: interp.decomposers.semi_nmf is not importable and no snmf_artifact was "
                "given; compared without it"
            )
        else:
            decomposers[method] = dec
    for note in absent:
        print(f"NOTE {note}")
    t_fit = time.time() - t0
    result = run_experiment(model, decomposers, cfg, embedding_judge())
    rows = summarise(result, n_boot=cfg.n_boot, seed=cfg.seed)
    un = result["unsteered"]["per_concept"]
    ppl = [p for p in result["unsteered"]["perplexity"] if np.isfinite(p)]
    unsteered = {
        k: float(np.mean([np.mean(u[key]) for u in un]))
        for k, key in (
            ("concept", "concept_score"),
            ("fluency", "fluency"),
            ("combined", "combined"),
            ("success", "success"),
        )
    }
    unsteered["perplexity"] = float(np.median(ppl)) if ppl else float("nan")
    result["notes"] = absent
    result["timing_s"] = {"fit": t_fit, "total": time.time() - t0}
    paths = write_report(out, result, rows, unsteered)
    print("\n" + table_markdown(rows, unsteered))
    print(
        f"methods: {list(decomposers)}; {len(split_concepts(cfg)[0])} concepts; "
        f"time fit {t_fit:.0f}s, total {time.time() - t0:.0f}s"
    )
    print("wrote " + ", ".join(str(p) for p in paths.values()))
