"""Sparse kernels shared by the k-sparse SAE family.

With a k-sparse code only the encoder's forward matmul is dense. ``gather_encode`` returns the
selected pre-activations and, in backward, forms the encoder gradients from the k active entries
per token (a sparse CSR product instead of a second dense matmul). ``sparse_decode`` is an
``embedding_bag`` over the active decoder rows, never materialising ``[B, k, D]``.
Follows the fused-encoder idea of EleutherAI's sparsify.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int


class _GatherEncode(torch.autograd.Function):
    """vals[b, j] = ((x - b_dec) @ W_enc + b_enc)[b, idx[b, j]], with a k-sparse backward."""

    @staticmethod
    def forward(ctx, x, b_dec, W_enc, b_enc, pre_vals, idx):  # type: ignore[override]
        ctx.save_for_backward(x, b_dec, W_enc, idx)
        return pre_vals.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, b_dec, W_enc, idx = ctx.saved_tensors
        B, m = idx.shape
        n_feat = W_enc.shape[1]
        flat_idx, flat_grad = idx.reshape(-1), grad.reshape(-1).to(W_enc.dtype)
        grad_b_enc = torch.zeros(n_feat, dtype=W_enc.dtype, device=W_enc.device)
        grad_b_enc.index_add_(0, flat_idx, flat_grad)
        grad_W = None
        if ctx.needs_input_grad[2]:
            crow = torch.arange(0, B * m + 1, m, device=idx.device)
            with torch.sparse.check_sparse_tensor_invariants(False), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                g = torch.sparse_csr_tensor(crow, flat_idx, flat_grad, (B, n_feat))
                grad_W = torch.sparse.mm(g.t().to_sparse_csr(), (x - b_dec).to(W_enc.dtype)).t()
        grad_b_dec = -(W_enc @ grad_b_enc) if ctx.needs_input_grad[1] else None
        return None, grad_b_dec, grad_W, grad_b_enc, None, None


def gather_encode(
    x: Float[torch.Tensor, "B D"], b_dec: Float[torch.Tensor, "D"], W_enc: Float[torch.Tensor, "D F"],
    b_enc: Float[torch.Tensor, "F"], pre: Float[torch.Tensor, "B F"], idx: Int[torch.Tensor, "B K"],
) -> Float[torch.Tensor, "B K"]:
    """Differentiable gather of the pre-activations ``pre`` (computed without grad) at ``idx``."""
    return _GatherEncode.apply(x, b_dec, W_enc, b_enc, pre.gather(1, idx), idx)


def sparse_decode(
    vals: Float[torch.Tensor, "B K"], idx: Int[torch.Tensor, "B K"], W_dec: Float[torch.Tensor, "F D"],
) -> Float[torch.Tensor, "B D"]:
    """sum_j vals[b, j] * W_dec[idx[b, j]] without materialising the gathered rows."""
    return F.embedding_bag(idx, W_dec, per_sample_weights=vals.to(W_dec.dtype), mode="sum")
