"""Fast reader for Larochelle's ``.amat`` text (statically binarized MNIST, Appendix B.1).

Format: one image per line, 784 whitespace-separated values, each ``0`` or ``1``.
``np.loadtxt`` needs ~20 s for the 78 MB train file; this reader works on the raw bytes
with vectorised NumPy (a few tenths of a second) and still validates every value and line.
"""

from __future__ import annotations

import numpy as np

from .errors import DatasetError

ZERO, ONE, NEWLINE = ord("0"), ord("1"), ord("\n")
ALLOWED = np.zeros(256, dtype=bool)
ALLOWED[[ZERO, ONE, NEWLINE, ord(" "), ord("\t"), ord("\r")]] = True


def parse_amat(raw: bytes, name: str = "<amat>", width: int = 784) -> np.ndarray:
    """Parse ``.amat`` bytes into ``(N, width)`` uint8 in {0, 1}; blank lines are ignored.

    Raises DatasetError naming the line for a value other than 0/1 (including ``1.0``,
    ``10``, ``-1``) or a line without exactly ``width`` values.
    """
    buf = np.frombuffer(raw, dtype=np.uint8)
    fast = parse_canonical(buf, width)
    if fast is not None:
        return fast
    check_characters(buf, name)
    digit = (buf == ZERO) | (buf == ONE)
    if np.any(digit[1:] & digit[:-1]):  # two adjacent digits: a multi-digit token like 10
        first = int(np.flatnonzero(digit[1:] & digit[:-1])[0])
        raise bad_value(buf, first, name)
    counts = values_per_line(buf, digit)
    bad = np.flatnonzero((counts != width) & (counts != 0))
    if bad.size:
        line = int(bad[0])
        raise DatasetError(
            f"{name}: line {line + 1} has {counts[line]} values, expected {width} "
            "(one image per line); the file is truncated or not a binarized-MNIST .amat"
        )
    return (buf[digit] - ZERO).reshape(-1, width)


def parse_canonical(buf: np.ndarray, width: int) -> np.ndarray | None:
    """Fast path for the published layout: ``"d d ... d\\n"`` (2 * width bytes per line).

    Returns None when the bytes do not follow it exactly; the general parser then either
    reads them or names the offending line.
    """
    line = 2 * width
    if buf.size == 0 or buf.size % line:
        return None
    rows = buf.reshape(-1, line)  # (N, 2 * width)
    digits = rows[:, 0::2]  # (N, width) view
    if not (
        np.all((digits | 1) == ONE)  # '0' = 0x30, '1' = 0x31
        and np.all(rows[:, 1:-1:2] == ord(" "))
        and np.all(rows[:, -1] == NEWLINE)
    ):
        return None
    return digits - ZERO


def check_characters(buf: np.ndarray, name: str) -> None:
    """Only '0', '1' and whitespace may occur; anything else is a non-binary value."""
    bad = ~ALLOWED[buf]
    if np.any(bad):
        raise bad_value(buf, int(np.argmax(bad)), name)


def values_per_line(buf: np.ndarray, digit: np.ndarray) -> np.ndarray:
    """Number of digits on each line (lines end at '\\n'; a last line without one counts)."""
    starts = np.concatenate(([0], np.flatnonzero(buf == NEWLINE) + 1))
    starts = starts[starts < len(buf)]
    if starts.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.add.reduceat(digit, starts, dtype=np.int64)


def bad_value(buf: np.ndarray, pos: int, name: str) -> DatasetError:
    """DatasetError quoting the offending token and its line number."""
    line = int(np.count_nonzero(buf[:pos] == NEWLINE))
    start = pos
    while start > 0 and not chr(buf[start - 1]).isspace():
        start -= 1
    end = pos
    while end < len(buf) and not chr(buf[end]).isspace():
        end += 1
    token = bytes(buf[start:end]).decode("latin-1")
    return DatasetError(
        f"{name}: line {line + 1} holds the value {token!r}; a binarized .amat may hold only "
        "0 and 1 (is this the binarized file?)"
    )
