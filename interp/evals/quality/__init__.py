"""Feature quality for every decomposer, SAEBench-style: core metrics in SAEBench's schema
(``core``), sparse probing (``probing``), first-letter absorption (``absorption``), automatic
interpretability (``autointerp``) and one comparison table across methods (``compare``)."""

from interp.evals.quality.compare import QualityConfig, compare
from interp.evals.quality.core import read_core, write_core

__all__ = ["QualityConfig", "compare", "read_core", "write_core"]
