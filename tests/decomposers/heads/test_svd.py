"""Head SVD on the tiny Llama: reconstruction, GQA mapping, the bridge's conventions, composition
scores against the direct Frobenius formula, the artifact round trip."""

import pytest
import torch

import interp.models
from interp.decomposers import load
from interp.decomposers.heads.svd import (
    HeadSVD,
    all_composition_scores,
    composition_scores,
    head_composition_scores,
    head_weights,
    outlier_zscores,
)


@pytest.fixture(scope="module")
def model():
    """A private tiny Llama whose norm gains are random (so folding them is actually tested)."""
    m = interp.models.load("tiny-llama", device="cpu", attn_implementation="eager")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in m.hf_model.get_decoder().layers:
            layer.input_layernorm.weight.copy_(0.5 + torch.rand(m.d_model, generator=g))
    return m


@pytest.fixture(scope="module")
def svd(model):
    return HeadSVD.fit(model)


def dense(model, l, h, circuit, fold=True):
    """Circuit from the HF projections directly (an independent slicing of the weights)."""
    att, dh = model.hf_model.get_decoder().layers[l].self_attn, model.d_head
    g = h // (model.n_heads // model.n_kv_heads)
    ln = model.hf_model.get_decoder().layers[l].input_layernorm.weight.double() if fold else 1.0
    q = att.q_proj.weight.double()[h * dh : (h + 1) * dh].T * (ln[:, None] if fold else 1)
    k = att.k_proj.weight.double()[g * dh : (g + 1) * dh].T * (ln[:, None] if fold else 1)
    v = att.v_proj.weight.double()[g * dh : (g + 1) * dh].T * (ln[:, None] if fold else 1)
    o = att.o_proj.weight.double()[:, h * dh : (h + 1) * dh].T
    return v @ o if circuit == "ov" else q @ k.T


@pytest.mark.parametrize("circuit", ["ov", "qk"])
def test_svd_reconstructs_every_circuit_with_gqa_groups(model, svd, circuit):
    assert model.n_heads == 4 and model.n_kv_heads == 2  # two query heads per K/V head
    for l in range(model.n_layers):
        for h in range(model.n_heads):
            U, S, Vt = svd.components(l, h, circuit)
            W = dense(model, l, h, circuit)
            assert U.shape == (model.d_model, model.d_head) and Vt.shape == (model.d_head, model.d_model)
            assert torch.allclose((U * S) @ Vt, W.float(), atol=1e-5 * W.abs().max().item())
            assert torch.all(S[:-1] >= S[1:])
            assert torch.allclose(Vt @ Vt.T, torch.eye(model.d_head), atol=1e-5)
    # heads 0 and 1 share K/V head 0; head 2 does not
    assert torch.equal(svd.W_V[0, svd.kv_group(1)], svd.W_V[0, 0])
    wrong_group = svd.W_V[0, 0] @ svd.W_O[0, 2]  # head 2 belongs to K/V head 1, not 0
    assert not torch.allclose(svd.circuit(0, 2, "ov"), wrong_group, atol=1e-3)
    assert torch.allclose(svd.circuit(0, 2, "ov"), dense(model, 0, 2, "ov").float(), atol=1e-5)


def test_unfolded_weights_match_the_bridge(model):
    w = head_weights(model, fold_norms=False)
    for name in ("W_Q", "W_K", "W_V", "W_O"):
        assert torch.allclose(w[name].float(), getattr(model.bridge, name).detach(), atol=1e-6), name


@torch.no_grad()
def test_attention_output_recomputed_from_factors(model, svd):
    """sum_h pattern_h @ (x/rms @ U S Vt) equals the hooked attention output; and the diagonal of
    the attention scores (offset 0, where rotary cancels) equals x/rms @ QK @ x/rms / sqrt(dh)."""
    toks = torch.randint(3, 250, (2, 9), generator=torch.Generator().manual_seed(0))
    for l in range(model.n_layers):
        names = [
            f"blocks.{l}.{n}"
            for n in ("ln1.hook_normalized", "attn.hook_pattern", "hook_attn_out", "attn.hook_attn_scores")
        ]
        _, cache = model.bridge.run_with_cache(toks, names_filter=names)
        xn, pat, out, scores = (cache[n] for n in names)
        recon, diag = 0, []
        for h in range(model.n_heads):
            U, S, Vt = svd.components(l, h, "ov")
            recon = recon + pat[:, h] @ (xn @ (U * S) @ Vt)
            Uq, Sq, Vq = svd.components(l, h, "qk")
            diag.append(((xn @ (Uq * Sq)) * (xn @ Vq.T)).sum(-1) / model.d_head**0.5)
        assert torch.allclose(recon, out, atol=1e-5)
        assert torch.allclose(torch.stack(diag, 1), scores.diagonal(dim1=-2, dim2=-1), atol=1e-4)


def naive_cs(W1, W2):
    return (W1 @ W2).norm() / (W1.norm() * W2.norm())


