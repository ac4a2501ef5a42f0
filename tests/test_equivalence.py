"""The torch DenseVAE computes the NumPy reference's numbers (issue 3 section 5, DESIGN.md).

Same weights (converted both ways) and the same eps go to `vaeprior.reference` (float64) and
`vaeprior.fast` in float64 (agreement 1e-10) and float32 (1e-5 relative), for every
prior/posterior combination, K in {0, 3}, odd latent sizes and sample counts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaeprior.fast.config import ModelConfig
from vaeprior.fast.models.convert import (
    load_reference_params,
    reference_flow_tensors,
    to_reference_params,
)
from vaeprior.fast.models.flows import RealNVP as TorchRealNVP
from vaeprior.fast.models.vae import VAE, build_vae
from vaeprior.reference import dense_vae, objectives
from vaeprior.reference.config import VAEConfig
from vaeprior.reference.flows import RealNVP, flow_posterior, flow_prior_log_prob

COMBOS = [(p, q) for p in ("gaussian", "rnvp") for q in ("gaussian", "rnvp")]
SHAPES = [(33, 7, 3), (40, 1, 2)]  # (z_dim, S, B)


def configs(prior: str, posterior: str, depth: int, z_dim: int) -> tuple[VAEConfig, ModelConfig]:
    kw = dict(z_dim=z_dim, prior=prior, posterior=posterior, flow_depth=depth)
    return VAEConfig(**kw), ModelConfig(model="dense", **kw)


def data(z_dim: int, s: int, b: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.random((b, 784)) < 0.3).astype(np.float64)  # (B, 784) binary
    return x, rng.standard_normal((s, b, z_dim))  # eps (S, B, Z)


def torch_numbers(vae: VAE, x: np.ndarray, eps: np.ndarray, dtype) -> dict[str, np.ndarray]:
    """Every compared quantity from the torch model, as float64 arrays."""
    xt, et = torch.as_tensor(x, dtype=dtype), torch.as_tensor(eps, dtype=dtype)
    with torch.no_grad():
        lw = vae.log_weights(xt, et)
        z, log_qz = vae.posterior_sample(xt, et)
        mean, log_std = vae.encode(xt)
        out = {
            "mean": mean, "log_std": log_std, "z": z, "log_qz": log_qz,
            "logits": vae.decoder_logits(z, xt),
            "log_px_z": lw["log_px_z"], "log_pz": lw["log_pz"],
            "elbo": vae.elbo(xt, et), "warmup": vae.elbo(xt, et, beta=0.3),
            "nll": vae.iw_nll(xt, et),
            "prior_at_eps": vae.prior_log_prob(et),
        }  # fmt: skip
    return {k: v.double().numpy() for k, v in out.items()}


def reference_numbers(params: dict, cfg: VAEConfig, x: np.ndarray, eps: np.ndarray) -> dict:
    z, log_qz = dense_vae.posterior_sample(params, cfg, x, eps)
    mean, log_std = dense_vae.encode(params, cfg, x)
    log_px_z, log_pz, log_qz_w = objectives.log_weights(params, cfg, x, eps)
    np.testing.assert_array_equal(log_qz_w, log_qz)
    return {
        "mean": mean, "log_std": log_std, "z": z, "log_qz": log_qz,
        "logits": dense_vae.decode_logits(params, cfg, z),
        "log_px_z": log_px_z, "log_pz": log_pz,
        "elbo": objectives.elbo(params, cfg, x, eps),
        "warmup": objectives.warmup_elbo(params, cfg, x, eps, beta=0.3),
        "nll": objectives.iw_nll(params, cfg, x, eps),
        "prior_at_eps": dense_vae.prior_log_prob(params, cfg, eps),
    }  # fmt: skip


def assert_agree(fast: dict, ref: dict, atol: float = 0.0, rtol: float = 0.0) -> None:
    """|fast - ref| <= atol + rtol * max|ref| for every quantity (relative to its own scale)."""
    assert fast.keys() == ref.keys()
    for k, r in ref.items():
        assert fast[k].shape == r.shape, (k, fast[k].shape, r.shape)
        err = np.max(np.abs(fast[k] - r))
        bound = atol + rtol * max(np.max(np.abs(r)), 1.0)
        assert err <= bound, f"{k}: max error {err:.3g} > {bound:.3g}"


@pytest.mark.parametrize(("prior", "posterior"), COMBOS)
@pytest.mark.parametrize("depth", [0, 3])
@pytest.mark.parametrize(("z_dim", "s", "b"), SHAPES)
def test_reference_weights_give_reference_numbers(prior, posterior, depth, z_dim, s, b) -> None:
    cfg, mcfg = configs(prior, posterior, depth, z_dim)
    params = dense_vae.init_params(cfg, np.random.default_rng(depth + z_dim), zero_init=False)
    x, eps = data(z_dim, s, b, seed=z_dim + s)
    ref = reference_numbers(params, cfg, x, eps)
    vae = load_reference_params(build_vae(mcfg).double(), params)  # training mode: no re-init
    assert_agree(torch_numbers(vae, x, eps, torch.float64), ref, atol=1e-10)
    vae32 = load_reference_params(build_vae(mcfg), params)
    assert_agree(torch_numbers(vae32, x, eps, torch.float32), ref, rtol=1e-5)


@pytest.mark.parametrize(("prior", "posterior"), COMBOS)
def test_torch_weights_give_reference_numbers(prior, posterior) -> None:
    """The other direction: a randomised torch model converted with `to_reference_params`."""
    cfg, mcfg = configs(prior, posterior, 3, 33)
    torch.manual_seed(0)
    vae = build_vae(mcfg).double()
    x, eps = data(33, 7, 3, seed=1)
    vae.elbo(torch.from_numpy(x), torch.from_numpy(eps))  # ActNorm data-dependent init
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    params = to_reference_params(vae)
    assert all(v.dtype == np.float64 for v in params.values())
    assert_agree(torch_numbers(vae, x, eps, torch.float64), reference_numbers(params, cfg, x, eps),
                 atol=1e-10)  # fmt: skip
    again = to_reference_params(load_reference_params(build_vae(mcfg).double(), params))
    assert again.keys() == params.keys()
    for k, v in params.items():
        np.testing.assert_array_equal(again[k], v, err_msg=k)


@pytest.mark.parametrize(("dim", "depth"), [(33, 3), (40, 0), (2, 5)])
def test_flow_logdets_and_inverse_match_reference(dim: int, depth: int) -> None:
    ref = RealNVP.random(dim, depth, np.random.default_rng(dim), hidden=64, zero_init=False)
    flow = TorchRealNVP(dim, depth, hidden=64).double()
    params = ref.to_params("f")
    with torch.no_grad():
        for key, view in reference_flow_tensors(flow, "f").items():
            view.copy_(torch.from_numpy(params[key]))
        flow.actnorm_initialized.fill_(True)
    w = np.random.default_rng(1).standard_normal((4, 5, dim))  # (S, B, D)
    for direction in ("forward", "inverse"):
        y_ref, ld_ref = getattr(ref, direction)(w)
        with torch.no_grad():
            y, ld = getattr(flow, direction)(torch.from_numpy(w))
        np.testing.assert_allclose(y.numpy(), y_ref, atol=1e-10, rtol=0)
        np.testing.assert_allclose(ld.numpy(), ld_ref, atol=1e-10, rtol=0)
    log_qw = np.random.default_rng(2).standard_normal((4, 5))
    _, log_qz_ref = flow_posterior(ref, w, log_qw)
    with torch.no_grad():
        log_qz = torch.from_numpy(log_qw) - flow(torch.from_numpy(w))[1]  # Eq. B.1
    np.testing.assert_allclose(log_qz.numpy(), log_qz_ref, atol=1e-10, rtol=0)
    torch_prior = load_prior(flow, w)
    np.testing.assert_allclose(torch_prior, flow_prior_log_prob(ref, w), atol=1e-10, rtol=0)


def load_prior(flow: TorchRealNVP, z: np.ndarray) -> np.ndarray:
    """log p_lambda(z) of a VAE whose prior is `flow` (Eq. 4), via VAE.prior_log_prob."""
    vae = build_vae(ModelConfig(z_dim=flow.dim, prior="rnvp", flow_depth=flow.depth)).double()
    vae.prior_flow = flow
    with torch.no_grad():
        return vae.prior_log_prob(torch.from_numpy(z)).numpy()


def test_actnorm_data_init_matches_reference() -> None:
    ref = RealNVP.random(9, 3, np.random.default_rng(3), hidden=32, zero_init=False)
    flow = TorchRealNVP(9, 3, hidden=32).double()
    params = ref.to_params("f")
    with torch.no_grad():
        for key, view in reference_flow_tensors(flow, "f").items():
            if not key.endswith(("log_scale", "bias")):
                view.copy_(torch.from_numpy(params[key]))
    z = 2.0 + 3.0 * np.random.default_rng(4).standard_normal((50, 9))
    ref.initialize(z)
    flow.train()
    flow(torch.from_numpy(z))
    for k in range(flow.depth):
        np.testing.assert_allclose(flow.bias[k].detach().numpy(), ref.blocks[k].actnorm.bias,
                                   atol=1e-10, rtol=0)  # fmt: skip
        np.testing.assert_allclose(flow.log_scale[k].detach().numpy(),
                                   ref.blocks[k].actnorm.log_scale, atol=1e-10, rtol=0)  # fmt: skip


def test_conversion_rejects_bad_models_and_dicts() -> None:
    with pytest.raises(ValueError, match="DenseVAE"):
        to_reference_params(build_vae(ModelConfig(model="conv")))
    cfg, mcfg = configs("rnvp", "gaussian", 2, 10)
    params = dense_vae.init_params(cfg, np.random.default_rng(0))
    with pytest.raises(ValueError, match="missing"):
        load_reference_params(build_vae(ModelConfig(z_dim=10, prior="rnvp", flow_depth=3)), params)
    params["enc.l1.W"] = params["enc.l1.W"][:, :7]
    with pytest.raises(ValueError, match=r"enc\.l1\.W has shape"):
        load_reference_params(build_vae(mcfg), params)
