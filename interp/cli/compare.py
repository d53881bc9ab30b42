"""Compare two models layer by layer (``interp compare configs/experiments/compare.yaml``).

Caches every layer of each model in one pass over the same text, builds one ITDA per layer over
the positions where both tokenizers end a token at the same character, and writes to ``out``:
``similarity.json`` (all matrices, model-level similarity, best matches, layer-matching scores),
``heatmaps.png`` (within A, within B, A vs B, for ITDA Jaccard, linear CKA, SVCCA and relative
representations) and prints a table of each layer's best match in the other model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from interp._io import write_json_atomic
from interp.activations import ActivationCache, cache_activations
from interp.evals.compare import compare_models
from interp.models import load


@dataclass(frozen=True)
class Config:
    models: tuple[str, str]
    """The two model specs compared."""
    out: str = "runs/compare"
    """Output folder (caches under out/cache/<model>)."""
    site: str = "blocks.{layer}.hook_resid_post"
    """Hook site of every layer ({layer} is replaced by 0..n_layers-1)."""
    text: str = "builtin:stdlib-docs"
    """Text source, the same for both models."""
    n_tokens: int = 8192
    """Tokens cached per model."""
    seq_len: int = 128
    """Tokens per context row."""
    dtype: str = "float32"
    """Cache storage dtype (float16 overflows on Gemma 3's residual norms)."""
    itda: dict = field(default_factory=lambda: {"k": 40, "cos_threshold": 0.6, "batch_size": 4096, "center": True})
    """ITDA settings of every layer's dictionary (any ITDAConfig field)."""
    n_baseline: int = 1024
    """Aligned tokens for CKA / SVCCA / relative representations."""
    seed: int = 0
    """Seed of the baseline token sample."""


METRICS = ("jaccard", "cka", "svcca", "relative")


def cache_all_layers(spec: str, cfg: Config, out: Path) -> tuple[ActivationCache, list[str]]:
    model = load(spec)
    sites = [cfg.site.format(layer=layer) for layer in range(model.n_layers)]
    path = cache_activations(
        model, cfg.text, sites, cfg.n_tokens, out / "cache" / spec, seq_len=cfg.seq_len, dtype=cfg.dtype
    )
    return ActivationCache(path), sites


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m.split("/")[-1] for m in result["models"]]
    pairs = (
        ("aa", f"{names[0]} x {names[0]}"),
        ("bb", f"{names[1]} x {names[1]}"),
        ("ab", f"{names[0]} (rows) x {names[1]} (cols)"),
    )
    fig, axes = plt.subplots(len(METRICS), 3, figsize=(15, 4.6 * len(METRICS)))
    for i, metric in enumerate(METRICS):
        for j, (pair, title) in enumerate(pairs):
            ax = axes[i, j]
            im = ax.imshow(result["matrices"][metric][pair], origin="lower", cmap="viridis", aspect="auto")
            ax.set_title(f"{metric}: {title}", fontsize=9)
            ax.set_xlabel("layer")
            ax.set_ylabel("layer")
            fig.colorbar(im, ax=ax, fraction=0.046)
            if pair == "ab":
                best = result["matching"][metric]["a_to_b"]["best"]
                ax.plot(best, range(len(best)), "r.", markersize=4, label="best match")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def table(result: dict) -> None:
    names = [m.split("/")[-1] for m in result["models"]]
    print(
        f"\nbest match in {names[1]} for each layer of {names[0]} "
        f"({result['aligned_tokens']} aligned tokens, {result['baseline_tokens']} for baselines)"
    )
    print(f"{'layer':>5} {'atoms':>6} " + " ".join(f"{m:>9}" for m in METRICS))
    for layer, n in enumerate(result["n_atoms"][0]):
        print(f"{layer:>5} {n:>6} " + " ".join(f"{result['matching'][m]['a_to_b']['best'][layer]:>9}" for m in METRICS))
    print(f"\n{'metric':<9} {'spearman':>8} {'monotone':>8} {'non-decr':>8} {'score':>6} {'score±1':>7}  (A->B)")
    for m in METRICS:
        r = result["matching"][m]["a_to_b"]
        print(
            f"{m:<9} {r['spearman']:8.3f} {str(r['monotone']):>8} {r['non_decreasing']:8.2f} "
            f"{r['score']:6.2f} {r['score_within_1']:7.2f}"
        )
    ms, bo = result["model_similarity"], result["boundary_overlap"]
    print(
        f"\nmodel-level ITDA similarity (union over layers 1..): {ms['a_vs_b']:.4f} "
        f"(ceiling {ms['ceiling']:.4f}, normalised {ms['normalised']:.4f})"
    )
    print(
        f"token end offsets shared by the two tokenizers: Jaccard {bo['jaccard']:.4f} "
        f"({bo['a_in_b']:.1%} of {names[0]}'s, {bo['b_in_a']:.1%} of {names[1]}'s)"
    )
    print(f"atoms per layer: {names[0]} {result['n_atoms'][0]}\n                 {names[1]} {result['n_atoms'][1]}")


def run(cfg: Config) -> None:
    out = Path(cfg.out)
    start, cpu = time.perf_counter(), time.process_time()
    (cache_a, sites_a), (cache_b, sites_b) = (cache_all_layers(m, cfg, out) for m in cfg.models)
    t_cache = time.perf_counter() - start
    result = compare_models(cache_a, cache_b, sites_a, sites_b, cfg.itda, cfg.n_baseline, cfg.seed)
    result["seconds"]["cache"] = t_cache
    result["seconds"]["all"] = time.perf_counter() - start
    result["seconds"]["cpu"] = time.process_time() - cpu  # all threads: ~2x the idle 2-core wall time
    write_json_atomic(out / "similarity.json", result)
    plot(result, out / "heatmaps.png")
    table(result)
    print(
        f"\nwrote {out / 'similarity.json'} and {out / 'heatmaps.png'} "
        f"in {result['seconds']['all']:.0f} s wall, {result['seconds']['cpu']:.0f} s CPU "
        f"(caching {t_cache:.0f} s, ITDA {result['seconds']['itda']:.0f} s wall)"
    )
