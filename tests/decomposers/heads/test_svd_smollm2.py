"""Head SVD on the built-in SmolLM2 (9 query / 3 K/V heads): reconstruction, GQA mapping, a
Laundry List smoke run with an intervention."""

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol():
    import interp.models

    return interp.models.load("smollm2-135m", device="cpu", attn_implementation="eager")


@pytest.fixture(scope="module")
def svd(smol):
    from interp.decomposers.heads.svd import HeadSVD

    return HeadSVD.fit(smol)


@torch.no_grad()
def test_smollm2_head_svd(smol, svd):
    from interp.decomposers.heads.svd import composition_scores

    assert (svd.cfg.n_heads, svd.cfg.n_kv_heads, svd.cfg.d_head) == (9, 3, 64)
    assert [svd.kv_group(h) for h in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    layer = smol.hf_model.get_decoder().layers[17]
    g = layer.input_layernorm.weight.double()[:, None]
    v = layer.self_attn.v_proj.weight.double()[2 * 64 : 3 * 64].T * g  # K/V head 2 serves query heads 6-8
    o = layer.self_attn.o_proj.weight.double()[:, 7 * 64 : 8 * 64].T
    U, S, Vt = svd.components(17, 7, "ov")
    W = v @ o
    assert torch.allclose((U.double() * S.double()) @ Vt.double(), W, atol=1e-4 * W.abs().max().item())
    cs = composition_scores(svd, (17, 7), "q")
    assert cs.shape == (64, 30, 9) and torch.isnan(cs[:, :18]).all() and (cs[:, 18:] > 0).all()


@torch.no_grad()
def test_smollm2_laundry_list_runs_with_an_intervention(smol, svd):
    from interp.decomposers.heads.laundry_prompts import make_prompts
    from interp.decomposers.heads.interventions import ComponentEdit, component_hooks
    from interp.decomposers.heads.laundry_list import evaluate

    ps = make_prompts(3, 4, seed=0)
    base = evaluate(smol, ps, heads=((20, 1),), progress=False)
    same = evaluate(
        smol, ps, heads=((20, 1),), progress=False, hooks=component_hooks(svd, [ComponentEdit(15, 2, 0, 1.0)])
    )
    assert base.collisions == 0  # every pool object has a distinct first token in this tokenizer
    assert (base.correct_cand == same.correct_cand).all()
    assert abs(base.attn_first - same.attn_first).max() < 1e-4
