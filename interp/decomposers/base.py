"""The shared decomposer interface, the method registry and the artifact format.

Every method (SAE variants, semi-NMF, ITDA, LIB, attention SVD) subclasses ``Decomposer``, so the
browser, steering and similarity code work on all of them. An artifact is a directory:
``config.json`` (method + every field needed to rebuild it), ``weights.safetensors`` and
``meta.json`` (metrics, tokens seen, provenance), written atomically. Loading reads JSON and
safetensors only, never pickles.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file

import interp
from interp._io import read_json, write_json_atomic
from interp.errors import ConfigError

REGISTRY: dict[str, type["Decomposer"]] = {}


def register(name: str):
    """Class decorator: make a decomposer loadable by its ``method`` name."""

    def deco(cls: type["Decomposer"]) -> type["Decomposer"]:
        if name in REGISTRY:
            raise ValueError(f"decomposer method {name!r} is registered twice")
        cls.method = name
        REGISTRY[name] = cls
        return cls

    return deco


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
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


class Decomposer(torch.nn.Module):
    """A set of features at one hook site: ``encode``, ``decode``, ``directions``, save/load."""

    method: ClassVar[str]
    config_cls: ClassVar[type]

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
        """Write the artifact into ``path`` (other files there, e.g. wandb logs, are kept).

        Files are written to a temporary folder inside ``path`` and renamed into place, with
        ``config.json`` last: an artifact whose ``config.json`` exists is complete.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path, prefix=".saving."))
        try:
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / "weights.safetensors"))
            write_json_atomic(tmp / "meta.json", meta or {})
            self.write_extra(tmp)
            config = {"method": self.method, **dataclasses.asdict(self.cfg),
                      "interp_version": interp.__version__}
            write_json_atomic(tmp / "config.json", config)
            (path / "config.json").unlink(missing_ok=True)  # incomplete until the new one lands
            for f in sorted(tmp.iterdir(), key=lambda f: f.name == "config.json"):
                os.chmod(f, 0o644)
                os.replace(f, path / f.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
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
    path = Path(path)
    config = read_json(path / "config.json", "decomposer config")
    method = config.pop("method", None)
    config.pop("interp_version", None)
    if method not in REGISTRY:
        import interp.decomposers  # noqa: F401  (registers the built-in methods)
    if method not in REGISTRY:
        raise ValueError(f"{path}: unknown decomposer method {method!r}; known: {sorted(REGISTRY)}")
    cls = REGISTRY[method]
    model = cls.from_config(cls.saved_config(config))
    weights = path / "weights.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: the artifact is incomplete")
    model.load_state_dict(load_file(str(weights)))
    model.meta = read_json(path / "meta.json", "decomposer meta") if (path / "meta.json").exists() else {}
    return model.to(device).eval()
