"""Everything a lent GPU should measure, in one call, each step's result saved as soon as it ends.

    bash bench/gpu/run_all.sh                                 # on the GPU machine: installs, runs
    python -m vaeprior.bench.gpu.run_all --out DIR --dry-run  # anywhere: CPU, tiny sizes

A lent device gives one session about 15 minutes in all and at most 10 per command, and brings
back at most 8 files. The steps below run one after another under one deadline (`--budget`,
540 s by default; `run_all.sh` installs the checkout first and passes what is left); each
step gets at most its own limit and never more than what is left after reserving the minimum
of the steps still to come, and each writes
`$OUT/<NN>-<step>.json` the moment it ends: its exit code, seconds, whether it timed out, its
own result (parsed JSON where the step makes one) and the tail of its log. A later time-out
therefore loses nothing already measured, and 7 steps make 7 files.

Steps: env (install, device, versions), ceilings (copy bandwidth, matmul rates), compile
(sm_90 resources of every kernel configuration with the machine's Triton), tests (the whole
suite, no stop at the first failure), bench (fused vs eager vs torch.compile), speed (seconds
per training epoch per flow backend), schedule (as much of the paper's 2400-epoch
FashionMNIST schedule as the time left allows).

`--dry-run` runs every step at tiny sizes on the CPU (the kernel tests use Triton's
interpreter there, the compile step the ahead-of-time compiler), so that CI exercises this
script and it cannot rot.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TAIL_CHARS = 4000  # of each step's log, kept in its JSON


@dataclass
class Step:
    """One command of the run; `result` names a JSON file the command writes (optional)."""

    name: str
    argv: list[str]
    limit: float  # seconds at most
    minimum: float  # seconds reserved for it while earlier steps run
    result: str | None = None
    env: dict[str, str] = field(default_factory=dict)


# name, command ({py}: this Python, {tmp}: the work folder), limit s, reserved s, result file
GPU_STEPS = [
    ("env", "{py} -m vaeprior.bench.gpu.run_all --env-only", 30, 5, None),
    ("ceilings", "{py} -m vaeprior.bench.gpu.ceilings --out {tmp}/ceilings.json", 60, 20,
     "ceilings.json"),
    ("compile", "{py} -m vaeprior.bench.gpu.compile_report --print", 90, 10, None),
    ("tests", "{py} -m pytest -q -p no:cacheprovider tests --timeout=120", 170, 40, None),
    ("bench", "{py} -m pytest -q -p no:cacheprovider bench --benchmark-enable "
     "--benchmark-json={tmp}/bench.json", 150, 40, "bench.json"),
    ("speed", "{py} -m vaeprior.bench.gpu.train_speed --out {tmp}/speed.json", 90, 30,
     "speed.json"),
    ("schedule", "{py} -m vaeprior.fast train --model dense --prior rnvp --flow-depth 20 "
     "--dataset fashion-mnist --strategy joint --checkpoint-every 50 --no-progress "
     "--out {tmp}/run", 600, 20, "run/metrics.jsonl"),
]  # fmt: skip
DRY_RUN_STEPS = [
    ("env", "{py} -m vaeprior.bench.gpu.run_all --env-only", 30, 5, None),
    ("ceilings", "{py} -m vaeprior.bench.gpu.ceilings --device cpu --tiny "
     "--out {tmp}/ceilings.json", 60, 5, "ceilings.json"),
    ("compile", "{py} -m vaeprior.bench.gpu.compile_report --print --workers 1 "
     "--match 'iw_nll eval dense-head (dense 500) S=1000 B=128 fp32'", 120, 5, None),
    ("tests", "{py} -m pytest -q -p no:cacheprovider tests/test_cost_model.py", 120, 5, None),
    ("bench", "{py} -m pytest -q -p no:cacheprovider bench/test_bench_iw_nll.py -k eager "
     "--benchmark-enable --benchmark-max-time=0.01 --benchmark-min-rounds=1 "
     "--benchmark-json={tmp}/bench.json", 120, 5, "bench.json"),
    ("speed", "{py} -m vaeprior.bench.gpu.train_speed --device cpu --rows 256 --epochs 1 "
     "--backends eager --flow-depth 2 --out {tmp}/speed.json", 120, 5, "speed.json"),
    ("schedule", "{py} -m vaeprior.fast train --model dense --prior rnvp --flow-depth 2 "
     "--dataset mnist --epochs 1 --train-limit 256 --eval-samples 2 --eval-limit 8 "
     "--device cpu --no-progress --out {tmp}/run", 120, 5, "run/results.json"),
]  # fmt: skip


def steps(tmp: Path, dry_run: bool) -> list[Step]:
    """The steps in order, for a GPU run or a CPU dry run; `tmp` holds logs and run folders."""
    import shlex

    out = []
    for name, cmd, limit, minimum, result in DRY_RUN_STEPS if dry_run else GPU_STEPS:
        argv = [a.format(py=sys.executable, tmp=tmp) for a in shlex.split(cmd)]
        res = str(tmp / result) if result else None
        out.append(Step(name, argv, limit, minimum, res))
    return out


def _read_result(path: str | None) -> object:
    if path is None or not Path(path).exists():
        return None
    text = Path(path).read_text()
    if path.endswith(".jsonl"):
        return [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text[-TAIL_CHARS:]


def run_step(step: Step, index: int, out: Path, tmp: Path, seconds: float) -> dict:
    """Run one step for at most `seconds`; write `out/<NN>-<name>.json` and return it."""
    log = tmp / f"{step.name}.log"
    t0 = time.monotonic()
    record = {"step": step.name, "argv": step.argv, "limit_s": round(seconds, 1)}
    if seconds < 1:
        record |= {"rc": None, "skipped": "no time left before the deadline"}
    else:
        with log.open("w") as f:
            try:
                proc = subprocess.run(
                    step.argv, stdout=f, stderr=subprocess.STDOUT, timeout=seconds,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", **step.env},
                )  # fmt: skip
                record |= {"rc": proc.returncode, "timed_out": False}
            except subprocess.TimeoutExpired:
                record |= {"rc": None, "timed_out": True}
        record["log_tail"] = log.read_text(errors="replace")[-TAIL_CHARS:]
    record["seconds"] = round(time.monotonic() - t0, 2)
    record["result"] = _read_result(step.result)
    path = out / f"{index:02d}-{step.name}.json"
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return record


def run_all(out: Path, budget: float, dry_run: bool, work: Path | None = None) -> list[dict]:
    """Every step under one deadline; returns their records (also written under `out`).

    Logs, intermediate files and the schedule's run folder (checkpoints) stay in `work`
    (a temporary folder by default): only the step records land in `out`.
    """
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="vaeprior-gpu-")) if work is None else work
    tmp.mkdir(parents=True, exist_ok=True)
    todo = steps(tmp, dry_run)
    deadline = time.monotonic() + budget
    records = []
    for i, step in enumerate(todo, 1):
        reserve = sum(s.minimum for s in todo[i:])
        seconds = min(step.limit, deadline - time.monotonic() - reserve)
        records.append(run_step(step, i, out, tmp, max(0.0, seconds)))
        print(f"{step.name}: rc={records[-1]['rc']} in {records[-1]['seconds']} s", flush=True)
    return records


def environment() -> dict:
    """Python, torch, Triton, the device and its driver."""
    import platform

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": p.name, "sms": p.multi_processor_count, "memory": p.total_memory}
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm",
                            "--format=csv"], capture_output=True, text=True)  # fmt: skip
        info["nvidia_smi"] = r.stdout
    else:
        info["gpu"] = None
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vaeprior.bench.gpu.run_all")
    p.add_argument("--out", default=os.environ.get("OUT", "bench/gpu-out"), help="result folder")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for everything")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, interpreter")
    p.add_argument("--env-only", action="store_true", help="print the environment as JSON")
    p.add_argument("--work", default=None, help="logs and run folders (default: a temp folder)")
    args = p.parse_args(argv)
    if args.env_only:
        print(json.dumps(environment(), indent=1))
        return 0
    work = Path(args.work) if args.work else None
    records = run_all(Path(args.out), args.budget, args.dry_run, work)
    return 0 if all(r.get("rc") == 0 for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