@pytest.mark.parametrize("kind", ["q", "k", "v"])
def test_composition_scores_match_frobenius_formula(model, svd, kind):
    cs = composition_scores(svd, (0, 3), kind)
    assert cs.shape == (model.d_head, model.n_layers, model.n_heads)
    assert torch.isnan(cs[:, 0]).all()
    for i in (0, 5, model.d_head - 1):
        U, S, Vt = (t.double() for t in svd.components(0, 3, "ov"))
        W1 = S[i] * torch.outer(U[:, i], Vt[i])
        for h in range(model.n_heads):
            W2 = dense(model, 1, h, "qk" if kind in "qk" else "ov")
            W2 = W2.T if kind == "k" else W2
            assert cs[i, 1, h].item() == pytest.approx(naive_cs(W1, W2).item(), rel=1e-4)
    allcs = all_composition_scores(svd, kind)
    assert torch.allclose(allcs[0, 3], cs, equal_nan=True)
    hcs = head_composition_scores(svd, kind)
    W2 = dense(model, 1, 2, "qk" if kind in "qk" else "ov")
    assert hcs[0, 1, 1, 2].item() == pytest.approx(
        naive_cs(dense(model, 0, 1, "ov"), W2.T if kind == "k" else W2).item(), rel=1e-4
    )


def test_separate_rotary_scores_and_outliers(model, svd):
    cs = composition_scores(svd, (0, 0), "q", rotary="separate")
    v = svd.components(0, 0)[2][2].double()
    W_Q = dense(model, 1, 1, "qk")  # only to get the folded W_Q below
    att = model.hf_model.get_decoder().layers[1].self_attn
    ln = model.hf_model.get_decoder().layers[1].input_layernorm.weight.double()
    wq = att.q_proj.weight.double()[16:32].T * ln[:, None]
    assert W_Q.shape == (64, 64)
    assert cs[2, 1, 1].item() == pytest.approx(((v @ wq).norm() / wq.norm()).item(), rel=1e-4)
    z = outlier_zscores(composition_scores(svd, (0, 0), "q"))
    assert torch.allclose(z[:, 1].mean(0), torch.zeros(4, dtype=z.dtype), atol=1e-5)
    assert torch.allclose(z[:, 1].std(0), torch.ones(4, dtype=z.dtype), atol=1e-4)


def test_directions_views_and_artifact_round_trip(model, svd, tmp_path):
    d = svd.directions()
    assert d.shape == (model.n_layers * model.n_heads * model.d_head, model.d_model)
    assert torch.allclose(d.norm(dim=1), torch.ones(len(d)), atol=1e-5)
    assert svd.cfg.site == "blocks.1.hook_resid_post"
    v = svd.view(layer=0, side="read")
    assert v.cfg.site == "blocks.0.hook_resid_pre"
    idx = v.feature_index()
    l, h, i = idx[7].tolist()
    assert torch.allclose(v.directions()[7], svd.components(l, h)[0][:, i])
    x = torch.randn(3, model.d_model)
    assert torch.allclose(v.encode(x)[:, 7], x @ svd.components(l, h)[0][:, i] * svd.components(l, h)[1][i], atol=1e-5)
    svd.save(tmp_path / "a")
    back = load(tmp_path / "a")
    assert isinstance(back, HeadSVD) and back.cfg == svd.cfg
    assert torch.equal(back.Vt_qk, svd.Vt_qk)
    with pytest.raises(ValueError, match="circuit"):
        svd.components(0, 0, "xy")
    with pytest.raises(ValueError, match="does not exist"):
        svd.components(5, 0)


@torch.no_grad()
def test_rotation_average_is_exact_for_a_fixed_offset(model, svd):
    """If every query attends at offset 2, W_Q M W_K^T reproduces the rotary scores at that offset."""
    from interp.decomposers.heads.rotary import rotary_qk, rotation_average

    toks = torch.randint(3, 250, (2, 8), generator=torch.Generator().manual_seed(3))
    names = [
        "blocks.1.ln1.hook_normalized",
        "blocks.1.attn.hook_attn_scores",
        "blocks.1.attn.hook_cos",
        "blocks.1.attn.hook_sin",
    ]
    _, cache = model.bridge.run_with_cache(toks, names_filter=names)
    xn, scores, cos, sin = (cache[n] for n in names)
    p = torch.zeros(2, 4, 8, 8)
    i = torch.arange(2, 8)
    p[:, :, i, i - 2] = 1.0
    M = rotation_average(p, cos.expand(2, -1, -1), sin.expand(2, -1, -1)) * 8 / 6  # 6 of 8 queries attend
    for h in range(4):
        g = svd.kv_group(h)
        W = (svd.W_Q[1, h].double() @ M[h] @ svd.W_K[1, g].double().T).float()
        want = scores[:, h, i, i - 2] * model.d_head**0.5
        got = ((xn[:, i] @ W) * xn[:, i - 2]).sum(-1)
        assert torch.allclose(got, want, atol=1e-4)
    rq = rotary_qk(model, svd, toks)
    assert rq.rotation_average.shape == (2, 4, 16, 16)
    assert torch.equal(rq.Vt_ov, svd.Vt_ov) and not torch.allclose(rq.S_qk, svd.S_qk)
    U, S, Vt = rq.components(1, 3, "qk")
    W = svd.W_Q[1, 3].double() @ rq.rotation_average[1, 3] @ svd.W_K[1, 1].double().T
    assert torch.allclose((U * S) @ Vt, W.float(), atol=1e-5)
