"""Compare steering methods at matched KL budgets (``interp steer configs/experiments/steer.yaml``).

SAE features (a TopK SAE at ``blocks.L.hook_mlp_out``: ``sae_artifact=PATH``, or trained here on the
built-in corpus), SNMF features (``blocks.L.mlp.hook_post``: ``snmf_artifact=PATH``, or fitted here
on the concept sentences) and difference-in-means vectors, on the same concepts, each calibrated to
every KL target, then generated and scored offline. Writes ``out/``: config.yaml (the resolved
config: re-running it reproduces the run), results.json, table.md, examples.md, plot.png. Every
stage is seeded by ``seed``.
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


def sae_for(model, cfg: Config, out: Path):
    if cfg.sae_artifact:
        return load_decomposer(cfg.sae_artifact, device=model.device)
    s = {"text": "builtin:stdlib-docs", "n_tokens": 60_000, "seq_len": 128, "method": "topk",
         "expansion_factor": 8, "k": 32, "train_tokens": 240_000, "lr": 1e-3, "warmup_steps": 5, "optimizer": "adam", **cfg.sae}
    site = f"blocks.{cfg.layer}.hook_mlp_out"
    cache = cache_activations(model, s.pop("text"), [site], s.pop("n_tokens"), out / "sae-cache",
                              seq_len=s.pop("seq_len"), shuffle_seed=cfg.seed)
    s["n_tokens"] = s.pop("train_tokens")
    return train({**s, "seed": cfg.seed, "wandb": "disabled", "model": cfg.model, "site": site},
                 ActivationCache(cache), out=out / "sae")


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


def run(cfg: Config) -> None:
    unknown = [m for m in cfg.methods if m not in ("diffmeans", "sae", "snmf")]
    if unknown:
        raise ConfigError(f"unknown steering method(s) {unknown}: use diffmeans, sae, snmf")
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
        if method == "diffmeans":
            decomposers[method] = None
        elif method == "sae":
            decomposers[method] = sae_for(model, cfg, out)
        else:
            dec = snmf_for(model, cfg)
            if dec is None:
                absent.append("snmf: interp.decomposers.semi_nmf is not importable (not merged yet) and no "
                              "snmf_artifact was given; compared without it")
            else:
                decomposers[method] = dec
    for note in absent:
        print(f"NOTE {note}")
    t_fit = time.time() - t0
    result = run_experiment(model, decomposers, cfg, embedding_judge())
    rows = summarise(result, n_boot=cfg.n_boot, seed=cfg.seed)
    un = result["unsteered"]["per_concept"]
    ppl = [p for p in result["unsteered"]["perplexity"] if np.isfinite(p)]
    unsteered = {"concept": float(np.mean([np.mean(u["concept_score"]) for u in un])),
                 "fluency": float(np.mean([np.mean(u["fluency"]) for u in un])),
                 "perplexity": float(np.median(ppl)) if ppl else float("nan")}
    result["notes"] = absent
    result["timing_s"] = {"fit": t_fit, "total": time.time() - t0}
    paths = write_report(out, result, rows, unsteered)
    print("\n" + table_markdown(rows, unsteered))
    print(f"methods: {list(decomposers)}; {len(split_concepts(cfg)[0])} concepts; "
          f"time fit {t_fit:.0f}s, total {time.time() - t0:.0f}s")
    print("wrote " + ", ".join(str(p) for p in paths.values()))

