"""A data-based QK circuit for rotary models: the rotation averaged over the offsets a head uses.

With rotary embeddings the attention score of query position i on key position j is
``x_i W_Q R(i)^T R(j) W_K^T x_j``: the plain ``W_Q W_K^T`` of ``HeadSVD`` is only the offset-0
bilinear form (Merullo et al. 2024, App. A, leave rotary QK composition open). Here the relative
rotation ``R(i)^T R(j)`` (block 2x2 rotations, HF's rotate-half layout: pair (m, m + d_head/2))
is averaged with the head's own attention weights on real text,

    M_h = mean_{b,i} sum_j pattern_h[b, i, j] R(i)^T R(j),

giving an effective circuit ``W_Q[h] M_h W_K[g]^T`` whose SVD replaces the rotation-blind QK. The
cos/sin tables are read from the model's own hooks (``attn.hook_cos``/``hook_sin``), so per-layer
rotary bases (Gemma 3's local/global layers) are honoured. This is a summary, not an identity:
a head that attends across many offsets is represented by its average rotation.
"""

from __future__ import annotations

import torch
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor

from interp.decomposers.heads.svd import HeadSVD, factored_svd


def rotation_average(
    pattern: Float[Tensor, "B H S S"], cos: Float[Tensor, "B S e"], sin: Float[Tensor, "B S e"]
) -> Float[Tensor, "H e e"]:
    """``mean_{b,i} sum_j pattern[b,h,i,j] R(i)^T R(j)`` as [H, d_head, d_head] matrices."""
    half = cos.shape[-1] // 2
    c, s = cos[..., :half].double(), sin[..., :half].double()
    p = pattern.double()
    n = p.shape[0] * p.shape[2]
    C = (torch.einsum("bhij,bim,bjm->hm", p, c, c) + torch.einsum("bhij,bim,bjm->hm", p, s, s)) / n
    S = (torch.einsum("bhij,bim,bjm->hm", p, c, s) - torch.einsum("bhij,bim,bjm->hm", p, s, c)) / n
    top = torch.cat([torch.diag_embed(C), -torch.diag_embed(S)], dim=-1)
    bottom = torch.cat([torch.diag_embed(S), torch.diag_embed(C)], dim=-1)
    return torch.cat([top, bottom], dim=-2)


@torch.no_grad()
def rotary_qk(model, svd: HeadSVD, tokens: Int[Tensor, "B S"], batch_size: int = 8) -> HeadSVD:
    """A copy of ``svd`` whose QK components are those of the rotation-averaged circuit.

    ``model`` must be loaded with ``attn_implementation="eager"`` (the pattern hook must fire).
    Composition scores with ``kind="q"|"k"`` on the result then include the rotation.
    """
    L, H = svd.cfg.n_layers, svd.cfg.n_heads
    names = [f"blocks.{l}.attn.{n}" for l in range(L) for n in ("hook_pattern", "hook_cos", "hook_sin")]
    M = torch.zeros(L, H, svd.cfg.d_head, svd.cfg.d_head, dtype=torch.float64)
    batches = tokens.split(batch_size)
    for toks in batches:
        _, cache = model.bridge.run_with_cache(toks.to(model.device), names_filter=names)
        for l in range(L):
            cos, sin = (cache[f"blocks.{l}.attn.hook_{k}"].cpu() for k in ("cos", "sin"))
            cos, sin = cos.expand(len(toks), -1, -1), sin.expand(len(toks), -1, -1)
            M[l] += rotation_average(cache[f"blocks.{l}.attn.hook_pattern"].cpu(), cos, sin) / len(batches)
    out = svd.view()
    kv = svd.kv_group(torch.arange(H))
    A = svd.W_Q.double() @ M  # [L, H, D, e]
    U, S, Vt = factored_svd(A, rearrange(svd.W_K[:, kv].double(), "l h d e -> l h e d"))
    out.U_qk.copy_(U), out.S_qk.copy_(S), out.Vt_qk.copy_(Vt)
    out.rotation_average = M
    return out
