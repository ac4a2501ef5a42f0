"""Estimator math of the paper's analyses (Sections 5.3-5.5, Appendices B.3-B.5, B.9), float64.

Everything here works on arrays the fast path has already computed (posterior means, samples,
log-densities); the heavy sampling lives in `vaeprior.fast.analysis`. Functions that would
need O(N^2) memory take a `chunk_elems` bound and stream instead.

- closest pairs of q(z|x) and their normalized distances (Appendix B.4, Eqs. B.2-B.3):
  `nearest_neighbours`, `projection_std_sampled`, `projection_std_closed_form`,
  `normalized_distance`;
- posterior statistics Mean[z_k], Var[z_k] (Table B.1) and active units (Table 8):
  `RunningMoments`;
- the aggregate posterior q(z) = E_x q(z|x) and D_KL[q(z) || p(z)] (Algorithm B.2, Eq. B.4;
  low posterior samples of Appendix B.9): `gaussian_log_prob_matrix`, `RunningLogMeanExp`,
  `aggregate_kl`, `lowest`.
"""

from __future__ import annotations

import numpy as np

from vaeprior.reference.distributions import LOG_2PI

DEFAULT_CHUNK_ELEMS = 2**22  # 4M float64 = 32 MiB per distance / log-density block


def _rows_per_chunk(n_cols: int, chunk_elems: int) -> int:
    if chunk_elems < 1:
        raise ValueError(f"chunk_elems must be >= 1, got {chunk_elems}")
    return max(1, chunk_elems // max(1, n_cols))


def _nn_scores(q: np.ndarray, p: np.ndarray, p_sq: np.ndarray) -> np.ndarray:
    """||p_n||^2 - 2 q_m . p_n = ||q_m - p_n||^2 - ||q_m||^2: (Mc, Nc), same argmin per row."""
    scores = q @ p.T
    scores *= -2.0
    scores += p_sq[None, :]
    return scores


def nearest_neighbours(
    query: np.ndarray,
    points: np.ndarray | None = None,
    *,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest neighbour in L2 of every query row among `points` (Appendix B.4).

    query (M, D), points (N, D) -> index (M,) int64, distance (M,) float64.
    With `points=None` the query set is searched against itself excluding the row itself
    (j = argmin_{j != i} ||mu_j - mu_i||, the closest pair of q(z|x)). Blocks of at most
    `chunk_elems` scores are formed at a time (query rows x point rows), so 60,000 points
    need no 60,000^2 matrix. Ties go to the smallest index. The returned distance is
    recomputed directly as ||query_m - points_idx||.
    """
    query = np.asarray(query, dtype=np.float64)
    self_search = points is None
    points = query if self_search else np.asarray(points, dtype=np.float64)
    if query.ndim != 2 or points.ndim != 2 or query.shape[1] != points.shape[1]:
        raise ValueError(
            f"nearest_neighbours: need query (M, D) and points (N, D), got {query.shape} "
            f"and {points.shape}"
        )
    if points.shape[0] < (2 if self_search else 1):
        raise ValueError("nearest_neighbours: need at least one candidate point besides the query")
    m, n = query.shape[0], points.shape[0]
    side = max(1, int(np.sqrt(max(1, chunk_elems))))
    q_rows, p_rows = min(m, side), max(1, min(n, chunk_elems // max(1, min(m, side))))
    p_sq = np.sum(points**2, axis=1)  # (N,)
    best = np.full(m, np.inf)
    best_idx = np.zeros(m, dtype=np.int64)
    for q0 in range(0, m, q_rows):
        q = query[q0 : q0 + q_rows]  # (Mc, D)
        rows = np.arange(q.shape[0])
        for p0 in range(0, n, p_rows):
            scores = _nn_scores(q, points[p0 : p0 + p_rows], p_sq[p0 : p0 + p_rows])
            if self_search:
                cols = rows + q0 - p0  # column of query row r itself in this block
                own = (cols >= 0) & (cols < scores.shape[1])
                scores[rows[own], cols[own]] = np.inf
            j = np.argmin(scores, axis=1)
            val = scores[rows, j]
            better = val < best[q0 : q0 + q_rows]  # strict: earlier chunk wins ties
            best[q0 : q0 + q_rows][better] = val[better]
            best_idx[q0 : q0 + q_rows][better] = j[better] + p0
    dist = np.sqrt(np.sum((points[best_idx] - query) ** 2, axis=1))
    return best_idx, dist


def unit_directions(centres: np.ndarray, neighbours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d_ij = mu_j - mu_i and its unit vector (Appendix B.4): (N, Z), (N, Z) -> (N,), (N, Z).

    A zero difference (duplicate centres) gets the zero direction; its normalized distance is 0.
    """
    diff = np.asarray(neighbours, dtype=np.float64) - np.asarray(centres, dtype=np.float64)
    dist = np.sqrt(np.sum(diff**2, axis=-1))  # (N,)
    safe = np.where(dist > 0.0, dist, 1.0)
    return dist, diff / safe[:, None]


def projection_std_sampled(z: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Std[i;j] of Eq. B.3 from samples: std over S of (z - mu_i) . u_ij.

    z (S, N, Z) samples of q(z|x_i); direction (N, Z) unit vectors u_ij -> (N,).
    The unbiased sample variance (ddof=1) is used, so the centre mu_i cancels and need not be
    passed; it also covers flow posteriors whose mean has no closed form.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 3 or z.shape[0] < 2:
        raise ValueError(f"projection_std_sampled: need z (S>=2, N, Z), got {z.shape}")
    proj = np.einsum("snz,nz->sn", z, np.asarray(direction, dtype=np.float64))  # (S, N)
    return np.std(proj, axis=0, ddof=1)


def projection_std_closed_form(log_std: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Std[i;j] of Eq. B.3 for a Gaussian q(z|x_i) = N(mu_i, diag sigma_i^2).

    (z - mu_i) . u is Gaussian with variance sum_k sigma_ik^2 u_k^2, so
    Std[i;j] = sqrt(sum_k sigma_ik^2 u_k^2). log_std (N, Z), direction (N, Z) -> (N,).
    """
    var = np.exp(2.0 * np.asarray(log_std, dtype=np.float64))
    return np.sqrt(np.sum(var * np.asarray(direction, dtype=np.float64) ** 2, axis=-1))


def normalized_distance(dist: np.ndarray, std_ij: np.ndarray, std_ji: np.ndarray) -> np.ndarray:
    """Eq. B.2: 2 d_ij / (Std[i;j] + Std[j;i]), "distance / std" along d_ij; 0 where d_ij = 0."""
    dist = np.asarray(dist, dtype=np.float64)
    denom = np.asarray(std_ij, dtype=np.float64) + np.asarray(std_ji, dtype=np.float64)
    out = np.zeros_like(dist)
    np.divide(2.0 * dist, denom, out=out, where=dist > 0.0)
    return out


class RunningMoments:
    """Per-dimension mean and (population) variance of rows fed in batches (Chan et al.).

    Table B.1: feed all z ~ q(z|x) over the test set to get Mean[z_k] = E_x E_q[z_k] and
    Var[z_k] = E_x E_q[(z_k - Mean[z_k])^2]. Table 8 (active units) instead needs the variance
    over x of E_q[z_k]; see `vaeprior.reference.metrics.active_units`.
    """

    def __init__(self, dim: int) -> None:
        self.count = 0
        self.mean = np.zeros(dim)
        self._m2 = np.zeros(dim)

    def update(self, rows: np.ndarray) -> None:
        """Add rows (n, dim)."""
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self.mean.shape[0])
        n = rows.shape[0]
        if n == 0:
            return
        b_mean = rows.mean(axis=0)
        b_m2 = np.sum((rows - b_mean) ** 2, axis=0)
        total = self.count + n
        delta = b_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self._m2 = self._m2 + b_m2 + delta**2 * (self.count * n / total)
        self.count = total

    @property
    def var(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("RunningMoments: no rows seen yet")
        return self._m2 / self.count


def gaussian_log_prob_matrix(w: np.ndarray, mean: np.ndarray, log_std: np.ndarray) -> np.ndarray:
    """log N(w_m; mean_n, diag exp(log_std_n)^2) for every pair: w (M, Z), mean/log_std (N, Z).

    Returns (M, N): the cross terms log q(w_m | x'_n) of Eq. B.4 / Algorithm B.2. Written as
    a matrix product (M x N x Z work, M x N memory).
    """
    w = np.asarray(w, dtype=np.float64)
    mean, log_std = np.asarray(mean, dtype=np.float64), np.asarray(log_std, dtype=np.float64)
    prec = np.exp(-2.0 * log_std)  # (N, Z)
    quad = (w**2) @ prec.T - 2.0 * w @ (mean * prec).T + np.sum(mean**2 * prec, axis=1)
    const = np.sum(log_std, axis=1) + 0.5 * w.shape[1] * LOG_2PI  # (N,)
    return -0.5 * quad - const[None, :]


class RunningLogMeanExp:
    """log (1/N sum_n exp(a_mn)) over columns fed in blocks: the LogMeanExp of Algorithm B.2.

    `update(block (M, Nc))` adds Nc more terms to each of M rows; `value()` -> (M,). Used to
    estimate log q(z) = log E_{x'}[q(z|x')] (Eq. B.4) without the full (M, N) matrix.
    """

    def __init__(self, rows: int) -> None:
        self._lse = np.full(rows, -np.inf)
        self._count = 0

    def update(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float64)
        if block.ndim != 2 or block.shape[0] != self._lse.shape[0]:
            raise ValueError(
                f"RunningLogMeanExp: need ({self._lse.shape[0]}, n), got {block.shape}"
            )
        if block.shape[1] == 0:
            return
        m = np.max(block, axis=1)
        m = np.where(np.isfinite(m), m, 0.0)
        part = m + np.log(np.sum(np.exp(block - m[:, None]), axis=1))  # log-sum-exp of the block
        self.update_logsumexp(part, block.shape[1])

    def update_logsumexp(self, lse: np.ndarray, count: int) -> None:
        """Add `count` terms per row given only their log-sum-exp `lse` (M,) (reduced elsewhere)."""
        lse = np.asarray(lse, dtype=np.float64)
        if lse.shape != self._lse.shape or count < 0:
            raise ValueError(f"RunningLogMeanExp: need lse {self._lse.shape} and count >= 0")
        self._lse = np.logaddexp(self._lse, lse)
        self._count += count

    def value(self) -> np.ndarray:
        if self._count == 0:
            raise ValueError("RunningLogMeanExp: no terms seen yet")
        return self._lse - np.log(self._count)


def aggregate_kl(log_q_aggregate: np.ndarray, log_p: np.ndarray) -> tuple[float, float]:
    """Monte Carlo D_KL[q(z) || p(z)] of Eq. B.4 / Algorithm B.2 and its standard error.

    log_q_aggregate (M,): log q(z_m) = LogMeanExp_{x'} log q(z_m | x') for z_m ~ q(z|x_m),
    x_m ~ the (binarized) training set; log_p (M,): log p_lambda(z_m).
    Returns (mean of log q - log p, its standard error over the M samples).

    Caveat (Appendix B.5, Table B.2): q(z) is replaced by the empirical mixture over the
    N * n_x binarized training images, so the estimate is the KL of *that* mixture and falls
    as n_x grows. When the posteriors barely overlap (large normalized distances, Fig. 3) the
    own term q(z|x_m) dominates and log q(z) ~ log q(z|x_m) - log(N n_x): the estimate is then
    about E_x KL[q(z|x) || p(z)] - log(N n_x), dropping by log 2 per doubling of n_x.
    """
    diff = np.asarray(log_q_aggregate, dtype=np.float64) - np.asarray(log_p, dtype=np.float64)
    if diff.ndim != 1 or diff.size == 0:
        raise ValueError(f"aggregate_kl: need equal non-empty (M,) arrays, got {diff.shape}")
    stderr = float(np.std(diff, ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("nan")
    return float(np.mean(diff)), stderr


def lowest(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest values, ascending (the low posterior samples of Appendix B.9)."""
    values = np.asarray(values)
    if not 1 <= k <= values.size:
        raise ValueError(f"lowest: k must be in [1, {values.size}], got {k}")
    idx = np.argpartition(values, k - 1)[:k]
    return idx[np.argsort(values[idx], kind="stable")]
