"""Write the sm_90 resource table of every kernel configuration into bench/RESULTS.md.

    python -m vaeprior.bench.gpu.compile_report [--results bench/RESULTS.md] [--print]

Compiles every launch the public kernel functions make (`vaeprior.bench.gpu.aot`), ahead of
time for sm_90, and writes one row per distinct compiled kernel: registers per thread, spill
bytes, shared memory per block, warps and stages, and the scenarios that launch it. The table
replaces the section "## Hopper resources (ahead-of-time sm_90 compile)" of the results file
(appended when absent); nothing else in the file changes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from vaeprior.bench.gpu import aot

HEADING = "## Hopper resources (ahead-of-time sm_90 compile)"


def table(rows: list[dict]) -> str:
    """Markdown: one line per distinct compiled kernel, with the scenarios that launch it."""
    import platform

    import torch
    import triton

    by_key: dict[str, dict] = {}
    for r in rows:
        entry = by_key.setdefault(r["key"], {**r, "uses": []})
        entry["uses"].append(r["scenario"])
    lines = [
        HEADING,
        "",
        f"Command: `python -m vaeprior.bench.gpu.compile_report`. Triton {triton.__version__}, "
        f"torch {torch.__version__}, Python {platform.python_version()}; target "
        f'`GPUTarget("cuda", 90, 32)`, grids sized for {aot.H100_SMS} SMs. Limits per block: '
        f"{aot.SHARED_LIMIT:,} B shared memory, {aot.REG_LIMIT} registers per thread; spills "
        "are bytes per thread (ptxas -v). Distinct compiled kernels: "
        f"{len(by_key)}, from {len(rows)} captured launches of "
        f"{len({r['scenario'] for r in rows})} scenarios.",
        "",
        "| kernel | configuration | regs | spill st/ld B | shared B | warps | stages "
        "| launched by |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in sorted(by_key.values(), key=lambda e: (e["kernel"], e["config"])):
        uses = _summarise(e["uses"])
        if "error" in e:
            lines.append(
                f"| {e['kernel']} | {e['config']} | compile error: {e['error']} | | | | | {uses} |"
            )
            continue
        lines.append(
            f"| {e['kernel']} | {e['config']} | {e['registers']} "
            f"| {e['spill_stores']}/{e['spill_loads']} | {e['shared']:,} | {e['num_warps']} "
            f"| {e['num_stages']} | {uses} |"
        )
    return "\n".join(lines) + "\n"


def _summarise(names: list[str]) -> str:
    return f"{names[0]}" + (f" (+{len(names) - 1} more)" if len(names) > 1 else "")


def write_section(path: Path, section: str, heading: str = HEADING) -> None:
    """Replace (or append) the `heading` section of `path` with `section` (which starts with it)."""
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(heading) + r".*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vaeprior.bench.gpu.compile_report")
    p.add_argument(
        "--results", default="bench/RESULTS.md", help="file to update (default %(default)s)"
    )
    p.add_argument("--print", action="store_true", help="print the table instead of writing it")
    p.add_argument("--workers", type=int, default=None, help="compile processes (default: CPUs)")
    p.add_argument("--match", default=None, help="only scenarios whose name contains this text")
    args = p.parse_args(argv)
    section = table(aot.compile_all(workers=args.workers, match=args.match))
    if args.print:
        print(section)
    else:
        write_section(Path(args.results), section)
        print(f"wrote {HEADING!r} into {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
