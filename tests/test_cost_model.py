"""The roofline cost model (`vaeprior.bench.gpu.cost_model`) on cases computed by hand."""

from __future__ import annotations

import pytest
import torch

cm = pytest.importorskip("vaeprior.bench.gpu.cost_model")


def test_copy_is_bandwidth_bound():
    # 2^28 float32 elements: 1 GiB read + 1 GiB written at 3.35 TB/s
    c = cm.copy(1 << 28, torch.float32)
    assert c.bytes == 2 * 4 * (1 << 28)
    assert c.flops == 0
    assert c.us() == pytest.approx(2 * 4 * (1 << 28) / 3.35e12 * 1e6)


def test_gemm_counts_operands_once_and_two_flops_per_mac():
    # (8192, 8192) @ (8192, 8192) bf16: 2 * 8192^3 FLOPs at 990 TFLOP/s, compute-bound
    n = 8192
    c = cm.gemm(n, n, n, torch.bfloat16, "bf16")
    assert c.flops == 2 * n**3
    assert c.bytes == 2 * 3 * n * n
    assert c.us() == pytest.approx(2 * n**3 / 990e12 * 1e6)
    # a skinny (128000, 20) @ (20, 256) fp32 IEEE product is bandwidth-bound
    s = cm.gemm(128_000, 256, 20, torch.float32, "fp32", bias=True)
    assert s.bytes == 4 * (128_000 * 20 + 20 * 256 + 128_000 * 256 + 256)
    assert s.us() == pytest.approx(s.bytes / 3.35e12 * 1e6)


def test_precision_of_dots():
    assert cm.precision(torch.float32, "ieee") == "fp32"
    assert cm.precision(torch.float32, "tf32") == "tf32"
    assert cm.precision(torch.bfloat16) == "bf16"
    assert cm.precision(torch.float64) == "fp64"


def test_l2_reuse_rule():
    assert cm.l2_once(1e6, readers=1000) == 1e6  # weights of a few MB: HBM once
    assert cm.l2_once(40e6, readers=10) == 400e6  # over half the L2: once per reader


def test_kernel_cost_ratios():
    kc = cm.KernelCost("k", "", bytes=125.0, min_bytes=100.0, flops=110.0, useful_flops=100.0,
                       precision="fp32", eager=[cm.Cost(3 * 3.35e6, 0.0)])  # fmt: skip
    t = kc.targets()
    assert t["bytes_ratio"] == pytest.approx(1.25)
    assert t["flops_ratio"] == pytest.approx(1.10)
    assert kc.eager_predicted_us == pytest.approx(3.0)
    assert kc.row().keys() == {"kernel", "config", "bytes", "min_bytes", "flops", "useful_flops",
                               "predicted_us", "eager_predicted_us"}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the Real NVP family (`cost_flow.py`) on one coupling block, counted by hand
# ---------------------------------------------------------------------------------------------
def _flow_launches(N, D, K, train):
    """The launches of one `realnvp_forward` call (meta tensors, fp32 with TF32 dots)."""
    aot = pytest.importorskip("vaeprior.bench.gpu.aot")
    fk = pytest.importorskip("vaeprior.fast.kernels.flow")
    from vaeprior.fast.models.realnvp import param_shapes

    def call():
        x = torch.empty(N, D, device="meta", requires_grad=train)
        ps = [
            torch.empty(s, device="meta", requires_grad=train)
            for s in param_shapes(K, D, 256).values()
        ]
        with torch.set_grad_enabled(train):
            y, ld = fk.realnvp_forward(x, *ps, slope=0.2, scale_shift=2.0)
        if train:
            (y.sum() + ld.sum()).backward()

    return aot.capture(aot.Scenario("flow", "one block by hand", "tf32", call))


def test_flow_forward_one_block_counted_by_hand():
    """D = 40 (halves of 20 padded to BLOCK_D = 32), H = 256, N = 100 rows in one 128-row tile,
    fp32 with TF32 dots, inference."""
    cf = pytest.importorskip("vaeprior.bench.gpu.cost_flow")
    (launch,) = _flow_launches(100, 40, 1, train=False)
    assert launch.grid == (1,) and launch.constexprs()["BLOCK_N"] == 128
    kc = cf.MODELS[launch.kernel](launch)
    # bytes: x and y (100 x 40 x 4), logdet (100 x 4), parameters once:
    # W 40*40 + A 20*256 + a 256 + ST 256*40 + st0 40 + log_scale 40 + bias 40 = 17336 floats
    params = 4 * (1600 + 5120 + 256 + 10240 + 40 + 40 + 40)
    assert kc.bytes == kc.min_bytes == 16000 + 16000 + 400 + params == 101744
    # FLOPs issued: 128 rows x 2 x ((2*32)^2 [x W] + 32*256 [u_l A] + 256*64 [h ST])
    assert kc.flops == 128 * 2 * (64 * 64 + 32 * 256 + 256 * 64) == 7_340_032
    # useful: 100 rows x 2 x (40^2 + 20*256 + 256*40)
    assert kc.useful_flops == 100 * 2 * (1600 + 5120 + 10240) == 3_392_000
    assert kc.precision == "tf32"
    # eager, kernel by kernel (bytes): x@W, addmm(a, u_l, A), leaky_relu, addmm(st0, h, ST),
    # s + c, sigmoid, u_r * sig, + t, cat, + bias, * exp(ls), logsigmoid, sum(1)
    eager = [4 * (4000 + 1600 + 4000), 4 * (2000 + 5120 + 25600 + 256), 8 * 25600,
             4 * (25600 + 10240 + 4000 + 40), 8 * 2000, 8 * 2000, 12 * 2000, 12 * 2000,
             8 * 4000, 8 * 4000, 8 * 4000, 8 * 2000, 4 * (2000 + 100)]  # fmt: skip
    assert [c.bytes for c in kc.eager] == eager
    assert sum(eager) == 735_024


