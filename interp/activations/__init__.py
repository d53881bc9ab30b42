"""Activations: cache model activations to disk, read them back, stream training batches."""

from interp.activations.cache import cache_activations
from interp.activations.format import ActivationCache
from interp.activations.store import ActivationStore, fingerprint, norm_scale, prefetch, stream

__all__ = ["ActivationCache", "ActivationStore", "cache_activations", "fingerprint", "norm_scale", "prefetch", "stream"]
