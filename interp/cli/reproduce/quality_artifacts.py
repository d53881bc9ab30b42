"""Small artifacts of every method at one layer, for the feature-quality comparison:
``interp reproduce quality_artifacts configs/experiments/quality_artifacts.yaml``.

Caches ``blocks.L.hook_resid_mid`` and ``blocks.L.mlp.hook_post`` in one pass, trains each SAE
variant in ``methods`` (``interp.decomposers.sae.train``), fits semi-NMF, ITDA and LIB, and writes
each artifact to ``out/<method>``; prints the seconds each took. Existing artifacts are kept.
"""

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from interp.activations import cache_activations
from interp.data import tokenize
from interp.decomposers.itda import ITDA
from interp.decomposers.lib import LIB
from interp.decomposers.sae import train
from interp.decomposers.semi_nmf import SNMF
from interp.models import load
from interp.decomposers.lib.cut import residual_block_cut, site_acts


def fit_lib(lm, cfg, L: int, out: Path) -> None:
    s = dict(cfg["lib"])
    n_seqs, seq_len = s.pop("n_seqs"), s.pop("seq_len")
    toks = torch.as_tensor(tokenize(cfg["text"], lm.tokenizer, seq_len, n_seqs * seq_len).tokens)
    modules, sites = residual_block_cut(lm, L)
    LIB.fit(
        modules,
        site_acts(lm, toks, sites[0]),
        s,
        node_layers=("resid_pre", "resid_mid", "resid_post"),
        sites=tuple(sites),
        model=cfg["model"],
        direction_layer=1,
    ).save(out)


@dataclass(frozen=True)
class Config:
    methods: dict
    """{SAE method: its own settings} for every SAE variant trained."""
    model: str = "smollm2-135m"
    """Model spec."""
    layer: int = 15
    """Layer L: SAEs, ITDA and LIB at blocks.L.hook_resid_mid, semi-NMF at blocks.L.mlp.hook_post."""
    text: str = "builtin:stdlib-docs?split=train"
    """Training text."""
    cache_tokens: int = 65_536
    """Tokens cached (both sites, one pass)."""
    seq_len: int = 128
    """Tokens per context row."""
    out: str = "runs/quality-artifacts"
    """Output folder: out/<method> per artifact (existing ones are kept)."""
    sae: dict = field(default_factory=dict)
    """SAE config fields shared by every variant."""
    snmf: dict = field(default_factory=dict)
    """SNMFConfig fields of the fit."""
    itda: dict = field(default_factory=dict)
    """ITDAConfig fields of the fit."""
    lib: dict = field(default_factory=dict)
    """LIBConfig fields, plus n_seqs and seq_len of the fitting tokens."""


def run(config: Config) -> None:
    cfg = dataclasses.asdict(config)
    out, L = Path(cfg["out"]), cfg["layer"]
    resid, mlp = f"blocks.{L}.hook_resid_mid", f"blocks.{L}.mlp.hook_post"
    lm = load(cfg["model"])
    t = time.perf_counter()
    cache = cache_activations(
        lm, cfg["text"], [resid, mlp], cfg["cache_tokens"], out / "cache", seq_len=cfg["seq_len"], shuffle_seed=0
    )
    print(f"cache: {time.perf_counter() - t:.0f} s")
    jobs = {
        m: (lambda m=m, s=s: train({**cfg["sae"], **s, "method": m, "site": resid}, cache, out=out / m))
        for m, s in cfg["methods"].items()
    }
    jobs["snmf"] = lambda: SNMF.fit(cache, site=mlp, **cfg["snmf"]).save(out / "snmf")
    jobs["itda"] = lambda: ITDA.fit(cache, site=resid, **cfg["itda"]).save(out / "itda")
    jobs["lib"] = lambda: fit_lib(lm, cfg, L, out / "lib")
    for name, job in jobs.items():
        if (out / name / "config.json").exists():
            continue
        t = time.perf_counter()
        job()
        print(f"{name}: {time.perf_counter() - t:.0f} s", flush=True)
