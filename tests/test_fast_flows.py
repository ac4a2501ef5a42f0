"""Torch Real NVP (Appendix B.2): inverses, log-dets against autograd Jacobians, the hand-written
backward against autograd and finite differences, ActNorm state, old checkpoints, float32 inverse.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vaeprior.fast.models import flows, realnvp
from vaeprior.fast.models.convert import reference_flow_tensors
from vaeprior.fast.models.flows import RealNVP, realnvp_inverse
from vaeprior.fast.models.realnvp import PARAM_NAMES, param_shapes, realnvp_forward
from vaeprior.reference.config import LEAKY_SLOPE, SCALE_SHIFT
from vaeprior.reference.flows import RealNVP as ReferenceRealNVP

ZERO_INIT = ("a", "ST", "st0", "log_scale", "bias")


def random_flow(dim: int, depth: int, seed: int, dtype=torch.float64, hidden: int = 16) -> RealNVP:
    """A RealNVP whose every parameter is non-trivial (the zero-initialised ones ~ N(0, 0.1^2))."""
    g = torch.Generator().manual_seed(seed)
    flow = RealNVP(dim, depth, hidden=hidden, generator=g).to(dtype)
    with torch.no_grad():
        for name in ZERO_INIT:
            p = getattr(flow, name)
            p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=dtype))
    flow.actnorm_initialized.fill_(True)
    return flow


def design_forward(x, W, A, a, ST, st0, log_scale, bias, slope=LEAKY_SLOPE, c=SCALE_SHIFT):
    """DESIGN.md's block formula, block by block with plain autograd ops: the independent truth."""
    dl, dr = x.shape[1] // 2, x.shape[1] - x.shape[1] // 2
    ld = torch.zeros(x.shape[0], dtype=x.dtype)
    for k in range(W.shape[0]):
        u = x @ W[k]
        h = F.leaky_relu(u[:, :dl] @ A[k] + a[k], slope)
        s = h @ ST[k, :, :dr] + st0[k, :dr] + c
        t = h @ ST[k, :, dr:] + st0[k, dr:]
        v = torch.cat([u[:, :dl], u[:, dl:] * torch.sigmoid(s) + t], dim=1)
        x = (v + bias[k]) * torch.exp(log_scale[k])
        ld = ld + torch.linalg.slogdet(W[k])[1] + F.logsigmoid(s).sum(1) + log_scale[k].sum()
    return x, ld


def jacobian_logdets(flow: RealNVP, x: torch.Tensor) -> torch.Tensor:
    """log|det df/dx| of each row from the autograd Jacobian and slogdet: (N,)."""
    out = []
    for row in x:
        jac = torch.autograd.functional.jacobian(lambda r: flow(r[None])[0][0], row)  # (D, D)
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def to_reference(flow: RealNVP) -> ReferenceRealNVP:
    """The NumPy float64 reference flow with exactly the torch flow's parameters."""
    params = {k: v.detach().double().numpy() for k, v in reference_flow_tensors(flow, "f").items()}
    return ReferenceRealNVP.from_params(params, "f", flow.depth, flow.slope, flow.scale_shift)


