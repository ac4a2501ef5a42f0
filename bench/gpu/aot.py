"""Ahead-of-time sm_90 compilation of every kernel launch the public functions make, on any machine.

No GPU is needed: the public kernel functions are called on `meta`-device tensors (nothing is
allocated or computed) while `JITFunction.run` is intercepted, so each launch is *captured*
with the exact arguments, constexprs and grid the launcher chose. Each captured launch is then
specialised with Triton's own binder (so pointer alignment and integer divisibility match what
the runtime would see) and compiled by `triton.compile` for an H100/H200 (`GPUTarget("cuda",
90, 32)`). Resources come from the compiled kernel: shared memory from its metadata, registers
and spills from `ptxas -v` on its PTX (Triton's bundled ptxas, same flags as Triton's own
build).

What is launched is never a hand-kept list: `SCENARIOS` names *calls of the public functions*
(shapes, dtypes, TF32 on/off, training or inference, deterministic algorithms on/off), and the
launches they make are whatever the launchers decide today. Persistent grids are sized for an
H100's 132 SMs.

Used by `tests/test_kernels_compile.py` (limits: shared memory <= 232,448 B, 0 bytes spilled),
`python -m vaeprior.bench.gpu.compile_report` (the table in bench/RESULTS.md) and
`python -m vaeprior.bench.gpu.cost_model` (the same launches, counted).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaeprior.fast.kernels.launch import FP_FUSION

# Hopper (sm_90) per-block limits: 227 KB of shared memory (232,448 B opt-in), 255 registers.
SHARED_LIMIT = 232_448
REG_LIMIT = 255
H100_SMS = 132  # persistent grids are sized for an H100 SXM

# --------------------------------------------------------------------------------------------
# scenarios: calls of the public kernel functions
# --------------------------------------------------------------------------------------------
DTYPES = {
    "fp32": (torch.float32, False),  # IEEE float32 dots (torch.backends.cuda.matmul.allow_tf32 off)
    "tf32": (torch.float32, True),  # float32 inputs, TF32 tensor-core dots (allow_tf32 on)
    "bf16": (torch.bfloat16, False),
    "fp64": (torch.float64, False),
}


@dataclass(frozen=True)
class Scenario:
    """One call of a public kernel function at production shapes (run on meta tensors)."""

    family: str  # "flow" | "iw_nll"
    name: str  # e.g. "realnvp_forward train D=40 K=20 N=128 tf32"
    dtype: str  # key of DTYPES
    call: Callable[[], None] = field(compare=False, repr=False)
    deterministic: bool = False  # under torch.use_deterministic_algorithms(True)


def _meta(*shape: int, dtype: torch.dtype, grad: bool = False) -> torch.Tensor:
    return torch.empty(shape, device="meta", dtype=dtype, requires_grad=grad)


def _flow_scenarios() -> Iterator[Scenario]:
    """realnvp_forward: inference (no grad) and training (forward + backward)."""
    from vaeprior.fast.kernels import flow as fk
    from vaeprior.fast.models.realnvp import param_shapes

    H = 256  # Dense[256] of the coupling layers (Appendix B.2)
    for D in (40, 64):  # latent sizes of the paper
        for K in (20, 50):  # flow depths of Tables 1-2
            for N in (128, 128_000):  # a training batch; the benchmark's rows
                for dt, (dtype, _) in DTYPES.items():
                    for mode in ("infer", "train"):

                        def call(D=D, K=K, N=N, dtype=dtype, train=mode == "train") -> None:
                            x = _meta(N, D, dtype=dtype, grad=train)
                            shapes = param_shapes(K, D, H).values()
                            ps = [_meta(*s, dtype=dtype, grad=train) for s in shapes]
                            with torch.set_grad_enabled(train):
                                y, ld = fk.realnvp_forward(x, *ps, slope=0.2, scale_shift=2.0)
                            if train:
                                (y.sum() + ld.sum()).backward()

                        name = f"realnvp_forward {mode} D={D} K={K} N={N} {dt}"
                        yield Scenario("flow", name, dt, call)
                        if mode == "train" and K == 20 and N == 128_000:  # other kernels
                            yield Scenario("flow", f"{name} deterministic", dt, call, True)


def _decoder_heads() -> dict[str, tuple[str, int]]:
    """Output heads of the four architectures: name -> (kind, hidden width or channels).

    Read off the models themselves (`build_vae`), so a change of architecture shows up here.
    """
    from torch import nn

    from vaeprior.fast.config import MODELS, ModelConfig
    from vaeprior.fast.models.vae import build_vae

    heads = {}
    for model in MODELS:
        out = build_vae(ModelConfig(model=model, flow_depth=0)).decoder.out
        kind = "dense" if isinstance(out, nn.Linear) else "conv"
        heads[model] = (kind, out.weight.shape[1])
    return heads


def _iw_scenarios() -> Iterator[Scenario]:
    """bernoulli_loglik[_conv1x1] (train: forward + backward) and iw_nll[_conv1x1] (S=1000)."""
    from vaeprior.fast.kernels import iw_nll as ik

    S, B = 1000, 128  # Appendix B.3: 1000-sample NLL; evaluation batch
    seen = set()
    for model, (kind, hid) in _decoder_heads().items():
        if (kind, hid) in seen:
            continue
        seen.add((kind, hid))
        conv = kind == "conv"
        loglik = ik.bernoulli_loglik_conv1x1 if conv else ik.bernoulli_loglik
        iw = ik.iw_nll_conv1x1 if conv else ik.iw_nll
        for dt, (dtype, _) in DTYPES.items():

            def h_w_b(M, grad, hid=hid, conv=conv, dtype=dtype):
                if conv:
                    h = _meta(M, hid, 28, 28, dtype=dtype, grad=grad)
                    return (
                        h,
                        _meta(1, hid, 1, 1, dtype=dtype, grad=grad),
                        _meta(1, dtype=dtype, grad=grad),
                    )
                h = _meta(M, hid, dtype=dtype, grad=grad)
                return (
                    h,
                    _meta(784, hid, dtype=dtype, grad=grad),
                    _meta(784, dtype=dtype, grad=grad),
                )

            for M in (B, S * B):  # a training batch (one z per x); S samples of a batch

                def train(M=M, h_w_b=h_w_b, loglik=loglik, dtype=dtype) -> None:
                    h, W, b = h_w_b(M, True)
                    x = _meta(B, 784, dtype=dtype)
                    loglik(h, W, b, x).sum().backward()

                name = f"bernoulli_loglik train {model}-head ({kind} {hid}) M={M} {dt}"
                yield Scenario("iw_nll", name, dt, train)
                if M == S * B and not conv:  # the dense head's dW reduction has two variants
                    yield Scenario("iw_nll", f"{name} deterministic", dt, train, True)

            def evaluate(h_w_b=h_w_b, iw=iw, dtype=dtype) -> None:
                h, W, b = h_w_b(S * B, False)
                x = _meta(B, 784, dtype=dtype)
                iw(h, W, b, x, _meta(S, B, dtype=dtype), _meta(S, B, dtype=dtype))

            name = f"iw_nll eval {model}-head ({kind} {hid}) S={S} B={B} {dt}"
            yield Scenario("iw_nll", name, dt, evaluate)


def scenarios(family: str | None = None) -> list[Scenario]:
    """Every scenario (or those of one family), in a fixed order."""
    out = [*_flow_scenarios(), *_iw_scenarios()]
    return [s for s in out if family is None or s.family == family]


# --------------------------------------------------------------------------------------------
# capture: run a scenario on meta tensors, record each launch
# --------------------------------------------------------------------------------------------
@dataclass
class Launch:
    """One captured kernel launch."""

    scenario: str
    kernel: str  # the @triton.jit function's name
    fn: Any = field(repr=False)  # the JITFunction
    args: tuple = field(repr=False)
    kwargs: dict = field(repr=False)
    grid: tuple[int, ...] = ()

    def constexprs(self) -> dict[str, Any]:
        """The launch's compile-time arguments (constexpr parameters and launch options)."""
        names = [p.name for p in self.fn.params]
        bound = dict(zip(names, self.args, strict=False)) | self.kwargs
        const = {p.name: bound.get(p.name) for p in self.fn.params if p.is_constexpr}
        opts = {k: v for k, v in self.kwargs.items() if k not in names}
        return const | opts

    def tensor_args(self) -> dict[str, torch.Tensor]:
        """Tensor arguments by parameter name (meta tensors: shapes and dtypes only)."""
        names = [p.name for p in self.fn.params]
        bound = dict(zip(names, self.args, strict=False)) | self.kwargs
        return {k: v for k, v in bound.items() if isinstance(v, torch.Tensor)}

    def scalar_args(self) -> dict[str, Any]:
        names = [p.name for p in self.fn.params]
        bound = dict(zip(names, self.args, strict=False)) | self.kwargs
        return {k: v for k, v in bound.items() if isinstance(v, (int, float)) and k in names}


