"""Head SVD on a tiny random Gemma 3 (sandwich norms, q/k norms, one K/V head): the folded norm
gains reproduce the model's attention output, and weight edits honour the post-attention norm."""

import pytest
import torch

import interp.models
from interp.decomposers.heads.interventions import ComponentEdit, component_hooks, edit_weights
from interp.decomposers.heads.svd import HeadSVD


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from interp.models.tiny import byte_tokenizer

    tok = byte_tokenizer()
    cfg = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=256,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention"],
        query_pre_attn_scalar=16,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        hf = Gemma3ForCausalLM(cfg)
        with torch.no_grad():
            for name, p in hf.named_parameters():
                if "norm" in name:
                    p.copy_(0.3 * torch.randn_like(p))
    hf.config.architectures = ["Gemma3ForCausalLM"]
    path = tmp_path_factory.mktemp("tiny-gemma")
    hf.save_pretrained(path), tok.save_pretrained(path)
    return interp.models.load(str(path), device="cpu", attn_implementation="eager")


@torch.no_grad()
def test_folded_gemma_circuits_match_the_model(gemma):
    svd = HeadSVD.fit(gemma)
    toks = torch.randint(3, 250, (2, 9), generator=torch.Generator().manual_seed(0))
    for l in range(2):
        names = [
            f"blocks.{l}.{n}"
            for n in ("ln1.hook_normalized", "attn.hook_pattern", "ln1_post.hook_in", "attn.hook_attn_scores")
        ]
        _, cache = gemma.bridge.run_with_cache(toks, names_filter=names)
        xn, pat, o_raw, scores = (cache[n] for n in names)
        layer = gemma.hf_model.get_decoder().layers[l]
        recon = sum(
            pat[:, h] @ (xn @ (svd.components(l, h)[0] * svd.components(l, h)[1]) @ svd.components(l, h)[2])
            for h in range(4)
        )
        assert torch.allclose(recon, o_raw * (1 + layer.post_attention_layernorm.weight), atol=1e-4)
        att, g_in = layer.self_attn, 1 + layer.input_layernorm.weight
        q = (xn * g_in) @ att.q_proj.weight.T  # [b, s, 4*16]
        k = (xn * g_in) @ att.k_proj.weight.T  # [b, s, 16]
        rms = lambda t: t.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()  # noqa: E731
        for h in range(4):
            qh = q[..., h * 16 : (h + 1) * 16]
            U, S, Vt = svd.components(l, h, "qk")
            bil = ((xn @ (U * S)) * (xn @ Vt.T)).sum(-1) / (rms(qh) * rms(k)).squeeze(-1) / 4.0
            assert torch.allclose(bil, scores[:, h].diagonal(dim1=-2, dim2=-1), atol=1e-3)


@torch.no_grad()
def test_gemma_activation_edit_equals_weight_edit(gemma):
    svd = HeadSVD.fit(gemma)
    toks = torch.randint(3, 250, (1, 7), generator=torch.Generator().manual_seed(1))
    edits = [ComponentEdit(0, 2, 1, 0.0), ComponentEdit(1, 0, 0, 2.0)]
    with gemma.bridge.hooks(fwd_hooks=component_hooks(svd, edits)):
        act = gemma.bridge(toks)
    with edit_weights(gemma, svd, edits):
        wt = gemma.bridge(toks)
    assert (act - gemma.bridge(toks)).abs().max() > 1e-4
    assert torch.allclose(act, wt, atol=1e-4)
