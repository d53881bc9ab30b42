"""A decomposer with known, imperfect codes for the quality tests (no W_enc: encoder stats n/a)."""

from dataclasses import dataclass

import pytest
import torch

from interp.decomposers import Decomposer


@dataclass(frozen=True)
class _Cfg:
    d_in: int = 64
    model: str | None = "tiny-llama"
    site: str | None = "blocks.0.hook_resid_post"


class LinearDecomposer(Decomposer):
    """codes = relu(x E), x_hat = 0.8 codes E^T."""

    method = "linear-test"

    def __init__(self, d: int = 64, f: int = 48, seed: int = 0, site: str = "blocks.0.hook_resid_post"):
        super().__init__(_Cfg(d_in=d, site=site))
        self.E = torch.nn.Parameter(torch.randn(d, f, generator=torch.Generator().manual_seed(seed)) / d**0.5)

    def encode(self, x):
        return torch.relu(x @ self.E)

    def decode(self, codes):
        return 0.8 * codes @ self.E.T

    def directions(self):
        return self.E.T


@pytest.fixture
def linear_decomposer():
    """``linear_decomposer(d=64, f=48, seed=0, site=...)`` builds a ``LinearDecomposer``."""
    return LinearDecomposer
