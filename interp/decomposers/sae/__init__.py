"""The sparse-autoencoder family: one file per variant, one shared trainer, SAELens interchange.

Every module in this folder is imported here, so a variant file registers itself (``@register``)
without an edit to this file.
"""

import importlib
import pkgutil

from interp.decomposers.sae.base import SAE, SAEConfig, StepOutput
from interp.decomposers.sae.batchtopk import BatchTopKConfig, BatchTopKSAE
from interp.decomposers.sae.bias_adaptation import BAConfig, BiasAdaptationSAE, GBAConfig, GroupBiasAdaptationSAE
from interp.decomposers.sae.jumprelu import JumpReLUConfig, JumpReLUSAE
from interp.decomposers.sae.relu import ReLUConfig, ReLUSAE
from interp.decomposers.sae.saelens import load_saelens
from interp.decomposers.sae.topafa import TopAFAConfig, TopAFASAE
from interp.decomposers.sae.topk import TopKConfig, TopKSAE
from interp.decomposers.sae.train_config import TrainConfig
from interp.decomposers.sae.trainer import train

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "SAE",
    "SAEConfig",
    "StepOutput",
    "TrainConfig",
    "train",
    "load_saelens",
    "TopKConfig",
    "TopKSAE",
    "BatchTopKConfig",
    "BatchTopKSAE",
    "ReLUConfig",
    "ReLUSAE",
    "JumpReLUConfig",
    "JumpReLUSAE",
    "TopAFAConfig",
    "TopAFASAE",
    "BAConfig",
    "BiasAdaptationSAE",
    "GBAConfig",
    "GroupBiasAdaptationSAE",
]
