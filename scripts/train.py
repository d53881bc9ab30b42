"""Train an SAE: ``python scripts/train.py configs/topk.yaml data=CACHE_DIR out=RUN_DIR [key=value ...]``.

Every field of the method's config dataclass can be given (method, d_in, d_sae, lr, batch_size,
n_tokens, seed, k, site, ...), plus ``data`` (a cache directory) and ``out`` (the artifact
directory). Re-running the same command after an interruption resumes from the checkpoint.
Under ``torchrun`` only rank 0 trains until data-parallel training lands; other ranks exit.
"""

import os
import sys

from interp.activations import ActivationCache
from interp.cli import load_config, print_table
from interp.decomposers.sae import train


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    if int(os.environ.get("RANK", "0")) != 0:
        print(f"rank {os.environ['RANK']}: single-process training runs on rank 0 only")
        return
    cfg = load_config(argv[0], argv[1:])
    data, out = cfg.pop("data", None), cfg.pop("out", None)
    if data is None or out is None:
        sys.exit("give data=CACHE_DIR and out=RUN_DIR")
    sae = train(cfg, ActivationCache(data), out=out)  # model and site come from the cache
    print_table({k: v for k, v in sae.meta.items() if not isinstance(v, dict)} | sae.meta["final"],
                f"trained {sae.cfg.method} SAE -> {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
