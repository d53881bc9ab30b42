"""Fixtures for the browser tests: decomposer artifacts of different shapes and their stores.

- ``topk``: a TopK SAE at ``blocks.0.hook_resid_pre`` of the tiny Llama (the token embedding)
  with a planted feature 0 that fires only on the token ``Q``;
- ``dense``: a test-only decomposer with non-negative dense codes and no decoder, in MLP neuron
  space (``blocks.0.mlp.hook_post``) without ``residual_directions`` (vocabulary projection
  skipped);
- ``dense_res``: the same with ``residual_directions`` (projection through ``W_out``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from interp.decomposers import REGISTRY, Decomposer, register
from interp.decomposers.sae import TopKConfig, TopKSAE

SEQ_LEN, N_TOKENS = 64, 4096
PLANTED_TOKEN = "Q"
STORE_OPTIONS = dict(
    seq_len=SEQ_LEN,
    k=6,
    n_samples=12,
    n_quantiles=3,
    per_quantile=3,
    window_left=9,
    window_right=4,
    n_bins=32,
    n_similar=5,
    vocab_k=5,
    batch_size=16,
    chunk_elements=4096,
)


@dataclass(frozen=True)
class DenseConfig:
    method: str = "test_dense"
    d_in: int = 128
    n_features: int = 48
    seed: int = 0
    model: str | None = None
    site: str | None = None


class DenseNonneg(Decomposer):
    """Dense non-negative codes ``softplus(x W - 1)``; directions are the normalised columns."""

    config_cls = DenseConfig

    def __init__(self, cfg: DenseConfig):
        super().__init__(cfg)
        g = torch.Generator().manual_seed(cfg.seed)
        self.W = torch.nn.Parameter(torch.randn(cfg.d_in, cfg.n_features, generator=g) / cfg.d_in**0.5)

    def encode(self, x):
        return torch.nn.functional.softplus(x @ self.W - 1.0)

    def directions(self):
        return (self.W / self.W.norm(dim=0)).T.detach()


class DenseNonnegResidual(DenseNonneg):
    """Neuron-space features mapped to the residual stream through the MLP's output weights."""

    def residual_directions(self, model, layer):
        w_out = model.hf_model.model.layers[layer].mlp.down_proj.weight  # [d_model, d_mlp]
        return self.directions() @ w_out.T.detach()


for _name, _cls in (("test_dense", DenseNonneg), ("test_dense_res", DenseNonnegResidual)):
    if _name not in REGISTRY:
        register(_name)(_cls)


def planted_topk(model) -> TopKSAE:
    """Random TopK SAE on the embedding whose feature 0 is a detector of the token ``Q``."""
    cfg = TopKConfig(d_in=model.d_model, d_sae=128, k=8, model="tiny-llama", site="blocks.0.hook_resid_pre")
    sae = TopKSAE(cfg)
    emb = model.hf_model.get_input_embeddings().weight.detach()
    q = model.tokenizer.convert_tokens_to_ids(PLANTED_TOKEN)
    u = emb[q] / emb[q].norm()
    proj = emb @ u
    others = torch.cat([proj[:q], proj[q + 1 :]]).max()
    thr = (proj[q] + others) / 2
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        sae.b_enc.copy_(0.3 * torch.randn(cfg.d_sae, generator=g))
        sae.W_enc[:, 0] = 50 * u
        sae.b_enc[0] = -50 * thr
        sae.W_dec[0] = u
    return sae


def fitted_decomposers(model) -> dict:
    """One small instance of every fitted method, at a site of the tiny model."""
    from interp.decomposers.heads.svd import HeadSVD
    from interp.decomposers.itda import ITDA
    from interp.decomposers.lib import LIB
    from interp.decomposers.semi_nmf import SNMF

    g = torch.Generator().manual_seed(0)
    hidden = torch.relu(torch.randn(512, model.d_mlp, generator=g))
    resid = torch.randn(512, model.d_model, generator=g)
    labels = torch.stack([torch.zeros(512, dtype=torch.long), torch.arange(512)], 1)
    W = (torch.randn(model.d_model, model.d_model, generator=g) / model.d_model**0.5).double()
    return {
        "snmf": SNMF.fit(
            hidden, rank=8, sparsity=0.1, max_iter=20, progress=False, model="tiny-llama", site="blocks.0.mlp.hook_post"
        ),
        "itda": ITDA.fit(
            [(resid, labels)],
            k=4,
            cos_threshold=0.5,
            max_atoms=48,
            progress=False,
            model="tiny-llama",
            site="blocks.0.hook_resid_post",
        ),
        "attn_svd": HeadSVD.fit(model),
        "lib": LIB.fit(
            [lambda x: torch.tanh(x @ W)],
            resid.double(),
            model="tiny-llama",
            sites=("blocks.0.hook_resid_post", "blocks.0.hook_mlp_out"),
            direction_layer=0,
        ),
    }


def make_artifacts(model, root: Path) -> dict[str, Path]:
    arts = {
        "topk": planted_topk(model),
        "dense": DenseNonneg(DenseConfig(model="tiny-llama", site="blocks.0.mlp.hook_post")),
        "dense_res": DenseNonnegResidual(
            DenseConfig(method="test_dense_res", model="tiny-llama", site="blocks.0.mlp.hook_post", seed=1)
        ),
        **fitted_decomposers(model),
    }
    return {name: dec.save(root / "artifacts" / name) for name, dec in arts.items()}


@pytest.fixture(scope="session")
def browser_root(tiny_model, _tiny_corpus_file, tmp_path_factory):
    """A runs root with a store per decomposer type: ``root/stores/<name>``."""
    from interp.browser import build_store

    root = tmp_path_factory.mktemp("runs")
    for name, art in make_artifacts(tiny_model, root).items():
        build_store(
            art,
            str(_tiny_corpus_file),
            N_TOKENS,
            root / "stores" / name,
            model=tiny_model,
            progress=False,
            **STORE_OPTIONS,
        )
    return root