def test_flow_backward_one_block_counted_by_hand():
    """D = 64, H = 256, N = 64 rows: two 32-row tiles (TF32 backward tiling), one block."""
    cf = pytest.importorskip("vaeprior.bench.gpu.cost_flow")
    fwd, bwd = _flow_launches(64, 64, 1, train=True)
    c = bwd.constexprs()
    assert (c["BLOCK_N"], c["BLOCK_D"], c["BLOCK_H"]) == (32, 32, 32) and bwd.grid == (2,)
    kc = cf.MODELS[bwd.kernel](bwd)
    n_params = 64 * 64 + 32 * 256 + 256 + 256 * 64 + 64 + 64 + 64  # 29120 per block
    # per row: recompute [x_l|x_r] W, dW, dx (3 x 64^2); net forward u_l A, h ST (3 x 32 x 256);
    # net backward: u_l A again, g_h, d[S|T], dA, g_ul (7 x 32 x 256); 2 FLOPs per MAC
    assert kc.flops == 64 * 2 * (3 * 64 * 64 + 10 * 32 * 256) == 12_058_624
    assert kc.useful_flops == 3 * 64 * 2 * (64 * 64 + 32 * 256 + 256 * 64) == 11_010_048
    # HBM: dL/dy, dL/dx (64 x 64 x 4), dL/dlogdet, the saved block input, the parameters once,
    # the gradient buffer zero-filled and written back; atomics: every tile adds all 29120
    io = 16384 + 256 + 16384
    assert kc.bytes == io + 16384 + 4 * n_params + 2 * 4 * n_params == 398_848
    assert kc.min_bytes == io + 16384 + 2 * 4 * n_params == 282_368
    assert kc.atomic_bytes == 2 * 4 * n_params == 232_960
    # the training forward also writes the block input (64 x 64 x 4)
    kf = cf.MODELS[fwd.kernel](fwd)
    assert kf.bytes - kf.min_bytes == 16384


def test_iw_nll_eval_launch_counted_by_hand():
    """`cost_iw_nll` on the bf16 IW-NLL evaluation launch (S = 1000, B = 128, Linear(500, 784)),
    against bytes and FLOPs written out here from the kernel's tiling: 128-row tiles (one
    sample x 128 images), 1000 of them over 125 programs of 8, 7 pixel tiles (6 x 128 + 16),
    K = 500 run as 512 (16-wide chunks)."""
    aot = pytest.importorskip("vaeprior.bench.gpu.aot")
    ci = pytest.importorskip("vaeprior.bench.gpu.cost_iw_nll")
    from vaeprior.fast.kernels import iw_nll as ik

    S, B, H, bf = 1000, 128, 500, torch.bfloat16

    def call():
        def m(*shape, dtype=bf):
            return torch.empty(shape, device="meta", dtype=dtype)

        ik.iw_nll(m(S * B, H), m(784, H), m(784), m(B, 784), m(S, B), m(S, B))

    (launch,) = aot.capture(aot.Scenario("iw_nll", "hand-counted", "bf16", call))
    assert launch.kernel == "_iw_nll_fwd_kernel" and launch.grid == (1, 125)
    kc = ci.MODELS[launch.kernel](launch)
    assert kc.flops == 2 * 1000 * 128 * 784 * 512  # K padded to 512, no padded row or pixel
    assert kc.useful_flops == 2 * 128_000 * 784 * 500
    assert kc.precision == "bf16"
    h = 128_000 * 500 * 2  # the 125 programs' h tiles (16 MB) fit in half the L2: read once
    w = 784 * 500 * 2 + 784 * 4  # W bf16, b float32
    x = 128 * 784 * 2
    lp = 2 * 128_000 * 2  # log p(z), log q(z|x)
    parts = 3 * 125 * 128 * 4  # (max, sum exp, sum ll) per program and image, float32
    assert kc.bytes == h + w + x + lp + 2 * parts  # written, then read by the torch combine
    assert kc.min_bytes == h + w + x + lp + 128 * 4
    # W re-read from L2 by each of the 1000 row tiles, h by each of the 7 pixel tiles
    assert kc.l2_bytes == 7 * h + 1000 * w + 1000 * 128 * 784 * 2 + lp + 2 * parts
    assert kc.predicted_us == pytest.approx(2 * 1000 * 128 * 784 * 512 / 990e12 * 1e6)
    gemm = kc.eager[0]  # eager's addmm: h, W, bias read once, logits written once
    assert gemm.bytes == 2 * (128_000 * 500 + 500 * 784 + 128_000 * 784 + 784)
    assert gemm.flops == 2 * 128_000 * 784 * 500
    assert kc.targets()["time_ratio"] < 1 / 3
