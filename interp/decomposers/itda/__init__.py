"""ITDA: Inference-Time Decomposition of Activations (Leask et al., 2025).

``model``: the dictionary (``ITDA``, its config and encoder); ``pursuit``: the matching-pursuit
kernels it encodes with. Model-to-model comparison by ITDA Jaccard lives in ``interp.evals.similarity``.
"""

from interp.decomposers.itda.model import ITDA, ITDAConfig, SparseCodes, cache_labels, leaders, recon_cos

__all__ = ["ITDA", "ITDAConfig", "SparseCodes", "cache_labels", "leaders", "recon_cos"]
