"""Real NVP flow: fused Triton vs eager torch vs torch.compile, forward and forward+backward.

Paper sizes (CUDA): K in {20, 50} blocks, D in {40, 64}, H = 256, N = 128,000 rows, float32.
CPU: torch paths only, K = 4, N = 4,096.

FLOPs and bytes are the cost model's (`vaeprior.bench.gpu.cost_flow`, which counts the
kernels' own tiling beside these minima):
    FLOPs, per row and block (matmuls only, unpadded; element-wise ignored):
        fwd = 2 (D^2 + Dl H + 2 Dr H)        (x W, u_l A, h [S | T])
        fwd+bwd = fwd + 3 fwd                (the backward recomputes the forward products
                                              once, then two products per forward product)
    Bytes, the op's minimum traffic (each input read once, each output written once; not the
    (K, N, D) block inputs the fused training forward stores for its backward):
        fwd = 4 N (2 D + 1) + 4 K P          (x in, y and logdet out, parameters P per block)
        fwd+bwd = fwd + 4 N (3 D + 1) + 8 K P
                                             (x, dL/dy, dL/dlogdet in, dL/dx out; parameters
                                              read again and their gradients written)
"""

from __future__ import annotations

import pytest
import torch

from vaeprior.bench.conftest import COMPILE, DEVICE, ON_GPU, needs_compile, needs_gpu
from vaeprior.bench.gpu.cost_flow import param_bytes, useful_forward_flops
from vaeprior.fast.kernels.flow import realnvp_forward
from vaeprior.fast.models.realnvp import realnvp_forward as realnvp_torch
from vaeprior.reference.config import LEAKY_SLOPE as SLOPE
from vaeprior.reference.config import SCALE_SHIFT as SHIFT

H = 256
N = 128_000 if ON_GPU else 4_096
KS = (20, 50) if ON_GPU else (4,)
DS = (40, 64)


def _params(K: int, D: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(K * 1000 + D)
    Dl, Dr = D // 2, D - D // 2

    def r(*shape, scale):
        return (torch.randn(*shape, generator=g) * scale).to(DEVICE).requires_grad_()

    W = torch.linalg.qr(torch.randn(K, D, D, generator=g))[0].to(DEVICE).requires_grad_()
    # W, A, a, ST = [S | T], st0 = [s0 | t0], log_scale, bias (`realnvp_forward`'s order)
    return [W, r(K, Dl, H, scale=0.1), r(K, H, scale=0.1), r(K, H, 2 * Dr, scale=0.02),
            r(K, 2 * Dr, scale=0.1), r(K, D, scale=0.02), r(K, D, scale=0.02)]  # fmt: skip


def _flops(K: int, D: int, backward: bool) -> float:
    fwd = useful_forward_flops(N, K, D, H)
    return 4 * fwd if backward else fwd


def _bytes(K: int, D: int, backward: bool) -> float:
    P = param_bytes(K, D, H, 4, 4)  # float32
    fwd = 4 * N * (2 * D + 1) + P
    return fwd + (4 * N * (3 * D + 1) + 2 * P if backward else 0)


_compiled = torch.compile(realnvp_torch, dynamic=False) if COMPILE else None
_IMPLS = {
    "fused": pytest.param(realnvp_forward, marks=needs_gpu),
    "eager": pytest.param(realnvp_torch),
    "compile": pytest.param(_compiled, marks=needs_compile),
}


def _case(impl, K: int, D: int, backward: bool):
    params = _params(K, D)
    x = torch.randn(N, D, device=DEVICE, requires_grad=backward)

    def fwd():
        with torch.no_grad():
            return impl(x, *params, slope=SLOPE, scale_shift=SHIFT)

    def fwd_bwd():
        y, ld = impl(x, *params, slope=SLOPE, scale_shift=SHIFT)
        (y.square().sum() + ld.sum()).backward()

    return fwd_bwd if backward else fwd


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("D", DS)
@pytest.mark.parametrize("K", KS)
@pytest.mark.parametrize("impl", list(_IMPLS.values()), ids=list(_IMPLS))
def test_bench_flow(run_case, benchmark, impl, K, D, backward):
    benchmark.group = f"flow K={K} D={D} N={N} {'fwd+bwd' if backward else 'fwd'}"
    run_case(
        _case(impl, K, D, backward),
        flops=_flops(K, D, backward),
        nbytes=_bytes(K, D, backward),
        rounds=10 if ON_GPU else 3,
    )
