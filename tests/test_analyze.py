"""`vaeprior analyze` (fast/analyze.py) on tiny random models with answers known independently."""

from __future__ import annotations

import argparse
import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vaeprior.fast.analysis import (
    aggregate_kl,
    cli,
    closest_pairs,
    densities,
    interpolation,
    low_posterior,
    metrics,
    posterior_stats,
    samples,
)
from vaeprior.fast.config import ModelConfig
from vaeprior.fast.evaluation.posterior import active_units
from vaeprior.fast.models.vae import build_vae
from vaeprior.reference import analysis as ref
from vaeprior.reference.distributions import gaussian_log_prob, log_mean_exp, unit_gaussian_log_prob

Z = 4


def _vae(prior: str = "gaussian", posterior: str = "gaussian", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        model="dense",
        z_dim=Z,
        hidden=16,
        prior=prior,
        posterior=posterior,
        flow_depth=2,
        flow_hidden=8,
    )
    vae = build_vae(cfg)
    with torch.no_grad():
        for p in vae.parameters():  # move the zero-initialised flow heads off the identity
            p.add_(0.1 * torch.randn_like(p))
    return vae.eval()


def _const_encoder(vae: torch.nn.Module, m: np.ndarray, log_s: np.ndarray) -> None:
    """q(z|x) = N(m, diag exp(log_s)^2) for every x."""
    with torch.no_grad():
        vae.encoder.mean.weight.zero_()
        vae.encoder.logstd.weight.zero_()
        vae.encoder.mean.bias.copy_(torch.as_tensor(m))
        vae.encoder.logstd.bias.copy_(torch.as_tensor(log_s))


def _x(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 784)) < 0.3).astype(np.uint8)


@pytest.mark.parametrize("posterior", ["gaussian", "rnvp"])
def test_posterior_log_prob_matrix_matches_posterior_sample(posterior: str) -> None:
    vae = _vae(posterior=posterior)
    x = torch.as_tensor(_x(6), dtype=torch.float32)
    with torch.no_grad():
        z, log_qz = vae.posterior_sample(x, torch.randn(1, 6, Z))
        mean, log_std = vae.encode(x)
    mat = densities.posterior_log_prob_matrix(vae, z[0], mean, log_std).numpy()  # (6, 6)
    np.testing.assert_allclose(np.diag(mat), log_qz[0].numpy(), rtol=1e-5, atol=1e-4)
    if posterior == "gaussian":
        full = ref.gaussian_log_prob_matrix(z[0].numpy(), mean.numpy(), log_std.numpy())
        np.testing.assert_allclose(mat, full, rtol=1e-6, atol=1e-4)


def test_log_aggregate_posterior_streamed_equals_full() -> None:
    vae = _vae(posterior="rnvp")
    mean, log_std = densities.encode_all(vae, _x(23), batch=5)
    z = torch.randn(17, Z)
    full = densities.posterior_log_prob_matrix(vae, z, torch.tensor(mean), torch.tensor(log_std))
    got = densities.log_aggregate_posterior(vae, z, mean, log_std, chunk_elems=7)
    np.testing.assert_allclose(got, log_mean_exp(full.numpy(), axis=1), rtol=1e-6)


def test_posterior_stats_constant_encoder_and_total_variance() -> None:
    vae = _vae()
    m, log_s = np.array([0.5, -1.0, 0.0, 2.0]), np.log([0.3, 1.0, 2.0, 0.5])
    _const_encoder(vae, m, log_s)
    n, s = 30, 2000
    r = posterior_stats.posterior_stats(vae, _x(n), samples=s)
    sd = np.exp(log_s)
    assert np.all(np.abs(r["mean"] - m) < 5 * sd / np.sqrt(n * s))
    np.testing.assert_allclose(r["var"], sd**2, rtol=5 * np.sqrt(2 / (n * s)))
    assert r["avg_var"] == pytest.approx(np.mean(r["var"]))
    # Random encoder: law of total variance, Var = Var_x(mu) + E_x sigma^2.
    vae = _vae(seed=1)
    x = _x(40, seed=1)
    mu, ls = densities.encode_all(vae, x)
    r = posterior_stats.posterior_stats(vae, x, samples=s)
    np.testing.assert_allclose(r["mean"], mu.mean(0), atol=5 * np.exp(ls).max() / np.sqrt(40 * s))
    np.testing.assert_allclose(r["var"], mu.var(0) + np.exp(2 * ls).mean(0), rtol=0.05)