@pytest.mark.parametrize("dim", [2, 33, 40])
@pytest.mark.parametrize("depth", [0, 1, 5])
def test_round_trip_and_logdet_match_autograd_float64(dim: int, depth: int) -> None:
    flow = random_flow(dim, depth, seed=dim * 10 + depth)
    x = torch.randn(4, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y, ld = flow(x)
    x_back, ld_inv = flow.inverse(y)
    assert y.shape == x.shape and ld.shape == (4,)
    torch.testing.assert_close(x_back, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, jacobian_logdets(flow, x), atol=1e-10, rtol=0)
    if depth == 0:
        assert torch.equal(y, x) and torch.equal(ld, torch.zeros(4, dtype=torch.float64))


def test_deep_flow_k50_logdet_matches_autograd_float64() -> None:
    flow = random_flow(33, 50, seed=50)
    x = torch.randn(2, 33, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y, ld = flow(x)
    torch.testing.assert_close(flow.inverse(y)[0], x, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld, jacobian_logdets(flow, x), atol=1e-10, rtol=0)


def test_deep_flow_k50_round_trip_float32() -> None:
    """A trained-like K=50 flow: coupling weights ~ N(0, 0.03^2), ActNorms data-initialised.

    (With N(0, 0.1^2) weights the sigmoid scales reach 1e-3 and the float32 round trip
    degrades to ~1e-3 by conditioning alone; float64 above stays at 1e-10.)
    """
    g = torch.Generator().manual_seed(51)
    flow = RealNVP(40, 50, hidden=256, generator=g)
    with torch.no_grad():
        for name in ("a", "ST", "st0"):
            p = getattr(flow, name)
            p.copy_(0.03 * torch.randn(p.shape, generator=g))
    x = torch.randn(256, 40, generator=g)
    flow(x)  # ActNorm data-dependent init (training mode)
    y, ld = flow(x)
    x_back, ld_inv = flow.inverse(y)
    assert x_back.dtype == torch.float32
    err = (x_back - x).abs().max().item()
    assert err <= 1e-4, f"float32 K=50 round trip error {err}"
    torch.testing.assert_close(ld_inv, -ld, atol=1e-3, rtol=1e-5)


def contracting_flow() -> RealNVP:
    """K=50, D=40, H=256, heads ~ N(0, 0.12^2): log|det| about -100 on the N(0, I) data."""
    g = torch.Generator().manual_seed(1)
    flow = RealNVP(40, 50, hidden=256, generator=g)
    with torch.no_grad():
        for name in ("a", "ST", "st0"):
            p = getattr(flow, name)
            p.copy_(0.12 * torch.randn(p.shape, generator=g))
    data = torch.randn(4096, 40, generator=g)
    flow(data)  # ActNorm data-dependent init
    with torch.no_grad():
        assert -130 < flow(data)[1].mean() < -70  # "log|det| about -100"
    return flow.eval()


def test_float32_inverse_of_a_contracting_flow_is_finite_and_backward_stable() -> None:
    """Points z ~ N(0, 2^2 I) (coordinates around +-4) through the flow, then back.

    The truth is the float64 NumPy reference inverse of the float32 flow's own parameters.
    Kept: points where that inverse is finite and maps forward to w (1e-9), and where the
    float32 forward itself is accurate (row error <= 1e-4 |w|): there the float32 inverse
    must be finite, and map forward to w within 4x the float32 forward's own error (1.9x
    measured). The former block-by-block float32 inverse overflowed exp(-log_sigmoid(s)) into
    inf/NaN on 39 of these 4003 rows and missed w by 1e17x the forward error on others.
    """
    flow = contracting_flow()
    ref = to_reference(flow)
    with torch.no_grad():
        z = 2.0 * torch.randn(4096, 40, generator=torch.Generator().manual_seed(2))
        w = flow(z)[0]  # float32 inputs of the inverse
        with np.errstate(all="ignore"):  # the reference overflows where no inverse exists
            z_true, ld_inv_true = ref.inverse(w.double().numpy())
            back = ref.forward(z_true)[0]
        w64 = w.double().numpy()
        scale = np.maximum(np.abs(w64).max(1), 1.0)
        keep = np.isfinite(z_true).all(1) & (np.abs(back - w64).max(1) <= 1e-9 * scale)
        z_true32 = torch.from_numpy(z_true).float()
        fwd_err = (flow(z_true32)[0].double() - w.double()).abs().amax(1)
        keep &= np.nan_to_num(fwd_err.numpy(), nan=np.inf) <= 1e-4 * scale
        assert keep.mean() > 0.9, keep.mean()
        kept = torch.from_numpy(keep)
        e_fwd = fwd_err[kept].max().item()
        z32, ld_inv = flow.inverse(w[kept])
        assert z32.dtype == torch.float32 and torch.isfinite(z32).all()
        e_rt = (flow(z32)[0] - w[kept]).abs().max().item()
        assert e_rt <= 4.0 * e_fwd, f"round trip {e_rt:.3g} vs forward error {e_fwd:.3g}"
        ld_ref = torch.from_numpy(ld_inv_true)[kept]
        torch.testing.assert_close(ld_inv.double(), ld_ref, atol=1e-3, rtol=1e-5)


def test_inverse_never_overflows_a_representable_expansion() -> None:
    """sigmoid(s + c) = e^-100 scales u_r; its inverse multiplies by e^100 > float32 max."""
    flow = RealNVP(2, 1, hidden=16)
    with torch.no_grad():
        flow.W.copy_(torch.eye(2))
        flow.ST.zero_()
        flow.st0.copy_(torch.tensor([[-102.0, 0.0]]))  # s + c = -100, t = 0
    y = torch.tensor([[0.5, 3e-40], [0.5, 0.0]])  # float32 denormal, and exactly 0
    x, ld_inv = flow.inverse(y)
    assert torch.isfinite(x).all() and torch.isfinite(ld_inv).all()
    expected = 3e-40 * np.exp(np.logaddexp(0.0, 100.0))  # y_r / sigmoid(-100), float64
    assert x[0, 1].item() == pytest.approx(expected, rel=1e-3)  # 3e-40 has ~4 digits
    assert x[1, 1].item() == 0.0 and x[0, 0].item() == 0.5


def test_hand_written_backward_matches_autograd_of_the_formula_float64() -> None:
    flow = random_flow(33, 4, seed=3, hidden=32)
    params = [p.detach().clone().requires_grad_() for p in flow.stacked_params().values()]
    x = torch.randn(9, 33, dtype=torch.float64, requires_grad=True)
    gy, gld = torch.randn(9, 33, dtype=torch.float64), torch.randn(9, dtype=torch.float64)
    y, ld = realnvp_forward(x, *params, slope=LEAKY_SLOPE, scale_shift=SCALE_SHIFT)
    y_ref, ld_ref = design_forward(x, *params)
    torch.testing.assert_close(y, y_ref, atol=1e-13, rtol=0)
    torch.testing.assert_close(ld, ld_ref, atol=1e-12, rtol=0)
    grads = torch.autograd.grad((y * gy).sum() + (ld * gld).sum(), [x, *params])
    grads_ref = torch.autograd.grad((y_ref * gy).sum() + (ld_ref * gld).sum(), [x, *params])
    for name, g, g_ref in zip(("x", *PARAM_NAMES), grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-12, rtol=1e-12, msg=name)


def test_hand_written_backward_passes_finite_differences_float64() -> None:
    flow = random_flow(5, 3, seed=4, hidden=8)
    params = tuple(p.detach().clone().requires_grad_() for p in flow.stacked_params().values())
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)

    def fn(x, *ps):
        return realnvp_forward(x, *ps, slope=LEAKY_SLOPE, scale_shift=SCALE_SHIFT)

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_gradients_when_only_x_or_only_parameters_need_them() -> None:
    """Frozen flows (post-hoc stages) and data without grad take their own backward branches."""
    flow = random_flow(7, 3, seed=5)
    x = torch.randn(4, 7, dtype=torch.float64)
    y, ld = flow(x.requires_grad_())
    full = torch.autograd.grad(y.sum() + ld.sum(), [x, flow.A])
    flow.requires_grad_(False)
    y, ld = flow(x)
    (gx,) = torch.autograd.grad(y.sum() + ld.sum(), [x])
    torch.testing.assert_close(gx, full[0], atol=1e-14, rtol=0)
    flow.requires_grad_(True)
    y, ld = flow(x.detach())
    (g_a,) = torch.autograd.grad(ld.sum() + y.sum(), [flow.A])
    torch.testing.assert_close(g_a, full[1], atol=1e-14, rtol=0)
    y, _ = flow(x.detach())
    y.sum().backward()  # logabsdet unused: its gradient is None inside the Function
    assert flow.W.grad is not None and torch.isfinite(flow.W.grad).all()


def test_inference_path_matches_training_path() -> None:
    flow = random_flow(40, 4, seed=6, dtype=torch.float32, hidden=64)
    x = torch.randn(33, 40)
    y, ld = flow(x)
    assert y.requires_grad
    with torch.no_grad():
        y0, ld0 = flow(x)
    torch.testing.assert_close(y0, y.detach(), atol=0, rtol=0)
    torch.testing.assert_close(ld0, ld.detach(), atol=0, rtol=0)


def test_row_chunks_give_the_same_numbers_and_gradients(monkeypatch) -> None:
    """Large batches run in row chunks on the CPU (bounded buffers): same y, logdet, grads."""
    flow = random_flow(9, 3, seed=17, hidden=16)
    x = torch.randn(300, 9, dtype=torch.float64, requires_grad=True)
    outs = {}
    monkeypatch.setattr(realnvp, "_CPU_HIDDEN_BYTES", 1 << 30)
    for budget in (1 << 30, 4 * 10 * 8 * 64):  # one sweep; 64-row chunks (the minimum)
        monkeypatch.setattr(realnvp, "_CPU_BUFFER_BYTES", budget)
        flow.zero_grad()
        y, ld = flow(x)
        (gx,) = torch.autograd.grad((y.square().sum() + ld.sum()), [x], retain_graph=True)
        (y.sum() + ld.sum()).backward()
        with torch.no_grad():
            y0, ld0 = flow(x)
        outs[budget] = (y, ld, gx, flow.A.grad.clone(), flow.W.grad.clone(), y0, ld0)
    assert realnvp._rows_per_chunk(x, 3, 16, train=True) == 64
    for a, b in zip(*outs.values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_leading_dims_match_flattened_rows() -> None:
    flow = random_flow(7, 3, seed=4)
    w = torch.randn(3, 5, 7, dtype=torch.float64)  # (S, B, D)
    y, ld = flow(w)
    y_flat, ld_flat = flow(w.reshape(15, 7))
    assert y.shape == (3, 5, 7) and ld.shape == (3, 5)
    torch.testing.assert_close(y.reshape(15, 7), y_flat, atol=1e-14, rtol=0)
    torch.testing.assert_close(ld.reshape(15), ld_flat, atol=1e-14, rtol=0)


def test_inverse_then_forward_is_identity() -> None:
    flow = random_flow(33, 5, seed=5)
    y = torch.randn(6, 33, dtype=torch.float64)
    x, ld_inv = flow.inverse(y)
    y_back, ld = flow(x)
    torch.testing.assert_close(y_back, y, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, -ld_inv, atol=1e-12, rtol=0)


def test_coupling_matches_design_formula() -> None:
    """One block against DESIGN.md's straight-line formula, with the paper's Dense[256]."""
    flow = random_flow(9, 1, seed=6, hidden=256)
    x = torch.randn(5, 9, dtype=torch.float64)
    y_expected, ld_expected = design_forward(x, *flow.stacked_params().values())
    y, ld = flow(x)
    torch.testing.assert_close(y, y_expected, atol=1e-13, rtol=0)
    torch.testing.assert_close(ld, ld_expected, atol=1e-12, rtol=0)


def test_init_is_orthogonal_glorot_and_zero() -> None:
    flow = RealNVP(12, 2, hidden=256, generator=torch.Generator().manual_seed(0))
    for k in range(2):
        torch.testing.assert_close(flow.W[k] @ flow.W[k].T, torch.eye(12), atol=1e-5, rtol=0)
    bound = (6.0 / (6 + 256)) ** 0.5
    assert flow.A.abs().max() <= bound and flow.A.abs().max() > 0.9 * bound
    for name in ZERO_INIT:
        assert torch.count_nonzero(getattr(flow, name)) == 0, name
    assert not flow.initialized()


def test_stacked_layout_matches_param_shapes() -> None:
    flow = RealNVP(9, 4, hidden=16)
    shapes = {"W": (4, 9, 9), "A": (4, 4, 16), "a": (4, 16), "ST": (4, 16, 10), "st0": (4, 10),
              "log_scale": (4, 9), "bias": (4, 9)}  # fmt: skip
    assert param_shapes(4, 9, 16) == shapes
    assert {k: tuple(v.shape) for k, v in flow.stacked_params().items()} == shapes
    assert tuple(flow.stacked_params()) == PARAM_NAMES
    assert [n for n, _ in flow.named_parameters()] == list(PARAM_NAMES)
    empty = RealNVP(9, 0, hidden=128)
    assert tuple(empty.W.shape) == (0, 9, 9) and tuple(empty.ST.shape) == (0, 128, 10)


def test_actnorm_initialises_on_first_training_batch_only() -> None:
    """K = 1 with W = I and zero heads: v = (x_l, sigmoid(2) x_r) reaches the ActNorm."""
    g = torch.Generator().manual_seed(7)
    flow = RealNVP(6, 1, hidden=8).double()
    with torch.no_grad():
        flow.W.copy_(torch.eye(6))
    x = 3.0 + 2.5 * torch.randn(200, 6, dtype=torch.float64, generator=g)
    sig2 = torch.sigmoid(torch.tensor(SCALE_SHIFT, dtype=torch.float64))
    v = torch.cat([x[:, :3], sig2 * x[:, 3:]], dim=1)
    flow.eval()
    y_eval, _ = flow(x)
    torch.testing.assert_close(y_eval, v, atol=1e-14, rtol=0)  # eval mode: no init
    assert not flow.initialized()
    flow.train()
    y, ld = flow(x)
    assert flow.initialized() and bool(flow.actnorm_initialized)
    torch.testing.assert_close(y.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-12, rtol=0)
    var = v.var(0, unbiased=False)
    torch.testing.assert_close(y.var(0, unbiased=False), var / (var + 1e-6), atol=1e-12, rtol=0)
    expected_ld = 3 * torch.log(sig2) - 0.5 * torch.log(var + 1e-6).sum()
    torch.testing.assert_close(ld, expected_ld.expand(200), atol=1e-12, rtol=0)
    before = {k: v.clone() for k, v in flow.state_dict().items()}
    flow(x * 10.0 + 1.0)  # a second batch must not re-initialise
    for k, v in flow.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_flow_actnorm_gives_each_block_unit_statistics() -> None:
    flow = RealNVP(10, 3, hidden=32, generator=torch.Generator().manual_seed(8)).double()
    z = 5.0 + 3.0 * torch.randn(500, 10, dtype=torch.float64)
    y, _ = flow(z)
    assert flow.initialized()
    torch.testing.assert_close(y.mean(0), torch.zeros(10, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(y.std(0, unbiased=False), torch.ones(10, dtype=torch.float64),
                               atol=1e-5, rtol=0)  # fmt: skip


def test_actnorm_initialised_state_survives_state_dict_round_trip() -> None:
    flow = RealNVP(8, 3, hidden=16, generator=torch.Generator().manual_seed(9))
    flow.train()
    flow(2.0 + torch.randn(64, 8))  # data-dependent init
    buf = io.BytesIO()
    torch.save(flow.state_dict(), buf)
    buf.seek(0)
    fresh = RealNVP(8, 3, hidden=16, generator=torch.Generator().manual_seed(10))
    assert not fresh.initialized()
    fresh.load_state_dict(torch.load(buf))
    assert fresh.initialized()
    fresh.train()
    other = 7.0 + 4.0 * torch.randn(64, 8)
    y_fresh, ld_fresh = fresh(other)  # must NOT re-initialise on this batch
    y_orig, ld_orig = flow(other)
    torch.testing.assert_close(y_fresh, y_orig, atol=0, rtol=0)
    torch.testing.assert_close(ld_fresh, ld_orig, atol=0, rtol=0)
    for k, v in flow.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def old_layout_state_dict(flow: RealNVP, prefix: str = "") -> dict[str, torch.Tensor]:
    """The flow's weights under the per-block keys of checkpoints written before stacking."""
    dr = flow.dim - flow.dim // 2
    out = {}
    for k in range(flow.depth):
        b = f"{prefix}blocks.{k}."
        out[b + "dense.W"] = flow.W[k].detach().clone()
        out[b + "coupling.A"] = flow.A[k].detach().clone()
        out[b + "coupling.a"] = flow.a[k].detach().clone()
        out[b + "coupling.S"] = flow.ST[k, :, :dr].detach().clone()
        out[b + "coupling.s0"] = flow.st0[k, :dr].detach().clone()
        out[b + "coupling.T"] = flow.ST[k, :, dr:].detach().clone()
        out[b + "coupling.t0"] = flow.st0[k, dr:].detach().clone()
        out[b + "actnorm.log_scale"] = flow.log_scale[k].detach().clone()
        out[b + "actnorm.bias"] = flow.bias[k].detach().clone()
        out[b + "actnorm.initialized"] = torch.tensor(True)
    return out


def test_old_per_block_checkpoints_still_load() -> None:
    from vaeprior.fast.config import ModelConfig
    from vaeprior.fast.models.vae import build_vae

    flow = random_flow(9, 3, seed=14, dtype=torch.float32, hidden=16)
    fresh = RealNVP(9, 3, hidden=16)
    fresh.load_state_dict(old_layout_state_dict(flow))  # strict
    assert fresh.initialized()
    for name in PARAM_NAMES:
        assert torch.equal(getattr(fresh, name), getattr(flow, name)), name
    # inside a VAE checkpoint (prefixed keys, strict load of the whole model)
    cfg = ModelConfig(z_dim=9, prior="rnvp", posterior="rnvp", flow_depth=3, flow_hidden=16)
    vae = build_vae(cfg)
    state = {k: v for k, v in vae.state_dict().items() if "_flow." not in k}
    state |= old_layout_state_dict(flow, "prior_flow.")
    state |= old_layout_state_dict(flow, "posterior_flow.")
    fresh_vae = build_vae(cfg)
    fresh_vae.load_state_dict(state)
    x = torch.randn(4, 9)
    torch.testing.assert_close(fresh_vae.prior_flow(x)[0], flow(x)[0], atol=0, rtol=0)
    assert fresh_vae.posterior_flow.initialized()
    partial = old_layout_state_dict(flow)
    del partial["blocks.1.coupling.T"]
    with pytest.raises(RuntimeError, match=r"blocks\.1"):
        RealNVP(9, 3, hidden=16).load_state_dict(partial)


def test_matches_the_numpy_reference_both_directions() -> None:
    flow = random_flow(11, 4, seed=15, hidden=32)
    ref = to_reference(flow)
    w = np.random.default_rng(1).standard_normal((3, 5, 11))
    for direction in ("forward", "inverse"):
        y_ref, ld_ref = getattr(ref, direction)(w)
        with torch.no_grad():
            y, ld = getattr(flow, direction)(torch.from_numpy(w))
        np.testing.assert_allclose(y.numpy(), y_ref, atol=1e-12, rtol=0)
        np.testing.assert_allclose(ld.numpy(), ld_ref, atol=1e-12, rtol=0)


def test_functional_forward_and_inverse_check_their_arguments() -> None:
    flow = random_flow(6, 2, seed=16)
    params = list(flow.stacked_params().values())
    x = torch.randn(3, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"ST must be stacked .* with shape \(2, 16, 6\)"):
        realnvp_forward(
            x, *params[:3], params[3][:, :, :5], *params[4:], slope=0.2, scale_shift=2.0
        )
    with pytest.raises(ValueError, match=r"x must be a float \(N, D\) tensor"):
        realnvp_inverse(x[None], *params, slope=0.2, scale_shift=2.0)
    with pytest.raises(ValueError, match=r"A must be stacked over blocks as \(K, Dl, H\)"):
        realnvp_forward(x, params[0], params[1][0], *params[2:], slope=0.2, scale_shift=2.0)


def test_triton_backend_hook_calls_kernel_with_stacked_params(monkeypatch) -> None:
    calls = []

    def fake_kernel(x, *params, slope, scale_shift):
        calls.append((x.shape, [tuple(p.shape) for p in params]))
        return design_forward(x, *params, slope, scale_shift)

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(flows, "_load_triton_forward", lambda: fake_kernel)
    flow = random_flow(11, 3, seed=12)
    w = torch.randn(2, 3, 11, dtype=torch.float64)
    flow.backend = "torch"
    y_torch, ld_torch = flow(w)
    assert not calls
    flow.backend = "triton"
    y, ld = flow(w)
    assert calls == [((6, 11), list(param_shapes(3, 11, 16).values()))]  # flattened rows
    torch.testing.assert_close(y, y_torch, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, ld_torch, atol=1e-12, rtol=0)
    flow.backend = "auto"  # CPU input: the torch path
    flow(w)
    assert len(calls) == 1


def test_triton_backend_waits_for_actnorm_init_and_unavailable_kernel(monkeypatch) -> None:
    def failing_kernel(x, *params, **kw):
        raise AssertionError("kernel must not run before ActNorm init")

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(flows, "_load_triton_forward", lambda: failing_kernel)
    flow = RealNVP(6, 2, hidden=8)
    flow.backend = "triton"
    flow(torch.randn(16, 6))  # initialises, and this batch runs on torch
    assert flow.initialized()
    monkeypatch.setattr(flows, "_load_triton_forward", lambda: None)  # kernel not importable
    with pytest.raises(ValueError, match="kernel is unavailable"):
        flow(torch.randn(4, 6))
    flow.backend = "auto"  # falls back to torch
    y, ld = flow(torch.randn(4, 6))
    assert y.shape == (4, 6) and ld.shape == (4,)
    monkeypatch.delenv("TRITON_INTERPRET")
    flow.backend = "triton"  # a CPU tensor without the interpreter: a clear error
    with pytest.raises(ValueError, match="CUDA device"):
        flow(torch.randn(4, 6))


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="depth"):
        RealNVP(4, -1)
    with pytest.raises(ValueError, match="dim >= 2"):
        RealNVP(1, 2)
    flow = RealNVP(4, 1)
    with pytest.raises(ValueError, match="last dimension 4"):
        flow(torch.randn(3, 5))
    with pytest.raises(ValueError, match="last dimension 4"):
        flow.inverse(torch.randn(3, 5))
    flow.backend = "cuda-please"
    with pytest.raises(ValueError, match="backend"):
        flow(torch.randn(3, 4))


@pytest.mark.cuda
def test_triton_backend_matches_torch_on_cuda() -> None:
    """The fused kernel (backend "auto" on a float32 CUDA input) against the torch path."""
    if not torch.cuda.is_available() or flows._load_triton_forward() is None:
        pytest.skip("needs a CUDA GPU and an importable vaeprior.fast.kernels.flow")
    g = torch.Generator().manual_seed(13)
    flow = RealNVP(40, 20, generator=g)
    with torch.no_grad():
        for name in ("a", "ST", "st0"):
            p = getattr(flow, name)
            p.copy_(0.03 * torch.randn(p.shape, generator=g))
    flow = flow.cuda()
    z = torch.randn(3, 50, 40, device="cuda")
    flow(z)  # ActNorm init (torch path)
    results = {}
    for backend in ("torch", "auto"):
        flow.backend = backend
        flow.zero_grad()
        y, ld = flow(z)
        (y.square().sum() + ld.sum()).backward()
        results[backend] = (y, ld, flow.A.grad.clone())
    for a, b in zip(results["auto"], results["torch"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
