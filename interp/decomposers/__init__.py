"""Decomposers: every method behind one interface (``base.Decomposer``) and one registry.

One folder per method: ``sae/`` (the SAE family and its trainer), ``semi_nmf/``, ``itda/``,
``lib/`` and ``heads/``. Importing this package registers them all; ``load(path)`` rebuilds any
artifact from its ``config.json``. See ``decomposers/README.md`` for how to add a method.
"""

import importlib
import pkgutil

from interp.decomposers import heads, itda, lib, sae, semi_nmf  # noqa: F401  (registers every method)
from interp.decomposers.base import REGISTRY, Decomposer, config_from, load, register
from interp.decomposers.heads import HeadSVD, HeadSVDConfig
from interp.decomposers.itda import ITDA, ITDAConfig
from interp.decomposers.lib import LIB, LIBConfig
from interp.decomposers.sae import (
    SAE,
    BAConfig,
    BatchTopKConfig,
    BatchTopKSAE,
    BiasAdaptationSAE,
    GBAConfig,
    GroupBiasAdaptationSAE,
    JumpReLUConfig,
    JumpReLUSAE,
    ReLUConfig,
    ReLUSAE,
    SAEConfig,
    TopAFAConfig,
    TopAFASAE,
    TopKConfig,
    TopKSAE,
    load_saelens,
)
from interp.decomposers.semi_nmf import SNMF, SNMFConfig

for _pkg in pkgutil.iter_modules(__path__):  # a new method folder registers itself on import
    if _pkg.ispkg:
        importlib.import_module(f"{__name__}.{_pkg.name}")

__all__ = [
    "REGISTRY",
    "Decomposer",
    "config_from",
    "load",
    "register",
    "load_saelens",
    "heads",
    "itda",
    "lib",
    "sae",
    "semi_nmf",
    "SAE",
    "SAEConfig",
    "TopKSAE",
    "TopKConfig",
    "BatchTopKSAE",
    "BatchTopKConfig",
    "ReLUSAE",
    "ReLUConfig",
    "JumpReLUSAE",
    "JumpReLUConfig",
    "TopAFASAE",
    "TopAFAConfig",
    "BiasAdaptationSAE",
    "BAConfig",
    "GroupBiasAdaptationSAE",
    "GBAConfig",
    "SNMF",
    "SNMFConfig",
    "ITDA",
    "ITDAConfig",
    "LIB",
    "LIBConfig",
    "HeadSVD",
    "HeadSVDConfig",
]
