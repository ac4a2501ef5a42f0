"""`vaeprior plot`: training curves read from metrics.jsonl, drawn to a PNG, runs overlaid."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from vaeprior.fast.analysis.curves import plot_curves, run_labels, training_curves
from vaeprior.fast.cli import main

plt = pytest.importorskip("matplotlib.pyplot", reason="plotting needs the plot extra")

# metrics.jsonl lines as training writes them (val_nll only where early stopping validated)
RUN_A = [
    {"phase": "joint@lr0.001", "epoch": 1, "lr": 1e-3, "loss": 190.0, "elbo": -180.5, "beta": 0.5},
    {"phase": "joint@lr0.001", "epoch": 2, "lr": 1e-3, "loss": 150.0, "elbo": -140.25,
     "beta": 1.0, "val_nll": 135.0},
    {"phase": "joint@lr0.0001", "epoch": 3, "lr": 1e-4, "loss": 130.0, "elbo": -128.0, "beta": 1.0},
    {"phase": "joint@lr1e-05", "epoch": 4, "lr": 1e-5, "loss": 125.0, "elbo": -124.75,
     "beta": 1.0, "val_nll": 121.5},
]  # fmt: skip
RUN_B = [
    {"phase": "standard@lr0.001", "epoch": e, "lr": 1e-3, "elbo": -200.0 + 10 * e, "beta": 0.01 * e}
    for e in range(1, 7)
]
C0, C1 = (0x1F / 255, 0x77 / 255, 0xB4 / 255), (0xFF / 255, 0x7F / 255, 0x0E / 255)


def _write(folder, lines):
    folder.mkdir(parents=True)
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (folder / "metrics.jsonl").write_text(text)
    return folder


def _share_of(img, color, tol=0.02):
    return float(np.all(np.abs(img[..., :3] - np.asarray(color)) < tol, axis=-1).mean())


def test_training_curves_are_the_metrics_lines(tmp_path):
    c = training_curves(_write(tmp_path / "a", RUN_A))
    np.testing.assert_array_equal(c["epoch"], [1, 2, 3, 4])
    np.testing.assert_array_equal(c["elbo"], [-180.5, -140.25, -128.0, -124.75])
    np.testing.assert_array_equal(c["beta"], [0.5, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(c["lr"], [1e-3, 1e-3, 1e-4, 1e-5])
    np.testing.assert_array_equal(c["val_epoch"], [2, 4])
    np.testing.assert_array_equal(c["val_nll"], [135.0, 121.5])


def test_plot_two_runs_overlaid(tmp_path):
    a, b = _write(tmp_path / "a", RUN_A), _write(tmp_path / "b", RUN_B)
    out = tmp_path / "curves.png"
    curves = plot_curves([a, b], out)
    assert list(curves) == ["a", "b"]
    np.testing.assert_array_equal(curves["b"]["elbo"], [-190, -180, -170, -160, -150, -140])
    assert len(curves["b"]["val_nll"]) == 0
    img = plt.imread(out)  # (H, W, 4) float in [0, 1]
    assert img.ndim == 3 and img.shape[0] > 400 and img.shape[1] < 2 * img.shape[0]  # 2 x 2
    assert (img[..., :3] < 0.5).mean() > 0.01  # axes, labels and lines: not blank
    assert _share_of(img, C0) > 5e-4 and _share_of(img, C1) > 5e-4  # both runs drawn


def test_plot_with_only_one_color_when_one_run(tmp_path):
    out = tmp_path / "one.png"
    plot_curves([_write(tmp_path / "b", RUN_B)], out)
    img = plt.imread(out)
    assert _share_of(img, C0) > 5e-4 and _share_of(img, C1) == 0.0
    assert img.shape[1] > 2.5 * img.shape[0]  # no validation NLL: one row of three panels


def test_labels(tmp_path):
    assert run_labels(["x/run", "y/run", "z/other"]) == ["x/run", "y/run", "other"]
    assert run_labels(["a", "b"], ["std", "rnvp"]) == ["std", "rnvp"]
    with pytest.raises(ValueError, match="--labels names 1 runs but 2 were given"):
        run_labels(["a", "b"], ["std"])


def test_plot_cli_end_to_end(synthetic, tmp_path, capsys):
    """Two real (tiny) runs through `vaeprior train`, then `vaeprior plot` on both."""
    tiny = ["--z-dim", "4", "--flow-depth", "2", "--eval-samples", "2", "--eval-limit", "4"]
    tiny += ["--device", "cpu", "--no-progress", "--epochs", "3"]
    std, rnvp = tmp_path / "std", tmp_path / "rnvp"
    assert main(["train", "--out", str(std), *tiny]) == 0
    assert main(["train", "--prior", "rnvp", "--out", str(rnvp), *tiny]) == 0
    capsys.readouterr()
    out = tmp_path / "c.png"
    argv = ["plot", str(std), str(rnvp), "--out", str(out), "--labels", "standard, RNVP prior"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == (
        f"wrote {out}: standard (3 epochs), RNVP prior (3 epochs)"
    )
    assert plt.imread(out).shape[2] == 4
    for run in (std, rnvp):  # the plotted series are the file's
        lines = [json.loads(t) for t in (run / "metrics.jsonl").read_text().splitlines()]
        c = training_curves(run)
        np.testing.assert_array_equal(c["elbo"], [line["elbo"] for line in lines])
        np.testing.assert_array_equal(c["lr"], [line["lr"] for line in lines])


@pytest.mark.parametrize(
    ("content", "msg"),
    [
        (None, "metrics.jsonl not found"),
        ("", "is empty: the run has not finished an epoch yet"),
        ('{"epoch": 1}\nnot json\n', "line 2 is not JSON"),
        ('{"elbo": 1}\n', "line 1 has no epoch"),
    ],
)
def test_plot_errors_are_one_line(tmp_path, capsys, content, msg):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "metrics.jsonl").write_text(content)
    assert main(["plot", str(run), "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaeprior: error: ") and "\n" not in err and msg in err, err
    assert not (tmp_path / "c.png").exists()


def test_plot_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    run = _write(tmp_path / "a", RUN_A)
    assert main(["plot", str(run), "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "vaeprior: error: plotting needs matplotlib: pip install vaeprior[plot]"
