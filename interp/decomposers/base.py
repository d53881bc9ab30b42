"""The shared decomposer interface, the method registry and the artifact format.

Every method (SAE variants, semi-NMF, ITDA, LIB, attention SVD) subclasses ``Decomposer``, so the
browser, steering and similarity code work on all of them. An artifact is a directory:
``config.json`` (method + every field needed to rebuild it), ``weights.safetensors`` and
``meta.json`` (metrics, tokens seen, provenance), written into a fresh folder and swapped in whole
(``interp._io.replace_dir``). ``config.json`` records the xxh3 digest of the weights, checked on
load. Loading reads JSON and safetensors only, never pickles.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from safetensors.torch import save_file

import interp
from interp._io import (
    current_dir,
    file_digest,
    folder_lock,
    load_safetensors,
    read_json,
    replace_dir,
    write_json_atomic,
)
from interp.errors import ConfigError, DataError, MissingFileError

REGISTRY: dict[str, type["Decomposer"]] = {}
DIGESTS = "xxh3"
"""``config.json`` key: ``{file name: xxh3-64 hex digest}`` of the artifact's safetensors files."""


def register(name: str):
    """Class decorator: make a decomposer loadable by its ``method`` name."""

    def deco(cls: type["Decomposer"]) -> type["Decomposer"]:
        if name in REGISTRY:
            raise ValueError(f"decomposer method {name!r} is registered twice")
        cls.method = name
        REGISTRY[name] = cls
        return cls

    return deco


def check_fields(cfg: Any) -> None:
    """Raise ``ConfigError`` unless every field of the config dataclass ``cfg`` has its declared
    type (an int field takes an int, not ``True`` or ``"1e6"``; a float field takes an int too)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, want = getattr(cfg, f.name), hints.get(f.name)
        if want is not None and not _has_type(value, want):
            hint = " (YAML reads 1e6 as text: write 1000000)" if _numeric_text(value) else ""
            raise ConfigError(
                f"{type(cfg).__name__}.{f.name} must be {_type_name(want)}, got {value!r} "
                f"({type(value).__name__}){hint}"
            )


def _has_type(value: Any, want: Any) -> bool:
    origin = typing.get_origin(want)
    if want is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, t) for t in typing.get_args(want))
    if want is type(None):
        return value is None
    if want is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        args = typing.get_args(want)
        if len(args) == 2 and args[1] is Ellipsis:
            return isinstance(value, tuple) and all(_has_type(v, args[0]) for v in value)
        return isinstance(value, tuple) and len(value) == len(args) and all(map(_has_type, value, args))
    return isinstance(value, origin or want)


def _type_name(want: Any) -> str:
    if typing.get_origin(want) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(want))
    if typing.get_origin(want) is not None:
        return str(want)
    return "None" if want is type(None) else want.__name__


def _numeric_text(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(float(value) == float(value))
    except ValueError:
        return False


def doc_field(default: Any, doc: str, runtime: bool = False) -> Any:
    """A config dataclass field with its one-line doc in ``metadata["doc"]`` (``field_docs`` reads
    it; ``--help`` shows it). ``runtime``: changes how a run goes, not what it produces."""
    meta = {"doc": doc, "runtime": runtime}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=type(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_docs(cls: type) -> dict[str, str]:
    """``{field: one-line doc}`` of a config dataclass, from ``doc_field``'s metadata ("" if none)."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


def config_from(cls: type, fields: Any):
    """Build the frozen config dataclass ``cls`` from an instance or a dict, naming bad keys."""
    if isinstance(fields, cls):
        return fields
    if dataclasses.is_dataclass(fields):
        fields = dataclasses.asdict(fields)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"unknown config field(s) {unknown} for {cls.__name__}; known: {sorted(known)}")
    cfg = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    check_fields(cfg)
    return cfg


def config_fields(cls: type, cfg: Any) -> dict[str, Any]:
    """Every field of config ``cls`` built from ``cfg`` (an instance or a dict, checked as in
    ``config_from``; a ``method`` key, the registry's, is dropped)."""
    if isinstance(cfg, dict):
        cfg = {k: v for k, v in cfg.items() if k != "method"}
    fields = dataclasses.asdict(config_from(cls, cfg))
    fields.pop("method", None)
    return fields


