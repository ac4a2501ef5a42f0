"""Where a reproduction's runs execute: in this process one after another, or as Ray tasks.

An executor runs calls `fn(*args)` handed to it by the driver (`runner.reproduce`), which
decides what to run and when (a post-hoc run only after its standard base run has finished),
tries a failed run again, rewrites the table and prints the progress. Two executors:

- `LocalExecutor` (`--executor local`, the default): each call in this process, one at a time.
- `RayExecutor` (`--executor ray`): each call is one Ray task on the cluster named by
  `--address` (`auto` for one started with `ray start --head`, `ray://host:10001` for a Ray
  client connection), or on a Ray started embedded on this machine with its CPUs. A CPU run
  reserves `num_cpus` = the torch threads it trains with (the driver's `torch.get_num_threads()`,
  i.e. `OMP_NUM_THREADS`); a CUDA run reserves `num_gpus=1` (Ray then shows it one GPU, `cuda`).
  `--max-parallel N` bounds the runs in flight.

Ray is optional (`pip install "vaeprior[ray]"`); it is imported only by `RayExecutor`.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

EXECUTORS = ("local", "ray")
RAY_MISSING = '--executor ray needs Ray: pip install "vaeprior[ray]"'
CANCEL_GRACE_S = 30.0  # how long to wait for cancelled Ray tasks to end


@dataclass(frozen=True)
class TaskError:
    """A call that raised (or whose worker or node died): one line naming the error."""

    message: str


def one_line(err: BaseException) -> str:
    """'TypeName: first line of the message' (Ray's wrapped tracebacks cut to their cause)."""
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def node_info(executor: str) -> dict:
    """Where the calling process runs: the executor, the hostname and, in a Ray worker, the
    Ray node id."""
    node_id = None
    if executor == "ray":
        import ray

        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
    return {"executor": executor, "hostname": socket.gethostname(), "ray_node_id": node_id}


class LocalExecutor:
    """Runs each submitted call in this process, one at a time, when the driver waits."""

    name = "local"
    remote = False  # calls see the driver's files, paths and objects as they are
    capacity: int | None = 1  # calls in flight at once
    slots = 1  # calls running at once (for the ETA)
    threads: int | None = None  # torch threads are left as the process has them
    device: str | None = None  # the runs' --device is used as given

    def __init__(self) -> None:
        self._queue: list[tuple[Any, Callable, tuple]] = []

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.clear()

    def describe(self) -> str:
        return "local (this process, one run at a time)"

    def submit(self, key: Any, fn: Callable, *args: Any) -> None:
        self._queue.append((key, fn, args))

    def wait(self) -> list[tuple[Any, Any]]:
        """Run the oldest submitted call; [(key, its value or a TaskError)]."""
        key, fn, args = self._queue.pop(0)
        try:
            return [(key, fn(*args))]
        except Exception as e:  # KeyboardInterrupt propagates: the driver stops
            return [(key, TaskError(one_line(e)))]


class RayExecutor:
    """Runs each submitted call as a Ray task (see the module docstring for the resources).

    Connects in `__enter__` (to `address`, or to an already initialised Ray, or by starting
    one embedded on this machine) and, in `__exit__`, cancels the calls still in flight (their
    workers are killed; their runs keep their last checkpoint) and waits until they have
    ended, then shuts down the Ray it started.
    """

    name = "ray"
    remote = True  # calls run in other processes, maybe on other machines

    def __init__(
        self,
        address: str | None = None,
        max_parallel: int | None = None,
        device: str | None = None,
        threads: int | None = None,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError(RAY_MISSING) from None
        if max_parallel is not None and max_parallel < 1:
            raise ValueError(f"--max-parallel must be >= 1, got {max_parallel}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads per run must be >= 1, got {threads}")
        self._ray = ray
        self.address = address
        self.max_parallel = max_parallel
        self.capacity: int | None = max_parallel
        self._want_device = device
        self._threads = threads
        self._owns_ray = False
        self._refs: dict[Any, Any] = {}  # ObjectRef -> key
        self._remote: dict[Callable, Any] = {}
        self.device: str | None = device
        self.threads: int | None = threads
        self.gpu = False
        self.slots = 1
        self.cluster = ""

    # ---- connection ------------------------------------------------------------------------

    def __enter__(self) -> RayExecutor:
        ray = self._ray
        if not ray.is_initialized():
            # "local": a new Ray on this machine even where `ray start` runs one (Ray's own
            # default would connect to that); --address auto connects to it
            kwargs: dict[str, Any] = {
                "address": self.address or "local",
                "include_dashboard": False,
                "logging_level": logging.WARNING,
            }
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = self.address or "an embedded Ray on this machine"
                hint = (
                    "check the address; a cluster with token authentication (on by default in "
                    "recent Ray) also needs RAY_AUTH_MODE=token and its token here "
                    "(`ray get-auth-token` on the head, as RAY_AUTH_TOKEN or ~/.ray/auth_token)"
                    if (self.address or "").startswith("ray://")
                    else "start a cluster with `ray start --head` and pass --address auto"
                )
                msg = f"cannot start or reach Ray at {where} ({one_line(e)}): {hint}"
                raise ValueError(msg) from None
            self._owns_ray = True
        try:
            self._plan_resources()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _plan_resources(self) -> None:
        """Choose CPU or GPU runs, check that one node can hold a run, count the slots."""
        nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        gpus = [int(r.get("GPU", 0)) for r in nodes]
        cpus = [int(r.get("CPU", 0)) for r in nodes]
        want = self._want_device
        self.gpu = want.startswith("cuda") if want else sum(gpus) > 0
        if self.gpu:
            if not any(gpus):
                raise ValueError(
                    f"--device {want}: no Ray node has a GPU: use --device cpu or add a GPU node"
                )
            self.device, self.threads = "cuda", 1  # Ray sets CUDA_VISIBLE_DEVICES to its GPU
            slots = sum(gpus)
        else:
            self.device = want or "cpu"
            self.threads = self._threads or torch.get_num_threads()
            if max(cpus, default=0) < self.threads:
                raise ValueError(
                    f"each run trains with {self.threads} torch threads (Ray num_cpus) but no Ray "
                    f"node has that many CPUs (largest: {max(cpus, default=0)}): lower "
                    "OMP_NUM_THREADS"
                )
            slots = sum(c // self.threads for c in cpus)
        self.slots = max(1, min(slots, self.max_parallel or slots))
        self.cluster = (
            f"{len(nodes)} node{'s' * (len(nodes) != 1)}, {sum(cpus)} CPUs, {sum(gpus)} GPUs"
        )

    def __exit__(self, *exc: object) -> None:
        ray = self._ray
        try:
            if self._refs and ray.is_initialized():
                # force: a polite cancel (KeyboardInterrupt) does not reach a running task in
                # Ray 2.60; killing its worker is safe, as every file of a run is written
                # atomically and the run resumes from its last checkpoint
                refs = list(self._refs)
                for ref in refs:
                    ray.cancel(ref, force=True)
                ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
        finally:
            self._refs.clear()
            if self._owns_ray:
                ray.shutdown()
                self._owns_ray = False

    def describe(self) -> str:
        what = "1 GPU" if self.gpu else f"{self.threads} CPU{'s' * (self.threads != 1)}"
        where = self.address or "embedded on this machine"
        return f"ray ({where}: {self.cluster}; {what} per run, {self.slots} at a time)"

    # ---- tasks -----------------------------------------------------------------------------

    def submit(self, key: Any, fn: Callable, *args: Any) -> None:
        if fn not in self._remote:
            self._remote[fn] = self._ray.remote(fn)
        resources = {"num_cpus": 1, "num_gpus": 1} if self.gpu else {"num_cpus": self.threads}
        name = "-".join(str(k) for k in key) if isinstance(key, tuple) else str(key)
        ref = (
            self._remote[fn]
            .options(name=name, max_retries=0, retry_exceptions=False, **resources)
            .remote(*args)
        )
        self._refs[ref] = key

    def wait(self) -> list[tuple[Any, Any]]:
        """Block until a task ends; [(key, its value or a TaskError)] for every ended task."""
        ray = self._ray
        refs = list(self._refs)
        ready, _ = ray.wait(refs, num_returns=1)
        more, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        out = []
        for ref in dict.fromkeys([*ready, *more]):
            key = self._refs.pop(ref)
            try:
                out.append((key, ray.get(ref)))
            except ray.exceptions.RayTaskError as e:  # the call raised: report its cause
                cause = getattr(e, "cause", None)
                out.append((key, TaskError(one_line(cause) if cause is not None else one_line(e))))
            except ray.exceptions.RayError as e:  # worker or node died, task cancelled, ...
                out.append((key, TaskError(one_line(e))))
        return out


def make_executor(
    name: str,
    *,
    address: str | None = None,
    max_parallel: int | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> LocalExecutor | RayExecutor:
    """The executor `--executor name` asks for (with a clear error for options it lacks)."""
    if name == "local":
        if address is not None or max_parallel is not None:
            raise ValueError("--address and --max-parallel need --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, max_parallel, device, threads)
    raise ValueError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")
