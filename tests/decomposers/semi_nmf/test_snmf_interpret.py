"""SNMF interpretation data and the recursive SNMF: streaming top-k and context windows against
naive loops, W_out readout against the HF weights, neuron overlap, hierarchy fine-tune."""

import numpy as np
import pytest
import torch

from interp.decomposers.semi_nmf import SNMF
from interp.decomposers.semi_nmf.hierarchy import fit_hierarchy, neuron_overlap
from interp.decomposers.semi_nmf.interpret import TokenGrid, concentration, contexts, top_rows


def test_streaming_top_rows_equal_full_topk():
    codes = torch.rand(1000, 7)
    vals, rows = top_rows(((a, codes[a : a + 96]) for a in range(0, 1000, 96)), k=9)
    ref = codes.T.topk(9, dim=1)
    torch.testing.assert_close(vals, ref.values)
    assert torch.equal(rows, ref.indices)


def test_contexts_match_a_naive_loop():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50, (6, 12))
    groups = np.repeat(np.arange(6)[:, None], 12, 1) * 10 + (np.arange(12) >= 7)  # two docs per row
    groups[:, 0] = -1  # BOS
    index = np.flatnonzero(groups.reshape(-1) >= 0)
    grid = TokenGrid(tokens, groups, index)
    rows = torch.tensor([[0, 5, 30], [12, 40, len(index) - 1]])
    ctx, grp = contexts(grid, rows, window=3)
    for r, c, g in zip(rows.flatten().tolist(), ctx.reshape(-1, 7).tolist(), grp.flatten().tolist()):
        seq, pos = divmod(int(index[r]), 12)
        assert g == groups[seq, pos]
        for j, off in enumerate(range(-3, 4)):
            p = pos + off
            ok = 0 <= p < 12 and groups[seq, p] == groups[seq, pos]
            assert c[j] == (tokens[seq, p] if ok else -1)


def test_concentration_is_one_for_pure_sets_and_chance_for_random():
    labels = torch.arange(10).repeat_interleave(50)
    pure = labels.view(10, 50)[:, :10]
    obs, chance = concentration(pure, labels, draws=500)
    assert obs == 1.0 and 0.1 <= chance < 0.5
    obs_rand, _ = concentration(labels[torch.randperm(500)[:100]].view(10, 10), labels, draws=500)
    assert obs_rand < 0.6


def test_residual_directions_go_through_w_out(tiny_model):
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(300, tiny_model.d_mlp, generator=gen)
    s = SNMF.fit(X, rank=4, sparsity=0.05, max_iter=5, progress=False, site="blocks.1.mlp.hook_post")
    w = tiny_model.hf_model.model.layers[1].mlp.down_proj.weight  # [d_model, d_mlp]
    ref = s.directions() @ w.T
    torch.testing.assert_close(s.residual_directions(tiny_model), ref, rtol=1e-5, atol=1e-6)
    unit = s.residual_directions(tiny_model, layer=1, normalize=True)
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(4))
    with pytest.raises(ValueError, match="layer 9"):
        s.residual_directions(tiny_model, layer=9)


def test_neuron_overlap_counts_shared_neurons():
    Wa = torch.tensor([[1.0, 0, -2, 0], [0, 3, 0, 0]])
    Wb = torch.tensor([[0.5, 1, 0, 0], [0, 0, 1, 1], [2, 0, 3, 4]])
    M = neuron_overlap(Wa, Wb)
    ref = [[len({i for i in range(4) if a[i] != 0} & {i for i in range(4) if b[i] != 0}) for b in Wb] for a in Wa]
    assert M.tolist() == ref
    assert neuron_overlap(Wb, Wb, keep=1).diagonal().tolist() == [1, 1, 1]


@pytest.mark.parametrize("project", [False, True])
def test_hierarchy_levels_mix_nonnegatively_and_finetune_lowers_the_loss(project):
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(400, 10, generator=gen) @ torch.randn(10, 32, generator=gen)
    h = fit_hierarchy(
        X,
        ranks=(8, 4, 2),
        sparsity=0.25,
        max_iter=60,
        patience=60,
        finetune_steps=30,
        lr=1e-2,
        project=project,
        progress=False,
    )
    assert [lv.cfg.rank for lv in h.levels] == [8, 4, 2]
    assert [tuple(m.shape) for m in h.mixing] == [(8, 4), (4, 2)]
    ft = h.meta["finetune"]
    assert ft["mse_last"] < ft["mse_first"]
    # levels are consistent products after the fine-tune: F_1 = F_2 G_2ᵀ, F_2 = F_3 G_3ᵀ
    torch.testing.assert_close(h.levels[0].W_dec, h.mixing[0] @ h.levels[1].W_dec)
    torch.testing.assert_close(h.levels[1].W_dec, h.mixing[1] @ h.levels[2].W_dec)
    recon = h.codes(0) @ h.levels[0].W_dec
    assert ((recon - X) ** 2).mean().item() == pytest.approx(ft["mse_last"], rel=0.2)
    if project:
        assert all((m >= 0).all() for m in h.mixing) and (h.codes(0) >= 0).all()
        assert ((h.levels[-1].W_dec != 0).sum(1) <= 8).all()