class Decomposer(torch.nn.Module):
    """A set of features at one hook site: ``encode``, ``decode``, ``directions``, save/load."""

    method: ClassVar[str]
    config_cls: ClassVar[type]
    fit_data: ClassVar[str] = "cache"
    """What ``fit_config`` fits on: "cache" (an activation cache, its folder, or activation rows),
    "model" (a ``LoadedModel``: fitted on its weights) or "modules" (LIB: ``(modules, inputs)``)."""

    @classmethod
    def fit_config(cls, data: Any, cfg: Any, *, progress: bool = True) -> "Decomposer":
        """Fit (or train) this method on ``data`` (see ``fit_data``) with ``cfg``, a ``config_cls``
        instance or a dict of its fields: the one signature every registered method shares, so one
        dispatch over the registry fits any method. By default: ``cls.fit(data, **fields)``."""
        return cls.fit(data, progress=progress, **config_fields(cls.config_cls, cfg))  # type: ignore[attr-defined]

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg

    def encode(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B F"]:
        raise NotImplementedError

    def encode_dense(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B F"]:
        """Codes as a dense ``[B, F]`` matrix, whatever ``encode`` returns (ITDA: sparse pairs)."""
        return self.encode(x)

    def decode(self, codes: Float[torch.Tensor, "B F"]) -> Float[torch.Tensor, "B D"]:
        raise NotImplementedError(f"{type(self).__name__} does not reconstruct")

    def reconstruct(self, x: Float[torch.Tensor, "B D"]) -> Float[torch.Tensor, "B D"]:
        return self.decode(self.encode(x))

    def directions(self) -> Float[torch.Tensor, "F D"]:
        raise NotImplementedError

    def save(self, path: str | Path, meta: dict | None = None) -> Path:
        """Write the artifact into ``path``, replacing an artifact there (other files there, e.g.
        ``train_config.json`` or wandb logs, are kept).

        The artifact is written into a fresh sibling folder and swapped in whole (``replace_dir``),
        so a signal at any instruction leaves the old artifact or the new one, complete. ``path``
        is locked while it is written. ``config.json`` records the xxh3 digest of each
        safetensors file (``load`` checks it).
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise DataError(f"{path} is an existing file; an artifact is a folder: choose another path")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        config = {"method": self.method, **dataclasses.asdict(self.cfg), "interp_version": interp.__version__}

        def fill(tmp: Path) -> None:
            save_file(state, str(tmp / "weights.safetensors"))
            write_json_atomic(tmp / "meta.json", meta or {})
            self.write_extra(tmp)
            digests = {f.name: file_digest(f) for f in sorted(tmp.glob("*.safetensors"))}
            write_json_atomic(tmp / "config.json", config | {DIGESTS: digests})

        with folder_lock(path, "artifact folder"):
            replace_dir(path, fill, keep_others=True)
        return path

    def write_extra(self, path: Path) -> None:
        """Hook for methods that also write other formats (e.g. SAELens files)."""

    @classmethod
    def from_config(cls, cfg: Any) -> "Decomposer":
        return cls(cfg)

    @classmethod
    def saved_config(cls, fields: dict) -> Any:
        """The config from an artifact's ``config.json`` fields (a method may drop legacy keys)."""
        return config_from(cls.config_cls, fields)


def load(path: str | Path, device: str | torch.device = "cpu") -> Decomposer:
    """Load any decomposer artifact; ``config.json``'s ``method`` picks the class."""
    path = current_dir(path)  # an interrupted save: the old artifact, still complete
    if not (path / "config.json").exists() and (path / "cfg.json").exists():
        raise MissingFileError(
            f"{path} is a SAELens folder (cfg.json, no config.json): load it with "
            f"interp.decomposers.sae.load_saelens({str(path)!r})"
        )
    if not (path / "config.json").exists() and (path / "checkpoint").is_dir():
        raise MissingFileError(
            f"{path} holds an unfinished training run (checkpoint/, no config.json): run "
            f"the same training command again to finish it, then load it"
        )
    config = read_json(path / "config.json", "decomposer config")
    method = config.pop("method", None)
    config.pop("interp_version", None)
    digests = config.pop(DIGESTS, None) or {}  # artifacts saved before digests were recorded: none
    if method not in REGISTRY:
        import interp.decomposers  # noqa: F401  (registers the built-in methods)
    if method not in REGISTRY:
        raise DataError(f"{path}: unknown decomposer method {method!r}; known: {sorted(REGISTRY)}")
    cls = REGISTRY[method]
    try:
        model = cls.from_config(cls.saved_config(config))
    except (TypeError, ValueError) as e:
        raise DataError(f"{path / 'config.json'} is not a valid {method} config: {e}") from e
    weights = path / "weights.safetensors"
    if not weights.is_file():
        raise MissingFileError(f"{weights} is missing: the artifact is incomplete")
    try:
        tensors = load_safetensors(
            weights,
            "decomposer weights",
            digest=digests.get(weights.name),
            repair="the artifact is damaged: train or fit it again (or restore it from a copy)",
        )
        model.load_state_dict(tensors)
    except RuntimeError as e:  # shapes or names disagree with config.json
        raise DataError(
            f"{weights} does not match {path / 'config.json'} ({str(e).splitlines()[-1].strip()}); "
            f"the artifact is damaged or its files come from different runs"
        ) from e
    model.meta = read_json(path / "meta.json", "decomposer meta") if (path / "meta.json").exists() else {}
    return model.to(device).eval()
