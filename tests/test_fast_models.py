"""The four architectures of Appendix B.2 in torch: shapes, PixelCNN causality, training signal."""

from __future__ import annotations

import pytest
import torch

from vaeprior.fast.config import ModelConfig
from vaeprior.fast.models.networks.conv import ConvStack
from vaeprior.fast.models.networks.pixelcnn import GatedPixelCNN, PixelCNN, PixelCNNLayer
from vaeprior.fast.models.networks.resnet import ResBlock
from vaeprior.fast.models.vae import build_vae

MODELS = ("dense", "conv", "resnet", "pixel")
HIDDEN_SHAPE = {
    "dense": (500,),
    "conv": (32, 28, 28),
    "resnet": (32, 28, 28),
    "pixel": (33, 28, 28),
}


def batch(b: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 784, generator=g) < 0.3).float()  # (B, 784) binary


@pytest.mark.parametrize("model", MODELS)
def test_shapes_of_every_api_call(model: str) -> None:
    torch.manual_seed(0)
    vae = build_vae(
        ModelConfig(model=model, z_dim=12, prior="rnvp", posterior="rnvp", flow_depth=2)
    )
    x, eps = batch(), torch.randn(3, 2, 12)  # S = 3, B = 2
    mean, log_std = vae.encode(x)
    assert mean.shape == log_std.shape == (2, 12)
    z, log_qz = vae.posterior_sample(x, eps)
    assert z.shape == (3, 2, 12) and log_qz.shape == (3, 2)
    assert vae.decoder_hidden(z, x).shape == (6, *HIDDEN_SHAPE[model])
    assert vae.decoder_logits(z, x).shape == (3, 2, 784)
    lw = vae.log_weights(x, eps)
    shapes = {k: tuple(v.shape) for k, v in lw.items()}
    assert shapes == {"log_px_z": (3, 2), "log_pz": (3, 2), "log_qz": (3, 2), "z": (3, 2, 12)}
    assert torch.equal(lw["z"], z)  # the same draw as posterior_sample
    assert all(bool(torch.isfinite(v).all()) for v in lw.values())
    assert bool((lw["log_px_z"] < 0).all())
    assert vae.elbo(x, eps).shape == (2,) and vae.iw_nll(x, eps).shape == (2,)
    assert vae.prior_log_prob(z).shape == (3, 2)
    assert vae.prior_sample(5).shape == (5, 12)
    out = vae.decoder.out
    assert isinstance(out, torch.nn.Linear if model == "dense" else torch.nn.Conv2d)
    assert vae.prior_flow.initialized() and vae.posterior_flow.initialized()  # first batch


@pytest.mark.parametrize("model", ["conv", "resnet"])
def test_conv_trunks_have_the_paper_layer_shapes(model: str) -> None:
    """Appendix B.2: Conv/Resnet[28x28x32 -> 28x28x32 -> 14x14x64 -> 14x14x64 -> 7x7x64 ->
    7x7x16] and DeConv/DeResnet[7x7x64 -> 14x14x64 -> 14x14x64 -> 28x28x32 -> 28x28x32]."""
    vae = build_vae(ModelConfig(model=model, z_dim=8))
    shapes = []
    layer_type = ResBlock if model == "resnet" else torch.nn.Conv2d
    for mod in vae.modules():
        if isinstance(mod, layer_type | torch.nn.ConvTranspose2d) and _is_layer(mod, model):
            mod.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
    vae.decoder_logits(torch.randn(1, 1, 8))
    vae.encode(batch(1))
    dec = [(64, 7, 7), (64, 14, 14), (64, 14, 14), (32, 28, 28), (32, 28, 28)]
    enc = [(32, 28, 28), (32, 28, 28), (64, 14, 14), (64, 14, 14), (64, 7, 7), (16, 7, 7)]
    assert shapes == dec + enc


def _is_layer(mod: torch.nn.Module, model: str) -> bool:
    """The top-level layers of the trunks (not 1x1 heads, not convs inside residual blocks)."""
    if model == "resnet":
        return isinstance(mod, ResBlock)
    return mod.kernel_size == (3, 3)


def test_conv_stack_is_the_only_conv_layer_type_in_convvae() -> None:
    vae = build_vae(ModelConfig(model="conv", z_dim=8))
    assert isinstance(vae.encoder.trunk.body, ConvStack)
    assert not any(isinstance(m, ResBlock) for m in vae.modules())