def test_active_units_counts_dimensions_that_vary_with_x() -> None:
    vae = _vae()
    _const_encoder(vae, np.zeros(Z), np.log(np.full(Z, 0.5)))
    with torch.no_grad():  # dims 0 and 1 follow the encoder trunk; 2 and 3 stay constant
        vae.encoder.mean.weight[:2] = 3.0 * torch.randn(2, 16)
    x = _x(50)
    mu, _ = densities.encode_all(vae, x)
    r = active_units(vae, x, samples=1000)
    expected = mu.var(0)  # exact Var_x of E_q[z|x] (= the Gaussian mean)
    assert r["count"] == 2 and expected[0] > 0.1 and expected[1] > 0.1
    np.testing.assert_allclose(r["variances"], expected, rtol=1e-5, atol=1e-12)


def test_active_units_flow_posterior_uses_sampled_means() -> None:
    vae = _vae(posterior="rnvp")
    x = _x(20)
    r = active_units(vae, x, samples=3000)
    with torch.no_grad():  # independent Monte Carlo estimate of E_q[z|x]
        xt = torch.as_tensor(x, dtype=torch.float32)
        z, _ = vae.posterior_sample(
            xt, torch.randn(3000, 20, Z, generator=torch.Generator().manual_seed(9))
        )
    expected = z.double().mean(0).var(0, unbiased=False).numpy()
    np.testing.assert_allclose(r["variances"], expected, rtol=0.1)


