"""Decomposers: every method behind one interface (``base.Decomposer``) and one registry."""

from interp.decomposers import sae  # noqa: F401  (registers the SAE family)
from interp.decomposers import attn_svd, itda, lib, semi_nmf  # noqa: F401  (the fitted methods)
from interp.decomposers.base import REGISTRY, Decomposer, load, register

__all__ = ["REGISTRY", "Decomposer", "load", "register", "sae"]
