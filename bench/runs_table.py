"""A markdown table of finished runs, grouped by label: mean ± sample std over each group's seeds.

For comparisons that are not one of the paper's registered tables (`vaeprior reproduce` writes
those), e.g. the three training strategies on a DenseVAE. Each run directory is one seed of its
group; the numbers are the runs' own `results.json` (written by `vaeprior train` / `evaluate`):

    python -m vaeprior.bench.runs_table "none=RUN0,RUN1" "joint=RUN2,RUN3" ... [--out table.md]

Rows keep the order given. Unfinished runs (no `results.json`) are an error naming the run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vaeprior.fast.reproduce.report import mean_std, plus_minus
from vaeprior.fast.runs import RESULTS, read_json, run_status

# (results.json key, column header)
COLUMNS = (
    ("nll", "test NLL"),
    ("elbo", "ELBO"),
    ("recon", "recons"),
    ("kl", "KL"),
    ("klzx", "klz\\|x"),
    ("active_units", "active units"),
)


def parse_group(spec: str) -> tuple[str, list[Path]]:
    """'label=DIR,DIR' -> (label, [DIR, DIR]); a one-line ValueError otherwise."""
    label, sep, dirs = spec.partition("=")
    paths = [Path(d) for d in dirs.split(",") if d]
    if not sep or not label or not paths:
        raise ValueError(f"group {spec!r}: write LABEL=RUN_DIR[,RUN_DIR...]")
    return label, paths


def summarize(groups: list[tuple[str, list[Path]]]) -> list[dict]:
    """Per group: label, seeds, and (mean, std or None) of every COLUMNS metric."""
    rows = []
    for label, runs in groups:
        results = []
        for run in runs:
            if run_status(run) != "finished":
                raise ValueError(f"{run}: no {RESULTS} (unfinished run?): finish or drop it")
            results.append(read_json(run / RESULTS))
        row = {"label": label, "seeds": len(results), "runs": [str(r) for r in runs]}
        for key, _ in COLUMNS:
            row[key] = mean_std([float(r[key]) for r in results])
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    head = ["group", "seeds", *(name for _, name in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        cells = [row["label"], str(row["seeds"]), *(plus_minus(*row[k]) for k, _ in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Runs:"] + [f"- {row['label']}: {', '.join(row['runs'])}" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("groups", nargs="+", metavar="LABEL=RUN[,RUN...]", help="one row each")
    p.add_argument("--out", default=None, help="also write the table to this file")
    args = p.parse_args(argv)
    try:
        table = markdown(summarize([parse_group(g) for g in args.groups]))
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(table, end="")
    if args.out:
        Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
