"""Semi-NMF of MLP activations (Shafran, Geiger & Geva 2025): ``SNMF``, method name "snmf".

``model`` (the decomposer), ``ops`` (update steps, NNLS), ``fit`` (inits, the streamed paper
iteration), ``online`` (mini-batch mode), ``source`` (row sources: tensors, caches), ``hierarchy``
(recursive SNMF), ``interpret`` (top contexts, vocabulary projection, concept purity),
``sentences`` (per-sentence activations), ``readout`` (old path of ``interp.models.readout``).
"""

from interp.decomposers.semi_nmf.hierarchy import Hierarchy, fit_hierarchy, neuron_overlap
from interp.decomposers.semi_nmf.model import SNMF, SNMFConfig

__all__ = ["SNMF", "SNMFConfig", "Hierarchy", "fit_hierarchy", "neuron_overlap"]
