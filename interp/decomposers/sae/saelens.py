"""SAELens interchange: write our SAEs as SAELens v6 directories and read SAELens directories back.

A SAELens SAE directory holds ``cfg.json`` and ``sae_weights.safetensors`` with ``W_enc [d_in,
d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]`` (plus ``threshold [d_sae]``
for JumpReLU). SAELens' forward on raw activations x is ``pre = (x - b_dec) @ W_enc + b_enc``
(``b_dec`` subtracted only with ``apply_b_dec_to_input``), an activation chosen by
``architecture`` (``standard``: ReLU; ``topk``: ReLU of the top ``k``; ``jumprelu``:
``pre * (pre > threshold)``), and ``x_hat = codes @ W_dec + b_dec``.

Writing folds our input scaling (``norm_scale``) into the biases and threshold, so the files run on
raw activations with ``normalize_activations: "none"``; SAELens codes are then ours divided by
``norm_scale``. Variants SAELens has no class for are written as the closest architecture it can
run exactly (BatchTopK as a JumpReLU with one shared threshold). Reading maps ``standard`` onto
our ``relu``, ``topk`` onto ``topk`` and ``jumprelu`` onto ``jumprelu`` (a variant can add an
entry to ``ARCHITECTURES``), folds ``apply_b_dec_to_input: false``, decoder-norm rescaling and
legacy (pre-v6) config keys, and never unpickles: JSON and safetensors only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from interp._io import load_safetensors, read_json, write_atomic, write_json_atomic
from interp.decomposers.base import REGISTRY
from interp.errors import DataError, MissingFileError

CFG_FILE, WEIGHTS_FILE = "cfg.json", "sae_weights.safetensors"
SAELENS_VERSION = "6.0.0"  # the format version written (v6 layout: ``metadata`` block)
ARCHITECTURES: dict[str, str] = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
_METADATA = (
    "model_name",
    "hook_name",
    "hook_layer",
    "hook_head_index",
    "model_class_name",
    "model_from_pretrained_kwargs",
    "prepend_bos",
    "exclude_special_tokens",
    "context_size",
    "dataset_path",
    "neuronpedia_id",
    "seqpos_slice",
    "sae_lens_training_version",
)


def write_saelens(sae: Any, path: str | Path) -> Path:
    """Write ``cfg.json`` + ``sae_weights.safetensors`` for ``sae`` into the directory ``path``."""
    if sae.saelens_architecture is None:
        raise NotImplementedError(
            f"{type(sae).__name__} ({sae.method}) has no SAELens equivalent that "
            f"runs it exactly, so it cannot be exported in SAELens format"
        )
    path = Path(path)
    cfg = sae.cfg
    layer = _layer(cfg.site)
    config = {
        "architecture": sae.saelens_architecture,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        **sae.saelens_fields(),
        "metadata": {
            "sae_lens_version": SAELENS_VERSION,
            "sae_lens_training_version": None,
            "model_name": cfg.model,
            "hook_name": cfg.site,
            "hook_layer": layer,
            "hook_head_index": None,
            "prepend_bos": True,
            "exclude_special_tokens": cfg.exclude_special,
        },
    }
    state = {k: v.detach().float().cpu().contiguous() for k, v in sae.saelens_state().items()}
    write_atomic(path / WEIGHTS_FILE, lambda f: f.write(save(state)), binary=True)
    write_json_atomic(path / CFG_FILE, config)
    return path


def _layer(site: str | None) -> int | None:
    parts = (site or "").split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else None


def _v6_config(raw: dict) -> dict:
    """A SAELens cfg.json in the v6 layout (older configs: keys renamed, metadata gathered)."""
    meta = raw.get("metadata") or {}
    version = str(meta.get("sae_lens_version") or raw.get("sae_lens_version") or "0")
    if "metadata" in raw and version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 6:
        return dict(raw)
    renames = {
        "hook_point": "hook_name",
        "hook_point_head_index": "hook_head_index",
        "activation_fn_str": "activation_fn",
    }
    cfg = {renames.get(k, k): v for k, v in raw.items()}
    cfg.setdefault("architecture", "standard")
    if cfg["architecture"] == "standard" and cfg.get("activation_fn") == "topk":
        cfg["architecture"] = "topk"
    if cfg["architecture"] == "topk" and "k" not in cfg:
        cfg["k"] = (cfg.get("activation_fn_kwargs") or {}).get("k")
    if isinstance(cfg.get("normalize_activations"), bool) or cfg.get("normalize_activations") is None:
        cfg["normalize_activations"] = "expected_average_only_in" if cfg.get("normalize_activations") else "none"
    cfg["metadata"] = {k: cfg[k] for k in _METADATA if k in cfg}
    return cfg


def _check_supported(cfg: dict, path: Path, norm_scaling_factor: float | None) -> str:
    arch = cfg.get("architecture")
    if arch not in ARCHITECTURES or ARCHITECTURES[arch] not in REGISTRY:
        known = sorted(a for a, m in ARCHITECTURES.items() if m in REGISTRY)
        raise ValueError(f"{path}: SAELens architecture {arch!r} is not supported; supported: {known}")
    norm = cfg.get("normalize_activations", "none")
    if norm == "expected_average_only_in" and norm_scaling_factor is None:
        raise ValueError(
            f"{path}: this SAE expects inputs scaled by a dataset-wide factor that is not "
            f"stored in its files; pass norm_scaling_factor=... (SAELens keeps it in its "
            f"pretrained directory) to fold it in"
        )
    if norm not in ("none", "expected_average_only_in"):
        raise ValueError(
            f"{path}: per-token input normalisation {norm!r} cannot be folded into the "
            f"weights; only 'none' and 'expected_average_only_in' are supported"
        )
    if cfg.get("reshape_activations", "none") not in ("none", "hook_z"):
        raise ValueError(f"{path}: unknown reshape_activations {cfg['reshape_activations']!r}")
    return ARCHITECTURES[arch]


def _read_state(path: Path, cfg: dict, norm_scaling_factor: float | None) -> dict[str, torch.Tensor]:
    """Weights for raw activations with ``b_dec`` subtracted at the input, in float32."""
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise MissingFileError(f"{weights} is missing: not a complete SAELens SAE directory")
    ours = path / "config.json"  # the SAELens files of one of our artifacts: its digest, if recorded
    digest = (read_json(ours, "decomposer config").get("xxh3") or {}).get(WEIGHTS_FILE) if ours.is_file() else None
    loaded = load_safetensors(
        weights,
        "SAELens weights",
        digest=digest,
        repair=f"write it again from the artifact: interp.decomposers.load({str(path)!r}).save({str(path)!r})",
    )
    state = {k: v.float() for k, v in loaded.items()}
    missing = {"W_enc", "W_dec", "b_enc", "b_dec"} - set(state)
    if missing:
        raise DataError(f"{weights}: missing tensors {sorted(missing)}; found {sorted(state)}")
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    expect = {
        "W_enc": (d_in, d_sae),
        "W_dec": (d_sae, d_in),
        "b_enc": (d_sae,),
        "b_dec": (d_in,),
        "threshold": (d_sae,),
    }
    for key, shape in expect.items():
        if key in state and tuple(state[key].shape) != shape:
            raise ValueError(f"{weights}: {key} has shape {tuple(state[key].shape)}, cfg.json implies {shape}")
    scale = state.pop("finetuning_scaling_factor", state.pop("scaling_factor", None))
    if scale is not None:  # decode scales codes per latent: fold into the decoder rows
        state["W_dec"] = state["W_dec"] * scale.reshape(-1, 1)
    if not cfg.get("apply_b_dec_to_input", True):  # pre = x W + b  ==  (x - b_dec) W + (b + b_dec W)
        state["b_enc"] = state["b_enc"] + state["b_dec"] @ state["W_enc"]
    if cfg.get("normalize_activations") == "expected_average_only_in":  # SAELens' own folding
        c = float(norm_scaling_factor)
        # (x c - b_dec) W + b_enc = (x - b_dec / c) (c W) + b_enc; the output is divided by c
        state["W_enc"], state["W_dec"], state["b_dec"] = state["W_enc"] * c, state["W_dec"] / c, state["b_dec"] / c
    return state


def load_saelens(path: str | Path, norm_scaling_factor: float | None = None, device: str = "cpu") -> Any:
    """Read a SAELens SAE directory (``cfg.json`` + ``sae_weights.safetensors``) into our classes.

    ``norm_scaling_factor`` is needed only for SAEs trained with ``normalize_activations:
    expected_average_only_in`` whose factor was not folded in (SAELens keeps it outside the files).
    """
    path = Path(path)
    cfg = _v6_config(read_json(path / CFG_FILE, "SAELens config"))
    method = _check_supported(cfg, path, norm_scaling_factor)
    state = _read_state(path, cfg, norm_scaling_factor)
    meta = cfg.get("metadata") or {}
    fields = {
        "method": method,
        "d_in": cfg["d_in"],
        "d_sae": cfg["d_sae"],
        "normalize": False,
        "model": meta.get("model_name"),
        "site": meta.get("hook_name"),
        "extra": {
            "saelens": {
                "path": str(path),
                "architecture": cfg["architecture"],
                "sae_lens_version": meta.get("sae_lens_version"),
            }
        },
    }
    sae = REGISTRY[method].from_saelens(fields, cfg, state)
    sae.meta = {"source": "saelens", "path": str(path)}
    return sae.to(device).eval()
