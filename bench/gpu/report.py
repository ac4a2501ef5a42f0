"""Print a measurement as JSON and, when asked, write it to a file (the GPU scripts' output)."""

from __future__ import annotations

import json


def emit(result: dict, out: str | None) -> None:
    """Print `result` as indented JSON; also write it to `out` when given."""
    text = json.dumps(result, indent=2)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
    print(text)
