"""The reproduction driver's executors (local, Ray), retries, interruption and progress lines.

Ray runs every call in worker processes, so nothing monkeypatched here reaches a Ray run:
the Ray tests train for real on MNIST at the smoke budget (deterministic per seed on CPU with
one torch thread) and compare with the local executor's numbers exactly. Injected train
functions that must run in a Ray worker (a failure, a dependency check) live in this module,
which the `ray_session` fixture registers to be pickled by value. Tests that need no Ray use
the local executor with a fake `train` and a fake clock, so every printed number is known.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from vaeprior.fast.reproduce import runner as rr
from vaeprior.fast.reproduce import tasks
from vaeprior.fast.reproduce.budgets import get_budget
from vaeprior.fast.reproduce.executors import RAY_MISSING, RayExecutor, make_executor
from vaeprior.fast.reproduce.progress import RunsProgress, duration
from vaeprior.fast.reproduce.report import RUN_META
from vaeprior.fast.reproduce.tables import TABLES

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAS_RAY, reason='Ray is not installed: pip install -e ".[ray]" (CI installs it)'
)
METRIC_KEYS = ("nll", "elbo", "recon", "kl", "klzx", "active_units")
DENSE = ("MNIST/DenseVAE*",)  # Table 1's three MNIST DenseVAE cells: 3 runs per seed
STANDARD = ("MNIST/DenseVAE standard*",)
LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+ seed\d+): (\w+) in (.+?) \((.+?)\)(?:; ETA (.+))?$")


def seconds(text: str) -> float:
    """Inverse of `progress.duration` ('4.2 s', '3 min 07 s', '2 h 05 min')."""
    m = re.fullmatch(r"(?:(\d+) h )?(?:(\d+) min)?(?: ?([\d.]+) s)?", text.strip())
    assert m and any(m.groups()), text
    h, mins, s = (float(g) if g else 0.0 for g in m.groups())
    return 3600 * h + 60 * mins + s


def rep_for(out: Path, cells=DENSE, seeds: int = 2, data_dir=None, train_fn=None, **kw):
    return rr.Reproduction(
        TABLES[kw.pop("table", "1")].select(list(cells)),
        get_budget("smoke"),
        seeds,
        out,
        device="cpu",
        data_dir=None if data_dir is None else str(data_dir),
        train_fn=train_fn,
        cells=tuple(cells),
        **kw,
    )


def metrics(out: Path) -> dict[tuple[str, str], dict]:
    """{(run id, seed folder): metrics} of every finished run under DIR/runs."""
    got = {}
    for f in sorted((out / "runs").glob("*/seed*/results.json")):
        res = json.loads(f.read_text())
        got[f.parts[-3], f.parts[-2]] = {k: res[k] for k in METRIC_KEYS}
    return got


def table_rows(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.startswith("| MNIST")]


def progress_lines(lines: list[str]) -> list[re.Match]:
    return [m for m in map(LINE.match, lines) if m]


# ---- fake train functions (also pickled by value into Ray workers) ----------------------------


class FakeTrain:
    """Writes a run directory like `train` (nll = 80 + 2 seed + 1 for an RNVP prior) and advances
    `clock` by `step` x (call number) seconds, so run k takes 10 k seconds of fake time."""

    def __init__(self, clock: list[float] | None = None, step: float = 10.0) -> None:
        self.clock, self.step, self.calls = clock, step, []

    def __call__(self, cfg, out, *, resume: bool = False, progress: bool = True) -> dict:
        out = Path(out)
        self.calls.append((out.parent.name, cfg.seed, resume))
        if self.clock is not None:
            self.clock[0] += self.step * len(self.calls)
        if cfg.base_run is not None and not (Path(cfg.base_run) / "results.json").exists():
            raise AssertionError(f"post-hoc run {out} started before its base run finished")
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict()))
        nll = 80.0 + 2 * cfg.seed + (cfg.model.prior == "rnvp")
        res = {"nll": nll, "elbo": -nll - 1, "recon": -50.0, "kl": 31 + nll, "klzx": 1.0}
        res["active_units"] = 7
        res["span"] = [time.time(), time.time()]  # wall-clock start and end (Ray test)
        (out / "results.json").write_text(json.dumps(res))
        return res


class FailingTrain:
    """Fails the runs named in `fail` (run id, seed): `times` tries each, counted in files under
    `marks` (Ray workers are other processes). With `real`, a failing try trains for real and
    raises after its first epoch's checkpoint, so the next try resumes it; else it raises first.
    Other runs (and later tries) use `vaeprior.fast.training.loop.train`, or FakeTrain."""

    def __init__(self, marks: Path, fail: set, times: int = 1, real: bool = True) -> None:
        self.marks, self.fail, self.times, self.real = Path(marks), fail, times, real

    def tries(self, out: Path) -> int:
        return len(list(self.marks.glob(f"{out.parent.name}-{out.name}-*")))

    def __call__(self, cfg, out, *, resume: bool = False, progress: bool = True) -> dict:
        from vaeprior.fast.training import loop

        out = Path(out)
        n = self.tries(out)
        self.marks.mkdir(parents=True, exist_ok=True)
        (self.marks / f"{out.parent.name}-{out.name}-{n}").write_text(str(resume))
        inner = loop.train if self.real else FakeTrain()
        if (out.parent.name, cfg.seed) not in self.fail or n >= self.times:
            return inner(cfg, out, resume=resume, progress=progress)
        if not self.real:
            raise RuntimeError(f"simulated crash of {out.parent.name}")

        def crash(epochs_done: int) -> None:
            raise RuntimeError(f"simulated crash after epoch {epochs_done}")

        hook = loop._epoch_hook
        loop._epoch_hook = crash
        try:
            return inner(cfg, out, resume=resume, progress=progress)
        finally:
            loop._epoch_hook = hook


# ---- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def one_thread():
    """Runs use one torch thread (Ray: num_cpus=1 per run, two at a time on 2 CPUs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, data_dir):
    """Table 1's MNIST DenseVAE cells, 2 seeds, smoke budget, trained by the local executor."""
    data = data_dir
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("local") / "repro"
        lines: list[str] = []
        path = rr.reproduce(rep_for(out, data_dir=data), log=lines.append)
    finally:
        torch.set_num_threads(before)
    return SimpleNamespace(out=out, data=data, path=path, lines=lines, metrics=metrics(out))


