"""The main job end to end (``make demo``): cache activations of the built-in SmolLM2 at a middle
layer, train a TopK SAE on them, evaluate it on held-out text, print a summary.

``python scripts/demo.py configs/demo.yaml``. Every stage resumes if interrupted.
"""

import sys
import time
from pathlib import Path

from interp.activations import ActivationCache, cache_activations
from interp.cli import load_config, print_table
from interp.decomposers.sae import train
from interp.evals.reconstruction import evaluate
from interp.models import load


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    demo = load_config(argv[0])
    here = Path(argv[0]).parent
    cache_cfg = load_config(here / demo["cache"]) | demo.get("cache_overrides", {})
    sae_cfg = load_config(here / demo["sae"]) | demo.get("sae_overrides", {})
    t0 = time.time()
    model = load(cache_cfg["model"])
    path = cache_activations(model, cache_cfg["text"], cache_cfg["sites"], cache_cfg["n_tokens"],
                             cache_cfg["out"], seq_len=cache_cfg["seq_len"],
                             batch_size=cache_cfg["batch_size"])
    t_cache = time.time() - t0
    out = sae_cfg.pop("out")
    sae = train(sae_cfg, ActivationCache(path), out=out)  # model and site come from the cache
    t_train = time.time() - t0 - t_cache
    metrics = evaluate(sae, model, cache_cfg["sites"][0], **demo["eval"])
    print_table({
        "model": model.name, "site": cache_cfg["sites"][0], "cached tokens": ActivationCache(path).n_tokens,
        "SAE": f"{sae.cfg.method}, d_sae {sae.cfg.d_sae}, k {sae.cfg.k}",
        "trained tokens": sae.meta["tokens_seen"], **metrics,
        "time cache / train / total (s)": f"{t_cache:.0f} / {t_train:.0f} / {time.time() - t0:.0f}",
    }, "interp demo: TopK SAE on held-out text")
    print(f"\nartifacts:\n  activation cache  {path}\n  SAE               {out}"
          f"\n  (SAELens files beside it; wandb run under {out}/wandb)")


if __name__ == "__main__":
    main(sys.argv[1:])
