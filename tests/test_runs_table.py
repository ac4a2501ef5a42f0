"""`vaeprior.bench.runs_table`: runs grouped by label, mean ± sample std of their results."""

from __future__ import annotations

import json

import pytest

from vaeprior.bench import runs_table


def _run(path, nll, elbo):
    path.mkdir(parents=True)
    res = {"nll": nll, "elbo": elbo, "recon": elbo + 20, "kl": 20.0, "klzx": 3.0}
    (path / "results.json").write_text(json.dumps(res | {"active_units": 40}))
    return path


def test_groups_average_their_seeds_with_the_sample_std(tmp_path, capsys):
    a0, a1 = _run(tmp_path / "a0", 90.0, -95.0), _run(tmp_path / "a1", 92.0, -97.0)
    b0 = _run(tmp_path / "b0", 86.5, -90.0)
    out = tmp_path / "t.md"
    runs_table.main([f"joint={a0},{a1}", f"post-hoc={b0}", "--out", str(out)])
    printed = capsys.readouterr().out
    assert printed == out.read_text()
    rows = [line for line in printed.splitlines() if line.startswith("| joint")]
    # mean 91, sample std sqrt(2) = 1.41 (population std would read 1.00)
    assert rows == [
        "| joint | 2 | 91.00 ± 1.41 | -96.00 ± 1.41 | -76.00 ± 1.41 | 20.00 ± 0.00 "
        "| 3.00 ± 0.00 | 40.00 ± 0.00 |"
    ]
    assert "| post-hoc | 1 | 86.50 | -90.00 | -70.00 | 20.00 | 3.00 | 40.00 |" in printed


def test_bad_groups_and_unfinished_runs_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="LABEL=RUN_DIR"):
        runs_table.parse_group("no-equals-sign")
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(SystemExit, match=r"unfinished: no results\.json"):
        runs_table.main([f"x={tmp_path / 'unfinished'}"])
