"""`vaeprior reproduce TABLE`: regenerate one of the paper's tables beside the paper's numbers.

    vaeprior reproduce 1 --budget small --seeds 2 --device cpu --out runs/repro \\
        --cells 'MNIST/DenseVAE*'

runs every missing (run, seed) of the table (finished runs are skipped, interrupted ones
resumed), then writes DIR/table<KEY>.md. Registered by `vaeprior.fast.cli`.

    vaeprior reproduce 1 --budget small --seeds 3 --out /shared/table1 --executor ray \\
        --address auto

hands every run to Ray instead (one task per run; `--address` omitted: a Ray started on this
machine with its CPUs). Exit code 0: every run finished; 1: some runs failed on every try (the
table shows the others; the same command retries them); 2: bad input; 130: interrupted (Ctrl-C;
the runs in flight are cancelled and resume from their checkpoints next time).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vaeprior.fast.reproduce.budgets import BUDGETS, get_budget
from vaeprior.fast.reproduce.executors import EXECUTORS, make_executor
from vaeprior.fast.reproduce.runner import Reproduction, ReproductionError, plan, reproduce
from vaeprior.fast.reproduce.tables import TABLES, get_table

EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `vaeprior reproduce`."""
    parser.add_argument("table", help=f"paper table: {', '.join(TABLES)} (also 'table1', 'B3')")
    parser.add_argument(
        "--budget",
        default="small",
        choices=list(BUDGETS),
        help="paper: full schedule; small: 100 epochs (CPU); smoke: seconds (tests)",
    )
    parser.add_argument(
        "--seeds", type=int, default=1, help="runs per cell, seeds 0..N-1 (the paper used 3)"
    )
    parser.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda if present)"
    )
    parser.add_argument("--out", required=True, type=Path, help="reproduction folder DIR")
    parser.add_argument("--data-dir", default=None, help="dataset root (default: $VAEPRIOR_DATA)")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="evaluate on the first N test images (0 = all), overriding the budget",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="main schedule length overriding the budget's (every phase scales with it)",
    )
    parser.add_argument(
        "--cells",
        default=None,
        help="comma-separated globs on cell keys 'row/column/metric', "
        "e.g. 'MNIST/DenseVAE*' (default: every cell)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list the cells, their runs and their status; train nothing",
    )
    parser.add_argument(
        "--progress",
        action="store_true",
        help="show a bar over the runs (and, with --executor local, per-batch bars); the "
        "per-run lines with the ETA print either way",
    )
    parser.add_argument(
        "--executor",
        default="local",
        choices=EXECUTORS,
        help="local: this process, one run after another; ray: one Ray task per run "
        "(needs vaeprior[ray]; a CPU run reserves as many CPUs as its torch threads, "
        "OMP_NUM_THREADS, a CUDA run one GPU)",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="with --executor ray: a running Ray cluster, 'auto' (started here with "
        "`ray start --head`) or 'ray://HOST:10001' (default: start Ray on this machine)",
    )
    parser.add_argument(
        "--max-parallel",
        type=int,
        default=None,
        metavar="N",
        help="with --executor ray: at most N runs at once (default: as many as the cluster holds)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="tries again a run that raised or whose worker died, from its last checkpoint; "
        "after that the run is reported and the others go on",
    )


def build(args: argparse.Namespace) -> Reproduction:
    """The Reproduction described by parsed arguments (validated)."""
    cells = tuple(c for c in (args.cells or "").split(",") if c.strip())
    table = get_table(args.table).select(cells)
    return Reproduction(
        table=table,
        budget=get_budget(args.budget).with_limit(args.limit).with_epochs(args.epochs),
        seeds=args.seeds,
        out=args.out,
        device=args.device,
        data_dir=args.data_dir,
        progress=args.progress,
        cells=cells,
        limit=args.limit,
        epochs=args.epochs,
    )


def run(args: argparse.Namespace) -> int:
    """Run `vaeprior reproduce`; returns the exit code."""
    rep = build(args)
    if args.dry_run:
        print("\n".join(plan(rep)))
        return 0
    executor = make_executor(
        args.executor, address=args.address, max_parallel=args.max_parallel, device=args.device
    )
    try:
        path = reproduce(rep, executor=executor, retries=args.retries)
    except ReproductionError as e:
        print(f"vaeprior: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "vaeprior: interrupted: finished runs are kept and the others resume from their "
            "last checkpoint when the same command runs again",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(path.read_text())
    print(f"wrote {path}", file=sys.stderr)
    return 0
