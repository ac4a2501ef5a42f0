"""Every kernel launch of the public functions compiles for sm_90 (H100/H200) and fits, no GPU.

The CPU interpreter (TRITON_INTERPRET=1, used by the numerical kernel tests) accepts Python
globals, CPU tensors and any register or shared-memory use; the GPU compiler does not. Here the
compiler itself stands in for the GPU: `vaeprior.bench.gpu.aot` calls the public kernel
functions on `meta` tensors at production shapes (flow D in {40, 64}, K in {20, 50}, N in {128,
128000}; IW-NLL heads of all four architectures, S = 1000, B = 128; float32 IEEE and TF32,
bfloat16, float64), captures each launch the launchers make, and compiles it ahead of time for
`GPUTarget("cuda", 90, 32)` with Triton's own specialisation. Each configuration must compile,
use at most 232,448 B of shared memory (Hopper's per-block limit) and spill 0 bytes.

Identical compiles are done once, in a process pool; Triton's cache makes reruns fast.
"""

from __future__ import annotations

import pytest

aot = pytest.importorskip("vaeprior.bench.gpu.aot")
pytest.importorskip("triton.backends.nvidia", reason="Triton's NVIDIA backend is not installed")

SCENARIOS = aot.scenarios()


@pytest.fixture(scope="module")
def compiled() -> dict[str, list[dict]]:
    """Scenario name -> its launches, each with its sm_90 resources (or the compile error)."""
    out: dict[str, list[dict]] = {}
    for row in aot.compile_all():
        out.setdefault(row["scenario"], []).append(row)
    return out


def test_every_scenario_launches_kernels():
    """The capture is not empty and covers both kernel families and all four dtypes."""
    families = {s.family for s in SCENARIOS}
    dtypes = {s.dtype for s in SCENARIOS}
    assert families == {"flow", "iw_nll"}
    assert dtypes == set(aot.DTYPES)
    kernels = {launch.kernel for s in SCENARIOS for launch in aot.capture(s)}
    assert len(kernels) >= 4, kernels


def test_every_launch_asks_for_fused_multiply_add():
    """Every launch passes enable_fp_fusion=True, so no Triton version's default (off from
    3.10) changes the compiled code behind the resource table; the compile options agree."""
    for s in SCENARIOS:
        for launch in aot.capture(s):
            assert launch.kwargs.get("enable_fp_fusion") is True, (s.name, launch.kernel)
    _, options = aot._specialize(aot.capture(SCENARIOS[0])[0])
    assert options["enable_fp_fusion"] is True


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_compiles_for_sm90_within_limits(scenario, compiled):
    for row in compiled[scenario.name]:
        what = f"{row['kernel']} [{row['config']}]"
        assert "error" not in row, f"{what} does not compile for sm_90: {row.get('error')}"
        assert row["shared"] <= aot.SHARED_LIMIT, (
            f"{what} needs {row['shared']} B of shared memory > {aot.SHARED_LIMIT} B (sm_90)"
        )
        spilled = max(row["spill_stores"], row["spill_loads"])
        assert spilled == 0, (
            f"{what} spills {row['spill_stores']} B stored / {row['spill_loads']} B loaded per "
            f"thread ({row['registers']} registers)"
        )