@pytest.fixture(scope="module")
def ray_session():
    """One 2-CPU Ray for the module's later tests (the executor reuses an initialised Ray)."""
    ray = pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[ray]"')
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()


# ---- Ray against the local executor on real data --------------------------------------------


@needs_ray
def test_ray_executor_reproduces_the_local_table_exactly(local_reference, one_thread, tmp_path):
    """Embedded Ray (this machine's 2 CPUs, 1 CPU per run): the same numbers as local."""
    ref = local_reference
    assert len(ref.metrics) == 6 and len(progress_lines(ref.lines)) == 6
    out = tmp_path / "repro"
    lines: list[str] = []
    ex = RayExecutor()
    path = rr.reproduce(rep_for(out, data_dir=ref.data), log=lines.append, executor=ex)
    assert metrics(out) == ref.metrics  # every metric of every run, exactly
    assert table_rows(path) == table_rows(ref.path) and len(table_rows(path)) == 3
    assert re.fullmatch(
        r"table 1: 6 runs, 0 finished already, 6 to run on ray \(embedded on this machine: "
        rf"1 node, \d+ CPUs, 0 GPUs; 1 CPU per run, {ex.slots} at a time\)",
        lines[0],
    )
    assert ex.threads == 1 and ex.slots >= 2  # this machine has 2 CPUs
    # progress: [k/6] in order, each ETA = mean printed wall x ceil(left / slots)
    found = progress_lines(lines)
    assert [int(m[1]) for m in found] == [1, 2, 3, 4, 5, 6]
    walls = []
    for m in found:
        assert m[4] == "trained" and m[6].startswith(f"ray on {socket.gethostname()}, node ")
        walls.append(seconds(m[5]))
        left = 6 - int(m[1])
        if left:
            want = sum(walls) / len(walls) * math.ceil(left / ex.slots)
            assert seconds(m[7]) == pytest.approx(want, abs=0.2 if want < 60 else 1.0), m[0]
        else:
            assert m[7] is None
    assert re.fullmatch(
        r"table 1: 6/6 runs finished \(6 trained, 0 resumed, 0 finished already, 0 analysed, "
        r"0 failed\) in .+ s; .+ s per trained run",
        lines[-1],
    )
    # each run's record names the executor and the node
    meta = json.loads((out / "runs/dense-mnist-p20/seed1" / RUN_META).read_text())
    assert meta["executor"] == "ray" and meta["node"]["hostname"] == socket.gethostname()
    assert re.fullmatch(r"[0-9a-f]{56}", meta["node"]["ray_node_id"])
    assert [h["what"] for h in meta["history"]] == ["trained"]
    assert meta["wall_s"] == meta["history"][0]["wall_s"] > 0
    ref_meta = json.loads((ref.out / "runs/dense-mnist-p20/seed1" / RUN_META).read_text())
    assert ref_meta["executor"] == "local" and ref_meta["node"]["ray_node_id"] is None


