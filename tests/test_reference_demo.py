"""The reference demo on real MNIST test images: runs as a module, prints finite B.3 metrics with
NLL <= -ELBO (exact: the same samples feed both), and loads DESIGN.md-keyed .npz weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vaeprior.reference.config import VAEConfig
from vaeprior.reference.demo import METRICS, config_from_params, main
from vaeprior.reference.dense_vae import init_params
from vaeprior.reference.objectives import evaluate

REPO = Path(__file__).resolve().parents[1]
MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz")


@pytest.fixture(scope="module")
def data_dir() -> Path:
    env = os.environ.get("VAEPRIOR_DATA")
    if not env:
        pytest.skip("VAEPRIOR_DATA is not set: point it at the datasets folder to run the demo")
    root = (REPO / env).resolve()  # a relative VAEPRIOR_DATA is relative to the repo root (CI)
    missing = [f for f in MNIST_FILES if not (root / "mnist" / f).is_file()]
    if missing:
        pytest.skip(f"MNIST files {missing} not found under {root / 'mnist'}")
    return root


def parse_metrics(stdout: str) -> dict[str, float]:
    values = {}
    for line in stdout.splitlines():
        name, _, value = line.partition(": ")
        if name in METRICS:
            values[name] = float(value)
    assert sorted(values) == sorted(METRICS), stdout
    return values


def check_metrics(m: dict[str, float]) -> None:
    assert all(np.isfinite(v) for v in m.values()), m
    # -LogMeanExp <= -mean on the same samples (Jensen), per x hence for the means; the
    # printed values are rounded to 1e-6
    assert m["nll"] <= -m["elbo"] + 2e-6, m
    assert m["klzx"] >= -2e-6, m
    assert m["recon"] < 0 and m["nll"] > 0, m  # log p(x|z) of 784 Bernoulli pixels is negative
    assert abs(m["recon"] - m["kl"] - m["elbo"]) < 3e-6, m


def test_demo_module_runs_on_real_images(data_dir: Path) -> None:
    cmd = [sys.executable, "-m", "vaeprior.reference.demo", "--n", "4", "--samples", "10"]
    cmd += ["--data-dir", str(data_dir), "--flow-depth", "2", "--prior", "rnvp"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "config: VAEConfig(" in proc.stdout and "prior='rnvp'" in proc.stdout
    check_metrics(parse_metrics(proc.stdout))


def test_demo_with_saved_params_matches_direct_evaluation(
    data_dir: Path, tmp_path: Path, capsys
) -> None:
    from vaeprior.reference.data import load_dataset

    cfg = VAEConfig(z_dim=40, prior="rnvp", posterior="rnvp", flow_depth=2, flow_hidden=16)
    params = init_params(cfg, np.random.default_rng(5), zero_init=False)
    path = tmp_path / "weights.npz"
    np.savez(path, **params)
    assert config_from_params(params) == cfg

    argv = ["--n", "4", "--samples", "10", "--seed", "3", "--data-dir", str(data_dir)]
    result = main([*argv, "--params", str(path)])
    check_metrics(parse_metrics(capsys.readouterr().out))

    # the same pipeline written out: first 4 test rows, eps from the seed's generator
    x = load_dataset("mnist", data_dir=data_dir).test[:4].astype(np.float64)
    eps = np.random.default_rng(3).standard_normal((10, 4, 40))
    expected = evaluate(params, cfg, x, eps)
    for k in METRICS:
        assert result[k] == pytest.approx(float(np.mean(expected[k])), rel=1e-12)


def test_missing_params_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no params file"):
        main(["--params", str(tmp_path / "nope.npz")])