def _compiled_kernel_modules() -> None:
    """Make sure the kernel modules hold compiled (not interpreted) kernels.

    Under TRITON_INTERPRET=1 Triton decorates kernels for its CPU interpreter, whose launches
    the capture cannot see; a module imported that way (the interpreter tests do) is imported
    again without the flag.
    """
    import importlib
    import sys

    from triton.runtime.interpreter import InterpretedFunction

    saved = os.environ.pop("TRITON_INTERPRET", None)
    try:
        for name in ("vaeprior.fast.kernels.flow", "vaeprior.fast.kernels.iw_nll"):
            mod = sys.modules.get(name) or importlib.import_module(name)
            if any(isinstance(v, InterpretedFunction) for v in vars(mod).values()):
                importlib.reload(mod)
    finally:
        if saved is not None:
            os.environ["TRITON_INTERPRET"] = saved


@contextlib.contextmanager
def _intercept(record: list, scenario: str) -> Iterator[None]:
    from triton.runtime.jit import JITFunction

    from vaeprior.fast.kernels import launch

    def fake_run(self, *args, grid, warmup, **kwargs):
        g = (
            grid(dict(zip([p.name for p in self.params], args, strict=False)))
            if callable(grid)
            else grid
        )
        record.append(
            Launch(scenario, self.fn.__name__, self, args, kwargs, tuple(int(v) for v in g))
        )

    saved_run, saved_mp = JITFunction.run, launch.max_programs
    JITFunction.run = fake_run
    launch.max_programs = lambda device: H100_SMS
    try:
        yield
    finally:
        JITFunction.run, launch.max_programs = saved_run, saved_mp


