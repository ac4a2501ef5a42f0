"""Chunked IW-NLL evaluation (Appendix B.3): chunk invariance, direct computation, active units."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_model

from vaeprior.fast.evaluation.evaluate import evaluate
from vaeprior.fast.evaluation.posterior import active_units, counter_normal, posterior_means
from vaeprior.fast.models.distributions import log_mean_exp
from vaeprior.fast.models.vae import build_vae


def _model(**kw):
    torch.manual_seed(0)
    vae = build_vae(tiny_model(**kw)).double()
    vae.train()
    with torch.no_grad():  # initialise ActNorm on data-like input, then perturb all weights
        vae.posterior_sample(torch.rand(16, 784).double().round(), torch.randn(1, 16, 4).double())
        if vae.prior_flow is not None:
            vae.prior_log_prob(torch.randn(16, 4).double())
        for p in vae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return vae.eval()


def _x(n=10):
    g = torch.Generator().manual_seed(1)
    return torch.bernoulli(torch.full((n, 784), 0.3, dtype=torch.float64), generator=g)


def test_counter_normal_is_chunk_independent_and_standard_normal():
    whole = counter_normal(7, 0, 30, 0, 40, 5, dtype=torch.float64)  # (40, 30, 5)
    parts = torch.cat(
        [counter_normal(7, 0, 30, s, 10, 5, dtype=torch.float64) for s in range(0, 40, 10)]
    )
    rows = torch.cat(
        [counter_normal(7, r, 10, 0, 40, 5, dtype=torch.float64) for r in (0, 10, 20)], 1
    )
    assert torch.equal(whole, parts) and torch.equal(whole, rows)
    assert not torch.equal(whole, counter_normal(8, 0, 30, 0, 40, 5, dtype=torch.float64))
    big = counter_normal(3, 0, 200, 0, 500, 2, dtype=torch.float64).flatten()  # 200,000 draws
    se = 1 / math.sqrt(big.numel())
    assert abs(big.mean()) < 5 * se
    assert abs(big.var() - 1) < 5 * math.sqrt(2) * se
    assert abs((big**4).mean() - 3) < 5 * math.sqrt(96) * se  # kurtosis of N(0, 1)
    assert abs((big < 1.0).double().mean() - 0.8413447) < 5 * 0.5 * se


@pytest.mark.parametrize("prior", ["gaussian", "rnvp"])
def test_chunked_evaluation_is_independent_of_chunk_sizes(prior):
    vae, x = _model(prior=prior, posterior="rnvp"), _x()
    a = evaluate(vae, x, samples=50, batch_size=3, sample_chunk=7, backend="torch")
    b = evaluate(vae, x, samples=50, batch_size=10, sample_chunk=50, backend="torch")
    c = evaluate(vae, x, samples=50, batch_size=4, sample_chunk=1, backend="torch")
    for k in ("nll", "elbo", "recon", "kl", "klzx"):
        assert a[k] == pytest.approx(b[k], rel=1e-13, abs=1e-10)
        assert a[k] == pytest.approx(c[k], rel=1e-13, abs=1e-10)


def test_chunked_evaluation_matches_a_direct_unchunked_computation():
    vae, x = _model(prior="rnvp"), _x()
    res = evaluate(vae, x, samples=64, batch_size=4, sample_chunk=9, backend="torch")
    eps = counter_normal(0, 0, x.shape[0], 0, 64, 4, dtype=torch.float64)  # (S, N, Z), seed 0
    with torch.no_grad():
        lw = vae.log_weights(x, eps)
    logw = lw["log_px_z"] + lw["log_pz"] - lw["log_qz"]  # (S, N)
    assert res["nll"] == pytest.approx(float(-log_mean_exp(logw, 0).mean()), rel=1e-12)
    assert res["elbo"] == pytest.approx(float(logw.mean()), rel=1e-12)
    assert res["recon"] == pytest.approx(float(lw["log_px_z"].mean()), rel=1e-12)
    assert res["kl"] == pytest.approx(float((lw["log_qz"] - lw["log_pz"]).mean()), rel=1e-12)
    assert res["klzx"] >= 0 and res["n"] == 10 and res["samples"] == 64


def test_one_sample_nll_equals_minus_elbo():
    vae, x = _model(), _x(6)
    res = evaluate(vae, x, samples=1, backend="torch")
    assert res["nll"] == pytest.approx(-res["elbo"], rel=1e-12) and abs(res["klzx"]) < 1e-9


def test_float32_model_matches_float64_copy():
    vae64, x = _model(prior="rnvp"), _x(6)
    vae32 = _model(prior="rnvp").float()
    a = evaluate(vae64, x, samples=40, backend="torch")
    b = evaluate(vae32, x.float(), samples=40, backend="torch")
    assert b["nll"] == pytest.approx(a["nll"], rel=1e-5)


def test_generator_selects_the_noise():
    vae, x = _model(), _x(4)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = evaluate(vae, x, samples=20, generator=g1, backend="torch")
    b = evaluate(vae, x, samples=20, generator=g2, backend="torch")
    c = evaluate(vae, x, samples=20, backend="torch")
    assert a == b and a["nll"] != c["nll"]


def test_active_units_gaussian_counts_dims_with_varying_means():
    vae, x = _model(), _x(40)
    with torch.no_grad():
        vae.encoder.mean.weight[2:].zero_()  # dims 2, 3: E[z|x] = bias, variance 0
        vae.encoder.mean.weight[:2].mul_(50.0)
    var = vae.encode(x)[0].detach().var(0, unbiased=False)
    assert (var[:2] > 0.01).all() and (var[2:] == 0).all()
    assert active_units(vae, x, samples=10)["count"] == 2
    assert active_units(vae, x, samples=10, threshold=float(var[:2].max()) + 1)["count"] == 0


def test_rnvp_posterior_means_converge_to_the_monte_carlo_mean():
    vae, x = _model(posterior="rnvp"), _x(5)
    m = posterior_means(vae, x, samples=4000)  # (5, Z)
    eps = counter_normal(0, 0, 5, 0, 4000, 4, dtype=torch.float64)
    with torch.no_grad():
        z = vae.posterior_sample(x, eps)[0]  # (S, 5, Z)
    assert torch.allclose(m, z.mean(0), rtol=1e-12, atol=1e-12)
    se = z.std(0) / math.sqrt(4000)
    with torch.no_grad():  # K-block flow of a Gaussian: the mean is not the flow of the mean
        z_big = vae.posterior_sample(x, counter_normal(9, 0, 5, 0, 20000, 4, dtype=torch.float64))[
            0
        ]
    assert ((m - z_big.mean(0)).abs() < 6 * se).all()


def test_bad_arguments(monkeypatch):
    vae, x = _model(), _x(2)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        evaluate(vae, x, backend="triton")
    with pytest.raises(ValueError, match="backend"):
        evaluate(vae, x, backend="cuda")
    with pytest.raises(ValueError, match="samples"):
        evaluate(vae, x, samples=0)
    with pytest.raises(ValueError, match=r"\(N, 784\)"):
        evaluate(vae, x[:0])


def test_evaluate_restores_training_mode():
    vae, x = _model(), _x(2)
    vae.train()
    evaluate(vae, x, samples=2, backend="torch")
    assert vae.training


TRITON_CHECK = r"""
import sys, torch
sys.path.insert(0, "tests")
from conftest import tiny_model
from vaeprior.fast.evaluation.evaluate import evaluate
from vaeprior.fast.models.vae import build_vae
for model in ("dense", "conv"):
    torch.manual_seed(0)
    vae = build_vae(tiny_model(model=model, prior="rnvp")).eval()
    x = torch.bernoulli(torch.full((3, 784), 0.3), generator=torch.Generator().manual_seed(1))
    a = evaluate(vae, x, samples=5, sample_chunk=2, backend="torch")
    b = evaluate(vae, x, samples=5, sample_chunk=2, backend="triton")
    for k in ("nll", "elbo", "recon", "kl"):
        assert abs(a[k] - b[k]) <= 1e-4 * abs(a[k]) + 1e-3, (model, k, a[k], b[k])