@needs_ray
def test_ray_retries_a_failed_run_which_resumes_its_checkpoint(
    local_reference, ray_session, one_thread, tmp_path
):
    out = tmp_path / "repro"
    flaky = FailingTrain(tmp_path / "marks", {("dense-mnist-standard", 0)})
    lines: list[str] = []
    rep = rep_for(out, STANDARD, data_dir=local_reference.data, train_fn=flaky)
    rr.reproduce(rep, log=lines.append, executor=RayExecutor(), retries=1)
    assert (
        "dense-mnist-standard seed0: try 1 of 2 failed (RuntimeError: simulated crash after "
        "epoch 1); trying again from its last checkpoint"
    ) in lines
    done = {m[3]: m[4] for m in progress_lines(lines)}
    assert done == {
        "dense-mnist-standard seed0": "resumed",
        "dense-mnist-standard seed1": "trained",
    }
    assert flaky.tries(out / "runs/dense-mnist-standard/seed0") == 2
    want = {k: v for k, v in local_reference.metrics.items() if k[0] == "dense-mnist-standard"}
    assert metrics(out) == want  # crashed, resumed: bit-identical to the uninterrupted run
    meta = json.loads((out / "runs/dense-mnist-standard/seed0" / RUN_META).read_text())
    assert [h["what"] for h in meta["history"]] == ["resumed"]


@needs_ray
def test_ray_reports_a_run_failing_every_try_and_a_rerun_resumes_it(
    local_reference, ray_session, one_thread, tmp_path
):
    out = tmp_path / "repro"
    broken = FailingTrain(tmp_path / "marks", {("dense-mnist-standard", 1)}, times=99)
    lines: list[str] = []
    rep = rep_for(out, STANDARD, data_dir=local_reference.data, train_fn=broken)
    with pytest.raises(rr.ReproductionError, match=r"1 of 2 runs failed \(first: dense-mnist-st"):
        rr.reproduce(rep, log=lines.append, executor=RayExecutor(), retries=0)
    failed = [ln for ln in lines if "FAILED" in ln]
    assert len(failed) == 1 and re.match(
        r"\[[01]/2\] dense-mnist-standard seed1: FAILED: RuntimeError: simulated crash after "
        r"epoch 1 \(after 1 try\)",
        failed[0],
    )
    assert lines[-1].startswith("table 1: 1/2 runs finished (1 trained, 0 resumed, 0 finished")
    assert "0 analysed, 1 failed)" in lines[-1]
    nll = local_reference.metrics["dense-mnist-standard", "seed0"]["nll"]
    assert [c.strip() for c in table_rows(out / "table1.md")[0].split("|")[4:6]] == [
        f"{nll:.2f}",
        "1",
    ]  # the table shows the finished seed
    # the rerun (real train) trains nothing finished and resumes the failed run's checkpoint
    lines.clear()
    rr.reproduce(replace(rep, train_fn=None), log=lines.append, executor=RayExecutor())
    assert lines[0].startswith("table 1: 2 runs, 1 finished already, 1 to run on ray")
    assert [(m[3], m[4]) for m in progress_lines(lines)] == [
        ("dense-mnist-standard seed1", "resumed")
    ]
    want = {k: v for k, v in local_reference.metrics.items() if k[0] == "dense-mnist-standard"}
    assert metrics(out) == want


