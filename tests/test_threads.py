"""The CPU thread-count choice (vaeprior.fast.threads): explicit > OMP_NUM_THREADS > load rule."""

from __future__ import annotations

import pytest
import torch

from vaeprior.fast import threads


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("cpus", "load", "expected"),
    [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.2, 1), (2, 5.0, 1), (8, 2.3, 6), (1, 0.0, 1)],
)
def test_auto_threads_leaves_the_cpus_other_processes_use(cpus, load, expected) -> None:
    assert threads.auto_threads(cpus, load) == expected


def test_explicit_count_wins_over_omp_num_threads(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.set_threads(2) == 2 and torch.get_num_threads() == 2


def test_omp_num_threads_is_left_as_torch_applied_it(monkeypatch) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(threads, "auto_threads", lambda: pytest.fail("must not be consulted"))
    assert threads.set_threads() == 1 and torch.get_num_threads() == 1


def test_without_settings_the_load_rule_decides(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    assert threads.set_threads() == 2 and torch.get_num_threads() == 2
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (3.0, 0.0, 0.0))
    assert threads.set_threads() == 1 and torch.get_num_threads() == 1


def test_bad_count_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        threads.set_threads(0)
