"""Train or fit any registered method (``interp train configs/methods/topk.yaml data=CACHE out=RUN``).

``method`` picks the decomposer from the registry (``interp.decomposers.REGISTRY``); every field of
that method's config is accepted as well (``interp train method=snmf --help`` lists them). SAE
methods run the one trainer (re-running the same command after an interruption resumes from the
checkpoint); fitted methods are fitted by ``cls.fit_config(data, cfg)`` on the cache (semi-NMF,
ITDA) or on the model (``fit_data == "model"``, ``attn_svd``: ``model=SPEC``, no cache) and saved.

Several processes: ``torchrun --nproc_per_node N -m interp train ...`` trains an SAE data-parallel
(rank 0 writes the artifact). With ``sites=[a,b,...]`` (a cache holding those sites) each rank
trains or fits its own sites alone (site ``i`` on rank ``i % N``), into ``out/<site>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.errors import ConfigError


@dataclass(frozen=True)
class Config:
    out: str
    """The artifact folder."""
    method: str = "topk"
    """A registered method: an SAE variant (topk, batchtopk, relu, jumprelu, topafa, ba, gba) or a
    fitted one (snmf, itda, attn_svd)."""
    data: str | None = None
    """Activation cache folder (from interp cache); the model and site come from it."""
    sites: tuple[str, ...] = ()
    """Train one artifact per site of a multi-site cache, into out/<site> (empty: one artifact)."""
    progress: bool = True
    """Show progress bars."""
    params: dict = field(default_factory=dict, metadata={"internal": True})
    """The method's own config fields, as given."""


def method_class(raw: dict[str, Any]) -> type:
    from interp.decomposers import REGISTRY

    method = raw.get("method", "topk")
    if method not in REGISTRY:
        raise ConfigError(f"unknown method {method!r}; choose from {', '.join(sorted(REGISTRY))}")
    return REGISTRY[method]


def extra_configs(raw: dict[str, Any]) -> list[type]:
    """The chosen method's config dataclass (and, for an SAE, the run's ``TrainConfig``): their
    fields are keys of this command too."""
    from interp.decomposers.sae import SAE, TrainConfig

    cls = method_class(raw)
    return [cls.config_cls, TrainConfig] if issubclass(cls, SAE) else [cls.config_cls]


def run(cfg: Config) -> None:
    cls = method_class({"method": cfg.method})
    if cls.fit_data == "modules":
        raise ConfigError(
            f"{cfg.method} is fitted on a model's modules, not from a cache: use "
            f"`interp reproduce lib_lm` or `interp reproduce lib_modadd`"
        )
    if cls.fit_data == "model":
        return _fit_on_model(cls, cfg)
    if cfg.data is None:
        raise ConfigError(f"interp train method={cfg.method} needs data=CACHE_DIR (from interp cache)")
    from interp import distributed
    from interp.activations import ActivationCache

    cache = ActivationCache(cfg.data)
    params = cfg.params | {"method": cfg.method}
    if not cfg.sites:
        _one(cls, params, cache, Path(cfg.out), cfg.progress)
        return
    rank, size = distributed.world()
    with distributed.solo():
        for site in cfg.sites[rank::size]:
            _one(cls, params | {"site": site}, cache, Path(cfg.out) / site, cfg.progress)


def _one(cls: type, params: dict[str, Any], cache: Any, out: Path, progress: bool) -> None:
    from interp import distributed
    from interp.cli import print_table
    from interp.decomposers.sae import SAE, train

    if issubclass(cls, SAE):
        sae = train(params, cache, out=out, progress=progress)
        if distributed.is_main():
            print_table(
                {k: v for k, v in sae.meta.items() if not isinstance(v, dict)} | sae.meta["final"],
                f"trained {sae.cfg.method} SAE on {sae.cfg.site} -> {out}",
            )
        return
    fitted = cls.fit_config(cache, params, progress=progress)
    _save(fitted, out)


def _fit_on_model(cls: type, cfg: Config) -> None:
    from interp.models import load

    params = dict(cfg.params)
    if not params.get("model"):
        raise ConfigError(f"interp train method={cfg.method} fits on a model's weights: give model=SPEC")
    fitted = cls.fit_config(load(params["model"]), params)  # shape fields come from the model
    _save(fitted, Path(cfg.out))


def _save(fitted: Any, out: Path) -> None:
    from interp.cli import print_table

    meta = getattr(fitted, "meta", {}) or {}
    fitted.save(out, meta)
    site = getattr(fitted.cfg, "site", "")
    print_table(
        {k: v for k, v in meta.items() if not isinstance(v, (list, dict))} or {"saved": str(out)},
        f"fitted {fitted.method} on {site} -> {out}",
    )
