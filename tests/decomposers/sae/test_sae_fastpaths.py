"""Fast-path options of the trainer: bf16 autocast, batch prefetch, torch.compile switch."""

import pytest
import torch

from interp.activations import prefetch
from interp.decomposers.sae import train


def _data(n: int = 4096, d: int = 32, f: int = 128) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(f, d, generator=g), dim=1)
    return (torch.rand(n, f, generator=g) * (torch.rand(n, f, generator=g) < 0.04)) @ dirs


def _cfg(**kw):
    return (
        dict(
            method="topk",
            d_sae=128,
            k=6,
            batch_size=256,
            n_tokens=4096 * 2,
            lr=3e-3,
            wandb="disabled",
            device="cpu",
            warmup_steps=2,
        )
        | kw
    )


def test_bf16_autocast_trains_to_the_float32_quality():
    x = _data()
    full = train(_cfg(), x, progress=False)
    mixed = train(_cfg(autocast="bfloat16"), x, progress=False)
    assert mixed.W_enc.dtype == torch.float32  # parameters stay float32
    assert mixed.meta["final"]["fvu"] == pytest.approx(full.meta["final"]["fvu"], abs=0.03)
    with pytest.raises(ValueError, match="autocast"):
        train(_cfg(autocast="int8"), x, progress=False)


def test_prefetch_keeps_order_and_reraises():
    batches = [torch.full((2, 3), float(i)) for i in range(7)]
    for depth in (0, 1, 3):
        assert all(torch.equal(a, b) for a, b in zip(prefetch(iter(batches), "cpu", depth), batches, strict=True))

    def broken():
        yield batches[0]
        raise OSError("disk gone")

    got = prefetch(broken(), "cpu", 2)
    assert torch.equal(next(got), batches[0])
    with pytest.raises(OSError, match="disk gone"):
        next(got)


def test_prefetch_depth_does_not_change_training():
    x = _data(1024)
    a = train(_cfg(n_tokens=2048, prefetch=0), x, progress=False)
    b = train(_cfg(n_tokens=2048, prefetch=4), x, progress=False)
    for name, t in a.state_dict().items():
        assert torch.equal(t, b.state_dict()[name]), name


@pytest.mark.gpu
def test_compiled_step_matches_eager_on_cuda():
    x = _data(2048)
    eager = train(_cfg(n_tokens=2048, device="cuda"), x, progress=False)
    compiled = train(_cfg(n_tokens=2048, device="cuda", compile=True), x, progress=False)
    assert compiled.meta["final"]["fvu"] == pytest.approx(eager.meta["final"]["fvu"], rel=1e-3)
