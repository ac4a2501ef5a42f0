"""How many CPU threads torch uses for training and evaluation (called by the CLI).

torch's default is every CPU, which is right on an idle machine: on 2 CPUs a DenseVAE step
runs 1.51x (Gaussian prior) and 1.34x (RNVP prior, K = 20) faster on 2 threads than on 1, the
1000-sample evaluation 1.5-1.8x (bench/RESULTS.md, "CPU training speed"). It is badly wrong on
a busy machine: OpenMP threads wait for each other at every parallel op, and with the CPUs
taken by other processes (1-minute load average 4-5 on 2 CPUs) one Gaussian step took 305 ms
on 2 threads against 37 ms on 1. Even one other busy process costs the 2-thread step more than
it gains. So the choice is: the CPUs this process may run on, minus the load that other
processes put on them (rounded), at least 1.

An explicit choice always wins: `threads` (the CLI's --threads), else OMP_NUM_THREADS (which
torch already applied at start-up, so the count is left as it is).
"""

from __future__ import annotations

import math
import os

import torch

THREADS_HELP = (
    "CPU threads for torch (default: $OMP_NUM_THREADS if set, else the CPUs minus the 1-minute "
    "load average of other processes, at least 1; see vaeprior.fast.threads)"
)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def auto_threads(cpus: int | None = None, load: float | None = None) -> int:
    """round(cpus - load) clipped to [1, cpus]; load = 1-minute load average of the machine.

    Called before this process starts computing, the load average counts other processes.
    """
    cpus = available_cpus() if cpus is None else cpus
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform
            load = 0.0
    return int(min(cpus, max(1, math.floor(cpus - load + 0.5))))


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count for this process and return it.

    threads: an explicit count (>= 1) wins; None leaves OMP_NUM_THREADS's choice if that is
    set, else uses `auto_threads()`.
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}: use 1 or more")
        n = threads
    elif os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    else:
        n = auto_threads()
    torch.set_num_threads(n)
    return n


__all__ = ["auto_threads", "available_cpus", "set_threads"]