@needs_ray
def test_interrupted_ray_driver_leaves_resumable_state(
    local_reference, ray_session, one_thread, tmp_path
):
    """Stop the driver when the first run finishes (the other runs in flight are cancelled);
    the second invocation trains only what had not finished."""
    out = tmp_path / "repro"
    cells = ("MNIST/DenseVAE standard*", "MNIST/DenseVAE RNVP p*")
    rep = rep_for(out, cells, data_dir=local_reference.data)

    def stop_after_first_run(msg: str) -> None:
        if LINE.match(msg):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rr.reproduce(rep, log=stop_after_first_run, executor=RayExecutor())
    finished = set(metrics(out))
    assert 1 <= len(finished) < 4
    kept = {k: (out / "runs" / k[0] / k[1] / "results.json").read_bytes() for k in finished}
    lines: list[str] = []
    rr.reproduce(rep, log=lines.append, executor=RayExecutor())
    assert lines[0].startswith(f"table 1: 4 runs, {len(finished)} finished already, ")
    rerun = {tuple(m[3].split(" ")) for m in progress_lines(lines)}
    assert rerun.isdisjoint(finished) and len(rerun) == 4 - len(finished)
    assert {m[4] for m in progress_lines(lines)} <= {"trained", "resumed"}
    for k, text in kept.items():  # finished runs were not touched
        assert (out / "runs" / k[0] / k[1] / "results.json").read_bytes() == text
    want = {k: v for k, v in local_reference.metrics.items() if k[0] != "dense-mnist-q20"}
    assert metrics(out) == want


@needs_ray
def test_ray_runs_post_hoc_only_after_its_base_run(ray_session, tmp_path):
    out = tmp_path / "repro"
    rep = rep_for(out, ("MNIST/*post-hoc*",), table="4", train_fn=FakeTrain())
    lines: list[str] = []
    rr.reproduce(rep, log=lines.append, executor=RayExecutor(max_parallel=2))
    assert len(progress_lines(lines)) == 4
    for seed in (0, 1):
        runs = out / "runs"
        base = json.loads((runs / f"resnet-mnist-standard/seed{seed}/results.json").read_text())
        post = json.loads((runs / f"resnet-mnist-p20-post-hoc/seed{seed}/results.json").read_text())
        assert post["span"][0] >= base["span"][1]  # started after its base had finished
        cfg = json.loads((runs / f"resnet-mnist-p20-post-hoc/seed{seed}/config.json").read_text())
        assert cfg["base_run"] == str((runs / f"resnet-mnist-standard/seed{seed}").resolve())


# ---- Ray's options without a cluster --------------------------------------------------------


@needs_ray
def test_ray_executor_connects_to_the_address_and_sizes_its_slots(monkeypatch):
    import ray

    calls = []
    nodes = [
        {"Alive": True, "Resources": {"CPU": 8.0}},
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 2.0}},
        {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
    ]
    state = {"up": False}
    monkeypatch.setattr(ray, "is_initialized", lambda: state["up"])
    monkeypatch.setattr(ray, "init", lambda **kw: (calls.append(kw), state.update(up=True)))
    monkeypatch.setattr(ray, "shutdown", lambda: state.update(up=False))
    monkeypatch.setattr(ray, "nodes", lambda: nodes)

    with RayExecutor("ray://head:10001", max_parallel=3, device="cpu", threads=2) as ex:
        assert calls[0]["address"] == "ray://head:10001"
        assert (ex.device, ex.threads, ex.gpu, ex.slots) == ("cpu", 2, False, 3)
    assert state["up"] is False  # the Ray it connected to is released
    with RayExecutor(device="cpu", threads=8) as ex:  # no address: a new Ray on this machine
        assert calls[-1]["address"] == "local" and ex.slots == 2
    with RayExecutor("auto", device="cpu", threads=3) as ex:
        assert ex.slots == 4  # 8 // 3 on each live node
        assert "2 nodes, 16 CPUs, 2 GPUs" in ex.describe()
    with RayExecutor("auto") as ex:  # no --device: the cluster has GPUs, so one GPU per run
        assert (ex.device, ex.threads, ex.gpu, ex.slots) == ("cuda", 1, True, 2)
    nodes[1]["Resources"].pop("GPU")
    with pytest.raises(ValueError, match="--device cuda: no Ray node has a GPU"):
        RayExecutor("auto", device="cuda").__enter__()
    with pytest.raises(
        ValueError, match=r"9 torch threads .*\(largest: 8\): lower OMP_NUM_THREADS"
    ):
        RayExecutor("auto", device="cpu", threads=9).__enter__()
    assert state["up"] is False
    with pytest.raises(ValueError, match="--max-parallel must be >= 1"):
        RayExecutor(max_parallel=0)


