"""Talking heads: SVD of attention-head weights (Merullo et al., 2024).

``svd``: per-head OV/QK singular vectors as features (``HeadSVD``) and composition scores;
``rotary``: the rotary-aware QK decomposition; ``interventions``: editing heads' weights along
components; ``analysis``: the paper's composition-outlier check; ``laundry_prompts`` and
``laundry_list``: the Laundry List task and its evaluation.
"""

from interp.decomposers.heads.svd import (
    CIRCUITS,
    KINDS,
    HeadSVD,
    HeadSVDConfig,
    all_composition_scores,
    composition_scores,
    factored_svd,
    head_composition_scores,
    head_weights,
    outlier_zscores,
    view_site,
)

__all__ = [
    "CIRCUITS",
    "KINDS",
    "HeadSVD",
    "HeadSVDConfig",
    "all_composition_scores",
    "composition_scores",
    "factored_svd",
    "head_composition_scores",
    "head_weights",
    "outlier_zscores",
    "view_site",
]
