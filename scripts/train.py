"""Train an SAE: ``python scripts/train.py configs/topk.yaml data=CACHE_DIR out=RUN_DIR [key=value ...]``.

``method: snmf`` (``configs/snmf.yaml``) fits semi-NMF features instead (any ``SNMFConfig`` field:
rank, sparsity, init, mode, max_iter, ...), on a cache of ``blocks.{L}.mlp.hook_post``.

Every field of the method's config dataclass can be given (method, d_in, d_sae, lr, batch_size,
n_tokens, seed, k, site, ...), plus ``data`` (a cache directory) and ``out`` (the artifact
directory). Re-running the same command after an interruption resumes from the checkpoint.

Several processes: ``torchrun --nproc_per_node N scripts/train.py ...`` trains data-parallel
(each global batch split over the ranks, gradients averaged; rank 0 writes the artifact). With
``sites=[a,b,...]`` (a cache holding those sites, filled by one model pass) each rank instead
trains its own sites' SAEs alone (site ``i`` on rank ``i % N``), into ``out/<site>``.
"""

import sys
from pathlib import Path

from interp import distributed
from interp.activations import ActivationCache
from interp.cli import load_config, print_table
from interp.decomposers.sae import train


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    cfg = load_config(argv[0], argv[1:])
    data, out, sites = cfg.pop("data", None), cfg.pop("out", None), cfg.pop("sites", None)
    if data is None or out is None:
        sys.exit("give data=CACHE_DIR and out=RUN_DIR")
    cache = ActivationCache(data)  # model and site come from the cache
    if cfg.get("method") == "snmf":
        fit_snmf(cfg, cache, out, sites)
        return
    if not sites:
        sae = train(cfg, cache, out=out)
        if distributed.is_main():
            report(sae, out)
        return
    rank, size = distributed.world()
    with distributed.solo():
        for site in sites[rank::size]:
            report(train(cfg | {"site": site}, cache, out=Path(out) / site), Path(out) / site)


def fit_snmf(cfg: dict, cache: ActivationCache, out: str, sites: list[str] | None) -> None:
    from interp.decomposers.semi_nmf import SNMF

    for site in sites or [cfg.pop("site", None)]:
        path = Path(out) / site if sites else Path(out)
        snmf = SNMF.fit(cache, **(cfg | {"site": site}))
        snmf.save(path)
        print_table({k: v for k, v in snmf.meta.items() if not isinstance(v, list)},
                    f"fitted SNMF k={snmf.cfg.rank} on {snmf.cfg.site} -> {path}")


def report(sae, out) -> None:
    print_table({k: v for k, v in sae.meta.items() if not isinstance(v, dict)} | sae.meta["final"],
                f"trained {sae.cfg.method} SAE on {sae.cfg.site} -> {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