PIXELCNNS = ("paper", "gated")


@pytest.mark.parametrize("pixelcnn", PIXELCNNS)
def test_pixelvae_logits_are_causal(pixelcnn: str) -> None:
    """Logit k depends only on pixels < k (raster order): autograd and pixel flips (eval mode)."""
    torch.manual_seed(1)
    vae = build_vae(ModelConfig(model="pixel", z_dim=8, pixelcnn=pixelcnn)).double().eval()
    z = torch.randn(1, 1, 8, dtype=torch.float64)
    x = batch(1, seed=2).double().requires_grad_(True)
    logits = vae.decoder_logits(z, x)[0, 0]  # (784,)
    for k in (0, 1, 27, 28, 29, 406, 783):
        (grad,) = torch.autograd.grad(logits[k], x, retain_graph=True)
        assert grad[0, k:].abs().max() == 0, f"logit {k} depends on pixels >= {k}"
        if k > 0:
            assert grad[0, k - 1].abs() > 0 or k % 28 == 0, f"logit {k} ignores pixel {k - 1}"
            assert grad[0, :k].abs().max() > 0
    x0 = x.detach()
    with torch.no_grad():
        base = vae.decoder_logits(z, x0)[0, 0]
        for k in (0, 100, 500, 783):
            flipped = x0.clone()
            flipped[0, k] = 1.0 - flipped[0, k]
            new = vae.decoder_logits(z, flipped)[0, 0]
            assert torch.equal(new[: k + 1], base[: k + 1]), (
                f"flipping pixel {k} changed logits <= k"
            )
            if k < 783:
                assert (new[k + 1 :] - base[k + 1 :]).abs().max() > 1e-8


def test_pixelvae_repeats_x_sample_major() -> None:
    torch.manual_seed(2)
    vae = build_vae(ModelConfig(model="pixel", z_dim=6)).eval()
    x, z = batch(2, seed=3), torch.randn(3, 2, 6)
    with torch.no_grad():
        logits = vae.decoder_logits(z, x)  # (3, 2, 784)
        for s in range(3):
            for b in range(2):
                one = vae.decoder_logits(z[s, b][None, None], x[b][None])[0, 0]
                torch.testing.assert_close(logits[s, b], one, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="needs x"):
        vae.decoder_logits(z)


@pytest.mark.parametrize("pixelcnn", PIXELCNNS)
def test_pixelvae_autoregressive_sample_is_a_fixed_point_of_its_logits(pixelcnn: str) -> None:
    """x_k = [u_k < sigmoid(l_k(x_<k))] for every k: the full causal forward on the final sample
    reproduces each decision (checks the row-window sampler against the plain forward)."""
    torch.manual_seed(3)
    vae = build_vae(ModelConfig(model="pixel", z_dim=6, pixelcnn=pixelcnn)).eval()
    z = torch.randn(1, 6)
    x = vae.sample_x(z, generator=torch.Generator().manual_seed(5))
    u = torch.rand(1, 784, generator=torch.Generator().manual_seed(5))
    assert x.shape == (1, 784) and set(x.unique().tolist()) == {0.0, 1.0}
    with torch.no_grad():
        logits = vae.decoder_logits(z, x)  # (1, 784), causal
    assert torch.equal(x, (u < torch.sigmoid(logits)).float())


@pytest.mark.parametrize("pixelcnn", PIXELCNNS)
def test_pixelcnn_row_window_equals_the_full_forward(pixelcnn: str) -> None:
    """The sampler's window of `rows_above` rows gives exactly the full forward's row."""
    torch.manual_seed(7)
    vae = build_vae(ModelConfig(model="pixel", z_dim=6, pixelcnn=pixelcnn)).double().eval()
    pixel = vae.decoder.pixel
    h = vae.decoder.trunk(torch.randn(2, 6, dtype=torch.float64)).detach()  # (2, 32, 28, 28)
    x = batch(2, seed=8).double().reshape(2, 1, 28, 28)
    with torch.no_grad():
        full = pixel(x, h)  # (2, 33, 28, 28)
        for i in (0, 5, pixel.rows_above, 20, 27):
            torch.testing.assert_close(pixel.row(x, h, i), full[:, :, i], atol=1e-12, rtol=0)
        pixel.rows_above = 2  # too small a window must show (so the test can fail)
        assert (pixel.row(x, h, 20) - full[:, :, 20]).abs().max() > 1e-6


