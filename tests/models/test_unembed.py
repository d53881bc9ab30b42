"""Vocabulary projection against a direct computation on the tiny model."""

import pytest
import torch

from interp.models.unembed import direction_logits, vocab_projection


def test_vocab_projection_matches_direct(tiny_model):
    torch.manual_seed(0)
    d = torch.randn(5, tiny_model.d_model)
    hf = tiny_model.hf_model
    norm = hf.model.norm
    direct = (
        d * torch.rsqrt(d.pow(2).mean(1, keepdim=True) + norm.variance_epsilon) * norm.weight
    ) @ hf.lm_head.weight.T
    torch.testing.assert_close(direction_logits(tiny_model, d), direct, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(direction_logits(tiny_model, d, apply_final_norm=False), d @ hf.lm_head.weight.T)
    proj = vocab_projection(tiny_model, d, k=3, chunk=2)
    assert proj.top_ids.shape == (5, 3)
    assert torch.equal(proj.top_ids, direct.topk(3, dim=1).indices)
    assert torch.equal(proj.bottom_ids, direct.topk(3, dim=1, largest=False).indices)


def test_vocab_projection_rejects_wrong_width(tiny_model):
    with pytest.raises(ValueError, match="d_model"):
        direction_logits(tiny_model, torch.randn(2, tiny_model.d_model + 1))