def test_executor_ray_without_ray_stops_with_one_line(monkeypatch, tmp_path, capsys):
    from vaeprior.fast import cli

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    out = tmp_path / "repro"
    argv = ["reproduce", "1", "--budget", "smoke", "--out", str(out), "--executor", "ray"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == 'vaeprior: error: --executor ray needs Ray: pip install "vaeprior[ray]"\n'
    assert err.strip() == f"vaeprior: error: {RAY_MISSING}"
    assert not out.exists()  # nothing written
    assert cli.main([*argv[:-2], "--address", "auto"]) == 2
    assert capsys.readouterr().err == (
        "vaeprior: error: --address and --max-parallel need --executor ray\n"
    )
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        make_executor("dask")


# ---- progress, ETA, retries with the local executor (fake train, fake clock) ----------------


def test_progress_eta_formula_and_durations() -> None:
    p = RunsProgress(total=7, done=2, slots=2)
    assert p.eta() is None and p.eta_text() == "ETA unknown until a run trains"
    p.finished("a seed0", "trained", 10.0, {"executor": "local", "hostname": "h"})
    p.finished("b seed0", "resumed", 20.0, {"executor": "local", "hostname": "h"})
    p.finished("c seed0", "analysed", 99.0, {"executor": "local", "hostname": "h"})  # not timed
    assert (p.done, p.left) == (5, 2)
    assert p.eta() == 15.0 * 1  # mean 15 s, 2 runs left over 2 slots: one wave
    p.slots = 1
    assert p.eta() == 30.0
    assert [duration(s) for s in (4.24, 59.96, 187.0, 3599.4, 7500.0)] == [
        "4.2 s",
        "1 min 00 s",
        "3 min 07 s",
        "59 min 59 s",
        "2 h 05 min",
    ]
    assert [seconds(duration(s)) for s in (4.2, 187.0, 7500.0)] == [4.2, 187.0, 7500.0]


def test_local_progress_lines_eta_summary_and_records(monkeypatch, tmp_path, capsys) -> None:
    clock = [1000.0]
    fake_time = SimpleNamespace(perf_counter=lambda: clock[0])
    monkeypatch.setattr(rr, "time", fake_time)
    monkeypatch.setattr(tasks, "time", fake_time)  # run_job times the runs
    out = tmp_path / "repro"
    rep = rep_for(out, train_fn=FakeTrain(clock))
    lines: list[str] = []
    rr.reproduce(rep, log=lines.append)
    host = socket.gethostname()
    assert lines[0] == (
        "table 1: 6 runs, 0 finished already, 6 to run on local (this process, one run at a time)"
    )
    # run k takes 10 k s; after k runs the mean is 5 (k + 1) s and 6 - k runs are left
    names = [f"dense-mnist-{r} seed{s}" for s in (0, 1) for r in ("standard", "q20", "p20")]
    want = []
    for k, name in enumerate(names, 1):
        line = f"[{k}/6] {name}: trained in {duration(10 * k)} (local on {host})"
        if k < 6:
            line += f"; ETA {duration(5 * (k + 1) * (6 - k))}"
        want.append(line)
    assert lines[1:7] == want
    assert lines[2].endswith("; ETA 1 min 00 s") and lines[1].endswith("; ETA 50.0 s")
    assert lines[7] == (
        "table 1: 6/6 runs finished (6 trained, 0 resumed, 0 finished already, 0 analysed, "
        "0 failed) in 3 min 30 s; 35.0 s per trained run"
    )
    for k, name in enumerate(names, 1):
        run_id, seed = name.split(" ")
        meta = json.loads((out / "runs" / run_id / seed / RUN_META).read_text())
        assert meta["wall_s"] == 10 * k and meta["executor"] == "local"
        assert meta["node"] == {"hostname": host, "ray_node_id": None}
    # a rerun with one run lost trains only that run; --progress adds a bar over the runs
    (out / "runs/dense-mnist-q20/seed1/results.json").unlink()
    capsys.readouterr()
    rr.reproduce(replace(rep, progress=True, train_fn=FakeTrain(clock)))
    err = capsys.readouterr().err
    assert "table 1: 6 runs, 5 finished already, 1 to run on local" in err
    assert f"[6/6] dense-mnist-q20 seed1: trained in 10.0 s (local on {host})\n" in err
    assert re.search(r"table 1: 5/6 runs \|", err) and re.search(r"table 1: 6/6 runs \|", err)
    assert "(1 trained, 0 resumed, 5 finished already, 0 analysed, 0 failed)" in err


def test_local_retry_and_report_skip_post_hoc_of_a_failed_base(tmp_path) -> None:
    out = tmp_path / "repro"
    flaky = FailingTrain(tmp_path / "marks", {("resnet-mnist-standard", 0)}, real=False)
    rep = rep_for(out, ("MNIST/*post-hoc*",), table="4", train_fn=flaky)
    lines: list[str] = []
    rr.reproduce(rep, log=lines.append, retries=1)
    assert lines[1] == (
        "resnet-mnist-standard seed0: try 1 of 2 failed (RuntimeError: simulated crash of "
        "resnet-mnist-standard); trying again from its last checkpoint"
    )
    assert [m[3] for m in progress_lines(lines)] == [
        "resnet-mnist-standard seed0",
        "resnet-mnist-p20-post-hoc seed0",
        "resnet-mnist-standard seed1",
        "resnet-mnist-p20-post-hoc seed1",
    ]
    # no retries: the base run is reported, its post-hoc run skipped, the other seed goes on
    out2 = tmp_path / "repro2"
    broken = FailingTrain(tmp_path / "marks2", {("resnet-mnist-standard", 0)}, 9, real=False)
    lines.clear()
    with pytest.raises(rr.ReproductionError, match=r"^2 of 4 runs failed \(first: resnet-mni"):
        rr.reproduce(replace(rep, out=out2, train_fn=broken), log=lines.append, retries=0)
    assert lines[1:3] == [
        "[0/4] resnet-mnist-standard seed0: FAILED: RuntimeError: simulated crash of "
        "resnet-mnist-standard (after 1 try); ETA unknown until a run trains",
        "[0/4] resnet-mnist-p20-post-hoc seed0: FAILED: its base run resnet-mnist-standard "
        "failed; ETA unknown until a run trains",
    ]
    assert set(metrics(out2)) == {
        ("resnet-mnist-standard", "seed1"),
        ("resnet-mnist-p20-post-hoc", "seed1"),
    }
    assert "(2 trained, 0 resumed, 0 finished already, 0 analysed, 2 failed)" in lines[-1]
    assert (out2 / "table4.md").exists()
    with pytest.raises(ValueError, match="--retries must be >= 0"):
        rr.reproduce(rep, retries=-1)


@pytest.mark.parametrize(
    ("raised", "code", "message"),
    [
        (
            rr.ReproductionError("1 of 6 runs failed (first: x seed0: RuntimeError: boom)"),
            1,
            "vaeprior: error: 1 of 6 runs failed (first: x seed0: RuntimeError: boom)\n",
        ),
        (
            KeyboardInterrupt(),
            130,
            "vaeprior: interrupted: finished runs are kept and the others resume from their "
            "last checkpoint when the same command runs again\n",
        ),
    ],
)
def test_cli_exit_codes_of_failed_and_interrupted_reproductions(
    monkeypatch, tmp_path, capsys, raised, code, message
) -> None:
    from vaeprior.fast import cli
    from vaeprior.fast.reproduce import cli as rcli

    def stop(*args, **kwargs):
        raise raised

    monkeypatch.setattr(rcli, "reproduce", stop)
    argv = ["reproduce", "1", "--budget", "smoke", "--out", str(tmp_path / "repro")]
    assert cli.main(argv) == code
    assert capsys.readouterr().err == message
