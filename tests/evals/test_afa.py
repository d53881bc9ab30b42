"""εLBO and ZF data against a direct per-token computation, on TopK, top-AFA and BA SAEs."""

import pytest
import torch

from interp.decomposers.sae import BAConfig, BiasAdaptationSAE, TopAFAConfig, TopAFASAE, TopKConfig, TopKSAE
from interp.evals.afa import elbo, zf_data


def _direct(sae, x, z):
    """Plain per-token loop over the definition, with dense codes from encode()."""
    h = sae.W_dec.shape[0]
    out = []
    for i in range(len(x)):
        f = sae.encode(x[i : i + 1])[0].double()
        aug = [f[j] * sae.W_dec[j].double().norm() for j in range(h)] + [sae.b_dec.double().norm()]
        f_sq = sum(v * v for v in aug)
        z_sq = z[i].double() @ z[i].double()
        out.append((abs(z_sq - f_sq) / ((h - 1) * f_sq)).item())
    return torch.tensor(out, dtype=torch.float64)


def _perturb(sae):
    with torch.no_grad():  # non-unit decoder rows, a non-trivial decoder bias and input scale
        sae.W_dec.mul_(torch.rand(sae.W_dec.shape[0], 1) + 0.5)
        sae.b_dec.normal_()
        sae.norm_scale.fill_(0.37)
    return sae


@pytest.mark.parametrize("kind", ["topk", "topafa", "ba"])
def test_elbo_matches_direct_computation(kind):
    torch.manual_seed(0)
    x = torch.randn(40, 12) * 3
    if kind == "topk":
        sae = _perturb(TopKSAE(TopKConfig(d_in=12, d_sae=48, k=6)))
        z = x * 0.37
    elif kind == "topafa":
        sae = _perturb(TopAFASAE(TopAFAConfig(d_in=12, d_sae=48)))
        z = sae.prepare_input(x)[0]
    else:
        sae = _perturb(BiasAdaptationSAE(BAConfig(d_in=12, d_sae=48)))
        sae.b_enc.fill_(-0.5)
        z = x * 0.37
    with torch.no_grad():
        got = elbo(sae, x, batch_size=16)
        want = _direct(sae, x, z)
    assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-9)


def test_zf_data_norms_and_nmse():
    torch.manual_seed(1)
    sae = TopKSAE(TopKConfig(d_in=8, d_sae=16, k=16))
    x = torch.randn(30, 8)
    with torch.no_grad():
        zf = zf_data(sae, x)
        codes = sae.encode(x)
        assert torch.allclose(zf.input_norm, x.norm(dim=1))
        assert torch.allclose(zf.code_norm, (codes.pow(2).sum(1) + sae.b_dec.pow(2).sum()).sqrt())
        nmse = (sae.reconstruct(x) - x).pow(2).sum(1) / x.pow(2).sum(1)
        assert torch.allclose(zf.nmse, nmse, atol=1e-5)
    med = zf.medians()
    assert set(med) == {"elbo", "norm_ratio", "nmse"} and med["elbo"] >= 0
    with pytest.raises(ValueError, match="activations"):
        zf_data(sae, torch.randn(4, 9))
