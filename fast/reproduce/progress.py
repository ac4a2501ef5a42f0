"""Progress of a reproduction: runs done / total, an ETA from the finished runs' wall times.

The ETA assumes every run still to do takes the mean wall time of the runs trained (or
resumed) so far in this invocation, `slots` of them at a time:

    ETA = mean(wall) x ceil(left / slots)

so it is an estimate that sharpens as runs finish (runs of one table differ in cost: a K = 20
flow trains slower than a standard VAE).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field

TRAINING_ACTIONS = ("trained", "resumed")  # actions whose wall time predicts the next runs'


def duration(seconds: float) -> str:
    """'4.2 s', '3 min 07 s', '2 h 05 min'."""
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    m = round(seconds / 60)
    return f"{m // 60} h {m % 60:02d} min"


def where_text(where: dict) -> str:
    """'local on host' / 'ray on host, node 1a2b3c4d'."""
    text = f"{where.get('executor', '?')} on {where.get('hostname', '?')}"
    node = where.get("ray_node_id")
    return f"{text}, node {node[:8]}" if node else text


@dataclass
class RunsProgress:
    """Counts of a reproduction's runs and the wall times that drive its ETA."""

    total: int  # runs (configuration x seed) of the table
    done: int = 0  # finished, before or during this invocation
    failed: int = 0  # given up on in this invocation
    slots: int = 1  # runs at a time
    walls: list[float] = field(default_factory=list)  # wall seconds of runs trained here
    actions: Counter = field(default_factory=Counter)

    @property
    def left(self) -> int:
        return self.total - self.done - self.failed

    def eta(self) -> float | None:
        """Seconds until every run is done; None before the first run trained here."""
        if self.left == 0:
            return 0.0
        if not self.walls:
            return None
        return statistics.fmean(self.walls) * math.ceil(self.left / max(1, self.slots))

    def eta_text(self) -> str:
        eta = self.eta()
        return "ETA unknown until a run trains" if eta is None else f"ETA {duration(eta)}"

    def finished(self, name: str, action: str, wall_s: float, where: dict) -> str:
        """Count a finished run; its progress line."""
        self.done += 1
        self.actions[action] += 1
        if action in TRAINING_ACTIONS:
            self.walls.append(wall_s)
        line = f"[{self.done}/{self.total}] {name}: {action} in {duration(wall_s)}"
        line += f" ({where_text(where)})"
        return line + (f"; {self.eta_text()}" if self.left else "")

    def gave_up(self, name: str, reason: str) -> str:
        """Count a run given up on; its progress line."""
        self.failed += 1
        self.actions["failed"] += 1
        line = f"[{self.done}/{self.total}] {name}: FAILED: {reason}"
        return line + (f"; {self.eta_text()}" if self.left else "")

    def start(self, key: str, executor: str) -> str:
        """The line printed before the first run starts."""
        return (
            f"table {key}: {self.total} runs, {self.done} finished already, "
            f"{self.left} to run on {executor}"
        )

    def summary(self, key: str, elapsed: float) -> str:
        """The final line: what happened to every run, and the time it took."""
        trained = self.actions["trained"] + self.actions["resumed"]
        line = (
            f"table {key}: {self.done}/{self.total} runs finished "
            f"({self.actions['trained']} trained, {self.actions['resumed']} resumed, "
            f"{self.done - trained - self.actions['analysed']} finished already, "
            f"{self.actions['analysed']} analysed, {self.failed} failed) in {duration(elapsed)}"
        )
        if self.walls:
            line += f"; {duration(statistics.fmean(self.walls))} per trained run"
        return line
