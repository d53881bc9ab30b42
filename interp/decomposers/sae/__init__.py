"""The sparse-autoencoder family: one file per variant, one shared trainer."""

from interp.decomposers.sae.base import SAE, SAEConfig, StepOutput
from interp.decomposers.sae.bias_adaptation import BAConfig, BiasAdaptationSAE, GBAConfig, GroupBiasAdaptationSAE
from interp.decomposers.sae.topafa import TopAFAConfig, TopAFASAE
from interp.decomposers.sae.topk import TopKConfig, TopKSAE
from interp.decomposers.sae.trainer import train

__all__ = ["SAE", "SAEConfig", "StepOutput", "TopKConfig", "TopKSAE", "train",
           "TopAFAConfig", "TopAFASAE", "BAConfig", "BiasAdaptationSAE", "GBAConfig", "GroupBiasAdaptationSAE"]
