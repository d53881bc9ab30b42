"""Talking-Heads analysis helpers: pick mover-like and inhibition-like heads from Laundry List
attention, rank candidate channels by within-head composition outliers, summarise interventions.

Merullo et al. (2024) name the heads from IOI path patching in GPT-2; our models have no such map,
so heads are picked from data, by the paper's own descriptions (§5.1): the *mover* attends from
the prediction position to the answer object in the first list; *inhibition* heads attend from
the prediction position to the re-listed (already bought) objects. Channels are then the writer
components that are within-head outliers in Q-composition with a mover (§3.2).
"""

from __future__ import annotations

import numpy as np
import torch

from interp.decomposers.heads.svd import HeadSVD, outlier_zscores
from interp.decomposers.heads.laundry_list import LaundryResult


def _target_attention(res: LaundryResult) -> np.ndarray:
    """[P, n_heads] attention from the last position to the missing (target) object's tokens."""
    return res.attn_first[np.arange(len(res.missing_index)), :, res.missing_index]


def mover_scores(res: LaundryResult) -> np.ndarray:
    """Per head: mean attention to the target minus mean attention to one other first-list object."""
    target = _target_attention(res)
    total = np.nansum(res.attn_first, axis=2)
    others = (total - target) / (res.n_objects[:, None] - 1)
    return np.mean(target - others, axis=0)


def inhibition_scores(res: LaundryResult) -> np.ndarray:
    """Per head: mean total attention to the re-listed objects in the second sentence."""
    return np.mean(np.nansum(res.attn_second, axis=2), axis=0)


def top_heads(scores: np.ndarray, heads, k: int, max_layer: int | None = None) -> list[tuple[int, int]]:
    order = np.argsort(-scores)
    picked = [tuple(heads[i]) for i in order if max_layer is None or heads[i][0] < max_layer]
    return picked[:k]


def channel_candidates(svd: HeadSVD, cs_q: torch.Tensor, writers, readers, n: int) -> list[dict]:
    """The ``n`` (writer component -> reader) pairs with the largest within-head z-score, each with
    two controls from the same head: the lowest-z component and a sigma-matched one (|z| < 1).

    ``cs_q``: [L, H, r, L, H] all-pairs Q-composition scores (``all_composition_scores``).
    """
    z = outlier_zscores(cs_q)
    rows = []
    for wl, wh in writers:
        for rl, rh in readers:
            if rl <= wl:
                continue
            col = z[wl, wh, :, rl, rh]
            i = int(col.argmax())
            lo = int(col.argmin())
            ordinary = (col.abs() < 1).nonzero().flatten()  # sigma-matched control: an unremarkable
            s = svd.S_ov[wl, wh]  # component of the same head with the closest singular value
            near = int(ordinary[(s[ordinary] - s[i]).abs().argmin()]) if len(ordinary) else lo
            rows.append(
                {
                    "writer": f"{wl}.{wh}",
                    "reader": f"{rl}.{rh}",
                    "component": i,
                    "sigma": float(svd.S_ov[wl, wh, i]),
                    "cs": float(cs_q[wl, wh, i, rl, rh]),
                    "z": float(col[i]),
                    "control": lo,
                    "control_z": float(col[lo]),
                    "sigma_control": near,
                    "sigma_control_z": float(col[near]),
                    "head_cs_mean": float(cs_q[wl, wh, :, rl, rh].mean()),
                }
            )
    return sorted(rows, key=lambda r: -r["z"])[:n]


def layer_channel_matrix(cs: torch.Tensor) -> np.ndarray:
    """[L, L] max over writer heads, components and reader heads of the within-head z-score."""
    z = outlier_zscores(cs).nan_to_num(nan=-np.inf)
    return z.amax(dim=(1, 2, 4)).cpu().numpy()


def summarise(res: LaundryResult, reader_index: int | None = None) -> dict:
    """Accuracy per list length and, for a reader head, its attention to the target and to the
    first/last listed object, and how often the model picks the last-listed object."""
    out = {
        "acc_cand": res.accuracy(),
        "acc_full": res.accuracy(metric="full"),
        "picks_last": {
            int(n): float(np.mean(res.predicted_index[res.n_objects == n] == n - 1)) for n in np.unique(res.n_objects)
        },
    }
    if reader_index is not None:
        t = _target_attention(res)[:, reader_index]
        first = res.attn_first[:, reader_index, 0]
        last = res.attn_first[np.arange(len(t)), reader_index, res.n_objects - 1]
        out["reader"] = {
            "attn_target": float(t.mean()),
            "attn_first_item": float(first.mean()),
            "attn_last_item": float(last.mean()),
        }
    return out
