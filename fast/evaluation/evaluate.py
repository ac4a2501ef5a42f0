"""Evaluation of Appendix B.3: importance-weighted NLL (S = 1000), ELBO, recon, KL, active units.

Memory stays bounded whatever S and N: the data are processed `batch_size` rows at a time and
the samples `sample_chunk` at a time, the log-mean-exp being accumulated with a running max
and a float64 running sum (the flash-attention cross-entropy pattern). On CUDA (backend auto or
triton) each chunk goes through the fused kernel `kernels.iw_nll.iw_logsumexp_parts`: decoder
output layer + Bernoulli log-likelihood + log p(z) - log q(z|x) + streamed log-sum-exp over the
chunk's samples, so neither the logits nor the per-sample log weights are ever stored.

The noise is counter-based: eps[s, i, k] is a function of (seed, data row i, sample s, dim k)
only (splitmix64 hash + Box-Muller), so results do not depend on the chunk sizes or the
device, and a direct unchunked computation sees exactly the same ε.

A long evaluation reports on itself (`Progress`): a tqdm bar over the images with its ETA and,
once the first chunks have been timed, one line saying how long the whole pass will take and
how to shorten it (the full 10x-binarized MNIST test set at S = 1000 is 10^8 decoder rows).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from vaeprior.fast import backends
from vaeprior.fast.data import load_device_data, split_tensor
from vaeprior.fast.evaluation.posterior import PosteriorChunk, active_units, posterior_chunks
from vaeprior.fast.models.distributions import unit_gaussian_log_prob
from vaeprior.fast.runs import EVAL, atomic_write_json, load_run

SHORTEN_HINT = "use --limit N or --samples S to shorten"
ANNOUNCE_ABOVE_S = 10.0  # say how long a pass will take only when it is longer than this
CALIBRATE_S = 1.0  # time at least this much real work before extrapolating


def _stderr(line: str) -> None:
    tqdm.write(line, file=sys.stderr)  # above any live bar, never through it


def format_duration(seconds: float) -> str:
    """A duration as people say it: '40 s', '7 min', '1 h 55 min' (rounded to a unit)."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    h, m = divmod(minutes, 60)
    return f"{h} h {m} min" if m else f"{h} h"


@dataclass
class Progress:
    """How `evaluate` reports on a long pass over N rows x S samples.

    bar: a tqdm bar over the images (updated per batch of rows, with rate and ETA).
    Estimate: after `calibrate_s` seconds of real work (at least one chunk, timed with the
    device synchronised), the elapsed time is extrapolated by the share of the N x S decoder
    rows done; when the whole pass will take more than `announce_above_s`, one line goes to
    `write`: "evaluating 100,000 test rows x 1000 samples: about 1 h 55 min on cpu (hint)".
    The first chunks carry one-time costs (allocation, kernel compilation), so the estimate
    errs long. `clock` is injectable for tests.
    """

    bar: bool = True
    what: str = "rows"  # e.g. "test rows"
    hint: str = SHORTEN_HINT
    announce_above_s: float = ANNOUNCE_ABOVE_S
    calibrate_s: float = CALIBRATE_S
    clock: Callable[[], float] = time.perf_counter
    write: Callable[[str], None] = field(default=_stderr)

    def estimate_line(self, n: int, samples: int, seconds: float, device: str) -> str:
        """The announcement for a pass of n rows x `samples` expected to take `seconds`."""
        hint = f" ({self.hint})" if self.hint else ""
        return (
            f"evaluating {n:,} {self.what} x {samples} samples: "
            f"about {format_duration(seconds)} on {device}{hint}"
        )


class _Tracker:
    """A `Progress` applied to one pass: call `chunk(nb, ns, batch_done)` after each chunk."""

    def __init__(self, p: Progress, n: int, samples: int, device: torch.device) -> None:
        self.p, self.n, self.samples, self.device = p, n, samples, device
        self.total, self.done, self.announced = n * samples, 0, False
        desc = f"evaluate {n:,} {p.what} x {samples} samples"
        self.bar = tqdm(total=n, desc=desc, unit="img", disable=not p.bar, dynamic_ncols=True)
        self.t0 = p.clock()

    def chunk(self, nb: int, ns: int, batch_done: bool) -> None:
        self.done += nb * ns
        if batch_done:
            self.bar.update(nb)
        if self.announced:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # time the work, not its launch
        elapsed = self.p.clock() - self.t0
        if elapsed < self.p.calibrate_s and self.done < self.total:
            return
        self.announced = True
        expected = elapsed * self.total / self.done
        if expected > self.p.announce_above_s:
            self.p.write(self.p.estimate_line(self.n, self.samples, expected, self.device.type))

    def close(self) -> None:
        self.bar.close()


def _seed_from(generator: torch.Generator | None) -> int:
    if generator is None:
        return 0
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))


def _chunk_parts(
    vae: nn.Module, c: PosteriorChunk, backend: str, unit_prior: bool
) -> tuple[torch.Tensor, ...]:
    """One chunk's streaming parts of the IW bound, each (nb,) float64 (Appendix B.3):

    max_s log w_s, sum_s exp(log w_s - max), sum_s log p(x|z_s), sum_s [log q(z_s|x) - log p(z_s)]

    with log w = log p(x|z) + log p(z) - log q(z|x). With the Triton backend the decoder's last
    layer, the Bernoulli log-likelihood and the log-sum-exp over the chunk's samples run in one
    kernel (`kernels.iw_nll.iw_logsumexp_parts`): the (ns, nb, 784) logits and the (ns, nb) log
    weights never exist. With torch, the logits are built chunk by chunk.
    """
    log_pz = unit_gaussian_log_prob(c.z) if unit_prior else vae.prior_log_prob(c.z)  # (ns, nb)
    kl = (c.log_qz - log_pz).double().sum(0)
    if backends.resolve(backend, c.z, "iw_nll") == "triton":
        k, out = backends.kernels("iw_nll"), vae.decoder.out
        h = vae.decoder_hidden(c.z, c.x)  # (ns*nb, H) or (ns*nb, C, 28, 28), sample-major
        return (*k.iw_logsumexp_parts(h, out.weight, out.bias, c.x, log_pz, c.log_qz), kl)
    log_px = vae.log_px_z(c.z, c.x, backend="torch").double()  # (ns, nb)
    logw = log_px - (c.log_qz - log_pz).double()
    top = logw.amax(0)
    return top, torch.exp(logw - top).sum(0), log_px.sum(0), kl


