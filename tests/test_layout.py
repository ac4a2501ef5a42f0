"""The package layout keeps its promises: the library never imports bench, modules stay small,
DESIGN.md lists every module of the tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARY = ("fast", "reference")


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


def test_no_library_source_names_bench():
    offenders = [
        str(p.relative_to(REPO))
        for folder in LIBRARY
        for p in _modules(folder)
        if "vaeprior.bench" in p.read_text()
    ]
    assert not offenders, f"library files naming vaeprior.bench: {offenders}"


def test_importing_every_library_module_leaves_bench_unloaded():
    names = []
    for folder in LIBRARY:
        for p in _modules(folder):
            rel = p.relative_to(REPO / folder).with_suffix("")
            parts = [part for part in rel.parts if part != "__init__"]
            if parts and parts[-1] == "__main__":
                continue
            names.append(".".join(["vaeprior", folder, *parts]))
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}:\n"
        "    importlib.import_module(n)\n"
        "bad = sorted(m for m in sys.modules if m.startswith('vaeprior.bench'))\n"
        "print(len(sys.modules)); assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_fast_modules_outside_kernels_stay_under_400_lines():
    long = {
        str(p.relative_to(REPO)): n
        for p in _modules("fast")
        if "kernels" not in p.parts and (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, f"modules over 400 lines: {long}"


def test_design_lists_every_module():
    design = (REPO / "DESIGN.md").read_text()
    missing = []
    for folder in (*LIBRARY, "bench"):
        for p in _modules(folder):
            if p.name in ("__init__.py", "__main__.py"):
                continue
            if p.parent.name == "networks" or (p.parent.name == "data" and folder == "reference"):
                if f"{folder}/{p.parent.relative_to(REPO / folder)}/" in design:
                    continue  # a folder listed as a whole
            if p.name not in design:
                missing.append(str(p.relative_to(REPO)))
    assert not missing, f"DESIGN.md does not mention: {missing}"
