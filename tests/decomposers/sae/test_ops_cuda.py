"""The sparse SAE kernels on CUDA agree with a dense autograd reference (skipped without a GPU)."""

import pytest
import torch

from interp.decomposers.sae.ops import Pattern, gather_encode, sparse_decode


@pytest.mark.gpu
def test_sparse_kernels_match_dense_on_cuda():
    torch.manual_seed(0)
    B, D, F, k = 64, 48, 256, 8
    dev = "cuda"
    x = torch.randn(B, D, device=dev, dtype=torch.float64)
    params = [
        torch.randn(*s, device=dev, dtype=torch.float64, requires_grad=True) for s in ((D,), (D, F), (F,), (F, D))
    ]
    b_dec, W_enc, b_enc, W_dec = params
    with torch.no_grad():
        pre = (x - b_dec) @ W_enc + b_enc
    idx = pre.topk(k, dim=1).indices
    pattern = Pattern(idx, F)
    ours = sparse_decode(torch.relu(gather_encode(x, b_dec, W_enc, b_enc, pre, pattern)), pattern, W_dec)
    pre_ref = (x - b_dec) @ W_enc + b_enc
    codes = torch.zeros(B, F, device=dev, dtype=x.dtype).scatter(1, idx, torch.relu(pre_ref.gather(1, idx)))
    ref = codes @ W_dec
    g = torch.randn_like(ref)
    got = torch.autograd.grad((ours * g).sum(), params)
    want = torch.autograd.grad((ref * g).sum(), params)
    assert torch.allclose(ours, ref, atol=1e-10)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-10)