def test_closest_pairs_brute_force_and_closed_form_std() -> None:
    vae = _vae()
    x = _x(30)
    r = closest_pairs.closest_pairs(vae, x, samples=4000)
    mu, log_std = densities.encode_all(vae, x)
    d = np.linalg.norm(mu[:, None] - mu[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(r["neighbour"], d.argmin(1))
    np.testing.assert_allclose(r["distance"], d.min(1), rtol=1e-9)
    # sample std of 4000 draws: relative error ~ 1/sqrt(8000) = 0.011; 5 sigma bound
    np.testing.assert_allclose(r["std_ij"], r["std_ij_exact"], rtol=0.056)
    np.testing.assert_allclose(r["std_ji"], r["std_ji_exact"], rtol=0.056)
    u = (mu[r["neighbour"]] - mu) / r["distance"][:, None]
    np.testing.assert_allclose(
        r["std_ji_exact"], np.sqrt((np.exp(2 * log_std[r["neighbour"]]) * u**2).sum(1))
    )
    np.testing.assert_allclose(
        r["normalized_distance"], 2 * r["distance"] / (r["std_ij"] + r["std_ji"])
    )
    np.testing.assert_allclose(r["posterior_std"], np.exp(log_std), rtol=1e-9)


def test_closest_pairs_flow_posterior_uses_sampled_centres() -> None:
    vae = _vae(posterior="rnvp")
    r = closest_pairs.closest_pairs(vae, _x(12), samples=200)
    assert "std_ij_exact" not in r
    assert np.all(r["neighbour"] != np.arange(12))
    assert np.all(np.isfinite(r["normalized_distance"])) and np.all(r["std_ij"] > 0)


def test_low_posterior_selects_true_lowest_under_known_q() -> None:
    vae = _vae()
    m, log_s = np.array([1.0, -0.5, 0.0, 0.3]), np.log([0.4, 0.6, 1.0, 0.2])
    _const_encoder(vae, m, log_s)  # q(z) = N(m, s^2) exactly
    r = low_posterior.low_posterior(vae, _x(15), n_prior=500, keep=20, samples=50)
    exact = gaussian_log_prob(r["z_all"], m, log_s)
    np.testing.assert_allclose(r["log_qz_all"], exact, rtol=1e-5)
    np.testing.assert_array_equal(r["index"], np.argsort(exact)[:20])
    np.testing.assert_allclose(
        r["models"]["run"]["log_pz"], unit_gaussian_log_prob(r["z"]), rtol=1e-5
    )
    assert r["means"].shape == (20, 784) and set(np.unique(r["x"])) <= {0.0, 1.0}
    # post-hoc: z from the base, both models scored on the same z and x
    run = _vae(prior="rnvp", seed=3)
    _const_encoder(run, m, log_s)
    r2 = low_posterior.low_posterior(run, _x(15), base=vae, n_prior=500, keep=20, samples=50)
    np.testing.assert_allclose(
        r2["models"]["base"]["log_pz"], unit_gaussian_log_prob(r2["z"]), rtol=1e-5
    )
    with torch.no_grad():
        lp = run.prior_log_prob(torch.as_tensor(r2["z"], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(r2["models"]["run"]["log_pz"], lp, rtol=1e-5)


def test_aggregate_kl_constant_posterior_matches_gaussian_kl() -> None:
    vae = _vae()
    m, log_s = np.array([0.5, -1.0, 0.2, 1.5]), np.log([0.3, 1.2, 0.8, 0.5])
    _const_encoder(vae, m, log_s)
    intensities = np.random.default_rng(0).random((20, 784)).astype(np.float32)
    r = aggregate_kl.aggregate_kl(vae, intensities, n_x=2, n_z=200, chunk_elems=1000)
    s2 = np.exp(2 * log_s)
    exact = float(np.sum(-log_s + 0.5 * (s2 + m**2) - 0.5))  # KL[N(m, s^2) || N(0, I)]
    assert 0 < r["stderr"] < 0.05
    assert abs(r["kl"] - exact) < 4 * r["stderr"]
    assert r["n_x"] == 2 and "n_x" in r["note"]


def test_sample_grid_and_nearest_training_image() -> None:
    vae = _vae(prior="rnvp")
    train = np.random.default_rng(1).random((40, 784))
    r = samples.samples_figure(vae, train, rows=3, cols=4, seed=5)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        z = vae.prior_sample(9, generator=g)
        means = torch.sigmoid(vae.decoder_logits(z)).numpy().reshape(3, 3, 784)
    np.testing.assert_allclose(r["means"], means, rtol=1e-6)
    d = np.linalg.norm(r["means"][:, -1, None] - train[None], axis=-1)  # (3, 40)
    np.testing.assert_array_equal(r["nearest_index"], d.argmin(1))
    np.testing.assert_allclose(r["nearest"], train[d.argmin(1)])


def test_interpolation_endpoints_and_log_prior() -> None:
    vae = _vae(prior="rnvp")
    xa, xb = _x(2, seed=1), _x(2, seed=2)
    r = interpolation.interpolation(vae, xa, xb, steps=3)
    mu_a, _ = densities.encode_all(vae, xa)
    mu_b, _ = densities.encode_all(vae, xb)
    np.testing.assert_allclose(r["z"][:, 0], mu_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["z"][:, -1], mu_b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["z"][:, 1], (mu_a + mu_b) / 2, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        lp = vae.prior_log_prob(torch.as_tensor(r["z"], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(r["log_pz"], lp, rtol=1e-5)
    assert r["means"].shape == (2, 3, 784)


def test_metrics_paper_column_order(monkeypatch: pytest.MonkeyPatch) -> None:
    import vaeprior.fast.evaluation.evaluate as ev

    def fake(run_dir, **k):
        return {
            "nll": 90.0,
            "elbo": -95.0,
            "recon": -70.0,
            "kl": 25.0,
            "klzx": 5.0,
            "active_units": 12,
            "samples": k["samples"],
            "n": 7,
        }

    monkeypatch.setattr(ev, "evaluate_run", fake)
    r = metrics.metrics("somewhere", samples=3)
    assert list(r)[:4] == ["elbo", "recon", "kl", "klzx"]
    assert (r["elbo"], r["recon"], r["kl"], r["klzx"], r["samples"]) == (-95.0, -70.0, 25.0, 5.0, 3)


def test_parse_what() -> None:
    assert cli.parse_what("samples, metrics,samples") == ["samples", "metrics"]
    assert cli.parse_what("all") == list(cli.ANALYSES)
    with pytest.raises(ValueError, match="unknown analysis"):
        cli.parse_what("samples,nope")


def test_plots_need_matplotlib(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from vaeprior.fast.analysis import plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install vaeprior\[plot\]"):
        plots.plot_active_units(np.ones(3), 0.01, tmp_path / "a.png")
    # the CLI refuses up front (before loading the run), as a one-line ValueError
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "missing"), "--what", "samples"])
    with pytest.raises(ValueError, match=r"vaeprior\[plot\]"):
        cli.run(args)


def test_cli_run_writes_json_and_png(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    vae = _vae(prior="rnvp")
    rng = np.random.default_rng(0)
    ds = SimpleNamespace(train=rng.random((30, 784)).astype(np.float32), test=_x(12), dynamic=True)
    cfg = SimpleNamespace(dataset="mnist", data_dir=None, base_run=None, seed=0)
    import vaeprior.fast.runs as ck

    monkeypatch.setattr(ck, "load_run", lambda run_dir, device=None: (vae, cfg))
    monkeypatch.setattr(cli.AnalysisData, "_load", lambda self: ds)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    names = [n for n in cli.ANALYSES if n != "metrics"]
    args = parser.parse_args(
        [
            str(tmp_path / "run"),
            "--what",
            ",".join(names),
            "--out",
            str(tmp_path / "o"),
            "--limit",
            "20",
            "--samples",
            "20",
            "--prior-samples",
            "50",
            "--keep",
            "5",
            "--pairs",
            "2",
            "--steps",
            "4",
            "--n-z",
            "3",
            "--no-progress",
        ]
    )
    assert cli.run(args) == 0
    out = tmp_path / "o"
    for name in names:
        assert json.loads((out / f"{name}.json").read_text())
    for name in ("active-units", "closest-pairs", "samples", "interpolation", "low-posterior"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    au = json.loads((out / "active-units.json").read_text())
    from vaeprior.fast.data import fixed_binarization, spread_rows

    x = fixed_binarization(torch.as_tensor(ds.train), cfg.seed, dynamic=True)
    x = x[spread_rows(len(x), 20, jitter=True)]
    direct = active_units(vae, x, samples=20)
    np.testing.assert_allclose(au["variances"], direct["variances"], rtol=1e-9)
    assert au["count"] == direct["count"] and au["n"] == 20
    ps = json.loads((out / "posterior-stats.json").read_text())
    assert ps["n"] == 12 and ps["avg_var"] == pytest.approx(np.mean(ps["var"]))
    cp = np.load(out / "closest-pairs.npz")
    assert cp["neighbour"].shape == (20,)
    it = json.loads((out / "interpolation.json").read_text())
    assert np.asarray(it["log_pz"]).shape == (2, 4)


def test_analyze_cli_on_trained_post_hoc_run(synthetic, tmp_path) -> None:
    """End to end through `vaeprior analyze`: a tiny standard run, a post-hoc RNVP prior on it."""
    from conftest import tiny_model

    from vaeprior.fast.cli import main
    from vaeprior.fast.config import TrainConfig
    from vaeprior.fast.runs import load_run
    from vaeprior.fast.training.loop import train

    std, ph = tmp_path / "std", tmp_path / "ph"
    common = {"dataset": "mnist", "epochs": 1, "eval_samples": 5, "device": "cpu"}
    train(TrainConfig(model=tiny_model(), **common), std, progress=False)
    cfg = TrainConfig(
        model=tiny_model(prior="rnvp"), strategy="post-hoc", base_run=str(std), **common
    )
    train(cfg, ph, progress=False)
    out = tmp_path / "out"
    argv = [
        "analyze",
        str(ph),
        "--what",
        "low-posterior,metrics,posterior-stats",
        "--out",
        str(out),
    ]
    argv += ["--limit", "40", "--samples", "10", "--prior-samples", "60", "--keep", "8"]
    assert main([*argv, "--no-progress", "--device", "cpu"]) == 0
    lp = json.loads((out / "low-posterior.json").read_text())
    assert set(lp["models"]) == {"base", "run"} and lp["base_run"] == str(std)
    z = torch.tensor(lp["z"], dtype=torch.float32)
    run_vae, _ = load_run(ph, "cpu")
    with torch.no_grad():
        np.testing.assert_allclose(
            lp["models"]["run"]["log_pz"], run_vae.prior_log_prob(z), rtol=1e-5
        )
    np.testing.assert_allclose(
        lp["models"]["base"]["log_pz"], unit_gaussian_log_prob(z.numpy()), rtol=1e-5
    )
    assert np.all(np.diff(lp["log_qz"]) >= 0)  # kept in ascending q(z)
    m = json.loads((out / "metrics.json").read_text())
    assert m["columns"] == ["elbo", "recon", "kl", "klz|x"]
    assert m["elbo"] == pytest.approx(m["recon"] - m["kl"]) and m["n"] == 40
    assert json.loads((out / "posterior-stats.json").read_text())["n"] == 40
    assert (out / "low-posterior.png").stat().st_size > 0


def test_analyses_and_training_see_the_same_training_images(synthetic) -> None:
    """analyze's train_binary is the binarization results.json's active units are counted on."""
    from vaeprior.fast.data import load_device_data, split_tensor

    for dynamic in (True, False):
        synthetic(dynamic=dynamic)
        cfg = SimpleNamespace(dataset="mnist", data_dir=None, seed=3)
        data = load_device_data("mnist", None, "cpu")
        for limit in (None, 50):
            expected = split_tensor(data, "train", cfg.seed, limit)
            got = cli.AnalysisData(cfg, limit).train_binary
            assert got.dtype == np.uint8 and expected.dtype == torch.uint8
            np.testing.assert_array_equal(got, expected.numpy())
        assert (
            not np.array_equal(
                cli.AnalysisData(cfg, None).train_binary,
                cli.AnalysisData(SimpleNamespace(**{**vars(cfg), "seed": 4}), None).train_binary,
            )
            or not dynamic
        )
