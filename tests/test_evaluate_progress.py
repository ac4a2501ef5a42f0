"""How a long evaluation reports on itself: the duration estimate (fake clock), the bar, the
duration wording, and that reporting leaves every number unchanged."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import tiny_model

from vaeprior.fast.evaluation.evaluate import Progress, evaluate, format_duration
from vaeprior.fast.models.vae import build_vae

HINT = "(use --limit N or --samples S to shorten)"


def _model():
    torch.manual_seed(0)
    return build_vae(tiny_model(prior="rnvp")).double().eval()


def _x(n=10):
    g = torch.Generator().manual_seed(1)
    return torch.bernoulli(torch.full((n, 784), 0.3, dtype=torch.float64), generator=g)


def _clock(step: float):
    """A clock that advances `step` seconds per reading: t0 = 0, then one reading per chunk."""
    ticks = itertools.count()
    return lambda: next(ticks) * step


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "1 s"),
        (40.4, "40 s"),
        (89, "89 s"),
        (91, "2 min"),
        (7 * 60 + 10, "7 min"),
        (59 * 60 + 40, "1 h"),
        (6900, "1 h 55 min"),
        (3 * 3600 + 29, "3 h"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_estimate_from_the_first_timed_chunk():
    """10 rows x 50 samples in chunks of 2 rows x 10 samples = 25 chunks of 20 rows each.
    One second per chunk: after the first, 20 of 500 rows took 1 s, so 25 s in all."""
    lines: list[str] = []
    p = Progress(bar=False, what="test rows", clock=_clock(1.0), write=lines.append)
    evaluate(_model(), _x(), samples=50, batch_size=2, sample_chunk=10, backend="torch", progress=p)
    assert lines == [f"evaluating 10 test rows x 50 samples: about 25 s on cpu {HINT}"]


def test_estimate_waits_for_the_calibration_time():
    """0.25 s per chunk: the estimate is made once 1 s has passed, after 4 chunks (80 of 500
    rows), as 1 s x 500 / 80 = 6.25 s; no line when that is under the threshold."""
    lines: list[str] = []
    p = Progress(bar=False, clock=_clock(0.25), write=lines.append, announce_above_s=5, hint="")
    evaluate(_model(), _x(), samples=50, batch_size=2, sample_chunk=10, backend="torch", progress=p)
    assert lines == ["evaluating 10 rows x 50 samples: about 6 s on cpu"]
    lines.clear()
    p.announce_above_s = 6.5
    p.clock = _clock(0.25)
    evaluate(_model(), _x(), samples=50, batch_size=2, sample_chunk=10, backend="torch", progress=p)
    assert lines == []


def test_hours_long_evaluation_wording():
    p = Progress(what="test rows")
    line = p.estimate_line(100_000, 1000, 6900.0, "cpu")
    assert line == f"evaluating 100,000 test rows x 1000 samples: about 1 h 55 min on cpu {HINT}"


def test_reporting_changes_no_number(capsys):
    vae, x = _model(), _x()
    kw = {"samples": 20, "batch_size": 3, "sample_chunk": 7, "backend": "torch"}
    quiet = evaluate(vae, x, **kw)
    shown = evaluate(vae, x, **kw, progress=True)
    assert quiet == shown
    err = capsys.readouterr().err
    assert "evaluate 10 rows x 20 samples" in err and "10/10" in err  # the bar, per batch
    assert "evaluating" not in err  # far under the announcement threshold
