"""Sparse kernels shared by the SAE family.

With a sparse code only the encoder's forward matmul is dense (the selection needs every
pre-activation). Everything else touches only the active entries (a ``Pattern``: k per token, or
ragged, each token its own count):
- ``gather_encode`` returns the selected pre-activations; its backward forms the encoder gradients
  as a sparse ``[F, B] @ [B, D]`` product (CSR) instead of a second dense matmul;
- ``sparse_decode`` sums the active decoder rows (``embedding_bag``); its backward gets the code
  gradients by a sampled dense-dense product and the decoder gradient by the same CSR product.
So one training step costs about one dense matmul (a dense-autograd TopK SAE costs five). Codes of
variable sparsity (``Active``) fall back to dense matmuls while they are too dense to gain. On CUDA,
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
    """The active (token, latent) pairs of a batch: the sparsity pattern of a [B, F] code.

    Two layouts share one set of kernels. *Uniform*: ``idx [B, K]``, K latents per token (TopK,
    top-AFA). *Ragged*: flat ``lat [N]`` grouped by token, ``tok [N]`` ascending, any number of
    latents per token (ReLU, JumpReLU, BatchTopK, BA/GBA), so a kernel costs in proportion to the
    real entries rather than to the busiest token. Code values use the same layout: ``[B, K]`` or
    ``[N]``. The pattern sorted by latent is computed once, on first use, and shared by the encoder
    and decoder backward passes.
    """

    def __init__(self, idx: Int[torch.Tensor, "B K"], n_feat: int):
        self.idx, self.n_feat, self.n_tok = idx, n_feat, idx.shape[0]
        self.lat: Int[torch.Tensor, "N"] = idx.reshape(-1)
        self._tok: torch.Tensor | None = None
        self._crow: torch.Tensor | None = None
        self._sorted: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def ragged(cls, tok: Int[torch.Tensor, "N"], lat: Int[torch.Tensor, "N"], n_tok: int, n_feat: int) -> "Pattern":
        """Entries (tok[n], lat[n]) with ``tok`` ascending (as ``nonzero`` returns them)."""
        pattern = cls.__new__(cls)
        pattern.idx, pattern.n_feat, pattern.n_tok = None, n_feat, n_tok
        pattern.lat, pattern._tok, pattern._crow, pattern._sorted = lat, tok, None, None
        return pattern

    @property
    def tok(self) -> Int[torch.Tensor, "N"]:
        if self._tok is None:  # uniform: K entries per token
            self._tok = torch.arange(self.n_tok, device=self.lat.device).repeat_interleave(self.idx.shape[1])
        return self._tok

    @property
    def crow(self) -> Int[torch.Tensor, "B+1"]:
        """Where each token's entries start in the flat layout (CSR row pointers over tokens)."""
        if self._crow is None:
            if self.idx is not None:
                k = self.idx.shape[1]
                self._crow = torch.arange(0, self.n_tok * k + 1, k, device=self.lat.device)
            else:
                self._crow = torch.zeros(self.n_tok + 1, dtype=torch.long, device=self.lat.device)
                self._crow[1:] = torch.bincount(self.tok, minlength=self.n_tok).cumsum(0)
        return self._crow

    def gather(self, dense: Float[torch.Tensor, "B F"]) -> torch.Tensor:
        """The entries of a dense [B, F] matrix, in this pattern's layout."""
        if self.idx is not None:
            return dense.gather(1, self.idx)
        return dense.reshape(-1)[self.tok * self.n_feat + self.lat]

    def bag(self, vals: torch.Tensor, weight: Float[torch.Tensor, "F D"]) -> Float[torch.Tensor, "B D"]:
        """out[b] = sum over b's entries of vals * weight[latent] (an embedding bag)."""
        if self.idx is not None:
            return F.embedding_bag(self.idx, weight, per_sample_weights=vals.to(weight.dtype), mode="sum")
        return F.embedding_bag(self.lat, weight, self.crow[:-1], per_sample_weights=vals.to(weight.dtype), mode="sum")

    def by_feature(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """CSR row pointers over latents, the token of each entry, and the sorting order."""
        if self._sorted is None:
            order = torch.sort(self.lat.to(torch.int32), stable=True).indices  # int32 sorts far faster
            crow = torch.zeros(self.n_feat + 1, dtype=torch.long, device=self.lat.device)
            crow[1:] = torch.bincount(self.lat, minlength=self.n_feat).cumsum(0)
            tokens = order // self.idx.shape[1] if self.idx is not None else self.tok[order]
            self._sorted = (crow, tokens, order)
        return self._sorted

    def t_matmul(self, vals: torch.Tensor, dense: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "F D"]:
        """G^T @ dense, where G [B, F] holds ``vals`` on this pattern (zeros elsewhere)."""
        vals = vals.reshape(-1).to(dense.dtype)
        if dense.is_cuda:  # cuBLAS on the scattered matrix beats cuSPARSE at these densities
            g = torch.zeros(self.n_tok, self.n_feat, dtype=dense.dtype, device=dense.device)
            return g.index_put_((self.tok, self.lat), vals).t() @ dense
        crow, tokens, order = self.by_feature()
        return torch.sparse.mm(_csr(crow, tokens, vals[order], (self.n_feat, self.n_tok)), dense)

    def sddmm(self, grad: Float[torch.Tensor, "B D"], weight: Float[torch.Tensor, "F D"]) -> Float[torch.Tensor, "N"]:
        """grad[b] . weight[latent] for every entry (a sampled dense-dense product), flat."""
        if grad.is_cuda and self.idx is not None:
            return torch.bmm(weight[self.idx], grad[:, :, None]).reshape(-1)
        if grad.is_cuda:
            return (weight[self.lat] * grad[self.tok]).sum(1)
        zeros = torch.zeros(self.lat.numel(), dtype=grad.dtype, device=grad.device)
        pattern = _csr(self.crow, self.lat, zeros, (self.n_tok, self.n_feat))
        return torch.sparse.sampled_addmm(pattern, grad, weight.t(), beta=0.0).values()


class _GatherEncode(torch.autograd.Function):
    """vals = ((x - b_dec) @ W_enc + b_enc) on the pattern's entries, with a sparse backward."""

    @staticmethod
    def forward(ctx, x, b_dec, W_enc, b_enc, pre_vals, pattern):  # type: ignore[override]
        ctx.save_for_backward(x, b_dec, W_enc)
        ctx.pattern = pattern
        return pre_vals.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, b_dec, W_enc = ctx.saved_tensors
        pattern, n_feat = ctx.pattern, W_enc.shape[1]
        grad = grad.to(W_enc.dtype)
        grad_b_enc = torch.zeros(n_feat, dtype=W_enc.dtype, device=W_enc.device)
        grad_b_enc.index_add_(0, pattern.lat, grad.reshape(-1))
        grad_W = None
        if ctx.needs_input_grad[2]:
            grad_W = pattern.t_matmul(grad, (x - b_dec).to(W_enc.dtype)).t()
        grad_x = None
        if ctx.needs_input_grad[0]:  # only for attribution through the SAE, never in training
            grad_x = pattern.bag(grad, W_enc.t().contiguous()).to(x.dtype)
        grad_b_dec = -(W_enc @ grad_b_enc) if ctx.needs_input_grad[1] else None
        return grad_x, grad_b_dec, grad_W, grad_b_enc, None, None


class _SparseDecode(torch.autograd.Function):
    """x_hat[b] = sum over b's entries of vals * W_dec[latent]."""

    @staticmethod
    def forward(ctx, vals, pattern, W_dec):  # type: ignore[override]
        ctx.save_for_backward(vals, W_dec)
        ctx.pattern = pattern
        return pattern.bag(vals, W_dec)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        vals, W_dec = ctx.saved_tensors
        pattern = ctx.pattern
        grad = grad.to(W_dec.dtype).contiguous()
        grad_vals = grad_W = None
        if ctx.needs_input_grad[0]:
            grad_vals = pattern.sddmm(grad, W_dec).reshape(vals.shape).to(vals.dtype)
        if ctx.needs_input_grad[2]:
            grad_W = pattern.t_matmul(vals, grad)
        return grad_vals, None, grad_W


def gather_encode(
    x: Float[torch.Tensor, "B D"],
    b_dec: Float[torch.Tensor, "D"],
    W_enc: Float[torch.Tensor, "D F"],
    b_enc: Float[torch.Tensor, "F"],
    pre: Float[torch.Tensor, "B F"],
    idx: Int[torch.Tensor, "B K"] | Pattern,
) -> Float[torch.Tensor, "B K"]:
    """Differentiable gather of the pre-activations ``pre`` (computed without grad) at ``idx``."""
    pattern = idx if isinstance(idx, Pattern) else Pattern(idx, W_enc.shape[1])
    return _GatherEncode.apply(x, b_dec, W_enc, b_enc, pattern.gather(pre), pattern)


def dense_encode(
    x: Float[torch.Tensor, "B D"],
    b_dec: Float[torch.Tensor, "D"],
    W_enc: Float[torch.Tensor, "D F"],
    b_enc: Float[torch.Tensor, "F"],
    pre: Float[torch.Tensor, "B F"],
) -> Float[torch.Tensor, "B F"]:
    """``pre`` (computed without grad) made differentiable in the encoder's parameters, dense."""
    return _DenseEncode.apply(x, b_dec, W_enc, b_enc, pre)


def sparse_decode(
    vals: Float[torch.Tensor, "B K"],
    idx: Int[torch.Tensor, "B K"] | Pattern,
    W_dec: Float[torch.Tensor, "F D"],
) -> Float[torch.Tensor, "B D"]:
    """sum_j vals[b, j] * W_dec[idx[b, j]] without materialising the gathered rows."""
    pattern = idx if isinstance(idx, Pattern) else Pattern(idx, W_dec.shape[0])
    return _SparseDecode.apply(vals, pattern, W_dec)


# -- variable sparsity: ReLU, JumpReLU, BatchTopK, BA/GBA -------------------------------------------

SPARSE_MAX_DENSITY = 1 / 6  # above this mean fraction of active latents a dense step is faster (measured)


class Active:
    """The candidate (token, latent) entries of a batch: those whose pre-activation exceeds ``lower``.

    Codes of variable sparsity are held ragged (a ``Pattern.ragged``): every token keeps exactly
    its own entries, values are flat ``[N]``. When the entries exceed ``max_density`` of the batch
    (early training of L1/L0-penalised SAEs) they are held dense instead (``pattern is None``,
    values ``[B, F]`` masked by ``mask``) and callers use plain matmuls.
    """

    def __init__(self, pre: Float[torch.Tensor, "B F"], lower: torch.Tensor | float, max_density: float | None = None):
        margin = pre if isinstance(lower, (int, float)) and lower == 0 else pre - lower  # no copy for ReLU
        mask = margin > 0
        flat = mask.reshape(-1).nonzero().squeeze(1)  # row-major: grouped by token
        tok = flat // pre.shape[1]
        self._hold(tok, flat - tok * pre.shape[1], pre.shape, max_density)
        self.mask = mask if self.dense else None

    @classmethod
    def from_candidates(
        cls, idx: Int[torch.Tensor, "B K"], valid: torch.Tensor, n_feat: int, max_density: float | None = None
    ) -> "Active":
        """The ``valid`` entries of per-token candidate ids (distinct per row, e.g. a top-k
        shortlist); held dense above ``max_density``, as in ``__init__``."""
        act = cls.__new__(cls)
        tok, col = valid.nonzero(as_tuple=True)
        act._hold(tok, idx[tok, col], (len(idx), n_feat), max_density)
        if act.dense:
            act.mask = torch.zeros(len(idx), n_feat, dtype=torch.bool, device=idx.device).scatter_(1, idx, valid)
        return act

    def _hold(self, tok: torch.Tensor, lat: torch.Tensor, shape: tuple[int, int], max_density: float | None) -> None:
        """Ragged over (tok, lat), or dense (the caller sets ``mask``) above ``max_density`` of the batch."""
        max_density = SPARSE_MAX_DENSITY if max_density is None else max_density
        self.n_feat, self.mask = shape[1], None
        self.dense = tok.numel() > max_density * shape[0] * shape[1]
        self.pattern = None if self.dense else Pattern.ragged(tok, lat, shape[0], shape[1])

    def encode(self, x, b_dec, W_enc, b_enc, pre) -> torch.Tensor:
        """Differentiable pre-activations of the candidates: [N] sparse or [B, F] dense."""
        if self.dense:
            return dense_encode(x, b_dec, W_enc, b_enc, pre)
        return gather_encode(x, b_dec, W_enc, b_enc, pre, self.pattern)

    def per_latent(self, t: Float[torch.Tensor, "F"]) -> torch.Tensor:
        """A per-latent tensor laid out like the candidates (differentiable)."""
        return t if self.dense else t[self.pattern.lat]

    def keep(self, vals: torch.Tensor) -> torch.Tensor:
        """Zero the entries that are not candidates (only a dense step holds any)."""
        return vals * self.mask if self.dense else vals

    def decode(self, vals: torch.Tensor, W_dec: Float[torch.Tensor, "F D"]) -> Float[torch.Tensor, "B D"]:
        """sum_j vals_j W_dec[j] (without b_dec)."""
        return vals @ W_dec if self.dense else sparse_decode(vals, self.pattern, W_dec)

    def row_norm(self, vals: torch.Tensor) -> Float[torch.Tensor, "B"]:
        """Each token's code norm (differentiable)."""
        if self.dense:
            return vals.norm(dim=1)
        sq = torch.zeros(self.pattern.n_tok, dtype=vals.dtype, device=vals.device)
        return sq.index_add(0, self.pattern.tok, vals.pow(2)).sqrt()

    def fired(self, vals: torch.Tensor) -> torch.Tensor:
        """Latents with a non-zero code in the batch."""
        if self.dense:
            return (vals != 0).any(0)
        fired = torch.zeros(self.n_feat, dtype=torch.bool, device=vals.device)
        fired[self.pattern.lat[vals != 0]] = True
        return fired

    def count(self) -> Float[torch.Tensor, "F"]:
        """How many tokens each latent is a candidate on."""
        if self.dense:
            return self.mask.sum(0, dtype=torch.float32)
        return torch.bincount(self.pattern.lat, minlength=self.n_feat).float()

    def peak(self, pre: Float[torch.Tensor, "B F"]) -> Float[torch.Tensor, "F"]:
        """Each latent's largest entry of ``pre`` over the batch, floored at 0 (exact when the
        candidates are the positive entries)."""
        if self.dense:
            return pre.max(0).values.clamp_min(0)
        out = torch.zeros(self.n_feat, dtype=pre.dtype, device=pre.device)
        return out.scatter_reduce_(0, self.pattern.lat, self.pattern.gather(pre), "amax")


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
