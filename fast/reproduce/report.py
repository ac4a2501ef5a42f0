"""Reproduced tables as Markdown: every cell's values over seeds beside the paper's."""

from __future__ import annotations

import os
import shlex
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vaeprior.fast.reproduce.specs import ANALYSIS_METRICS, METRICS, Cell
from vaeprior.fast.runs import RESULTS, read_json, run_status

if TYPE_CHECKING:
    from vaeprior.fast.reproduce.runner import Reproduction

RUN_META = "reproduce-run.json"  # wall-clock seconds and machine of one run directory
POSTERIOR_STATS = "posterior-stats.json"  # Table B.1's moments of one run


def mean_std(values: tuple[float, ...] | list[float]) -> tuple[float | None, float | None]:
    """(mean, sample std) of seeds' values: std None for one value, both None for none."""
    mean = statistics.fmean(values) if values else None
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


@dataclass(frozen=True)
class CellResult:
    """Our values of one cell over the finished seeds, beside the paper's."""

    cell: Cell
    values: tuple[float, ...]

    @property
    def mean(self) -> float | None:
        return mean_std(self.values)[0]

    @property
    def std(self) -> float | None:
        return mean_std(self.values)[1]

    @property
    def diff(self) -> float | None:
        if self.mean is None or self.cell.paper is None:
            return None
        return self.mean - self.cell.paper


def _metric(rep: Reproduction, cell: Cell, seed: int) -> float | None:
    d = rep.run_dir(cell.run, seed)
    if run_status(d) != "finished":
        return None
    src = d / (POSTERIOR_STATS if cell.metric in ANALYSIS_METRICS else RESULTS)
    if not src.exists():
        return None
    value = read_json(src).get(cell.metric)
    return None if value is None else float(value)


def collect(rep: Reproduction) -> list[CellResult]:
    """Every cell's values over seeds 0..seeds-1 (finished runs only)."""
    out = []
    for cell in rep.table.cells:
        vals = [_metric(rep, cell, s) for s in range(rep.seeds)]
        out.append(CellResult(cell, tuple(v for v in vals if v is not None)))
    return out


def compute_summary(rep: Reproduction) -> tuple[float, int, list[str]]:
    """(total wall seconds over finished runs, number of runs, distinct machine lines)."""
    total, n, machines = 0.0, 0, []
    for spec in rep.table.runs():
        for seed in range(rep.seeds):
            d = rep.run_dir(spec, seed)
            if run_status(d) != "finished":
                continue
            n += 1
            meta = read_json(d / RUN_META) if (d / RUN_META).exists() else {}
            total += float(meta.get("wall_s", read_json(d / RESULTS).get("train_seconds", 0.0)))
            line = _machine_line(meta.get("machine"))
            if line not in machines:
                machines.append(line)
    return total, n, machines


def _machine_line(m: dict | None) -> str:
    if not m:
        return "unrecorded (run made outside the harness)"
    gpu = m.get("gpu") or "no GPU"
    return f"{m['cpu']} ({m['cores']} cores), {gpu}, torch {m['torch']}, Python {m['python']}"


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def plus_minus(mean: float | None, std: float | None) -> str:
    """'m ± s', 'm' without a std, '—' without a value."""
    if mean is None:
        return "—"
    return _fmt(mean) if std is None else f"{mean:.2f} ± {std:.2f}"


def _hours(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 3600 else f"{seconds / 3600:.2f} h"


def _md_row(*cells: str) -> str:
    """One Markdown table row; '|' inside a cell (q(z|x), klz|x) is escaped."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def command_line(rep: Reproduction) -> str:
    """The `vaeprior reproduce` command that regenerates this table."""
    parts = [
        "vaeprior",
        "reproduce",
        rep.table.key,
        "--budget",
        rep.budget.name,
        "--seeds",
        str(rep.seeds),
        "--out",
        str(rep.out),
    ]
    if rep.device:
        parts += ["--device", rep.device]
    if rep.epochs is not None:
        parts += ["--epochs", str(rep.epochs)]
    if rep.limit is not None:
        parts += ["--limit", str(rep.limit)]
    if rep.cells:
        parts += ["--cells", ",".join(rep.cells)]
    return shlex.join(parts)


def render_markdown(rep: Reproduction, results: list[CellResult], elapsed: float) -> str:
    """The table as Markdown: one line per cell, ours (mean ± std over seeds) beside the paper."""
    t = rep.table
    total, n_runs, machines = compute_summary(rep)
    lines = [
        f"# Table {t.key}: {t.title}",
        "",
        f"- Budget: **{rep.budget.name}**: {rep.budget.description}.",
        f"- Seeds: {rep.seeds} (0..{rep.seeds - 1}); ours = mean ± sample std over finished seeds, "
        "paper = mean ± std over 3 runs where the paper gives one.",
        f"- Compute: {_hours(total)} wall-clock over {n_runs} finished runs "
        f"(this invocation: {_hours(elapsed)}).",
        f"- Machine: {'; '.join(machines) or 'no run finished yet'}.",
        f"- Command: `{command_line(rep)}`",
        "",
        "| row | column | metric | ours | seeds | paper | ours − paper |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        c = r.cell
        lines.append(
            _md_row(
                c.row,
                c.column,
                METRICS[c.metric],
                plus_minus(r.mean, r.std),
                str(len(r.values)),
                plus_minus(c.paper, c.paper_std),
                _fmt(r.diff, signed=True),
            )
        )
    notes = list(t.notes) + [f"{c.key}: {c.note}" for c in t.cells if c.note]
    if notes:
        lines += ["", "Notes:", *(f"- {n}" for n in notes)]
    if t.references:
        lines += [
            "",
            "Other models, from the paper's table (not reproduced here):",
            "",
            "| dataset | model | NLL |",
            "| --- | --- | --- |",
        ]
        lines += [_md_row(ds, name, f"{v:.2f}") for ds, name, v in t.references]
    return "\n".join(lines) + "\n"


def write_markdown(rep: Reproduction, elapsed: float = 0.0) -> Path:
    """Write DIR/table<KEY>.md from whatever runs have finished; returns its path."""
    text = render_markdown(rep, collect(rep), elapsed)
    path = rep.markdown_path
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