def capture(scenario: Scenario) -> list[Launch]:
    """The launches `scenario` makes, in order (nothing runs: tensors are on `meta`)."""
    tf32 = DTYPES[scenario.dtype][1]
    saved = torch.backends.cuda.matmul.allow_tf32
    saved_det = torch.are_deterministic_algorithms_enabled()
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.use_deterministic_algorithms(scenario.deterministic)
    record: list[Launch] = []
    _compiled_kernel_modules()
    try:
        with _intercept(record, scenario.name):
            scenario.call()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
        torch.use_deterministic_algorithms(saved_det)
    if not record:
        raise RuntimeError(f"{scenario.name}: no kernel was launched")
    return record


# --------------------------------------------------------------------------------------------
# compile for sm_90 and read the resources
# --------------------------------------------------------------------------------------------
@dataclass
class Resources:
    """What the sm_90 compile of one launch uses (per block / per thread)."""

    kernel: str
    config: str  # constexprs and launch options, compact
    registers: int  # per thread
    spill_stores: int  # bytes per thread
    spill_loads: int
    shared: int  # bytes per block (dynamic shared memory Triton requests)
    num_warps: int
    num_stages: int
    key: str = ""  # hash of the compiled kernel

    @property
    def spilled(self) -> int:
        return max(self.spill_stores, self.spill_loads)

    def ok(self) -> bool:
        return self.spilled == 0 and self.shared <= SHARED_LIMIT and self.registers <= REG_LIMIT


def _target():
    from triton.backends.compiler import GPUTarget

    return GPUTarget("cuda", 90, 32)


def _specialize(launch: Launch):
    """(ASTSource, options dict) as JITFunction.run would build them on an sm_90 device."""
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    backend = make_backend(_target())
    kwargs = dict(launch.kwargs)
    kwargs.setdefault("debug", False)
    from triton import knobs

    if hasattr(knobs.compilation, "instrumentation_mode"):
        kwargs.setdefault("instrumentation_mode", knobs.compilation.instrumentation_mode)
    if hasattr(knobs.compilation, "fpsan_homomorphic_casts"):
        kwargs.setdefault("fpsan_homomorphic_casts", knobs.compilation.fpsan_homomorphic_casts)
    binder = create_function_from_signature(launch.fn.signature, launch.fn.params, backend)
    bound, spec, opts = binder(*launch.args, **kwargs)
    options, signature, constexprs, attrs = launch.fn._pack_args(backend, kwargs, bound, spec, opts)
    return ASTSource(launch.fn, signature, constexprs, attrs), options.__dict__


