"""The sparse-autoencoder family: one file per variant, one shared trainer."""

from interp.decomposers.sae.base import SAE, SAEConfig, StepOutput
from interp.decomposers.sae.topk import TopKConfig, TopKSAE
from interp.decomposers.sae.trainer import train

__all__ = ["SAE", "SAEConfig", "StepOutput", "TopKConfig", "TopKSAE", "train"]
