"""Fit semi-NMF on the concept prompt set and measure how concentrated each feature's
top-activating tokens are on one concept, against chance (random token sets of the same size).

    interp reproduce snmf_concepts [model=smollm2-135m] [layer=15] [rank=100] [max_iter=2000] [top=10]
                                   [skip_first=0] [out=DIR]

Sentences are run one by one (BOS + sentence, as in the paper); every non-BOS token is a column.
With ``out`` the artifact and a per-feature description (neurons, vocabulary projection, top
contexts) are written there.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from interp._io import write_json_atomic
from interp.cli import print_table
from interp.data.concepts import load_concepts
from interp.decomposers.semi_nmf import SNMF
from interp.decomposers.semi_nmf.interpret import concentration, describe, top_activations
from interp.decomposers.semi_nmf.sentences import sentence_activations
from interp.decomposers.semi_nmf.source import as_rows
from interp.models import load


def concentration_per_feature(top_labels: torch.Tensor) -> torch.Tensor:
    return torch.stack([row.bincount().max() for row in top_labels]).float() / top_labels.shape[1]


@dataclass(frozen=True)
class Config:
    model: str = "smollm2-135m"
    """Model spec."""
    layer: int = 15
    """Layer whose mlp.hook_post is fitted."""
    rank: int = 100
    """SNMF features (k)."""
    sparsity: float = 0.01
    """Winner-take-all keep fraction of neurons per feature."""
    init: str = "random"
    """random | svd | kmeans."""
    max_iter: int = 2000
    """Fit iterations at most."""
    patience: int = 500
    """Stop after this many iterations without improvement."""
    top: int = 10
    """Top-activating tokens per feature whose concepts are counted."""
    seed: int = 42
    """Fit seed."""
    skip_first: int = 0
    """Leave the first n non-BOS tokens of every sentence out."""
    out: str | None = None
    """Write the artifact and per-feature descriptions here (None: print only)."""


def run(config: Config) -> None:
    cfg = dataclasses.asdict(config)
    model = load(cfg["model"])
    concepts = load_concepts()
    texts = [s for c in concepts for s in c.sentences]
    label_of_text = torch.tensor([i for i, c in enumerate(concepts) for _ in c.sentences])
    site = f"blocks.{cfg['layer']}.mlp.hook_post"
    acts, grid = sentence_activations(model, texts, site, skip_first=cfg["skip_first"])
    labels = label_of_text[torch.from_numpy(grid.groups.reshape(-1)[grid.index])]
    snmf = SNMF.fit(
        acts,
        cfg["rank"],
        cfg["sparsity"],
        cfg["init"],
        site=site,
        model=cfg["model"],
        max_iter=cfg["max_iter"],
        patience=cfg["patience"],
        seed=cfg["seed"],
    )
    top = top_activations(snmf, as_rows(acts), grid, k=cfg["top"])
    fired = (top.values > 0).all(1)
    observed, chance = concentration(labels[top.rows[fired]], labels)
    per_feature = concentration_per_feature(labels[top.rows[fired]])
    print_table(
        {
            "tokens": len(acts),
            "concepts": len(concepts),
            "fvu": snmf.meta["fvu"],
            "iterations": snmf.meta["iterations"],
            f"features with {cfg['top']} active tokens": int(fired.sum()),
            f"top-{cfg['top']} concept purity": observed,
            "chance purity": chance,
            "ratio": observed / chance,
            "features with purity >= 0.5": f"{(per_feature >= 0.5).float().mean():.2f}",
            "features with purity >= 0.8": f"{(per_feature >= 0.8).float().mean():.2f}",
        },
        f"SNMF k={cfg['rank']} on {cfg['model']} {site}, concept prompts",
    )
    if cfg["out"]:
        out = Path(cfg["out"])
        snmf.save(out, snmf.meta | {"concept_purity": observed, "chance_purity": chance})
        write_json_atomic(out / "features.json", {"features": describe(snmf, model, as_rows(acts), grid)})
