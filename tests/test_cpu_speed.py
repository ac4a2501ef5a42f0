"""The CPU speed runner's paired ratios (`vaeprior.bench.cpu_speed.paired_ratios`)."""

from __future__ import annotations

from vaeprior.bench import cpu_speed


def test_paired_ratios_time_every_case_against_the_standard_step() -> None:
    """Every flow step does the standard step's work plus a flow, so its ratio exceeds 1, and
    K = 50 blocks cost more than K = 20; the standard step's ratio to itself is exactly 1."""
    r = cpu_speed.paired_ratios(steps=5)
    assert list(r) == [c[0] for c in cpu_speed.STEP_CONFIGS]
    assert r["gaussian"]["ratio"] == 1.0
    for name in ("rnvp-p K=20", "rnvp-p K=50", "rnvp-q K=20"):
        assert r[name]["ratio"] > 1.05, (name, r[name])
        assert abs(r[name]["ms"] / r["gaussian"]["ms"] / r[name]["ratio"] - 1) < 0.5
    assert r["rnvp-p K=50"]["ratio"] > r["rnvp-p K=20"]["ratio"]
