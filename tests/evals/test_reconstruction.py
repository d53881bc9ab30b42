"""Reconstruction metrics against a straightforward reference computation on the tiny model."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from interp.data import load_text, tokenize
from interp.decomposers import Decomposer
from interp.evals.reconstruction import evaluate, evaluate_many, fvu

SITE = "blocks.0.hook_resid_post"


@dataclass(frozen=True)
class _Cfg:
    d_in: int = 64
    model: str | None = None
    site: str | None = None


class _Linear(Decomposer):
    """codes = relu(x E), x_hat = scale * codes E^T: a decomposer with a known, imperfect output."""

    def __init__(self, d: int, f: int, scale: float, seed: int = 0):
        super().__init__(_Cfg(d_in=d))
        g = torch.Generator().manual_seed(seed)
        self.E = torch.nn.Parameter(torch.randn(d, f, generator=g) / d**0.5)
        self.scale = scale

    def encode(self, x):
        return torch.relu(x @ self.E)

    def decode(self, codes):
        return self.scale * codes @ self.E.T

    def directions(self):
        return self.E.T


def test_fvu_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 7)) + 3.0
    x_hat = x + rng.normal(scale=0.3, size=x.shape)
    want = ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert fvu(torch.tensor(x), torch.tensor(x_hat)) == pytest.approx(want, rel=1e-12)


def _reference(model, dec, tokens, special):
    """Metrics one sequence at a time, with plain hooks and F.cross_entropy."""
    xs, x_hats, codes_all = [], [], []
    ce = {"clean": [], "recon": [], "zero": []}
    kls = []
    for row, sp in zip(tokens, special):
        row = row[None]
        logits_clean, cache = model.bridge.run_with_cache(row, names_filter=[SITE])
        x = cache[SITE][0]
        keep = ~sp
        with torch.no_grad():
            codes = dec.encode(x[keep])
            x_hat = dec.decode(codes)
        xs.append(x[keep]), x_hats.append(x_hat), codes_all.append(codes)
        recon, zero = x.clone(), x.clone()
        recon[keep], zero[keep] = x_hat, 0.0
        target_ok = keep[1:]
        runs = {"clean": logits_clean}
        for name, rep in (("recon", recon), ("zero", zero)):
            runs[name] = model.bridge.run_with_hooks(row, fwd_hooks=[(SITE, lambda a, hook, r=rep: r[None])])
        for name, logits in runs.items():
            ce[name].append(F.cross_entropy(logits[0, :-1][target_ok], row[0, 1:][target_ok], reduction="none"))
        p = F.softmax(logits_clean[0, :-1][target_ok].double(), -1)
        q = F.softmax(runs["recon"][0, :-1][target_ok].double(), -1)
        kls.append((p * (p.log() - q.log())).sum(-1))
    x, x_hat, codes = torch.cat(xs), torch.cat(x_hats), torch.cat(codes_all)
    ce = {k: torch.cat(v).mean().item() for k, v in ce.items()}
    freq = (codes != 0).float().mean(0)
    return {
        "fvu": fvu(x, x_hat),
        "l0": (codes != 0).sum(1).float().mean().item(),
        "dead_frac": (freq == 0).float().mean().item(),
        "dense_frac": (freq > 0.1).float().mean().item(),
        "ce_clean": ce["clean"],
        "ce_recon": ce["recon"],
        "ce_zero": ce["zero"],
        "ce_loss_recovered": (ce["zero"] - ce["recon"]) / (ce["zero"] - ce["clean"]),
        "kl": torch.cat(kls).mean().item(),
    }


@pytest.mark.parametrize("scale", [0.5, 1.0])
def test_evaluate_matches_reference(tiny_model, tiny_corpus, scale):
    dec = _Linear(64, 96, scale)
    got = evaluate(
        dec, tiny_model, SITE, tiny_corpus, n_tokens=512, seq_len=32, batch_size=4, shuffle_seed=None, progress=False
    )
    text = tokenize(load_text(tiny_corpus), tiny_model.tokenizer, 32, 512)
    want = _reference(tiny_model, dec, torch.from_numpy(text.tokens), torch.from_numpy(text.special_mask()))
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert got["explained_variance"] == pytest.approx(1 - got["fvu"])
    assert got["n_tokens"] == int((~text.special_mask()).sum())


class _Exact(_Linear):
    def decode(self, codes):
        return self._x

    def encode(self, x):
        self._x = x
        return torch.relu(x @ self.E)


def test_perfect_reconstruction_recovers_all_loss(tiny_model, tiny_corpus):
    got = evaluate(_Exact(64, 32, 1.0), tiny_model, SITE, tiny_corpus, n_tokens=256, seq_len=32, progress=False)
    assert got["fvu"] == pytest.approx(0.0, abs=1e-12)
    assert got["ce_recon"] == pytest.approx(got["ce_clean"], abs=1e-5)
    assert got["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-3)
    assert got["kl"] == pytest.approx(0.0, abs=1e-5)


def test_width_mismatch_is_a_clear_error(tiny_model, tiny_corpus):
    with pytest.raises(ValueError, match="site/width mismatch"):
        evaluate(
            _Linear(64, 16, 1.0),
            tiny_model,
            "blocks.0.mlp.hook_post",
            tiny_corpus,
            n_tokens=64,
            seq_len=32,
            progress=False,
        )


def test_evaluate_many_equals_separate_calls(tiny_model, tiny_corpus):
    decs = [_Linear(64, 96, 0.5), _Linear(64, 48, 1.0, seed=1)]
    kw = dict(text_spec=tiny_corpus, n_tokens=256, seq_len=32, batch_size=4, progress=False)
    together = evaluate_many(decs, tiny_model, SITE, **kw)
    for dec, got in zip(decs, together):
        want = evaluate(dec, tiny_model, SITE, **kw)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), key
    with pytest.raises(ValueError, match="site/width mismatch"):
        evaluate_many([decs[0], _Linear(32, 16, 1.0)], tiny_model, SITE, **kw)
