"""The main job end to end (``make demo``): cache, train a TopK SAE, evaluate it on held-out text.

``interp demo configs/experiments/demo.yaml`` caches activations of the built-in SmolLM2 at a middle
layer, trains a TopK SAE on them, evaluates it spliced into the model and prints a summary. Every
stage resumes if interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Config:
    cache: str
    """The interp cache config (a YAML path, relative to the working directory)."""
    sae: str
    """The interp train config (a YAML path, relative to the working directory)."""
    cache_overrides: dict = field(default_factory=dict)
    """Keys replaced in the cache config."""
    sae_overrides: dict = field(default_factory=dict)
    """Keys replaced in the train config (out: the SAE's folder)."""
    eval: dict = field(default_factory=dict)
    """Arguments of interp.evals.reconstruction.evaluate (text_spec, n_tokens, seq_len, batch_size)."""


def run(cfg: Config) -> None:
    import time

    from interp.activations import ActivationCache, cache_activations
    from interp.cli import cache, load_config, print_table, train
    from interp.cli.config import build
    from interp.cli.main import make_config
    from interp.decomposers.sae import train as train_sae
    from interp.evals.reconstruction import evaluate
    from interp.models import load

    c = build(cache.Config, load_config(cfg.cache) | cfg.cache_overrides, "interp demo (cache)")
    sae_raw = load_config(cfg.sae) | cfg.sae_overrides
    s = make_config(train.Config, train.extra_configs(sae_raw), sae_raw, "interp demo (sae)")
    t0 = time.time()
    model = load(c.model)
    path = cache_activations(
        model, c.text, list(c.sites), c.n_tokens, c.out, seq_len=c.seq_len, batch_size=c.batch_size
    )
    t_cache = time.time() - t0
    sae = train_sae(s.params | {"method": s.method}, ActivationCache(path), out=s.out)
    t_train = time.time() - t0 - t_cache
    metrics = evaluate(sae, model, c.sites[0], **cfg.eval)
    print_table(
        {
            "model": model.name,
            "site": c.sites[0],
            "cached tokens": ActivationCache(path).n_tokens,
            "SAE": f"{sae.cfg.method}, d_sae {sae.cfg.d_sae}, k {sae.cfg.k}",
            "trained tokens": sae.meta["tokens_seen"],
            **metrics,
            "time cache / train / total (s)": f"{t_cache:.0f} / {t_train:.0f} / {time.time() - t0:.0f}",
        },
        "interp demo: TopK SAE on held-out text",
    )
    print(
        f"\nartifacts:\n  activation cache  {path}\n  SAE               {s.out}"
        f"\n  (SAELens files beside it; wandb run under {s.out}/wandb)"
    )
