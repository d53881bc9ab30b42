"""The sparse-autoencoder family: one file per variant, one shared trainer, SAELens interchange."""

from interp.decomposers.sae.base import SAE, SAEConfig, StepOutput
from interp.decomposers.sae.batchtopk import BatchTopKConfig, BatchTopKSAE
from interp.decomposers.sae.jumprelu import JumpReLUConfig, JumpReLUSAE
from interp.decomposers.sae.relu import ReLUConfig, ReLUSAE
from interp.decomposers.sae.saelens import load_saelens
from interp.decomposers.sae.topk import TopKConfig, TopKSAE
from interp.decomposers.sae.trainer import train

__all__ = ["SAE", "BatchTopKConfig", "BatchTopKSAE", "JumpReLUConfig", "JumpReLUSAE", "ReLUConfig", "ReLUSAE",
           "SAEConfig", "StepOutput", "TopKConfig", "TopKSAE", "load_saelens", "train"]