@torch.no_grad()
def evaluate(
    vae: nn.Module,
    x: torch.Tensor,
    *,
    samples: int = 1000,
    batch_size: int = 128,
    sample_chunk: int | None = None,
    backend: str = "auto",
    generator: torch.Generator | None = None,
    unit_prior: bool = False,
    progress: Progress | bool = False,
) -> dict[str, float]:
    """Means over x (N, 784) of NLL (LogMeanExp over S, Appendix B.3), ELBO, recon, KL, klz|x.

    ELBO, recon (E log p(x|z)) and kl (E[log q - log p]) are S-sample averages; klzx is the
    ELBO gap -NLL - ELBO. `unit_prior` evaluates with p(z) = N(0, I) (standard stages).
    `progress`: True (a bar and the duration estimate) or a `Progress`; False reports nothing.
    """
    if samples < 1 or batch_size < 1:
        raise ValueError(f"samples and batch_size must be >= 1, got {samples}, {batch_size}")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"evaluate needs x of shape (N, 784) with N >= 1, got {tuple(x.shape)}")
    backends.resolve(backend, x, "iw_nll")  # validates the choice before any work
    seed, was_training = _seed_from(generator), vae.training
    n = x.shape[0]
    dev = next(vae.parameters()).device
    run_max = torch.full((n,), -math.inf, dtype=torch.float64, device=dev)  # per x, over s
    run_sum = torch.zeros(n, dtype=torch.float64, device=dev)  # sum_s exp(log w - run_max)
    recon, kl = torch.zeros_like(run_sum), torch.zeros_like(run_sum)
    if progress is True:
        progress = Progress()
    track = _Tracker(progress, n, samples, dev) if progress else None
    vae.eval()
    try:
        chunks = posterior_chunks(
            vae, x, samples, seed=seed, batch_size=batch_size, sample_chunk=sample_chunk
        )
        for c in chunks:
            m, e, log_px, log_ratio = _chunk_parts(vae, c, backend, unit_prior)  # (nb,) each
            top = torch.maximum(run_max[c.rows], m)
            run_sum[c.rows] = run_sum[c.rows] * torch.exp(run_max[c.rows] - top) + e * torch.exp(
                m - top
            )
            run_max[c.rows] = top
            recon[c.rows] += log_px
            kl[c.rows] += log_ratio
            if track is not None:
                nb, ns = c.rows.stop - c.rows.start, c.samples.stop - c.samples.start
                track.chunk(nb, ns, batch_done=c.samples.stop == samples)
    finally:
        vae.train(was_training)
        if track is not None:
            track.close()
    nll = -(torch.log(run_sum) + run_max - math.log(samples))  # (N,)
    totals = {"nll": float(nll.sum()), "recon": float(recon.sum()) / samples}
    totals["kl"] = float(kl.sum()) / samples
    n = x.shape[0]
    out = {k: v / n for k, v in totals.items()}
    out["elbo"] = out["recon"] - out["kl"]
    out["klzx"] = -out["nll"] - out["elbo"]
    return {**out, "n": n, "samples": samples}


def evaluate_run(
    run_dir: str | Path,
    *,
    samples: int = 1000,
    limit: int | None = None,
    split: str = "test",
    backend: str = "auto",
    device: str | None = None,
    progress: bool = False,
    announce: bool = True,
) -> dict:
    """Evaluate a trained run on `split` (`limit` rows spread over it) and write eval.json.

    `progress` shows a bar over the images; `announce` prints, before a pass longer than
    `Progress.announce_above_s`, how long it will take (see `Progress`).
    """

    if samples < 1:  # checked before the run and the data load
        raise ValueError(f"--samples must be >= 1, got {samples}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    vae, cfg = load_run(run_dir, device)
    dev = next(vae.parameters()).device
    data = load_device_data(cfg.dataset, cfg.data_dir, dev, validation=split == "validation")
    x = split_tensor(data, split, cfg.seed, limit)
    report: Progress | bool = False
    if progress or announce:
        above = ANNOUNCE_ABOVE_S if announce else math.inf
        report = Progress(
            bar=progress, what=f"{split} rows", announce_above_s=above, calibrate_s=CALIBRATE_S
        )
    result = evaluate(vae, x, samples=samples, backend=backend, progress=report)
    train_x = split_tensor(data, "train", cfg.seed, limit)
    au = active_units(vae, train_x, samples=samples, progress=progress)
    result["active_units"] = au["count"]
    result["split"] = split
    atomic_write_json(result, Path(run_dir) / EVAL)
    return result


def summary_line(result: dict) -> str:
    """One-line human summary of an evaluation."""
    au = f" AU {result['active_units']}" if "active_units" in result else ""
    return (
        f"NLL {result['nll']:.3f}  ELBO {result['elbo']:.3f}  recon {result['recon']:.3f}  "
        f"KL {result['kl']:.3f}  klz|x {result['klzx']:.3f}{au}  "
        f"(n={result['n']}, S={result['samples']})"
    )
