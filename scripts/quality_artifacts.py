"""Small artifacts of every method at one layer, for the feature-quality comparison:
``python scripts/quality_artifacts.py configs/quality_artifacts.yaml [key=value ...]``.

Caches ``blocks.L.hook_resid_mid`` and ``blocks.L.mlp.hook_post`` in one pass, trains each SAE
variant in ``methods`` (``interp.decomposers.sae.train``), fits semi-NMF, ITDA and LIB, and writes
each artifact to ``out/<method>``; prints the seconds each took. Existing artifacts are kept.
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from interp.activations import cache_activations  # noqa: E402
from interp.cli import load_config  # noqa: E402
from interp.data import tokenize  # noqa: E402
from interp.decomposers.itda import ITDA  # noqa: E402
from interp.decomposers.lib import LIB  # noqa: E402
from interp.decomposers.sae import train  # noqa: E402
from interp.decomposers.semi_nmf import SNMF  # noqa: E402
from interp.models import load  # noqa: E402
from interp.models.cut import residual_block_cut, site_acts  # noqa: E402


def fit_lib(lm, cfg, L: int, out: Path) -> None:
    s = dict(cfg["lib"])
    n_seqs, seq_len = s.pop("n_seqs"), s.pop("seq_len")
    toks = torch.as_tensor(tokenize(cfg["text"], lm.tokenizer, seq_len, n_seqs * seq_len).tokens)
    modules, sites = residual_block_cut(lm, L)
    LIB.fit(modules, site_acts(lm, toks, sites[0]), s, node_layers=("resid_pre", "resid_mid", "resid_post"),
            sites=tuple(sites), model=cfg["model"], direction_layer=1).save(out)


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    cfg = load_config(argv[0], argv[1:])
    out, L = Path(cfg["out"]), cfg["layer"]
    resid, mlp = f"blocks.{L}.hook_resid_mid", f"blocks.{L}.mlp.hook_post"
    lm = load(cfg["model"])
    t = time.perf_counter()
    cache = cache_activations(lm, cfg["text"], [resid, mlp], cfg["cache_tokens"], out / "cache",
                              seq_len=cfg["seq_len"], shuffle_seed=0)
    print(f"cache: {time.perf_counter() - t:.0f} s")
    jobs = {m: (lambda m=m, s=s: train({**cfg["sae"], **s, "method": m, "site": resid}, cache, out=out / m))
            for m, s in cfg["methods"].items()}
    jobs["snmf"] = lambda: SNMF.fit(cache, site=mlp, **cfg["snmf"]).save(out / "snmf")
    jobs["itda"] = lambda: ITDA.fit(cache, site=resid, **cfg["itda"]).save(out / "itda")
    jobs["lib"] = lambda: fit_lib(lm, cfg, L, out / "lib")
    for name, job in jobs.items():
        if (out / name / "config.json").exists():
            continue
        t = time.perf_counter()
        job()
        print(f"{name}: {time.perf_counter() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
