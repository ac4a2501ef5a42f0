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
