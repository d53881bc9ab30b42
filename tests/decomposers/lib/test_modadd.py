"""The mod-add transformer: table-based forward vs the LIB cut, vmapped ensemble training vs
independent runs, the split, checkpoint round trip; the residual-block cut of a bridged Llama."""

import dataclasses

import torch

from interp.decomposers.lib import modadd
from interp.decomposers.lib.cut import loss_from_resid, loss_with_site, residual_block_cut, site_acts

SMALL = modadd.ModAddConfig(p=7, d_model=8, n_heads=2, d_head=4, d_mlp=16, max_epochs=3, stop_test_acc=None)


def test_dataset_split():
    tokens, labels, train = modadd.dataset(SMALL)
    assert tokens.shape == (49, 3) and (tokens[:, 2] == 7).all()
    assert torch.equal(labels, (tokens[:, 0] + tokens[:, 1]) % 7) and int(train.sum()) == round(0.3 * 49)


def test_cut_reproduces_forward():
    params = {k: v.double() for k, v in modadd.init_params(SMALL, 0).items()}
    params = {k: v + 0.1 * torch.randn_like(v) for k, v in params.items()}  # non-zero biases too
    tokens, _, _ = modadd.dataset(SMALL)
    f = modadd.embed(params, tokens)
    f = torch.cat([f, torch.ones_like(f[..., :1])], -1)
    for m in modadd.modules(params):
        f = m(f)
    assert f.shape == (49, 1, 9) and torch.allclose(f[:, 0, -1], torch.ones(49, dtype=f.dtype))
    assert torch.allclose(f[:, 0, :-1], modadd.forward(params, tokens), atol=1e-12)


def test_ensemble_equals_independent_runs(tmp_path):
    both, _ = modadd.train(SMALL, [0, 1])
    alone, metrics = modadd.train(SMALL, [1])
    for k in both[1]:
        assert torch.allclose(both[1][k], alone[0][k], atol=1e-5), k
    cfg = dataclasses.replace(SMALL, seed=1)
    modadd.save(alone[0], cfg, metrics[0], tmp_path / "m")
    params, back, m = modadd.load(tmp_path / "m")
    assert back == cfg and m == metrics[0] and all(torch.equal(params[k], alone[0][k]) for k in params)


def test_residual_block_cut_matches_bridge(tiny_model):
    tokens = torch.randint(3, 200, (2, 9))
    mods, sites = residual_block_cut(tiny_model, 1)
    acts = [site_acts(tiny_model, tokens, s) for s in sites]
    with torch.no_grad():
        assert torch.allclose(mods[0](acts[0]), acts[1], atol=1e-5)
        assert torch.allclose(mods[1](acts[1]), acts[2], atol=1e-5)
    clean = loss_with_site(tiny_model, tokens, sites[2])
    assert abs(loss_from_resid(tiny_model, tokens, 1, acts[2]) - clean) < 1e-4
