"""The `vaeprior` CLI: train / evaluate / sample end to end, and one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial

import pytest

import vaeprior.fast.data as fdata
import vaeprior.fast.training.loop as ftrain
from vaeprior.fast.cli import main
from vaeprior.reference.data import load_dataset

TINY = [
    "--z-dim",
    "4",
    "--flow-depth",
    "2",
    "--eval-samples",
    "4",
    "--eval-limit",
    "8",
    "--device",
    "cpu",
    "--no-progress",
    "--epochs",
    "3",
]


def _train(out, *extra):
    return main(["train", "--prior", "rnvp", "--out", str(out), *TINY, *extra])


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaeprior: error: ") and "\n" not in err, err
    return err


def test_train_evaluate_sample(synthetic, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run) == 0
    for f in ("config.json", "metrics.jsonl", "checkpoint.pt", "results.json"):
        assert (run / f).is_file(), f
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    assert main(["evaluate", str(run), "--samples", "5", "--limit", "6", "--backend", "torch"]) == 0
    ev = json.loads((run / "eval.json").read_text())
    assert {"nll", "elbo", "recon", "kl", "klzx", "active_units", "samples", "n"} <= set(ev)
    assert ev["n"] == 6 and ev["samples"] == 5
    assert ev["klzx"] == pytest.approx(-ev["nll"] - ev["elbo"])
    assert "NLL" in capsys.readouterr().out
    assert main(["sample", str(run), "--n", "6", "--out", str(tmp_path / "g.png")]) == 0
    import matplotlib.pyplot as plt

    from vaeprior.fast.analysis.samples import sample_images
    from vaeprior.fast.runs import load_run

    img = plt.imread(tmp_path / "g.png")
    assert img.shape[:2] == (2 * 28, 3 * 28)  # ceil(sqrt(6)) = 3 columns, 2 rows
    means = sample_images(load_run(run)[0], 6, seed=0).view(6, 28, 28)  # Bernoulli means
    assert abs(img[28:56, 56:84, 0] - means[5].numpy()).max() <= 2 / 255  # 8-bit colormap


def test_resume_via_cli(synthetic, tmp_path):
    run = tmp_path / "run"
    assert _train(run) == 0
    assert _train(run, "--resume") == 0  # finished run: nothing left to train


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["train", "--prior", "rnvp", "--flow-depth", "-1"], "flow depth K must be >= 0"),
        (["train", "--strategy", "post-hoc"], "use --prior rnvp"),
        (["train", "--prior", "rnvp", "--resume"], "--resume: no checkpoint"),
        (
            [
                "train",
                "--prior",
                "rnvp",
                "--strategy",
                "post-hoc",
                "--base-run",
                "/nonexistent/run",
            ],
            "not found",
        ),
        (["train", "--epochs", "0"], "epochs must be >= 1"),
        (["train", "--lr", "0"], "lr must be a positive finite number, got 0.0"),
        (["train", "--patience", "0"], "patience must be >= 1, got 0"),
    ],
)
def test_train_errors(synthetic, tmp_path, capsys, argv, msg):
    assert main([argv[0], "--out", str(tmp_path / "r"), *TINY, *argv[1:]]) == 2  # argv wins
    assert msg in _error(capsys)
    assert not (tmp_path / "r" / "config.json").exists()


@pytest.mark.parametrize("flag", ["--model", "--dataset", "--strategy"])
def test_unknown_choices_exit_2(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as e:
        main(["train", flag, "bogus", "--out", str(tmp_path / "r")])
    assert e.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err


def test_out_holding_another_run(synthetic, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run) == 0
    before = (run / "checkpoint.pt").read_bytes()
    assert _train(run) == 2
    assert "already holds a run" in _error(capsys)
    assert _train(run, "--resume", "--seed", "3") == 2
    assert "holds a different run" in _error(capsys)
    assert (run / "checkpoint.pt").read_bytes() == before


def test_evaluate_errors(synthetic, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "not found" in _error(capsys)
    run = tmp_path / "run"
    assert _train(run) == 0
    (run / "checkpoint.pt").write_bytes(b"junk")
    assert main(["evaluate", str(run), "--samples", "2"]) == 2
    err = _error(capsys)
    assert "unreadable" in err and "train the run again into a new --out folder" in err


def test_missing_data_names_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fdata, "load_dataset", partial(load_dataset, download=False))
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["train", "--out", str(tmp_path / "r"), "--data-dir", str(empty), *TINY]
    assert main(argv) == 2
    err = _error(capsys)
    assert str(empty) in err and "mnist" in err
    assert not (tmp_path / "r").exists()


def test_non_finite_loss_exits_2_keeping_the_checkpoint(synthetic, tmp_path, capsys, monkeypatch):
    real, calls = ftrain.training_loss, {"n": 0}

    def poisoned(*a, **k):
        loss, stats = real(*a, **k)
        calls["n"] += 1
        return (loss + float("inf"), stats) if calls["n"] == 3 else (loss, stats)

    monkeypatch.setattr(ftrain, "training_loss", poisoned)
    assert _train(tmp_path / "r") == 2
    assert "non-finite loss (inf) at epoch 2, batch 1" in _error(capsys)
    assert (tmp_path / "r" / "checkpoint.pt").is_file()


def test_lazy_subcommand_reports_missing_module(capsys, monkeypatch):
    import vaeprior.fast.cli as cli

    monkeypatch.setitem(cli.LAZY, "analyze", ("vaeprior.fast.no_such_module", "x"))
    assert main(["analyze", "--help"]) == 2
    assert "analyze subcommand is unavailable" in _error(capsys)


def test_python_dash_m_entry_point():
    r = subprocess.run(
        [sys.executable, "-m", "vaeprior.fast", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "train" in r.stdout and "evaluate" in r.stdout


def test_export_feeds_the_numpy_reference(synthetic, tmp_path, capsys):
    """A trained run exported to .npz gives the reference the same log-weights as torch."""
    import numpy as np
    import torch

    from vaeprior.fast.runs import load_run
    from vaeprior.reference import objectives
    from vaeprior.reference.demo import config_from_params

    run, npz = tmp_path / "run", tmp_path / "w.npz"
    assert _train(run) == 0
    assert main(["export", str(run), "--out", str(npz)]) == 0
    assert "wrote" in capsys.readouterr().out and not (tmp_path / "w.npz.tmp.npz").exists()
    params = dict(np.load(npz))
    cfg = config_from_params(params)
    assert (cfg.z_dim, cfg.prior, cfg.flow_depth) == (4, "rnvp", 2)
    vae = load_run(run)[0].double().eval()
    rng = np.random.default_rng(0)
    x = (rng.random((3, 784)) < 0.5).astype(np.float64)
    eps = rng.standard_normal((5, 3, 4))
    ref = objectives.log_weights(params, cfg, x, eps)
    with torch.no_grad():
        lw = vae.log_weights(torch.from_numpy(x), torch.from_numpy(eps))
    for r, name in zip(ref, ("log_px_z", "log_pz", "log_qz"), strict=True):
        np.testing.assert_allclose(lw[name].numpy(), r, rtol=1e-10, atol=1e-9)


def test_export_refuses_non_dense_models(synthetic, tmp_path, capsys):
    run = tmp_path / "conv"
    assert main(["train", "--model", "conv", "--out", str(run), *TINY]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "w.npz")]) == 2
    assert "dense" in _error(capsys).lower() and not (tmp_path / "w.npz").exists()


# ---- help, hints, progress ---------------------------------------------------------------------


def _parsers():
    from vaeprior.fast.cli import subcommand_parsers

    return subcommand_parsers()


def test_every_option_has_help_and_shows_its_default():
    """Each subcommand's every action has help; a non-None default appears in it as
    'default: X'; an option whose default is None says in words what not giving it means."""
    import argparse
    import re

    parsers = _parsers()
    assert {"train", "evaluate", "sample", "export", "plot", "analyze"} <= set(parsers)
    problems = []
    for name, parser in parsers.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help or action.help == argparse.SUPPRESS:
                problems.append(f"{label}: no help")
                continue
            text = " ".join(formatter._expand_help(action).split())
            default = action.default
            if default is None or default is False or not action.option_strings:
                # reproduce's options belong to its own module; the rest explain a None default
                explained = action.required or not action.option_strings or action.nargs == 0
                if not explained and name != "reproduce" and "default" not in text:
                    problems.append(f"{label}: default None not explained: {text!r}")
                continue
            if not re.search(rf"default: [^)]*{re.escape(str(default))}", text):
                problems.append(f"{label}: default {default!r} not shown: {text!r}")
    assert not problems, "\n".join(problems)


def test_analyze_help_lists_every_analysis(capsys):
    from vaeprior.fast.analysis.cli import ANALYSES

    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    lines = capsys.readouterr().out.splitlines()
    for name in ANALYSES:
        assert any(line.startswith(f"  {name} ") for line in lines), name


def test_train_help_groups_and_units(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for group in ("model (Appendix B.2):", "data (Appendix B.1):", "schedule", "output:"):
        assert group in out, group
    text = " ".join(out.split())
    assert "--eval-samples S importance samples z ~ q(z|x) per test image" in text
    assert "(default: 1000)" in text
    assert "--seed SEED seed of every random draw (default: 0)" in text
    assert "scales by N/2400 (default: the paper's 2400)" in text


@pytest.mark.parametrize(
    ("argv", "message", "hint"),
    [
        (["train", "--model", "bogus", "--out", "r"], "invalid choice: 'bogus'", "vaeprior train"),
        (["train"], "the following arguments are required: --out", "vaeprior train"),
        (["evaluate", "run", "--bogus"], "unrecognized arguments: --bogus", "vaeprior evaluate"),
        (["evaluate", "run", "--samples", "x"], "invalid int value: 'x'", "vaeprior evaluate"),
        (["plot", "--out", "c.png"], "required: RUN_DIR", "vaeprior plot"),
        (["analyze", "run"], "required: --what", "vaeprior analyze"),
        (["bogus"], "invalid choice: 'bogus'", "vaeprior"),
        ([], "required: SUBCOMMAND", "vaeprior"),
    ],
)
def test_command_line_mistakes_give_an_error_and_a_hint(capsys, argv, message, hint):
    with pytest.raises(SystemExit) as e:
        main(argv)
    lines = capsys.readouterr().err.splitlines()
    assert e.value.code == 2 and len(lines) == 2, lines
    assert lines[0].startswith("vaeprior: error: ") and message in lines[0], lines
    assert lines[1] == f"vaeprior: hint: see `{hint} --help`"


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["evaluate", "RUN", "--samples", "0"], "--samples must be >= 1, got 0"),
        (["analyze", "RUN", "--what", "metrics", "--samples", "0"], "--samples must be >= 1"),
        (["analyze", "RUN", "--what", "closest-pairs", "--samples", "1"], "--samples must be >= 2"),
    ],
)
def test_bad_sample_counts_are_refused_before_loading(tmp_path, capsys, argv, msg):
    """The run folder does not exist: the samples check must come before loading it."""
    argv = [str(tmp_path / "no-run") if a == "RUN" else a for a in argv]
    assert main(argv) == 2
    err = _error(capsys)
    assert msg in err and "not found" not in err


def test_no_progress_still_prints_the_summary(synthetic, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run) == 0  # TINY has --no-progress
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if "NLL" in line]
    assert len(lines) == 1 and lines[0].startswith(f"{run}: NLL "), out
    res = json.loads((run / "results.json").read_text())
    assert f"NLL {res['nll']:.3f}" in lines[0] and "(n=8, S=4)" in lines[0]
    assert "batch/s" not in err and "it/s" not in err  # no bar


def test_progress_prints_the_summary_once(synthetic, tmp_path, capsys):
    argv = ["train", "--prior", "rnvp", "--out", str(tmp_path / "run")]
    assert main([*argv, *[a for a in TINY if a != "--no-progress"]]) == 0
    out, err = capsys.readouterr()
    assert sum(line.startswith(f"{tmp_path / 'run'}: NLL ") for line in out.splitlines()) == 1
    assert "epoch 3/3" in err  # the training bar


@pytest.mark.parametrize(
    ("flag", "field", "value"),
    [
        (["--lr", "3e-4"], "lr", 3e-4),
        (["--patience", "2"], "patience", 2),
        (["--no-early-stop"], "early_stopping", False),
        (["--pixelcnn", "gated"], "pixelcnn", "gated"),
    ],
)
def test_training_options_reach_the_config(synthetic, tmp_path, flag, field, value):
    """--lr, --patience, --no-early-stop and --pixelcnn set their field (saved in config.json)."""
    run = tmp_path / "run"
    assert _train(run, *flag) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["model"] if field == "pixelcnn" else cfg)[field] == value
    if field == "lr":  # the first phase trains at the given rate
        first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
        assert first["lr"] == pytest.approx(value)


def test_training_option_defaults(synthetic, tmp_path):
    run = tmp_path / "run"
    assert _train(run) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["lr"], cfg["patience"], cfg["early_stopping"]) == (None, None, True)
    assert cfg["model"]["pixelcnn"] == "paper"


def test_evaluate_announces_a_long_evaluation(synthetic, tmp_path, capsys, monkeypatch):
    """With the announcement threshold at 0 s, `vaeprior evaluate` prints the estimate line
    (also under --no-progress, which hides only the bar), then the summary."""
    import re

    import vaeprior.fast.evaluation.evaluate as ev

    run = tmp_path / "run"
    assert _train(run) == 0
    capsys.readouterr()
    monkeypatch.setattr(ev, "ANNOUNCE_ABOVE_S", 0.0)
    monkeypatch.setattr(ev, "CALIBRATE_S", 0.0)
    argv = ["evaluate", str(run), "--samples", "5", "--limit", "6", "--backend", "torch"]
    assert main([*argv, "--no-progress"]) == 0
    out, err = capsys.readouterr()
    pattern = (
        r"evaluating 6 test rows x 5 samples: about \d+ s on cpu "
        r"\(use --limit N or --samples S to shorten\)"
    )
    assert [line for line in err.splitlines() if line.strip()] and re.fullmatch(
        pattern, err.strip()
    ), err
    assert "NLL" in out
    assert main(argv) == 0  # with the bar
    err = capsys.readouterr().err
    assert re.search(pattern, err) and "evaluate 6 test rows x 5 samples" in err and "6/6" in err