print("ok")
"""


def test_triton_backend_matches_torch_in_the_interpreter():
    """--backend triton (fused last layer + Bernoulli) = chunked torch, via TRITON_INTERPRET=1."""
    pytest.importorskip("triton", reason="triton is not installed")
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-c", TRITON_CHECK],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


@pytest.mark.parametrize("model", ["dense", "conv"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_triton_backend_runs_the_fused_iw_kernel(model, dtype, monkeypatch):
    """backend triton: each chunk through `iw_logsumexp_parts` (no logits, no stored log
    weights), matching the torch backend to 1e-6 relative (interpreter on CPU)."""
    pytest.importorskip("triton", reason="triton is not installed")
    from kernel_support import import_kernels, poison_and_interpret

    poison_and_interpret(monkeypatch)
    ik = import_kernels("iw_nll", "_iw_nll_fwd_kernel")
    calls = []
    real = ik.iw_logsumexp_parts

    def spy(h, W, b, x, log_pz, log_qz):
        calls.append(h.shape)
        return real(h, W, b, x, log_pz, log_qz)

    monkeypatch.setattr(ik, "iw_logsumexp_parts", spy)
    monkeypatch.setattr(ik, "bernoulli_loglik", None)  # must not be used for evaluation
    monkeypatch.setattr(ik, "bernoulli_loglik_conv1x1", None)
    vae = _model(model=model, prior="rnvp").to(dtype)
    x = _x(5).to(dtype)
    a = evaluate(vae, x, samples=7, batch_size=3, sample_chunk=4, backend="torch")
    assert not calls
    b = evaluate(vae, x, samples=7, batch_size=3, sample_chunk=4, backend="triton")
    assert len(calls) == 4  # 2 row batches x 2 sample chunks
    for key in ("nll", "elbo", "recon", "kl"):
        assert b[key] == pytest.approx(a[key], rel=1e-6), key
    # klz|x = -NLL - ELBO is a small difference of two large numbers: NLL's precision
    assert b["klzx"] == pytest.approx(a["klzx"], abs=1e-6 * abs(a["nll"]))
