"""Run directories and checkpoints: atomic writes, validated loads, load_run, config round trip."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

import vaeprior.fast.runs as ck
from vaeprior.fast.config import TrainConfig
from vaeprior.fast.models.vae import build_vae
from vaeprior.fast.runs import CheckpointError, atomic_save, load_checkpoint, load_run
from vaeprior.fast.training.loop import train


def test_atomic_save_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"format": ck.FORMAT, "model": {"w": torch.ones(3)}}, path)

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"format": ck.FORMAT, "model": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))


def test_unreadable_or_foreign_checkpoints_raise_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="is not a vaeprior-checkpoint-v1"):
        load_checkpoint(tmp_path / "other.pt")


def test_mismatched_state_is_rejected():
    vae = build_vae(tiny_model())
    other = build_vae(tiny_model(z_dim=6)).state_dict()
    with pytest.raises(CheckpointError, match="does not match the model"):
        ck.load_model_state(vae, other, "x.pt")


def test_train_config_round_trip():
    cfg = TrainConfig(
        dataset="static-mnist",
        model=tiny_model(prior="rnvp"),
        strategy="iterative",
        epochs=7,
        iterations=2,
        m_epochs=3,
        reg_qz=True,
    )
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown train config keys"):
        TrainConfig.from_dict({**cfg.to_dict(), "momentum": 1})
    assert cfg.effective_batch_size == 128
    assert TrainConfig(dataset="mnist", model=tiny_model(model="pixel")).effective_batch_size == 64


def test_load_run_returns_the_trained_model(synthetic, tmp_path):
    cfg = TrainConfig(
        dataset="mnist",
        model=tiny_model(prior="rnvp"),
        epochs=3,
        eval_samples=4,
        eval_limit=8,
        device="cpu",
    )
    train(cfg, tmp_path / "r", progress=False)
    vae, loaded = load_run(tmp_path / "r")
    assert loaded == cfg and not vae.training
    saved = load_checkpoint(tmp_path / "r" / "checkpoint.pt")["model"]
    assert all(torch.equal(v, saved[k]) for k, v in vae.state_dict().items())
    assert vae.prior_flow.initialized()  # ActNorm state survives the reload
    (tmp_path / "r" / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_run(tmp_path / "r")
