"""One initialisation scheme (Glorot-uniform kernels, zero biases) in the torch and NumPy paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from vaeprior.fast.config import ModelConfig
from vaeprior.fast.models.flows import RealNVP
from vaeprior.fast.models.init import glorot_init_, glorot_std
from vaeprior.fast.models.vae import build_vae
from vaeprior.reference import dense_vae

VARIANTS = [
    {"model": "dense"},
    {"model": "conv"},
    {"model": "resnet"},
    {"model": "pixel", "pixelcnn": "paper"},
    {"model": "pixel", "pixelcnn": "gated"},
]
LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
POOL = 20_000  # values per standard-deviation estimate: its relative error is ~0.3 %


def fans(w: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) as TensorFlow / Glorot count them, receptive field included."""
    receptive = 1
    for k in w.shape[2:]:
        receptive *= k
    return w.shape[1] * receptive, w.shape[0] * receptive


def layers(vae: nn.Module):
    for part in (vae.encoder, vae.decoder):
        for name, m in part.named_modules():
            if isinstance(m, LAYERS):
                yield name, m


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: "-".join(kw.values()))
def test_every_kernel_is_glorot_uniform_and_every_bias_zero(kw: dict) -> None:
    """Biases 0; each kernel's standard deviation within 5 % of sqrt(2 / (fan_in + fan_out)).

    Kernels of >= POOL values are measured as built; smaller ones (1x1 heads and shortcuts)
    are redrawn by `glorot_init_` until POOL values are pooled, and their built values must
    lie inside the uniform's bound sqrt(3) * std.
    """
    torch.manual_seed(0)
    vae = build_vae(ModelConfig(z_dim=40, **kw))
    g = torch.Generator().manual_seed(1)
    n_layers = 0
    for name, layer in layers(vae):
        n_layers += 1
        w = layer.weight.detach().clone()
        if layer.bias is not None:
            assert not layer.bias.detach().any(), f"{name}: bias not zero"
        fan_in, fan_out = fans(w)
        want = math.sqrt(2.0 / (fan_in + fan_out))
        assert w.abs().max() <= math.sqrt(3.0) * want * (1 + 1e-6), f"{name}: beyond the bound"
        values = [w.flatten()]
        while sum(v.numel() for v in values) < POOL:
            values.append(glorot_init_(layer, generator=g).weight.detach().flatten().clone())
        std = float(torch.cat(values).std())
        assert abs(std / want - 1) < 0.05, f"{name} {tuple(w.shape)}: std {std:.5f} vs {want:.5f}"
    assert n_layers >= 7


def test_glorot_values_by_hand() -> None:
    """Fans include the receptive field: a 3x3 conv 1 -> 32 has fans 9 and 288."""
    assert glorot_std(nn.Linear(784, 500).weight) == pytest.approx(math.sqrt(2 / 1284))
    assert glorot_std(nn.Conv2d(1, 32, 3).weight) == pytest.approx(math.sqrt(2 / 297))
    deconv = nn.ConvTranspose2d(64, 32, 3).weight  # stored (C_in, C_out, kh, kw)
    assert glorot_std(deconv) == pytest.approx(math.sqrt(2 / (9 * 96)))
    with pytest.raises(ValueError, match="kernel has >= 2 dimensions"):
        glorot_std(torch.zeros(5))


def test_torch_defaults_would_fail_the_check() -> None:
    """PyTorch's default (Kaiming-uniform, a = sqrt(5)) gives std 1 / sqrt(3 fan_in): 0.0258 for
    Dense[500 -> 500] against Glorot's 0.0447, far outside 5 %."""
    torch.manual_seed(0)
    w = nn.Linear(500, 500).weight.detach()
    assert abs(float(w.std()) / math.sqrt(2 / 1000) - 1) > 0.3
    assert nn.Linear(500, 500).bias.detach().any()


def test_flows_keep_their_own_initialisation() -> None:
    """The flows are not re-initialised: their zero-initialised parameters are still zero and
    the others have the distribution of a freshly built RealNVP."""
    torch.manual_seed(0)
    vae = build_vae(ModelConfig(z_dim=40, prior="rnvp", posterior="rnvp", flow_depth=3))
    fresh = RealNVP(40, 3)
    zero = [n for n, p in fresh.named_parameters() if not p.detach().any()]
    assert len(zero) >= 3
    for flow in (vae.prior_flow, vae.posterior_flow):
        params = dict(flow.named_parameters())
        for n in zero:
            assert not params[n].detach().any(), n
        for n, p in fresh.named_parameters():
            if n not in zero:
                a, b = float(params[n].detach().std()), float(p.detach().std())
                assert a == pytest.approx(b, rel=0.05), n


def test_reference_and_torch_dense_vae_share_the_scheme() -> None:
    """The NumPy reference's DenseVAE draws the same distribution layer by layer."""
    cfg = ModelConfig(z_dim=40)
    params = dense_vae.init_params(cfg.to_reference(), np.random.default_rng(0))
    torch.manual_seed(0)
    vae = build_vae(cfg)
    torch_layers = {
        "enc.l1": vae.encoder.trunk.l1, "enc.l2": vae.encoder.trunk.l2,
        "enc.mean": vae.encoder.mean, "enc.logstd": vae.encoder.logstd,
        "dec.l1": vae.decoder.trunk.l1, "dec.l2": vae.decoder.trunk.l2, "dec.out": vae.decoder.out,
    }  # fmt: skip
    assert set(torch_layers) == set(dense_vae.layer_shapes(cfg.to_reference()))
    for name, layer in torch_layers.items():
        ref_w, ref_b = params[f"{name}.W"], params[f"{name}.b"]
        assert ref_w.shape == tuple(layer.weight.shape[::-1])  # (in, out) vs torch (out, in)
        assert not ref_b.any() and not layer.bias.detach().any()
        want = math.sqrt(2.0 / sum(ref_w.shape))
        assert abs(ref_w.std() / want - 1) < 0.05, name
        assert float(layer.weight.detach().std()) == pytest.approx(ref_w.std(), rel=0.05), name
