"""SAEBench's ``core`` evaluation for any decomposer: metrics, writer and reader.

Follows SAEBench (Karvonen et al. 2025, ``sae_bench/evals/core``: ``eval_output.py`` for the JSON
layout, ``main.py`` for the definitions), which takes them from SAELens:
- model behaviour: KL(p_clean || p_recon) and KL(p_clean || p_zero-ablated) per token, averaged;
  ``kl_div_score = (KL_ablation - KL_recon) / KL_ablation``;
- model performance: next-token CE clean, spliced, zero-ablated; ``ce_loss_score`` as CE recovered;
- reconstruction: explained variance ``1 - E||x - x̂||² / (E||x||² - ||E x||²)``; the legacy one
  (per token, against the batch's own variance, averaged); cosine(x, x̂); mse;
- shrinkage: mean ||x||, mean ||x̂||, mean ||x̂||/||x||, ``E||x̂||² / E<x, x̂>`` (relative bias);
- sparsity: L0 and L1 of the codes per token; per feature: density, activations per firing sequence
  (``consistent_activation_heuristic``) and weight statistics; misc: the density summaries.
Differences, all recorded in the file's ``eval_result_unstructured``: ``mse`` is the mean over tokens
and dimensions (SAEBench divides each token's summed error by the batch's token count); ``l1`` and
density count codes that are non-zero (SAEBench: sum of codes, density of codes > 0), since ITDA and
LIB codes are signed; encoder statistics of methods without an encoder matrix are -1 (SAEBench's own
placeholder for missing values) with the reason.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float

import interp
from interp._io import write_json_atomic
from interp.errors import DataError, MissingFileError

CATEGORIES: dict[str, tuple[str, ...]] = {
    "model_behavior_preservation": ("kl_div_score", "kl_div_with_ablation", "kl_div_with_sae"),
    "model_performance_preservation": (
        "ce_loss_score",
        "ce_loss_with_ablation",
        "ce_loss_with_sae",
        "ce_loss_without_sae",
    ),
    "reconstruction_quality": ("explained_variance", "explained_variance_legacy", "mse", "cossim"),
    "shrinkage": ("l2_norm_in", "l2_norm_out", "l2_ratio", "relative_reconstruction_bias"),
    "sparsity": ("l0", "l1"),
    "token_stats": ("total_tokens_eval_reconstruction", "total_tokens_eval_sparsity_variance"),
    "misc_metrics": (
        "freq_over_1_percent",
        "freq_over_10_percent",
        "normalized_freq_over_1_percent",
        "normalized_freq_over_10_percent",
        "average_max_encoder_cosine_sim",
        "average_max_decoder_cosine_sim",
        "frac_alive",
    ),
}
FEATURE_FIELDS = (
    "index",
    "feature_density",
    "consistent_activation_heuristic",
    "encoder_bias",
    "encoder_norm",
    "encoder_decoder_cosine_sim",
    "max_decoder_cosine_sim",
    "max_encoder_cosine_sim",
)
NOT_APPLICABLE = -1.0  # SAEBench writes -1 for values it could not compute (replace_nans_with_negative_one)


@dataclass
class CoreTotals:
    """Running sums of every core metric for one decomposer (double precision, on CPU)."""

    n_features: int
    sums: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "kl_sae",
                "kl_abl",
                "ce_sae",
                "ce_abl",
                "ce_clean",
                "targets",
                "tokens",
                "sq_in",
                "resid_sq",
                "ev_legacy",
                "cossim",
                "l2_in",
                "l2_out",
                "l2_ratio",
                "xhat_sq",
                "x_dot_xhat",
                "l0",
                "l1",
                "mse",
            ),
            0.0,
        )
    )
    sum_x: torch.Tensor | None = None
    fires: torch.Tensor | None = None  # [F] tokens where the feature is non-zero
    seq_fires: torch.Tensor | None = None  # [F] sequences where it is non-zero at least once

    def add_acts(
        self,
        x: Float[torch.Tensor, "N D"],
        x_hat: Float[torch.Tensor, "N D"],
        codes: Float[torch.Tensor, "N F"],
        seq: torch.Tensor,
    ) -> None:
        """Reconstruction, shrinkage and sparsity terms of one batch (``seq``: each row's sequence)."""
        x, x_hat, s = x.double().cpu(), x_hat.double().cpu(), self.sums
        resid = (x - x_hat).pow(2).sum(-1)
        n_in, n_out = x.norm(dim=-1), x_hat.norm(dim=-1)
        s["tokens"] += len(x)
        s["sq_in"] += x.pow(2).sum().item()
        s["resid_sq"] += resid.sum().item()
        s["mse"] += resid.sum().item() / x.shape[1]
        s["ev_legacy"] += (1 - resid / (x - x.mean(0)).pow(2).sum(-1)).sum().item()
        s["cossim"] += ((x * x_hat).sum(-1) / (n_in * n_out).clamp_min(1e-30)).sum().item()
        s["l2_in"] += n_in.sum().item()
        s["l2_out"] += n_out.sum().item()
        s["l2_ratio"] += (n_out / torch.where(n_in.abs() < 1e-4, torch.ones_like(n_in), n_in)).sum().item()
        s["xhat_sq"] += n_out.pow(2).sum().item()
        s["x_dot_xhat"] += (x * x_hat).sum().item()
        active = (codes != 0).cpu()
        s["l0"] += active.sum().item()
        s["l1"] += codes.double().abs().sum().item()
        self.sum_x = x.sum(0) if self.sum_x is None else self.sum_x + x.sum(0)
        fires = active.sum(0).double()
        seq = seq.cpu() - seq.min().cpu()
        per_seq = torch.zeros(int(seq.max()) + 1, codes.shape[1], dtype=torch.bool).index_put_(
            (seq,), active, accumulate=True
        )
        self.fires = fires if self.fires is None else self.fires + fires
        seq_f = per_seq.sum(0).double()
        self.seq_fires = seq_f if self.seq_fires is None else self.seq_fires + seq_f

    def add_loss(
        self, ce_clean: float, ce_sae: float, ce_abl: float, kl_sae: float, kl_abl: float, targets: int
    ) -> None:
        """Summed next-token CE and KL terms over ``targets`` scored positions."""
        for k, v in (
            ("ce_clean", ce_clean),
            ("ce_sae", ce_sae),
            ("ce_abl", ce_abl),
            ("kl_sae", kl_sae),
            ("kl_abl", kl_abl),
            ("targets", targets),
        ):
            self.sums[k] += v

    def metrics(self) -> dict[str, dict[str, float]]:
        """The seven SAEBench metric categories (misc without the weight-based averages)."""
        s, n, t = self.sums, self.sums["tokens"], max(self.sums["targets"], 1)
        if not n:
            raise DataError("no tokens were evaluated: give more text or a smaller batch")
        ce = {k: s[k] / t for k in ("ce_clean", "ce_sae", "ce_abl")}
        kl_sae, kl_abl = s["kl_sae"] / t, s["kl_abl"] / t
        total_var = s["sq_in"] / n - (self.sum_x / n).pow(2).sum().item()
        density = self.fires / n
        return {
            "model_behavior_preservation": {
                "kl_div_score": (kl_abl - kl_sae) / kl_abl,
                "kl_div_with_ablation": kl_abl,
                "kl_div_with_sae": kl_sae,
            },
            "model_performance_preservation": {
                "ce_loss_score": (ce["ce_abl"] - ce["ce_sae"]) / (ce["ce_abl"] - ce["ce_clean"]),
                "ce_loss_with_ablation": ce["ce_abl"],
                "ce_loss_with_sae": ce["ce_sae"],
                "ce_loss_without_sae": ce["ce_clean"],
            },
            "reconstruction_quality": {
                "explained_variance": 1 - (s["resid_sq"] / n) / total_var,
                "explained_variance_legacy": s["ev_legacy"] / n,
                "mse": s["mse"] / n,
                "cossim": s["cossim"] / n,
            },
            "shrinkage": {
                "l2_norm_in": s["l2_in"] / n,
                "l2_norm_out": s["l2_out"] / n,
                "l2_ratio": s["l2_ratio"] / n,
                "relative_reconstruction_bias": s["xhat_sq"] / s["x_dot_xhat"],
            },
            "sparsity": {"l0": s["l0"] / n, "l1": s["l1"] / n},
            "token_stats": {"total_tokens_eval_reconstruction": int(n), "total_tokens_eval_sparsity_variance": int(n)},
            "misc_metrics": density_summary(density),
        }

    def feature_details(self) -> dict[str, torch.Tensor]:
        n = max(self.sums["tokens"], 1)
        return {
            "feature_density": self.fires / n,
            "consistent_activation_heuristic": self.fires / self.seq_fires.clamp_min(1),
        }


def density_summary(density: Float[torch.Tensor, "F"]) -> dict[str, float]:
    """SAEBench's ``calculate_misc_metrics`` on feature densities (weight-based averages added later)."""
    total = density.sum().item()

    def share(t: float) -> float:
        return density[density > t].sum().item() / total if total > 0 else 0.0

    return {
        "freq_over_1_percent": (density > 0.01).double().mean().item(),
        "freq_over_10_percent": (density > 0.1).double().mean().item(),
        "normalized_freq_over_1_percent": share(0.01),
        "normalized_freq_over_10_percent": share(0.1),
        "frac_alive": (density > 0).double().mean().item(),
    }


def max_cosine(rows: Float[torch.Tensor, "F D"], chunk: int = 1024) -> Float[torch.Tensor, "F"]:
    """Each row's largest cosine similarity with any other row (chunked: no F x F matrix)."""
    unit = torch.nn.functional.normalize(rows.double().cpu(), dim=-1)
    out = torch.empty(len(unit), dtype=torch.float64)
    for a in range(0, len(unit), chunk):
        sims = unit[a : a + chunk] @ unit.T
        sims[torch.arange(len(sims)), torch.arange(a, a + len(sims))] = float("-inf")
        out[a : a + chunk] = sims.max(1).values
    return out


def weight_metrics(decomposer: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Per-feature weight statistics; encoder ones only for methods with ``W_enc [D, F]``."""
    dec = decomposer.directions().detach()
    n = len(dec)
    out = {"max_decoder_cosine_sim": max_cosine(dec)}
    W_enc = getattr(decomposer, "W_enc", None)
    if isinstance(W_enc, torch.Tensor) and W_enc.shape == (dec.shape[1], n):
        enc = W_enc.detach().double().cpu()
        b_enc = getattr(decomposer, "b_enc", None)
        out |= {
            "encoder_norm": enc.norm(dim=0),
            "max_encoder_cosine_sim": max_cosine(enc.T),
            "encoder_decoder_cosine_sim": torch.cosine_similarity(enc.T, dec.double().cpu(), dim=-1),
            "encoder_bias": b_enc.detach().double().cpu()
            if isinstance(b_enc, torch.Tensor) and b_enc.shape == (n,)
            else torch.zeros(n, dtype=torch.float64),
        }
        return out, {}
    why = f"{type(decomposer).__name__} has no encoder matrix W_enc [D, F]"
    out |= {
        k: torch.full((n,), NOT_APPLICABLE, dtype=torch.float64)
        for k in ("encoder_norm", "max_encoder_cosine_sim", "encoder_decoder_cosine_sim", "encoder_bias")
    }
    return out, {
        k: why
        for k in (
            "encoder_norm",
            "max_encoder_cosine_sim",
            "encoder_decoder_cosine_sim",
            "encoder_bias",
            "average_max_encoder_cosine_sim",
        )
    }


def core_output(
    totals: CoreTotals,
    decomposer: Any,
    *,
    model: str,
    site: str,
    dataset: str,
    context_size: int,
    batch_size: int,
    name: str,
) -> dict[str, Any]:
    """The SAEBench ``CoreEvalOutput`` dict (its field names and nesting) for one decomposer."""
    metrics = totals.metrics()
    weights, not_applicable = weight_metrics(decomposer)
    metrics["misc_metrics"]["average_max_encoder_cosine_sim"] = weights["max_encoder_cosine_sim"].mean().item()
    metrics["misc_metrics"]["average_max_decoder_cosine_sim"] = weights["max_decoder_cosine_sim"].mean().item()
    per_feature = totals.feature_details() | weights
    details = [
        {"index": i, **{k: round(float(per_feature[k][i]), 5) for k in FEATURE_FIELDS[1:]}}
        for i in range(totals.n_features)
    ]
    cfg = decomposer.cfg
    layer = site.split(".")[1] if site.startswith("blocks.") else None
    return {
        "eval_type_id": "core",
        "eval_config": {
            "model_name": model,
            "llm_dtype": "float32",
            "batch_size_prompts": batch_size,
            "n_eval_reconstruction_batches": -(-int(totals.sums["tokens"]) // (batch_size * context_size)),
            "n_eval_sparsity_variance_batches": -(-int(totals.sums["tokens"]) // (batch_size * context_size)),
            "dataset": dataset,
            "context_size": context_size,
            "compute_kl": True,
            "compute_ce_loss": True,
            "compute_l2_norms": True,
            "compute_sparsity_metrics": True,
            "compute_variance_metrics": True,
            "compute_featurewise_density_statistics": True,
            "compute_featurewise_weight_based_metrics": True,
            "exclude_special_tokens_from_reconstruction": True,
            "verbose": False,
        },
        "eval_id": str(uuid.uuid4()),
        "datetime_epoch_millis": int(time.time() * 1000),
        "eval_result_metrics": metrics,
        "eval_result_details": details,
        "sae_bench_commit_hash": f"interp-{interp.__version__}",
        "sae_lens_id": name,
        "sae_lens_release_id": "interp",
        "sae_lens_version": None,
        "sae_cfg_dict": {
            "architecture": decomposer.method,
            "d_in": int(decomposer.directions().shape[1]),
            "d_sae": totals.n_features,
            "model_name": model,
            "hook_name": site,
            "hook_layer": int(layer) if layer is not None and layer.isdigit() else None,
            "context_size": context_size,
            "dtype": "float32",
            "training_tokens": getattr(cfg, "n_tokens", None)
            or (getattr(decomposer, "meta", {}) or {}).get("tokens_seen"),
        },
        "eval_result_unstructured": {
            "written_by": f"interp {interp.__version__} (interp.evals.quality.core), not SAEBench",
            "not_applicable": not_applicable,
            "definitions": {
                "mse": "mean over tokens and dimensions of (x - x_hat)^2",
                "l1": "mean over tokens of sum |codes|",
                "feature_density": "fraction of tokens with a non-zero code",
            },
        },
    }


def write_core(output: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``output`` as ``{out_dir}/{release}_{id}_eval_results.json`` (SAEBench's file name;
    its readers find core files by ``core`` in the path, so put ``out_dir`` under a ``core`` folder)."""
    check_core(output, "the output to write")
    name = f"{output['sae_lens_release_id']}_{output['sae_lens_id']}_eval_results.json"
    path = Path(out_dir) / name.replace("/", "_")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, output)
    return path


def check_core(data: dict[str, Any], where: str) -> None:
    """Raise ``DataError`` naming the first category or metric missing from a core output."""
    metrics = data.get("eval_result_metrics")
    if data.get("eval_type_id") != "core" or not isinstance(metrics, dict):
        raise DataError(
            f"{where} is not a SAEBench core result (eval_type_id must be 'core' with "
            f"eval_result_metrics): pass a *_eval_results.json from the core eval"
        )
    for cat, keys in CATEGORIES.items():
        missing = [k for k in keys if k not in metrics.get(cat, {})]
        if missing:
            raise DataError(
                f"{where}: eval_result_metrics.{cat} lacks {missing}; the file is not a complete core result"
            )


def read_core(path: str | Path) -> dict[str, Any]:
    """Read a core result (ours or SAEBench's) into one flat dict of metrics, like SAEBench's
    ``graphing_utils.get_eval_results``, plus ``sae_class``, ``d_sae``, ``hook_name`` and ``source``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist: give a *_eval_results.json written by the core eval")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}); rewrite it with write_core") from e
    check_core(data, str(path))
    flat = {k: v for cat in data["eval_result_metrics"].values() for k, v in cat.items()}
    cfg = data.get("sae_cfg_dict") or {}
    unstructured = data.get("eval_result_unstructured") or {}
    written_by = unstructured.get("written_by", "") if isinstance(unstructured, dict) else ""
    return flat | {
        "sae_class": cfg.get("architecture"),
        "d_sae": cfg.get("d_sae"),
        "hook_name": cfg.get("hook_name"),
        "source": "interp" if written_by.startswith("interp") else "saebench",
    }
