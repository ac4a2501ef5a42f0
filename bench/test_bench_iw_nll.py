"""Importance-weighted NLL (App. B.3): fused Triton vs chunked eager torch vs torch.compile.

Paper sizes (CUDA): B = 128 images, S = 1000 samples, DenseVAE head Linear(500 -> 784) and the
ResnetVAE 1x1 head Conv2d(32 -> 1); peak memory as S grows (100, 1000, 5000, dense head).
CPU: torch paths only, B = 16, S = 50 (dense) / B = 8, S = 10 (conv), S sweep / 10.

FLOPs and bytes are the roofline model's (`vaeprior.bench.gpu.cost_iw_nll`, which counts the
captured launches; `test_formulas_are_the_cost_model_s` checks the two agree):
    FLOPs (head only; Bernoulli and log-mean-exp element-wise work ignored):
        dense = 2 S B H 784           conv 1x1 = 2 S B C 784
    Bytes (minimum traffic: h, W, b, x, log p(z), log q(z|x) read once, the NLL written once;
    float32 here):
        dense = 4 (S B H + 784 H + 784 + B 784 + 2 S B + B)
        conv  = 4 (S B C 784 + C + 1 + B 784 + 2 S B + B)
The dense head is compute-bound (~780 FLOP/byte, report TFLOP/s), the conv head memory-bound
(0.5 FLOP/byte, report GB/s); the extra_info carries both.
"""

from __future__ import annotations

import pytest
import torch

from vaeprior.bench.conftest import COMPILE, DEVICE, ON_GPU, needs_compile, needs_gpu
from vaeprior.bench.gpu.cost_iw_nll import MODELS, iw_nll_min_bytes, iw_nll_useful_flops
from vaeprior.fast.kernels.iw_nll import iw_nll, iw_nll_conv1x1, iw_nll_torch

NPIX, HID, CH = 784, 500, 32
SIZES = (
    {"dense": (128, 1000), "conv": (128, 1000)} if ON_GPU else {"dense": (16, 50), "conv": (8, 10)}
)
S_SWEEP = (100, 1000, 5000) if ON_GPU else (10, 100, 500)
B_SWEEP = 128 if ON_GPU else 16


def _inputs(head: str, B: int, S: int) -> list[torch.Tensor]:
    g = torch.Generator(device=DEVICE).manual_seed(S * 7 + B)

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, device=DEVICE) * scale

    if head == "conv":
        h, W, b = r(S * B, CH, 28, 28), r(1, CH, 1, 1, scale=0.2), r(1)
    else:
        h, W, b = r(S * B, HID).relu_(), r(NPIX, HID, scale=0.05), r(NPIX)
    x = (torch.rand(B, NPIX, generator=g, device=DEVICE) < 0.3).float()
    return [h, W, b, x, r(S, B, scale=5.0) - 40.0, r(S, B, scale=5.0) + 30.0]


def _flops(head: str, B: int, S: int) -> float:
    return iw_nll_useful_flops(S, B, CH if head == "conv" else HID)


def _bytes(head: str, B: int, S: int) -> float:
    conv = head == "conv"
    return iw_nll_min_bytes(S, B, CH if conv else HID, conv, torch.float32, torch.float32)


@pytest.mark.parametrize("head", ["dense", "conv"])
def test_formulas_are_the_cost_model_s(head):
    """The reported FLOPs and bytes are the roofline model's useful FLOPs and minimum bytes of
    the same call (captured on meta tensors, float32), and the written-out formulas above."""
    aot = pytest.importorskip("vaeprior.bench.gpu.aot")
    S, B = 1000, 128

    def call():
        def m(*shape):
            return torch.empty(shape, device="meta")

        if head == "conv":
            iw_nll_conv1x1(m(S * B, CH, 28, 28), m(1, CH, 1, 1), m(1), m(B, NPIX), m(S, B),
                           m(S, B))  # fmt: skip
        else:
            iw_nll(m(S * B, HID), m(NPIX, HID), m(NPIX), m(B, NPIX), m(S, B), m(S, B))

    (launch,) = aot.capture(aot.Scenario("iw_nll", f"bench {head}", "fp32", call))
    kc = MODELS[launch.kernel](launch)
    assert _flops(head, B, S) == kc.useful_flops
    assert _bytes(head, B, S) == kc.min_bytes
    common = B * NPIX + 2 * S * B + B
    if head == "conv":
        assert _bytes(head, B, S) == 4.0 * (S * B * CH * NPIX + CH + 1 + common)
        assert _flops(head, B, S) == 2.0 * S * B * CH * NPIX
    else:
        assert _bytes(head, B, S) == 4.0 * (S * B * HID + NPIX * HID + NPIX + common)
        assert _flops(head, B, S) == 2.0 * S * B * HID * NPIX


def _fused(h, W, b, x, lpz, lqz):
    return (iw_nll_conv1x1 if h.dim() == 4 else iw_nll)(h, W, b, x, lpz, lqz)


_compiled = torch.compile(iw_nll_torch, dynamic=False) if COMPILE else None
_IMPLS = {
    "fused": pytest.param(_fused, marks=needs_gpu),
    "eager": pytest.param(iw_nll_torch),
    "compile": pytest.param(_compiled, marks=needs_compile),
}


def _run(run_case, impl, head: str, B: int, S: int) -> None:
    args = _inputs(head, B, S)

    def fn():
        with torch.no_grad():
            return impl(*args)

    run_case(fn, flops=_flops(head, B, S), nbytes=_bytes(head, B, S), rounds=10 if ON_GPU else 3)


@pytest.mark.parametrize("head", ["dense", "conv"])
@pytest.mark.parametrize("impl", list(_IMPLS.values()), ids=list(_IMPLS))
def test_bench_iw_nll(run_case, benchmark, impl, head):
    B, S = SIZES[head]
    benchmark.group = f"iw_nll {head} B={B} S={S}"
    _run(run_case, impl, head, B, S)


@pytest.mark.parametrize("S", S_SWEEP)
@pytest.mark.parametrize("impl", list(_IMPLS.values()), ids=list(_IMPLS))
def test_bench_iw_nll_memory_vs_S(run_case, benchmark, impl, S):
    """extra_info.peak_mem_mib (CUDA): memory above the inputs; the fused path stays flat."""
    benchmark.group = f"iw_nll dense B={B_SWEEP} memory vs S (S={S})"
    _run(run_case, impl, "dense", B_SWEEP, S)
