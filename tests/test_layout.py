"""The package layout keeps its promises: the library never imports bench, modules stay small,
DESIGN.md lists every module of the tree, no public name is defined twice."""

from __future__ import annotations

import ast
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


# Names every subcommand module defines by design (`vaeprior.fast.cli` looks them up), and the
# fused kernel that is a drop-in twin of the torch function of the same name and signature.
SHARED_BY_DESIGN = {"add_arguments", "run", "DESCRIPTION", "main", "realnvp_forward"}


def test_no_public_name_is_defined_in_two_library_modules():
    """One concept in one place: a public top-level name lives in one module of fast/ (the
    reference's twins of fast functions, e.g. `active_units`, are the paper-readable form)."""
    where: dict[str, list[str]] = {}
    for p in sorted((REPO / "fast").rglob("*.py")):
        for node in ast.parse(p.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            else:
                continue
            for name in names:
                if not name.startswith("_") and name not in SHARED_BY_DESIGN:
                    where.setdefault(name, []).append(str(p.relative_to(REPO)))
    twice = {name: files for name, files in where.items() if len(files) > 1}
    assert not twice, f"public names defined in more than one module: {twice}"