def test_paper_pixelcnn_is_appendix_b2s_form() -> None:
    """Concat[x, h~(z)] -> PixelCNN[28x28x33 -> 28x28x33 -> 28x28x33]: three 33 -> 33 layers of
    (2,3) / (2,2) shifted convolutions and a 1x1 vertical-to-horizontal route; h~(z) (32
    channels) enters only through the concatenated input; no gates."""
    vae = build_vae(ModelConfig(model="pixel", z_dim=6))
    pixel = vae.decoder.pixel
    assert isinstance(pixel, PixelCNN) and len(pixel.layers) == 3 and pixel.channels == 33
    convs = [m for m in pixel.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 * 5
    assert all(c.in_channels == c.out_channels == 33 for c in convs)  # no route from h~(z)
    kernels = sorted(c.kernel_size for c in convs)
    assert kernels == [(1, 1)] * 3 + [(2, 2)] * 6 + [(2, 3)] * 6
    assert vae.decoder.out.in_channels == 33
    gated = build_vae(ModelConfig(model="pixel", z_dim=6, pixelcnn="gated")).decoder.pixel
    assert isinstance(gated, GatedPixelCNN)
    assert sum(isinstance(m, torch.nn.Conv2d) and m.in_channels == 32 for m in gated.modules()) == 6


def test_paper_pixelcnn_layer_by_hand() -> None:
    """One layer against its formula, with hand-made shifted convolutions (F.conv2d + F.pad)."""
    torch.manual_seed(9)
    layer = PixelCNNLayer(3, dropout=0.5).double().eval()
    v, h = torch.randn(2, 2, 3, 5, 6, dtype=torch.float64)  # (N, C, H, W) each

    def conv(c, t, pad):  # pad = (left, right, top, bottom)
        c = getattr(c, "conv", c)  # the Conv2d inside a shifted conv
        return torch.nn.functional.conv2d(torch.nn.functional.pad(t, pad), c.weight, c.bias)

    def act(t):
        return torch.nn.functional.leaky_relu(t, 0.2)

    v_new = v + conv(layer.v_conv1, act(conv(layer.v_conv0, act(v), (1, 1, 1, 0))), (1, 1, 1, 0))
    r = act(conv(layer.h_conv0, act(h), (1, 0, 1, 0))) + conv(layer.nin, v_new, (0, 0, 0, 0))
    h_new = h + conv(layer.h_conv1, act(r), (1, 0, 1, 0))
    with torch.no_grad():
        got_v, got_h = layer(v, h)
    torch.testing.assert_close(got_v, v_new, atol=1e-12, rtol=0)
    torch.testing.assert_close(got_h, h_new, atol=1e-12, rtol=0)


def test_old_pixelvae_configs_load_as_the_gated_variant() -> None:
    """A config.json written before `pixelcnn` existed was trained with the gated decoder."""
    torch.manual_seed(10)
    old_vae = build_vae(ModelConfig(model="pixel", z_dim=6, pixelcnn="gated"))
    old = {k: v for k, v in old_vae.cfg.to_dict().items() if k != "pixelcnn"}
    cfg = ModelConfig.from_dict(old)
    assert cfg.pixelcnn == "gated"
    build_vae(cfg).load_state_dict(old_vae.state_dict(), strict=True)
    new = ModelConfig(model="pixel", z_dim=6)
    assert new.pixelcnn == "paper" and ModelConfig.from_dict(new.to_dict()) == new
    dense = {k: v for k, v in ModelConfig().to_dict().items() if k != "pixelcnn"}
    assert ModelConfig.from_dict(dense) == ModelConfig()
    with pytest.raises(ValueError, match="unknown pixelcnn 'masked'"):
        ModelConfig(model="pixel", pixelcnn="masked")


def test_dense_sample_x_follows_the_bernoulli_means() -> None:
    torch.manual_seed(4)
    vae = build_vae(ModelConfig(z_dim=4))
    z = torch.randn(1, 4).expand(4000, 4)
    freq = vae.sample_x(z, generator=torch.Generator().manual_seed(0)).mean(0)
    p = torch.sigmoid(vae.decoder_logits(z[:1]))[0].detach()
    assert (freq - p).abs().max() < 5 * 0.5 / 4000**0.5  # 5 binomial standard errors


@pytest.mark.parametrize(
    ("model", "prior", "posterior", "pixelcnn"),
    [("dense", "rnvp", "rnvp", "paper"), ("conv", "gaussian", "gaussian", "paper"),
     ("resnet", "rnvp", "gaussian", "paper"), ("pixel", "gaussian", "gaussian", "paper"),
     ("pixel", "gaussian", "gaussian", "gated")],
)  # fmt: skip
def test_adam_steps_reduce_the_loss_on_a_fixed_batch(
    model: str, prior: str, posterior: str, pixelcnn: str
) -> None:
    torch.manual_seed(5)
    cfg = ModelConfig(
        model=model, z_dim=8, prior=prior, posterior=posterior, flow_depth=2, pixelcnn=pixelcnn
    )
    vae = build_vae(cfg)
    x, eps = batch(2, seed=6), torch.randn(4, 2, 8)  # S = 4: ActNorm init needs > 2 rows

    def loss() -> torch.Tensor:
        return -vae.elbo(x, eps).mean()

    vae.train()
    loss()  # ActNorm init
    vae.eval()
    before = loss().item()
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    vae.train()
    for _ in range(4):
        opt.zero_grad()
        loss().backward()
        opt.step()
    vae.eval()
    after = loss().item()
    assert after < before - 1.0, f"{model}: loss {before:.2f} -> {after:.2f}"


def test_l2_parameters_are_the_hidden_kernels_only() -> None:
    vae = build_vae(ModelConfig(prior="rnvp", posterior="gaussian", flow_depth=2))
    ids = {id(p): n for n, p in vae.named_parameters()}
    names = {ids[id(p)] for p in vae.l2_parameters()}
    assert names == {
        "encoder.trunk.l1.weight",
        "encoder.trunk.l2.weight",
        "decoder.trunk.l1.weight",
        "decoder.trunk.l2.weight",
        "prior_flow.A",
    }
    assert [n for n, _ in vae.named_l2_parameters()] == sorted(names, key=list(ids.values()).index)


@pytest.mark.parametrize("model", ["conv", "pixel"])
def test_l2_parameters_of_conv_models_skip_heads_and_biases(model: str) -> None:
    vae = build_vae(ModelConfig(model=model, z_dim=8, posterior="rnvp", flow_depth=1))
    ids = {id(p): n for n, p in vae.named_parameters()}
    names = [ids[id(p)] for p in vae.l2_parameters()]
    assert "decoder.trunk.dense.weight" in names and "posterior_flow.A" in names
    assert any(n.startswith("encoder.trunk.body") for n in names)
    assert (model == "pixel") == any(n.startswith("decoder.pixel") for n in names)
    for n in names:
        assert n.endswith(("weight", ".A")), n
        assert not n.startswith(("encoder.mean", "encoder.logstd", "decoder.out")), n


def test_parameter_groups_partition_the_model() -> None:
    vae = build_vae(ModelConfig(prior="rnvp", posterior="rnvp", flow_depth=2))
    groups = vae.parameter_groups()
    assert set(groups) == {"encoder", "decoder", "prior", "posterior_flow"}
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in vae.parameters()}
    assert {id(p) for p in groups["prior"]} == {id(p) for p in vae.prior_flow.parameters()}
    plain = build_vae(ModelConfig()).parameter_groups()
    assert plain["prior"] == [] and plain["posterior_flow"] == []


def test_prior_sample_inverts_the_prior_flow() -> None:
    torch.manual_seed(6)
    vae = build_vae(ModelConfig(z_dim=10, prior="rnvp", flow_depth=3)).double()
    vae.prior_flow(torch.randn(64, 10, dtype=torch.float64) * 2 + 1)  # ActNorm init
    z = vae.prior_sample(5, generator=torch.Generator().manual_seed(7))
    w = torch.randn(5, 10, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(vae.prior_flow(z)[0], w, atol=1e-10, rtol=0)


def test_build_vae_rejects_bad_config() -> None:
    with pytest.raises(TypeError, match="ModelConfig"):
        build_vae({"model": "dense"})
