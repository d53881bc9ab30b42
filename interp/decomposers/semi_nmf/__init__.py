"""Semi-NMF of MLP activations (Shafran, Geiger & Geva 2025): ``SNMF``, method name "snmf"."""

from interp.decomposers.semi_nmf.model import SNMF, SNMFConfig

__all__ = ["SNMF", "SNMFConfig"]
