"""`vaeprior analyze`: the paper's analyses of a trained run (Sections 5.3-5.5, App. B.3-B.5, B.9).

One function per analysis, usable from Python on a `VAE` and data arrays; each returns a dict of
numbers (NumPy arrays where large). `run(args)` loads a run, calls the requested analyses and
writes DIR/<name>.json (+ DIR/<name>.png where the paper shows a picture, + DIR/<name>.npz for
per-point arrays too large for JSON). The heavy sampling happens here in torch, in chunks of a
bounded number of rows; the estimator math is `vaeprior.reference.analysis` (NumPy).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vaeprior.reference import analysis as ref

ANALYSES = (
    "active-units",
    "posterior-stats",
    "closest-pairs",
    "samples",
    "interpolation",
    "low-posterior",
    "aggregate-kl",
    "metrics",
)
ROW_BUDGET = 2**18  # z rows (samples x data points) held at once while sampling q(z|x)
AGGREGATE_KL_NOTE = (
    "Monte Carlo estimate of Algorithm B.2 / Eq. B.4. q(z) is the empirical mixture over the "
    "n_x binarizations of each training image, so the value falls as n_x grows (Table B.2 of "
    "the paper: 15.28 at n_x=1 down to 13.39 at n_x=8); with barely overlapping posteriors it "
    "is about E_x KL[q(z|x)||p(z)] - log(N n_x). Compare values only at equal N and n_x."
)

Array = np.ndarray


# ---- small helpers --------------------------------------------------------------------------
def _spans(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, max(1, size)):
        yield start, min(n, start + max(1, size))


def _bar(it: Any, total: int, desc: str, progress: bool) -> Any:
    return tqdm(it, total=total, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)


def _param(vae: torch.nn.Module) -> torch.Tensor:
    return next(vae.parameters())


def _tensor(x: Array | torch.Tensor, vae: torch.nn.Module) -> torch.Tensor:
    p = _param(vae)
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).to(p.device, p.dtype)


def _generator(vae: torch.nn.Module, seed: int) -> torch.Generator:
    g = torch.Generator(device=_param(vae).device)
    g.manual_seed(seed)
    return g


def _randn(vae: torch.nn.Module, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    p = _param(vae)
    return torch.randn(shape, generator=g, device=p.device, dtype=p.dtype)


def _np(t: torch.Tensor) -> Array:
    return t.detach().to("cpu", torch.float64).numpy()


def _check_samples(samples: int, minimum: int = 1) -> None:
    if samples < minimum:
        raise ValueError(f"--samples must be >= {minimum}, got {samples}")


# ---- q(z|x), p(z), p(x|z) building blocks ---------------------------------------------------
@torch.no_grad()
def encode_all(vae: torch.nn.Module, x: Array, batch: int = 1024) -> tuple[Array, Array]:
    """Parameters of q(w|x) for all rows: x (N, 784) -> mean, log_std (N, Z) float64."""
    means, log_stds = [], []
    for a, b in _spans(len(x), batch):
        m, s = vae.encode(_tensor(x[a:b], vae))
        means.append(_np(m))
        log_stds.append(_np(s))
    return np.concatenate(means), np.concatenate(log_stds)


@torch.no_grad()
def posterior_log_prob_matrix(
    vae: torch.nn.Module, z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """log q(z_m | x'_n) for every pair (Eq. B.1): z (M, Z), mean/log_std (N, Z) -> (M, N) float64.

    With an RNVP posterior, w = f_eta^{-1}(z) and log q(z|x') = log q(w|x') + log|det f^{-1}|;
    the flow does not depend on x', so it runs once per z.
    """
    w, ld = _posterior_inverse(vae, z)
    return _gaussian_matrix(w, mean, log_std) + ld[:, None]


def _gaussian_matrix(w: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(w_m; mean_n, sigma_n^2): (M, N) float64, as `ref.gaussian_log_prob_matrix`."""
    w, mean, log_std = w.double(), mean.double(), log_std.double()
    prec = torch.exp(-2.0 * log_std)  # (N, Z)
    quad = (w * w) @ prec.T - 2.0 * w @ (mean * prec).T + (mean * mean * prec).sum(1)
    const = log_std.sum(1) + 0.5 * w.shape[1] * math.log(2.0 * math.pi)  # (N,)
    return -0.5 * quad - const[None, :]


def _posterior_inverse(vae: torch.nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w = f_eta^{-1}(z) and log|det df_eta^{-1}/dz| (M,) float64; identity for a Gaussian q."""
    if vae.posterior_flow is None:
        return z, z.new_zeros(z.shape[0], dtype=torch.float64)
    w, ld = vae.posterior_flow.inverse(z)
    return w, ld.double()


@torch.no_grad()
def log_aggregate_posterior(
    vae: torch.nn.Module,
    z: torch.Tensor,
    mean: Array | torch.Tensor,
    log_std: Array | torch.Tensor,
    *,
    chunk_elems: int = ref.DEFAULT_CHUNK_ELEMS,
    progress: bool = False,
) -> Array:
    """log q(z) = LogMeanExp_n log q(z|x'_n) over all N parameter rows (Eq. B.4): z (M, Z) -> (M,).

    Streams blocks of at most `chunk_elems` pairs; the running log-sum-exp is the reference's
    `RunningLogMeanExp`. The posterior flow's log-det does not depend on x', so it is added
    once per z after the reduction.
    """
    n = len(mean)
    mean_t, log_std_t = _tensor(mean, vae), _tensor(log_std, vae)
    m_rows = max(1, min(len(z), int(math.sqrt(chunk_elems))))
    n_rows = max(1, chunk_elems // m_rows)
    out = []
    spans = list(_spans(len(z), m_rows))
    for a, b in _bar(spans, len(spans), "log q(z)", progress):
        w, ld = _posterior_inverse(vae, z[a:b])
        acc = ref.RunningLogMeanExp(b - a)
        for c, d in _spans(n, n_rows):
            block = _gaussian_matrix(w, mean_t[c:d], log_std_t[c:d])  # (Mc, Nc)
            acc.update_logsumexp(_np(torch.logsumexp(block, dim=1)), d - c)
        out.append(acc.value() + _np(ld))
    return np.concatenate(out)


@torch.no_grad()
def decode_means(
    vae: torch.nn.Module,
    z: torch.Tensor,
    generator: torch.Generator | None = None,
    x: torch.Tensor | None = None,
) -> Array:
    """Bernoulli means of p(x|z): z (N, Z) -> (N, 784) in [0, 1].

    For PixelVAE the decoder is autoregressive: x (given, or sampled pixel by pixel with
    `vae.sample_x`) fixes the context, and the returned means are each pixel's conditional
    probability given the pixels before it. Other decoders ignore x.
    """
    if vae.decoder.pixel is None:
        x = None
    elif x is None:
        x = vae.sample_x(z, generator)
    return _np(torch.sigmoid(vae.decoder_logits(z, x)))


# ---- Table 8: active units ------------------------------------------------------------------
@torch.no_grad()
def active_units(
    vae: torch.nn.Module,
    x: Array,
    *,
    samples: int = 1000,
    threshold: float = 0.01,
    seed: int = 0,
) -> dict[str, Any]:
    """A_k = Var_x E_q(z|x)[z_k] over training x (Table 8, App. B.3, Burda et al.).

    E_q[z|x] is `vaeprior.fast.evaluation.evaluate.posterior_means` (the exact mean of a Gaussian
    posterior; the mean of `samples` draws after an RNVP posterior); the count of A_k >
    `threshold` is `vaeprior.reference.metrics.active_units`. Returns count and variances (Z,).
    """
    from vaeprior.fast.evaluation.evaluate import posterior_means
    from vaeprior.reference.metrics import active_units as count_active

    _check_samples(samples)
    means = posterior_means(vae, _tensor(x, vae), samples=samples, seed=seed)  # (N, Z)
    count, variances = count_active(_np(means), threshold)
    return {"count": count, "threshold": threshold, "variances": variances, "samples": samples}


# ---- Table B.1: posterior statistics --------------------------------------------------------
@torch.no_grad()
def posterior_stats(
    vae: torch.nn.Module, x: Array, *, samples: int = 1000, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """Mean[z_k] = E_x E_q[z_k], Var[z_k] = E_x E_q[(z_k - Mean[z_k])^2] on x (Table B.1)."""
    _check_samples(samples)
    g = _generator(vae, seed)
    mom = ref.RunningMoments(vae.cfg.z_dim)
    spans = list(_spans(len(x), ROW_BUDGET // samples))
    for a, b in _bar(spans, len(spans), "posterior stats", progress):
        z, _ = vae.posterior_sample(
            _tensor(x[a:b], vae), _randn(vae, (samples, b - a, vae.cfg.z_dim), g)
        )
        mom.update(_np(z.reshape(-1, z.shape[-1])))
    return {
        "mean": mom.mean,
        "var": mom.var,
        "avg_mean": float(mom.mean.mean()),
        "avg_var": float(mom.var.mean()),
        "samples": samples,
    }


# ---- Appendix B.4 / Fig. 3: closest pairs -------------------------------------------------
@torch.no_grad()
def _posterior_centres(
    vae: torch.nn.Module, x: Array, samples: int, g: torch.Generator, progress: bool
) -> tuple[Array, Array, Array | None]:
    """mu(x) and per-dimension stds of q(z|x): exact for a Gaussian posterior, sampled for RNVP.

    Returns centres (N, Z), stds (N, Z) and log_std (N, Z) (None for an RNVP posterior).
    """
    if vae.posterior_flow is None:
        mean, log_std = encode_all(vae, x)
        return mean, np.exp(log_std), log_std
    centres, stds = [], []
    spans = list(_spans(len(x), ROW_BUDGET // samples))
    for a, b in _bar(spans, len(spans), "posterior means", progress):
        eps = _randn(vae, (samples, b - a, vae.cfg.z_dim), g)
        z, _ = vae.posterior_sample(_tensor(x[a:b], vae), eps)
        centres.append(_np(z.mean(0)))
        stds.append(_np(z.std(0)))
    return np.concatenate(centres), np.concatenate(stds), None


@torch.no_grad()
def closest_pairs(
    vae: torch.nn.Module, x: Array, *, samples: int = 1000, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """Closest pairs of q(z|x) over x, their distances and normalized distances (Eqs. B.2-B.3).

    j(i) = argmin_{j != i} ||mu_j - mu_i|| (exact, chunked); d_ij; Std[i;j] and Std[j;i] from
    `samples` draws of q(z|x_i), q(z|x_j) projected on u = d_ij / ||d_ij||; normalized distance
    2 d_ij / (Std[i;j] + Std[j;i]). For a Gaussian posterior the closed-form stds are returned
    too (`std_ij_exact`, `std_ji_exact`).
    """
    _check_samples(samples, 2)
    if len(x) < 2:
        raise ValueError("closest-pairs needs at least 2 data points: raise --limit")
    g = _generator(vae, seed)
    centres, dim_std, log_std = _posterior_centres(vae, x, samples, g, progress)
    nbr, _ = ref.nearest_neighbours(centres)
    dist, u = ref.unit_directions(centres, centres[nbr])
    std_ij, std_ji = np.empty(len(x)), np.empty(len(x))
    spans = list(_spans(len(x), ROW_BUDGET // (2 * samples)))
    for a, b in _bar(spans, len(spans), "closest pairs", progress):
        for rows, out in ((np.arange(a, b), std_ij), (nbr[a:b], std_ji)):
            eps = _randn(vae, (samples, b - a, vae.cfg.z_dim), g)
            z, _ = vae.posterior_sample(_tensor(x[rows], vae), eps)
            out[a:b] = ref.projection_std_sampled(_np(z), u[a:b])
    result = {
        "neighbour": nbr,
        "distance": dist,
        "std_ij": std_ij,
        "std_ji": std_ji,
        "normalized_distance": ref.normalized_distance(dist, std_ij, std_ji),
        "posterior_std": dim_std,
        "samples": samples,
    }
    if log_std is not None:
        result["std_ij_exact"] = ref.projection_std_closed_form(log_std, u)
        result["std_ji_exact"] = ref.projection_std_closed_form(log_std[nbr], u)
    return result


# ---- Fig. 1: samples ------------------------------------------------------------------------
@torch.no_grad()
def sample_grid(
    vae: torch.nn.Module, train: Array, *, rows: int = 6, cols: int = 6, seed: int = 0
) -> dict[str, Any]:
    """rows x (cols-1) Bernoulli means decoded from z ~ p_lambda(z) (prior flow inverse), and per
    row the training image closest in pixel L2 to the row's last sample (Fig. 1, B.1-B.3)."""
    if rows < 1 or cols < 2:
        raise ValueError(f"samples grid needs rows >= 1 and cols >= 2, got {rows}x{cols}")
    g = _generator(vae, seed)
    z = vae.prior_sample(rows * (cols - 1), generator=g)  # (R*(C-1), Z), row-major grid
    means = decode_means(vae, z, g).reshape(rows, cols - 1, -1)
    idx, dist = ref.nearest_neighbours(means[:, -1], np.asarray(train))
    return {
        "means": means,
        "nearest": np.asarray(train[idx], dtype=np.float64),
        "nearest_index": idx,
        "nearest_distance": dist,
        "log_pz": _np(vae.prior_log_prob(z)).reshape(rows, cols - 1),
    }


# ---- Fig. 2: interpolation ------------------------------------------------------------------
@torch.no_grad()
def interpolation(
    vae: torch.nn.Module, x_a: Array, x_b: Array, *, steps: int = 10, seed: int = 0
) -> dict[str, Any]:
    """z_t = (1-t) c(x_a) + t c(x_b), t in linspace(0, 1, steps), c = centre of q(z|x)
    (f_eta of the mean of q(w|x) for an RNVP posterior); decoded means and log p_lambda(z_t).

    x_a, x_b (P, 784) -> means (P, steps, 784), log_pz (P, steps), z (P, steps, Z) (Fig. 2).
    """
    if steps < 2:
        raise ValueError(f"interpolation needs --steps >= 2, got {steps}")
    xa, xb = _tensor(x_a, vae), _tensor(x_b, vae)
    zeros = torch.zeros_like(vae.encode(xa)[0])[None]  # (1, P, Z): eps = 0 gives the centre
    ca, cb = vae.posterior_sample(xa, zeros)[0][0], vae.posterior_sample(xb, zeros)[0][0]
    t = torch.linspace(0.0, 1.0, steps, device=ca.device, dtype=ca.dtype)[None, :, None]
    z = (1.0 - t) * ca[:, None] + t * cb[:, None]  # (P, T, Z)
    flat = z.reshape(-1, z.shape[-1])
    means = decode_means(vae, flat, _generator(vae, seed)).reshape(*z.shape[:2], -1)
    return {"means": means, "log_pz": _np(vae.prior_log_prob(z)), "z": _np(z)}


# ---- Appendix B.9: low posterior samples ----------------------------------------------------
@torch.no_grad()
def low_posterior(
    vae: torch.nn.Module,
    train_x: Array,
    *,
    base: torch.nn.Module | None = None,
    n_prior: int = 10000,
    keep: int = 100,
    samples: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Low posterior samples (App. B.9, after Rosca et al.): n_prior z ~ p(z), rank by q(z) =
    LogMeanExp over the training set of q(z|x), keep the `keep` lowest; for each, log p_lambda(z),
    one x ~ p(x|z) and its ELBO (`samples` draws).

    With `base` (the standard model a post-hoc prior was trained on), z come from the base's
    N(0, I) prior and are ranked by the base's q(z) (Fig. B.4); both models are then scored on
    the same z and x. Returns per-model {"log_pz", "elbo"} under "models", the kept z, their
    decoded means, and log q(z) of all n_prior z.
    """
    _check_samples(samples)
    ref.lowest(np.zeros(n_prior), keep)  # validates 1 <= keep <= n_prior
    sampler = vae if base is None else base
    g = _generator(vae, seed)
    z = sampler.prior_sample(n_prior, generator=g)  # (n_prior, Z)
    mean, log_std = encode_all(sampler, train_x)
    log_q = log_aggregate_posterior(sampler, z, mean, log_std, progress=progress)
    idx = ref.lowest(log_q, keep)
    z_low = z[torch.as_tensor(idx, device=z.device)]
    x = sampler.sample_x(z_low, g)  # (keep, 784), one x ~ p(x|z) per z
    models = {"run": vae} if base is None else {"base": base, "run": vae}
    scores = {}
    for name, m in models.items():
        eps = _randn(m, (samples, keep, m.cfg.z_dim), g)
        scores[name] = {"log_pz": _np(m.prior_log_prob(z_low)), "elbo": _np(m.elbo(x, eps))}
    return {
        "models": scores,
        "index": idx,
        "z": _np(z_low),
        "log_qz": log_q[idx],
        "log_qz_all": log_q,
        "z_all": _np(z),
        "means": decode_means(sampler, z_low, g, x),
        "x": _np(x),
    }


# ---- Algorithm B.2 / Eq. B.4: D_KL[q(z) || p(z)] --------------------------------------------
@torch.no_grad()
def aggregate_kl(
    vae: torch.nn.Module,
    intensities: Array,
    *,
    n_x: int = 1,
    n_z: int = 10,
    seed: int = 0,
    chunk_elems: int = ref.DEFAULT_CHUNK_ELEMS,
    progress: bool = False,
) -> dict[str, Any]:
    """Monte Carlo D_KL[q(z) || p_lambda(z)] by Algorithm B.2: each training image binarized
    n_x times, n_z z ~ q(z|x) per binarized x, log q(z) = LogMeanExp over all N n_x binarized x'.

    Cost O((N n_x)^2 n_z Z). The estimate is that of the empirical mixture over the N n_x
    binarized images and drifts down with n_x (Table B.2); see `AGGREGATE_KL_NOTE` and
    `vaeprior.reference.analysis.aggregate_kl`.
    """
    if n_x < 1 or n_z < 1:
        raise ValueError(f"aggregate-kl needs --n-x >= 1 and --n-z >= 1, got {n_x}, {n_z}")
    g = _generator(vae, seed)
    xs = _binarize_repeated(vae, np.asarray(intensities), n_x, g)  # (N n_x, 784) uint8
    mean, log_std = (_tensor(a, vae) for a in encode_all(vae, xs))  # on the device once
    log_q, log_p = [], []
    spans = list(_spans(len(xs), max(1, 4096 // n_z)))
    for a, b in _bar(spans, len(spans), "aggregate KL", progress):
        z, _ = vae.posterior_sample(
            _tensor(xs[a:b], vae), _randn(vae, (n_z, b - a, mean.shape[1]), g)
        )
        z = z.reshape(-1, z.shape[-1])  # (n_z * B, Z)
        log_p.append(_np(vae.prior_log_prob(z)))
        log_q.append(log_aggregate_posterior(vae, z, mean, log_std, chunk_elems=chunk_elems))
    kl, stderr = ref.aggregate_kl(np.concatenate(log_q), np.concatenate(log_p))
    return {
        "kl": kl,
        "stderr": stderr,
        "n_x": n_x,
        "n_z": n_z,
        "n_images": len(intensities),
        "note": AGGREGATE_KL_NOTE,
    }


def _binarize_repeated(
    vae: torch.nn.Module, intensities: Array, n_x: int, g: torch.Generator
) -> torch.Tensor:
    """Each image binarized n_x times, image-major rows (i * n_x + r): (N n_x, 784) uint8."""
    xs = torch.empty(
        (len(intensities) * n_x, intensities.shape[1]), dtype=torch.uint8, device=_param(vae).device
    )
    for a, b in _spans(len(intensities), 4096):
        mu = _tensor(intensities[a:b], vae).repeat_interleave(n_x, dim=0)
        xs[a * n_x : b * n_x] = torch.bernoulli(mu, generator=g).to(torch.uint8)
    return xs


# ---- Tables 7, B.11-B.14 --------------------------------------------------------------------
def metrics(
    run_dir: str | Path,
    *,
    samples: int = 1000,
    limit: int | None = None,
    device: str | None = None,
    backend: str = "auto",
) -> dict[str, Any]:
    """Test elbo, recon, kl, klz|x in the paper's column order (Table 7), from `evaluate_run`."""
    from vaeprior.fast.evaluation.evaluate import evaluate_run

    r = evaluate_run(run_dir, samples=samples, limit=limit, backend=backend, device=device)
    columns = ("elbo", "recon", "kl", "klzx")
    out = {k: float(r[k]) for k in columns}
    out.update({k: r[k] for k in ("nll", "active_units", "samples", "n") if k in r})
    out["columns"] = ["elbo", "recon", "kl", "klz|x"]
    return out


# ---- CLI -------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `vaeprior analyze` (registered by the CLI)."""
    parser.add_argument("run_dir", type=Path, help="run directory written by `vaeprior train`")
    parser.add_argument(
        "--what", required=True, help=f"comma-separated analyses: {', '.join(ANALYSES)} or all"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (RUN_DIR/analysis)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N data points")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--samples", type=int, default=1000, help="z samples per x (paper: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parser.add_argument("--rows", type=int, default=6, help="samples: grid rows")
    parser.add_argument("--cols", type=int, default=6, help="samples: grid columns")
    parser.add_argument("--pairs", type=int, default=5, help="interpolation: training pairs")
    parser.add_argument("--steps", type=int, default=10, help="interpolation: steps per pair")
    parser.add_argument("--prior-samples", type=int, default=10000, help="low-posterior: z drawn")
    parser.add_argument("--keep", type=int, default=100, help="low-posterior: lowest q(z) kept")
    parser.add_argument("--n-x", type=int, default=1, help="aggregate-kl: binarizations per image")
    parser.add_argument("--n-z", type=int, default=10, help="aggregate-kl: z per binarized x")
    parser.add_argument("--no-plot", action="store_true", help="write JSON only, no PNG")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def parse_what(what: str) -> list[str]:
    """'a,b' -> ['a', 'b'] (validated); 'all' -> every analysis."""
    names = [w.strip() for w in what.split(",") if w.strip()]
    if names == ["all"]:
        return list(ANALYSES)
    bad = [n for n in names if n not in ANALYSES]
    if bad or not names:
        shown = ", ".join(bad) if bad else repr(what)
        raise ValueError(f"unknown analysis {shown} in --what: choose from {', '.join(ANALYSES)}")
    return list(dict.fromkeys(names))


class _Data:
    """The run's dataset, loaded on first use through `vaeprior.fast.data.load_dataset`: train
    intensities, one fixed seeded binarization of them (dynamic datasets), and the binarized
    test set, each cut to the first `limit` rows."""

    def __init__(self, cfg: Any, limit: int | None, seed: int) -> None:
        self.cfg, self.limit, self.seed = cfg, limit, seed
        self._ds: Any = None
        self._train_binary: Array | None = None

    def _load(self) -> Any:
        if self._ds is None:
            from vaeprior.fast import data as fdata

            self._ds = fdata.load_dataset(self.cfg.dataset, self.cfg.data_dir)
        return self._ds

    def _cut(self, a: Array) -> Array:
        return a if self.limit is None else a[: self.limit]

    @property
    def train_intensities(self) -> Array:
        return self._cut(self._load().train)

    @property
    def train_binary(self) -> Array:
        if self._train_binary is None:
            from vaeprior.reference.data import binarize

            x = self.train_intensities
            dynamic = getattr(self._load(), "dynamic", True)
            self._train_binary = binarize(x, np.random.default_rng(self.seed)) if dynamic else x
        return self._train_binary

    @property
    def test(self) -> Array:
        return self._cut(self._load().test)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _summary(a: Array, bins: int = 50) -> dict[str, Any]:
    a = np.asarray(a, dtype=np.float64).ravel()
    counts, edges = np.histogram(a, bins=bins)
    return {
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "min": float(a.min()),
        "max": float(a.max()),
        "histogram": {"counts": counts, "edges": edges},
    }


def _write(out: Path, name: str, payload: dict[str, Any]) -> Path:
    path = out / f"{name}.json"
    path.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    return path


def run(args: argparse.Namespace) -> int:
    """Run the analyses named by --what on RUN_DIR; write DIR/<name>.json (+ .png, .npz)."""
    from vaeprior.fast.runs import load_run

    names = parse_what(args.what)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    out = Path(args.out) if args.out is not None else Path(args.run_dir) / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_plot and set(names) & _PLOTTED:
        try:
            _plots().require_matplotlib()
        except ImportError as e:  # fail before the long computations, as a one-line error
            raise ValueError(str(e)) from None
    vae, cfg = load_run(args.run_dir, device=args.device)
    data = _Data(cfg, args.limit, args.seed)
    for name in names:
        written = _RUNNERS[name](args, vae, cfg, data, out)
        print(f"{name}: wrote {', '.join(str(p) for p in written)}")
    return 0


def _plots() -> Any:
    from vaeprior.fast.analysis import plots

    return plots


def _png(
    args: argparse.Namespace, out: Path, name: str, draw: Callable[[Path], None]
) -> list[Path]:
    if args.no_plot:
        return []
    path = out / f"{name}.png"
    draw(path)
    return [path]


def _run_active_units(args, vae, cfg, data, out) -> list[Path]:
    r = active_units(vae, data.train_binary, samples=args.samples, seed=args.seed)
    payload = {**r, "n": len(data.train_binary), "table": "Table 8"}
    draw = lambda p: _plots().plot_active_units(r["variances"], r["threshold"], p)
    return [_write(out, "active-units", payload), *_png(args, out, "active-units", draw)]


def _run_posterior_stats(args, vae, cfg, data, out) -> list[Path]:
    r = posterior_stats(
        vae, data.test, samples=args.samples, seed=args.seed, progress=not args.no_progress
    )
    return [
        _write(
            out,
            "posterior-stats",
            {**r, "n": len(data.test), "split": "test", "table": "Table B.1"},
        )
    ]


def _run_closest_pairs(args, vae, cfg, data, out) -> list[Path]:
    r = closest_pairs(
        vae, data.train_binary, samples=args.samples, seed=args.seed, progress=not args.no_progress
    )
    npz = out / "closest-pairs.npz"
    np.savez_compressed(npz, **{k: v for k, v in r.items() if isinstance(v, np.ndarray)})
    payload = {
        "n": len(r["distance"]),
        "samples": r["samples"],
        "posterior_std": _summary(r["posterior_std"]),
        "distance": _summary(r["distance"]),
        "normalized_distance": _summary(r["normalized_distance"]),
        "arrays": npz.name,
        "figure": "Fig. 3",
    }
    if "std_ij_exact" in r:
        rel = np.abs(r["std_ij"] / r["std_ij_exact"] - 1.0)
        payload["std_sampled_vs_closed_form_rel_err"] = {
            "mean": float(rel.mean()),
            "max": float(rel.max()),
        }
    draw = lambda p: _plots().plot_closest_pairs(
        r["posterior_std"], r["distance"], r["normalized_distance"], p
    )
    return [_write(out, "closest-pairs", payload), npz, *_png(args, out, "closest-pairs", draw)]


def _run_samples(args, vae, cfg, data, out) -> list[Path]:
    r = sample_grid(vae, data.train_intensities, rows=args.rows, cols=args.cols, seed=args.seed)
    payload = {k: r[k] for k in ("nearest_index", "nearest_distance", "log_pz")}
    draw = lambda p: _plots().plot_sample_grid(r["means"], r["nearest"], p)
    return [
        _write(out, "samples", {**payload, "figure": "Fig. 1"}),
        *_png(args, out, "samples", draw),
    ]


def _run_interpolation(args, vae, cfg, data, out) -> list[Path]:
    x = data.train_binary
    rng = np.random.default_rng(args.seed)
    pairs = np.stack([rng.choice(len(x), size=2, replace=False) for _ in range(args.pairs)])
    r = interpolation(vae, x[pairs[:, 0]], x[pairs[:, 1]], steps=args.steps, seed=args.seed)
    payload = {"pairs": pairs, "log_pz": r["log_pz"], "steps": args.steps, "figure": "Fig. 2"}
    draw = lambda p: _plots().plot_interpolation(
        x[pairs[:, 0]], x[pairs[:, 1]], r["means"], r["log_pz"], p
    )
    return [_write(out, "interpolation", payload), *_png(args, out, "interpolation", draw)]


def _run_low_posterior(args, vae, cfg, data, out) -> list[Path]:
    from vaeprior.fast.runs import load_run

    base = None
    if getattr(cfg, "base_run", None):
        base = load_run(cfg.base_run, device=str(_param(vae).device))[0]
    r = low_posterior(
        vae,
        data.train_binary,
        base=base,
        n_prior=args.prior_samples,
        keep=args.keep,
        samples=args.samples,
        seed=args.seed,
        progress=not args.no_progress,
    )
    payload = {
        "models": r["models"],
        "log_qz": r["log_qz"],
        "z": r["z"],
        "index": r["index"],
        "n_prior": args.prior_samples,
        "keep": args.keep,
        "n_train": len(data.train_binary),
        "base_run": str(cfg.base_run) if base is not None else None,
        "figure": "Fig. B.4" if base is not None else "Fig. B.5",
    }
    draw = lambda p: _plots().plot_low_posterior(r["models"], r["means"], p)
    return [_write(out, "low-posterior", payload), *_png(args, out, "low-posterior", draw)]


def _run_aggregate_kl(args, vae, cfg, data, out) -> list[Path]:
    r = aggregate_kl(
        vae,
        data.train_intensities,
        n_x=args.n_x,
        n_z=args.n_z,
        seed=args.seed,
        progress=not args.no_progress,
    )
    return [_write(out, "aggregate-kl", {**r, "algorithm": "Algorithm B.2"})]


def _run_metrics(args, vae, cfg, data, out) -> list[Path]:
    r = metrics(args.run_dir, samples=args.samples, limit=args.limit, device=args.device)
    return [_write(out, "metrics", {**r, "table": "Table 7"})]


_PLOTTED = {"active-units", "closest-pairs", "samples", "interpolation", "low-posterior"}
_RUNNERS = {
    "active-units": _run_active_units,
    "posterior-stats": _run_posterior_stats,
    "closest-pairs": _run_closest_pairs,
    "samples": _run_samples,
    "interpolation": _run_interpolation,
    "low-posterior": _run_low_posterior,
    "aggregate-kl": _run_aggregate_kl,
    "metrics": _run_metrics,
}
