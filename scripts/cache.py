"""Cache activations: ``python scripts/cache.py configs/smollm2-135m.yaml [key=value ...]``.

Keys: model, sites, text, n_tokens, seq_len, batch_size, dtype, out. Re-running the same command
after an interruption resumes the cache.
"""

import sys

from interp.activations import ActivationCache, cache_activations
from interp.cli import load_config


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    cfg = load_config(argv[0], argv[1:])
    path = cache_activations(
        cfg["model"], cfg.get("text", "builtin:stdlib-docs"), cfg["sites"], int(cfg["n_tokens"]),
        cfg["out"], seq_len=cfg.get("seq_len", 128), batch_size=cfg.get("batch_size"),
        dtype=cfg.get("dtype", "float32"), shuffle_seed=cfg.get("shuffle_seed"),
    )
    m = ActivationCache(path).manifest
    print(f"cached {m['n_tokens']} tokens of {m['model']} at {', '.join(m['sites'])} -> {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
