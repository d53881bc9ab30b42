"""Benchmark LIB's interaction matrix: batched VJPs (``interp.decomposers.lib.ops``) vs a per-sample dense
``torch.autograd.functional.jacobian`` loop, on the mod-add attention module (random weights).

``interp bench lib [n_samples=128] [d_model=64]``: prints both times, the speed-up ratio and
the largest difference between the two M matrices (they must agree to float64 round-off).
"""

import time
from dataclasses import dataclass

import torch

from interp.decomposers.lib import model as lib_mod
from interp.decomposers.lib import ops
from interp.decomposers.lib import LIBConfig
from interp.decomposers.lib import modadd


@dataclass(frozen=True)
class Config:
    n_samples: int = 128
    """Mod-add inputs the interaction matrix is summed over."""
    d_model: int = 64
    """Width of the random mod-add model."""


def run(config: Config) -> None:
    n, d = config.n_samples, config.d_model
    torch.manual_seed(0)
    cfg = modadd.ModAddConfig(d_model=d, d_head=d // 4, d_mlp=4 * d)
    params = {k: v.double() + 0.01 for k, v in modadd.init_params(cfg, 0).items()}
    tokens, _, _ = modadd.dataset(cfg)
    f = ops.append_const(modadd.embed(params, tokens[torch.randperm(len(tokens))[:n]]))
    attn = modadd.modules(params)[0]
    lcfg = LIBConfig(batch_size=n)
    U, D, Y, Y_inv, _ = lib_mod._pca(lcfg, 0, f)
    R_pinv = D.sqrt()[:, None] * (U.T @ Y_inv)
    C_next = torch.eye(d + 1, dtype=torch.float64)

    t = time.perf_counter()
    M_fast = lib_mod._interaction_matrix(lcfg, attn, f, C_next, R_pinv)
    fast = time.perf_counter() - t

    t = time.perf_counter()
    M_ref = torch.zeros_like(M_fast)
    for x in f:  # reference: one dense Jacobian per sample
        J = torch.autograd.functional.jacobian(lambda z: attn(z[None])[0] @ C_next, x)  # [1, o, 3, d+1]
        Jz = J @ R_pinv.T
        M_ref += torch.einsum("qosi,qosj->ij", Jz, Jz)
    M_ref /= f.shape[0] * f.shape[1]
    ref = time.perf_counter() - t
    print(
        f"M over {n} samples x 3 positions, d_model {d}: batched VJPs {fast:.2f}s, per-sample "
        f"jacobian {ref:.2f}s, speed-up {ref / fast:.1f}x, max |diff| {float((M_fast - M_ref).abs().max()):.2e}"
    )
