"""LIB: the Local Interaction Basis (Bushnaq et al., 2024).

``model``: the basis (``LIB``, ``pca_basis``); ``ops``: its linear algebra; ``graph``: the
interaction graph and edge counts; ``cut``: running a model between two sites; ``modadd``: the
modular-addition transformer of the paper's reproduction.
"""

from interp.decomposers.lib.model import LIB, LIBConfig, pca_basis

__all__ = ["LIB", "LIBConfig", "pca_basis"]
