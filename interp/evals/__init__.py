"""Evaluations of decomposers, one module or package per concern.

- ``reconstruction``: FVU, L0, dead/dense fraction, CE and KL with the reconstruction spliced in;
- ``synthetic``: planted-feature data and recovery of the true features (GBA paper's benchmark);
- ``afa``: the εLBO of top-AFA (Lee et al.) for any SAE;
- ``similarity`` and ``compare``: model-to-model comparison by ITDA Jaccard and related scores;
- ``steering``: interventions, KL-calibrated strengths, generation and scores.
"""
