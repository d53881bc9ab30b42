"""Sparse kernels shared by the k-sparse SAE family.

With a k-sparse code only the encoder's forward matmul is dense (the top-k needs every
pre-activation). Everything else touches only the k active entries per token:
- ``gather_encode`` returns the selected pre-activations; its backward forms the encoder gradients
  as a sparse ``[F, B] @ [B, D]`` product (CSR) instead of a second dense matmul;
- ``sparse_decode`` sums the active decoder rows (``embedding_bag``); its backward gets the code
  gradients by a sampled dense-dense product and the decoder gradient by the same CSR product.
So one training step costs about one dense matmul (a dense-autograd TopK SAE costs five). On CUDA,
where dense matmuls are cheap and cuSPARSE is not, the backward scatters into a dense matrix and
uses cuBLAS instead (measured faster on an H100).
Follows the fused-encoder idea of EleutherAI's sparsify; the CSR/SDDMM backward is ours.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int


def _csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, col, val, shape, check_invariants=False)


class Pattern:
    """The active (token, latent) pairs of a batch, sorted by latent once and shared by the
    encoder and decoder backward passes."""

    def __init__(self, idx: Int[torch.Tensor, "B K"], n_feat: int):
        self.idx, self.n_feat = idx, n_feat
        self._sorted: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def by_feature(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """CSR row pointers over latents, the token of each entry, and the sorting order."""
        if self._sorted is None:
            flat = self.idx.reshape(-1)
            order = torch.sort(flat.to(torch.int32), stable=True).indices  # int32 sorts far faster
            crow = torch.zeros(self.n_feat + 1, dtype=torch.long, device=flat.device)
            crow[1:] = torch.bincount(flat, minlength=self.n_feat).cumsum(0)
            self._sorted = (crow, order // self.idx.shape[1], order)
        return self._sorted

    def t_matmul(self, vals: Float[torch.Tensor, "B K"], dense: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "F D"]:
        """G^T @ dense, where G [B, F] holds ``vals`` at ``idx`` (zeros elsewhere)."""
        if dense.is_cuda:  # cuBLAS on the scattered matrix beats cuSPARSE at these densities
            g = torch.zeros(self.idx.shape[0], self.n_feat, dtype=dense.dtype, device=dense.device)
            return g.scatter_(1, self.idx, vals.to(dense.dtype)).t() @ dense
        crow, tokens, order = self.by_feature()
        g_t = _csr(crow, tokens, vals.reshape(-1)[order].to(dense.dtype), (self.n_feat, self.idx.shape[0]))
        return torch.sparse.mm(g_t, dense)


class _GatherEncode(torch.autograd.Function):
    """vals[b, j] = ((x - b_dec) @ W_enc + b_enc)[b, idx[b, j]], with a k-sparse backward."""

    @staticmethod
    def forward(ctx, x, b_dec, W_enc, b_enc, pre_vals, pattern):  # type: ignore[override]
        ctx.save_for_backward(x, b_dec, W_enc)
        ctx.pattern = pattern
        return pre_vals.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, b_dec, W_enc = ctx.saved_tensors
        idx, n_feat = ctx.pattern.idx, W_enc.shape[1]
        grad = grad.to(W_enc.dtype)
        grad_b_enc = torch.zeros(n_feat, dtype=W_enc.dtype, device=W_enc.device)
        grad_b_enc.index_add_(0, idx.reshape(-1), grad.reshape(-1))
        grad_W = None
        if ctx.needs_input_grad[2]:
            grad_W = ctx.pattern.t_matmul(grad, (x - b_dec).to(W_enc.dtype)).t()
        grad_x = None
        if ctx.needs_input_grad[0]:  # only for attribution through the SAE, never in training
            grad_x = F.embedding_bag(idx, W_enc.t().contiguous(), per_sample_weights=grad, mode="sum").to(x.dtype)
        grad_b_dec = -(W_enc @ grad_b_enc) if ctx.needs_input_grad[1] else None
        return grad_x, grad_b_dec, grad_W, grad_b_enc, None, None


class _SparseDecode(torch.autograd.Function):
    """x_hat[b] = sum_j vals[b, j] * W_dec[idx[b, j]]."""

    @staticmethod
    def forward(ctx, vals, pattern, W_dec):  # type: ignore[override]
        ctx.save_for_backward(vals, W_dec)
        ctx.pattern = pattern
        idx = pattern.idx
        return F.embedding_bag(idx, W_dec, per_sample_weights=vals.to(W_dec.dtype), mode="sum")

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        vals, W_dec = ctx.saved_tensors
        idx = ctx.pattern.idx
        B, k = idx.shape
        grad = grad.to(W_dec.dtype).contiguous()
        grad_vals = grad_W = None
        if ctx.needs_input_grad[0] and grad.is_cuda:  # grad_vals[b, j] = grad[b] . W_dec[idx[b, j]]
            grad_vals = torch.bmm(W_dec[idx], grad[:, :, None])[..., 0].to(vals.dtype)
        elif ctx.needs_input_grad[0]:  # the same as a sampled dense-dense product (SDDMM)
            crow = torch.arange(0, B * k + 1, k, device=idx.device)
            pattern = _csr(crow, idx.reshape(-1), torch.zeros(B * k, dtype=grad.dtype, device=grad.device),
                           (B, W_dec.shape[0]))
            grad_vals = torch.sparse.sampled_addmm(pattern, grad, W_dec.t(), beta=0.0).values()
            grad_vals = grad_vals.reshape(B, k).to(vals.dtype)
        if ctx.needs_input_grad[2]:
            grad_W = ctx.pattern.t_matmul(vals, grad)
        return grad_vals, None, grad_W


def gather_encode(
    x: Float[torch.Tensor, "B D"], b_dec: Float[torch.Tensor, "D"], W_enc: Float[torch.Tensor, "D F"],
    b_enc: Float[torch.Tensor, "F"], pre: Float[torch.Tensor, "B F"], idx: Int[torch.Tensor, "B K"] | Pattern,
) -> Float[torch.Tensor, "B K"]:
    """Differentiable gather of the pre-activations ``pre`` (computed without grad) at ``idx``."""
    pattern = idx if isinstance(idx, Pattern) else Pattern(idx, W_enc.shape[1])
    return _GatherEncode.apply(x, b_dec, W_enc, b_enc, pre.gather(1, pattern.idx), pattern)


def sparse_decode(
    vals: Float[torch.Tensor, "B K"], idx: Int[torch.Tensor, "B K"] | Pattern, W_dec: Float[torch.Tensor, "F D"],
) -> Float[torch.Tensor, "B D"]:
    """sum_j vals[b, j] * W_dec[idx[b, j]] without materialising the gathered rows."""
    pattern = idx if isinstance(idx, Pattern) else Pattern(idx, W_dec.shape[0])
    return _SparseDecode.apply(vals, pattern, W_dec)


# -- variable sparsity: ReLU, JumpReLU, BatchTopK -------------------------------------------------

SPARSE_MAX_DENSITY = 1 / 8  # above this fraction of active latents per token a dense step is faster


class Active:
    """The candidate (token, latent) entries of a batch whose pre-activation exceeds ``lower``.

    Codes of variable sparsity (ReLU, JumpReLU, BatchTopK) are held padded: ``idx [B, K]`` with
    K the largest count in the batch, ``valid [B, K]`` marking the real entries (the padding holds
    other, distinct latents of the same token, so a scatter never collides). When K exceeds
    ``max_density * F`` (early training of L1/L0-penalised SAEs) the entries are held dense instead
    (``idx is None``), and callers use plain matmuls.
    """

    def __init__(self, pre: Float[torch.Tensor, "B F"], lower: torch.Tensor | float,
                 max_density: float | None = None):
        max_density = SPARSE_MAX_DENSITY if max_density is None else max_density
        margin = pre if isinstance(lower, (int, float)) and lower == 0 else pre - lower  # no copy for ReLU
        self.mask = margin > 0
        k = int(torch.count_nonzero(self.mask, dim=1).max()) if pre.numel() else 0
        self.n_feat = pre.shape[1]
        self.dense = k > max_density * self.n_feat
        self.idx: torch.Tensor | None = None
        self.pattern: Pattern | None = None
        if not self.dense:
            idx = margin.topk(max(k, 1), dim=1, sorted=False).indices
            self.idx, self.valid = idx, self.mask.gather(1, idx)
            self.pattern = Pattern(idx, self.n_feat)

    @classmethod
    def from_candidates(cls, idx: Int[torch.Tensor, "B K"], valid: torch.Tensor, n_feat: int) -> "Active":
        """Sparse candidates already known (distinct latents per row), e.g. from a top-k shortlist."""
        act = cls.__new__(cls)
        act.n_feat, act.dense, act.idx, act.valid = n_feat, False, idx, valid
        act.pattern = Pattern(idx, n_feat)
        return act

    def encode(self, x, b_dec, W_enc, b_enc, pre) -> torch.Tensor:
        """Differentiable pre-activations of the candidates: [B, K] sparse or [B, F] dense."""
        if self.dense:
            return _DenseEncode.apply(x, b_dec, W_enc, b_enc, pre)
        return gather_encode(x, b_dec, W_enc, b_enc, pre, self.pattern)

    def per_latent(self, t: Float[torch.Tensor, "F"]) -> torch.Tensor:
        """A per-latent tensor laid out like the candidates (differentiable)."""
        return t if self.dense else t[self.idx]

    def keep(self, vals: torch.Tensor) -> torch.Tensor:
        """Zero the entries that are not candidates (the padding, or in a dense step the rest)."""
        return vals * (self.mask if self.dense else self.valid)

    def decode(self, vals: torch.Tensor, W_dec: Float[torch.Tensor, "F D"]) -> Float[torch.Tensor, "B D"]:
        """sum_j vals_j W_dec[j] (without b_dec)."""
        return vals @ W_dec if self.dense else sparse_decode(vals, self.pattern, W_dec)

    def fired(self, vals: torch.Tensor) -> torch.Tensor:
        """Latents with a non-zero code in the batch."""
        if self.dense:
            return (vals != 0).any(0)
        fired = torch.zeros(self.n_feat, dtype=torch.bool, device=vals.device)
        fired[self.idx[vals != 0]] = True
        return fired

    def scatter(self, vals: torch.Tensor) -> Float[torch.Tensor, "B F"]:
        """Dense codes [B, F]."""
        if self.dense:
            return vals
        out = torch.zeros(vals.shape[0], self.n_feat, dtype=vals.dtype, device=vals.device)
        return out.scatter_(1, self.idx, vals)


class _DenseEncode(torch.autograd.Function):
    """pre = (x - b_dec) @ W_enc + b_enc, reusing the forward computed without grad for selection."""

    @staticmethod
    def forward(ctx, x, b_dec, W_enc, b_enc, pre):  # type: ignore[override]
        ctx.save_for_backward(x, b_dec, W_enc)
        return pre.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, b_dec, W_enc = ctx.saved_tensors
        grad = grad.to(W_enc.dtype)
        grad_b_enc = grad.sum(0)
        grad_W = (x - b_dec).to(W_enc.dtype).t() @ grad if ctx.needs_input_grad[2] else None
        grad_x = (grad @ W_enc.t()).to(x.dtype) if ctx.needs_input_grad[0] else None
        grad_b_dec = -(W_enc @ grad_b_enc) if ctx.needs_input_grad[1] else None
        return grad_x, grad_b_dec, grad_W, grad_b_enc, None