def _ptxas() -> str:
    import triton

    base = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    for name in ("ptxas-blackwell", "ptxas"):  # Triton >= 3.7 uses ptxas-blackwell for sm >= 90
        if (base / name).is_file():
            return str(base / name)
    raise FileNotFoundError(f"no ptxas under {base}: Triton's NVIDIA backend is not installed")


_PTXAS_RE = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS_RE = re.compile(r"Used (\d+) registers")


def ptxas_usage(ptx: str) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) of a PTX module for sm_90a (ptxas -v)."""
    cache = Path(tempfile.gettempdir()) / "vaeprior-ptxas-cache"
    cache.mkdir(exist_ok=True)
    entry = cache / (hashlib.sha256(ptx.encode()).hexdigest() + ".json")
    if entry.is_file():
        return tuple(json.loads(entry.read_text()))
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "k.ptx"
        src.write_text(ptx)
        cmd = [
            _ptxas(),
            "-v",
            "--regAllocOptLevel=2",
            "--gpu-name=sm_90a",
            str(src),
            "-o",
            str(Path(d) / "k.o"),
        ]
        log = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    spills, regs = _PTXAS_RE.search(log), _REGS_RE.search(log)
    if spills is None or regs is None:
        raise RuntimeError(f"unexpected ptxas -v output:\n{log}")
    out = (int(regs.group(1)), int(spills.group(1)), int(spills.group(2)))
    entry.write_text(json.dumps(out))
    return out


def compile_key(launch: Launch) -> str:
    """Launches with equal keys compile to the same binary (compile each key once)."""
    src, options = _specialize(launch)
    return hashlib.sha256(
        repr(
            (
                launch.kernel,
                src.signature,
                sorted(src.constants.items()),
                sorted(src.attrs.items()),
                sorted(options.items()),
            )
        ).encode()
    ).hexdigest()[:16]


def _config_str(launch: Launch) -> str:
    c = launch.constexprs()
    # FP_FUSION: every launch passes it, so it is not a column of the table
    parts = [f"{k}={v}" for k, v in c.items() if v is not None and k not in FP_FUSION]
    dts = sorted({str(t.dtype).replace("torch.", "") for t in launch.tensor_args().values()})
    return " ".join([*parts, "dtypes=" + "/".join(dts)])


def compile_launch(launch: Launch) -> Resources:
    """Compile one captured launch for sm_90 and read its resources (raises if it fails)."""
    import triton

    src, options = _specialize(launch)
    kernel = triton.compile(src, target=_target(), options=options)
    regs, st, ld = ptxas_usage(kernel.asm["ptx"])
    md = kernel.metadata
    return Resources(
        launch.kernel, _config_str(launch), regs, st, ld, int(md.shared), int(md.num_warps),
        int(md.num_stages), md.hash[:16],
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# all at once (a process pool: compiling is single-threaded and CPU-bound)
# --------------------------------------------------------------------------------------------
def _compile_job(job: tuple[str, int]) -> dict:
    """Worker: re-capture scenario `name` (cheap, deterministic) and compile its launch `i`."""
    name, i = job
    sc = next(s for s in scenarios() if s.name == name)
    launch = capture(sc)[i]
    try:
        return asdict(compile_launch(launch))
    except Exception as e:  # reported per configuration by the caller
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        first = lines[-1] if lines else type(e).__name__  # compiler errors end with the cause
        return {
            "kernel": launch.kernel,
            "config": _config_str(launch),
            "error": f"{type(e).__name__}: {first}",
        }


def compile_all(
    family: str | None = None, workers: int | None = None, match: str | None = None
) -> list[dict]:
    """One row per (scenario, launch): scenario, launch index, grid and Resources (or error).

    `match` keeps only the scenarios whose name contains it.
    """
    from concurrent.futures import ProcessPoolExecutor

    rows, jobs, seen = [], {}, {}
    for sc in scenarios(family):
        if match is not None and match not in sc.name:
            continue
        for i, launch in enumerate(capture(sc)):
            key = compile_key(launch)
            row = {
                "scenario": sc.name,
                "family": sc.family,
                "index": i,
                "grid": launch.grid,
                "key": key,
            }
            rows.append(row)
            if key not in seen:
                seen[key] = (sc.name, i)
    workers = workers or min(len(seen), os.cpu_count() or 1)
    keys = list(seen)
    if workers > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(_compile_job, [seen[k] for k in keys]))
    else:
        results = [_compile_job(seen[k]) for k in keys]
    jobs = dict(zip(keys, results, strict=True))
    return [row | jobs[row["key"]] for row in rows]
