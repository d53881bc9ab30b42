"""Models: load a language model as a TransformerLens bridge; hook-site table and validation."""

from interp.models.loader import BUILTIN_ALIASES, LoadedModel, cache_root, load
from interp.models.readout import to_residual
from interp.models.run import run_to_sites
from interp.models.unembed import VocabProjection, direction_logits, vocab_projection
from interp.models.sites import site_layer, site_width, stop_layer, valid_sites, validate_site

__all__ = [
    "BUILTIN_ALIASES",
    "LoadedModel",
    "cache_root",
    "load",
    "run_to_sites",
    "site_layer",
    "site_width",
    "stop_layer",
    "to_residual",
    "valid_sites",
    "validate_site",
    "VocabProjection",
    "direction_logits",
    "vocab_projection",
]
