"""Cache activations: ``python scripts/cache.py configs/smollm2-135m.yaml [key=value ...]``.

Keys: model, sites, text, n_tokens, seq_len, batch_size, dtype, out, device_map. Re-running the
same command after an interruption resumes the cache. ``torchrun --nproc_per_node N
scripts/cache.py ...`` splits the forward passes over N processes (one GPU each); ``device_map=auto``
spreads a model too large for one GPU over several.
"""

import sys

import interp.models
from interp import distributed
from interp.activations import ActivationCache, cache_activations
from interp.cli import load_config


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    cfg = load_config(argv[0], argv[1:])
    model = interp.models.load(cfg["model"], device_map=cfg.get("device_map"))
    path = cache_activations(
        model, cfg.get("text", "builtin:stdlib-docs"), cfg["sites"], int(cfg["n_tokens"]),
        cfg["out"], seq_len=cfg.get("seq_len", 128), batch_size=cfg.get("batch_size"),
        dtype=cfg.get("dtype", "float32"), shuffle_seed=cfg.get("shuffle_seed"),
    )
    if not distributed.is_main():
        return
    m = ActivationCache(path).manifest
    print(f"cached {m['n_tokens']} tokens of {m['model']} at {', '.join(m['sites'])} -> {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
