"""Training (Appendix B.3, Algorithm B.1): objective by hand, strategies, resume, NaN handling."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model
from torch.distributions import Bernoulli, Normal

import vaeprior.fast.training.loop as ftrain
from vaeprior.fast.config import TrainConfig
from vaeprior.fast.evaluation.evaluate import evaluate
from vaeprior.fast.models.vae import build_vae
from vaeprior.fast.runs import load_checkpoint
from vaeprior.fast.training.loop import TrainingError, train
from vaeprior.fast.training.objective import l2_penalty, reg_qz, training_loss


def _vae(**kw):
    torch.manual_seed(0)
    vae = build_vae(tiny_model(**kw)).double()
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return vae


def _batch(b=5):
    g = torch.Generator().manual_seed(3)
    x = torch.bernoulli(torch.full((b, 784), 0.4, dtype=torch.float64), generator=g)
    return x, torch.randn(1, b, 4, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("unit_prior", [True, False])
def test_warmup_loss_by_hand(unit_prior):
    vae, (x, eps) = _vae(), _batch()
    vae.eval()
    beta = 0.3
    loss, stats = training_loss(vae, x, eps, beta, unit_prior=unit_prior)
    mean, log_std = vae.encode(x)
    z = mean + log_std.exp() * eps[0]  # (B, Z)
    log_q = Normal(mean, log_std.exp()).log_prob(z).sum(-1)
    log_p = Normal(0.0, 1.0).log_prob(z).sum(-1)
    logits = vae.decoder.out(vae.decoder.trunk(z))
    log_px = Bernoulli(logits=logits).log_prob(x).sum(-1)
    l2 = 1e-4 * 0.5 * sum((p**2).sum() for p in vae.l2_parameters())
    expected = -(log_px + beta * (log_p - log_q)).mean() + l2
    # gaussian-prior model: its prior and the standard stages' N(0, I) coincide
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
    elbo = (log_px + log_p - log_q).mean().detach()
    assert float(stats["elbo"]) == pytest.approx(float(elbo), rel=1e-12)


def test_learned_prior_enters_the_loss():
    vae, (x, eps) = _vae(prior="rnvp"), _batch()
    vae.eval()
    loss_unit, _ = training_loss(vae, x, eps, 0.5, unit_prior=True)
    loss_model, _ = training_loss(vae, x, eps, 0.5, unit_prior=False)
    z, _ = vae.posterior_sample(x, eps)
    diff = 0.5 * (vae.prior_log_prob(z) - Normal(0.0, 1.0).log_prob(z).sum(-1)).mean()
    gap = (loss_unit - loss_model).detach()
    assert float(gap) == pytest.approx(float(diff.detach()), rel=1e-10)


def test_l2_reaches_exactly_the_hidden_kernels():
    vae = _vae(prior="rnvp", posterior="rnvp")
    names = dict(vae.named_parameters())
    hidden = {
        n for n in names if n.startswith(("encoder.trunk", "decoder.trunk")) and names[n].ndim == 2
    }
    assert len(hidden) == 4
    expected = hidden | {n for n in names if n.endswith("flow.A")}
    assert len(expected) == 4 + 2  # two flows, coupling kernels stacked over their K blocks
    l2_penalty(vae).backward()
    for n, p in names.items():
        if n in expected:
            assert torch.allclose(p.grad, 1e-4 * p.detach(), rtol=1e-12), n
        else:
            assert p.grad is None or not p.grad.any(), n


def test_reg_qz_by_hand():
    z = torch.tensor([[[1.0, 0.0], [3.0, 2.0]], [[1.0, 4.0], [3.0, 2.0]]], dtype=torch.float64)
    # dim 0: values 1,3,1,3 -> mean 2, var 1 ; dim 1: 0,2,4,2 -> mean 2, var 2
    assert float(reg_qz(z)) == pytest.approx(((4 + 0) + (4 + 1)) / 2)


def _cfg(**kw) -> TrainConfig:
    base = {
        "dataset": "mnist",
        "model": tiny_model(prior="rnvp"),
        "epochs": 4,
        "eval_samples": 8,
        "device": "cpu",
        "checkpoint_every": 1,
        "eval_limit": 16,
    }
    return TrainConfig(**{**base, **kw})


def _state(run):
    return load_checkpoint(run / "checkpoint.pt")["model"]


class Killed(Exception):
    pass


def test_kill_and_resume_gives_identical_weights(synthetic, tmp_path, monkeypatch):
    cfg = _cfg()
    full = train(cfg, tmp_path / "a", progress=False)

    def kill(epochs_done):
        if epochs_done == 2:
            raise Killed

    monkeypatch.setattr(ftrain, "_epoch_hook", kill)
    with pytest.raises(Killed):
        train(cfg, tmp_path / "b", progress=False)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["state"]["epoch"] == 2
    monkeypatch.setattr(ftrain, "_epoch_hook", lambda e: None)
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["nll"] == full["nll"]
    lines = [json.loads(s) for s in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3, 4]
    assert [m["lr"] for m in lines] == [1e-3, 1e-4, 1e-4, 1e-5]
    assert bool(b["prior_flow.actnorm_initialized"])


def test_post_hoc_freezes_q_and_p_x_given_z(synthetic, tmp_path, monkeypatch):
    snaps = {}
    monkeypatch.setattr(
        ftrain, "_epoch_hook", lambda e: snaps.__setitem__(e, _state(tmp_path / "r"))
    )
    res = train(_cfg(strategy="post-hoc", epochs=3), tmp_path / "r", progress=False)
    assert res["epochs"] == 3 + 4  # standard stage 3 + prior stage 3200 * 3/2400
    before, after = snaps[3], snaps[7]
    prior = [k for k in before if k.startswith("prior_flow.")]
    frozen = [k for k in before if not k.startswith("prior_flow.")]
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in prior)
    # the standard stage never touched the prior (unit Gaussian used instead)
    torch.manual_seed(0)
    init = build_vae(tiny_model(prior="rnvp")).state_dict()
    assert all(torch.equal(init[k], snaps[3][k]) for k in prior)
    assert not bool(snaps[3]["prior_flow.actnorm_initialized"])
    assert bool(snaps[4]["prior_flow.actnorm_initialized"])


def test_post_hoc_from_a_base_run(synthetic, tmp_path):
    base_cfg = _cfg(model=tiny_model(), epochs=3)
    train(base_cfg, tmp_path / "base", progress=False)
    cfg = _cfg(strategy="post-hoc", epochs=3, base_run=str(tmp_path / "base"))
    res = train(cfg, tmp_path / "ph", progress=False)
    assert res["epochs"] == 4
    base, ph = _state(tmp_path / "base"), _state(tmp_path / "ph")
    assert all(torch.equal(base[k], ph[k]) for k in base)
    bad = _cfg(strategy="post-hoc", epochs=3, base_run=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="not found"):
        train(bad, tmp_path / "ph2", progress=False)
    other = _cfg(
        strategy="post-hoc",
        epochs=3,
        base_run=str(tmp_path / "base"),
        model=tiny_model(prior="rnvp", hidden=12),
    )
    with pytest.raises(ValueError, match="different model"):
        train(other, tmp_path / "ph3", progress=False)
    assert not (tmp_path / "ph3").exists()


def test_iterative_alternates_frozen_groups(synthetic, tmp_path, monkeypatch):
    snaps = {}
    monkeypatch.setattr(
        ftrain, "_epoch_hook", lambda e: snaps.__setitem__(e, _state(tmp_path / "r"))
    )
    cfg = _cfg(strategy="iterative", epochs=3, iterations=3, m_epochs=1)
    res = train(cfg, tmp_path / "r", progress=False)
    assert res["epochs"] == 3 + 2 + 4
    phases = [
        json.loads(s)["phase"] for s in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    ]
    assert phases[3:] == [
        "iter1b@lr0.001",
        "iter1b@lr0.0001",
        "iter2a",
        "iter2b",
        "iter3a",
        "iter3b",
    ]

    def changed(e, prefix):
        return [
            k
            for k in snaps[e]
            if k.startswith(prefix) and not torch.equal(snaps[e - 1][k], snaps[e][k])
        ]

    for e in (4, 5, 7, 9):  # prior epochs: q and p(x|z) fixed
        assert (
            changed(e, "encoder.") == []
            and changed(e, "decoder.") == []
            and changed(e, "prior_flow.")
        )
    for e in (6, 8):  # q, p epochs: prior fixed
        assert changed(e, "prior_flow.") == [] and changed(e, "encoder.") and changed(e, "decoder.")


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(synthetic, tmp_path, monkeypatch):
    real = ftrain.training_loss
    calls = {"n": 0}

    def poisoned(*a, **k):
        loss, stats = real(*a, **k)
        calls["n"] += 1
        return (loss * float("nan"), stats) if calls["n"] == 4 else (loss, stats)

    monkeypatch.setattr(ftrain, "training_loss", poisoned)
    snaps = {}
    monkeypatch.setattr(
        ftrain, "_epoch_hook", lambda e: snaps.__setitem__(e, _state(tmp_path / "r"))
    )
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at epoch 2, batch 2"):
        train(_cfg(), tmp_path / "r", progress=False)  # 192 images / 128: 2 batches per epoch
    kept = _state(tmp_path / "r")
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")["state"]["epoch"] == 1
    assert all(torch.equal(kept[k], snaps[1][k]) for k in kept)


def test_early_stopping_keeps_the_best_validation_model(synthetic, tmp_path):
    synthetic(dynamic=False)
    cfg = _cfg(dataset="static-mnist", epochs=4, model=tiny_model(prior="rnvp"))
    train(cfg, tmp_path / "r", progress=False)
    lines = [json.loads(s) for s in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    vals = [m["val_nll"] for m in lines if "val_nll" in m]
    assert len(vals) == 4  # validation every max(1, 20 * 4/2400) epochs
    from vaeprior.fast.data import load_device_data, split_tensor
    from vaeprior.fast.runs import load_run

    vae, _ = load_run(tmp_path / "r")
    data = load_device_data("static-mnist", None, "cpu", validation=True)
    final = evaluate(vae, split_tensor(data, "validation", limit=16), samples=100)["nll"]
    assert final == pytest.approx(min(vals), rel=1e-6)
    assert (tmp_path / "r" / "best.pt").exists()


def test_reg_qz_option_changes_training(synthetic, tmp_path):
    a = train(_cfg(epochs=3), tmp_path / "a", progress=False)
    b = train(_cfg(epochs=3, reg_qz=True), tmp_path / "b", progress=False)
    assert a["nll"] != b["nll"]


def test_end_to_end_real_mnist_beats_untrained(data_dir, tmp_path):
    from vaeprior.fast.config import ModelConfig

    model = ModelConfig.for_dataset("mnist", prior="rnvp", flow_depth=2)
    cfg = TrainConfig(
        dataset="mnist",
        model=model,
        epochs=1,
        train_limit=512,
        eval_samples=50,
        eval_limit=64,
        device="cpu",
        data_dir=str(data_dir),
    )
    res = train(cfg, tmp_path / "r", progress=False)
    from vaeprior.fast.data import load_device_data

    torch.manual_seed(cfg.seed)
    untrained = build_vae(model)
    x = load_device_data("mnist", data_dir, "cpu").test[:64]
    before = evaluate(untrained, x, samples=50)["nll"]
    assert res["n"] == 64 and res["samples"] == 50
    assert torch.isfinite(torch.tensor(res["nll"])) and res["nll"] < before - 50
    assert res["klzx"] >= 0  # LogMeanExp >= mean on the same samples (Jensen)
    print(f"trained NLL {res['nll']:.2f} vs untrained {before:.2f}")


# ---- early stopping (Appendix B.3) and Algorithm B.1's whole process ------------------------


def _scripted(monkeypatch, nlls: dict[int, float]) -> list[int]:
    """Replace the validation NLL by `nlls[epoch]`; returns the epochs validated."""
    seen: list[int] = []

    def validate(vae, data, cfg, phase, epoch):
        seen.append(epoch)
        return nlls[epoch]

    monkeypatch.setattr(ftrain, "_validate", validate)
    return seen


def _snapshots(monkeypatch, run) -> dict:
    snaps: dict = {}
    monkeypatch.setattr(ftrain, "_epoch_hook", lambda e: snaps.__setitem__(e, _state(run)))
    return snaps


def _lines(run):
    return [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# StaticMNIST at --epochs 8: phases of 5 (lr 1e-4) and 3 (lr 1e-5) epochs, validation every epoch.
# Best at epoch 2, then three validations without improvement.
WORSENING = {1: 10.0, 2: 9.0, 3: 9.5, 4: 9.6, 5: 9.7, 6: 1.0, 7: 1.0, 8: 1.0}


def _static(synthetic, **kw) -> TrainConfig:
    synthetic(dynamic=False)
    return _cfg(dataset="static-mnist", epochs=8, **kw)


def test_early_stopping_stops_after_patience_validations(synthetic, tmp_path, monkeypatch):
    run = tmp_path / "r"
    seen = _scripted(monkeypatch, WORSENING)
    snaps = _snapshots(monkeypatch, run)
    res = train(_static(synthetic, patience=3), run, progress=False)
    assert seen == [1, 2, 3, 4, 5]
    lines = _lines(run)
    assert [m["epoch"] for m in lines] == [1, 2, 3, 4, 5]
    assert {m["phase"] for m in lines} == {"joint@lr0.0001"}  # the 1e-5 step never ran
    stop = lines[-1]["early_stop"]
    assert stop == {
        "scope": "joint",
        "epoch": 5,
        "reason": "validation NLL did not improve for 3 validations (3 epochs): "
        "best 9.0000 at epoch 2",
        "best_epoch": 2,
        "skipped_epochs": 3,
    }
    assert lines[-1]["restored_best"] == 2
    assert all("early_stop" not in m and "restored_best" not in m for m in lines[:-1])
    assert res["epochs"] == 5 and res["schedule_epochs"] == 8 and res["early_stops"] == [stop]
    assert res["best"] == {"scope": "joint", "epoch": 2, "nll": 9.0}
    final = _state(run)
    assert _same(final, snaps[2]) and not _same(final, snaps[4])  # the best weights, restored
    assert sorted(snaps) == [1, 2, 3, 4, 8]  # the hook sees the schedule position: 5 -> 8
    st = load_checkpoint(run / "checkpoint.pt")["state"]
    assert (st["epoch"], st["trained"], st["bad"]) == (8, 5, 3)


def test_a_longer_patience_does_not_stop(synthetic, tmp_path, monkeypatch):
    run = tmp_path / "r"
    _scripted(monkeypatch, WORSENING)
    snaps = _snapshots(monkeypatch, run)
    res = train(_static(synthetic, patience=4), run, progress=False)
    lines = _lines(run)
    assert [m["epoch"] for m in lines] == list(range(1, 9))
    assert all("early_stop" not in m for m in lines) and res["early_stops"] == []
    assert res["epochs"] == 8 and res["best"]["epoch"] == 6
    assert lines[-1]["restored_best"] == 6  # the run's end restores its best weights
    assert _same(_state(run), snaps[6])


def test_early_stopping_off_never_validates(synthetic, tmp_path, monkeypatch):
    run = tmp_path / "r"
    seen = _scripted(monkeypatch, WORSENING)
    snaps = _snapshots(monkeypatch, run)
    res = train(_static(synthetic, patience=1, early_stopping=False), run, progress=False)
    assert seen == [] and not (run / "best.pt").exists()
    assert all("val_nll" not in m for m in _lines(run))
    assert res["epochs"] == 8 and res["best"] is None
    assert _same(_state(run), snaps[8])  # the final weights are kept


@pytest.mark.parametrize("checkpoint_every", [1, 3])
def test_kill_and_resume_across_a_validation(synthetic, tmp_path, monkeypatch, checkpoint_every):
    """Killed after epoch 4 (two validations without improvement): the resumed run keeps its
    patience counter and best, stops after epoch 5 and ends bit-identical to an unkilled run.
    With checkpoint_every=3 it resumes from epoch 3 and validates epoch 4 again."""
    cfg = _static(synthetic, patience=3, checkpoint_every=checkpoint_every)
    _scripted(monkeypatch, WORSENING)
    full = train(cfg, tmp_path / "a", progress=False)

    def kill(epochs_done):
        if epochs_done == 4:
            raise Killed

    monkeypatch.setattr(ftrain, "_epoch_hook", kill)
    with pytest.raises(Killed):
        train(cfg, tmp_path / "b", progress=False)
    st = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["state"]
    want = (4, 2) if checkpoint_every == 1 else (3, 1)
    assert (st["epoch"], st["bad"]) == want and st["best"]["epoch"] == 2
    monkeypatch.setattr(ftrain, "_epoch_hook", lambda e: None)
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    assert _same(_state(tmp_path / "a"), _state(tmp_path / "b"))
    assert resumed["nll"] == full["nll"] and resumed["early_stops"] == full["early_stops"]
    assert resumed["epochs"] == 5

    def strip(lines):
        return [{k: v for k, v in m.items() if k != "seconds"} for m in lines]

    assert strip(_lines(tmp_path / "b")) == strip(_lines(tmp_path / "a"))


def test_iterative_keeps_the_best_weights_of_the_whole_process(synthetic, tmp_path, monkeypatch):
    """Algorithm B.1: one best over Iterations 1b..Ib, not one per sub-phase; Iteration 1a (the
    standard VAE, unit prior) keeps its own best."""
    synthetic(dynamic=False)
    run = tmp_path / "r"
    # standard 2 + 1 epochs, iter1b 2 epochs (4, 5), iter2a 6, iter2b 7, iter3a 8, iter3b 9
    nlls = {1: 100.0, 2: 90.0, 3: 95.0, 4: 50.0, 5: 40.0, 6: 45.0, 7: 46.0, 8: 47.0, 9: 48.0}
    _scripted(monkeypatch, nlls)
    snaps = _snapshots(monkeypatch, run)
    cfg = _cfg(dataset="static-mnist", strategy="iterative", epochs=3, iterations=3, m_epochs=1)
    res = train(cfg, run, progress=False)
    restored = {m["epoch"]: m["restored_best"] for m in _lines(run) if "restored_best" in m}
    assert restored == {3: 2, 9: 5}  # not at the ends of iter1b (5), iter2a (6), iter2b (7), ...
    assert _same(snaps[3], snaps[2])  # 1a ended on its best weights
    assert _same(_state(run), snaps[5]) and not _same(snaps[5], snaps[8])
    assert res["best"] == {"scope": "iterative", "epoch": 5, "nll": 40.0}
    assert res["epochs"] == 9 and res["early_stops"] == []


def test_iterative_early_stop_ends_the_whole_process(synthetic, tmp_path, monkeypatch):
    synthetic(dynamic=False)
    nlls = {1: 100.0, 2: 90.0, 3: 95.0, 4: 50.0, 5: 40.0, 6: 45.0, 7: 46.0, 8: 47.0, 9: 48.0}
    _scripted(monkeypatch, nlls)
    cfg = _cfg(
        dataset="static-mnist", strategy="iterative", epochs=3, iterations=3, m_epochs=1,
        patience=2,
    )  # fmt: skip
    res = train(cfg, tmp_path / "r", progress=False)
    (stop,) = res["early_stops"]
    assert (stop["scope"], stop["epoch"], stop["best_epoch"], stop["skipped_epochs"]) == (
        "iterative", 7, 5, 2,
    )  # fmt: skip
    assert [m["epoch"] for m in _lines(tmp_path / "r")] == list(range(1, 8))
    assert res["epochs"] == 7


def test_train_prints_the_schedule_first(synthetic, tmp_path, capsys):
    cfg = _cfg(epochs=1)
    train(cfg, tmp_path / "r", progress=True)
    out = capsys.readouterr().out
    lines = ftrain.schedule_lines(cfg)
    assert out.startswith("\n".join(lines) + "\n")
    assert (
        "--epochs 1 scales the paper's 2400-epoch schedule by 1/2400; every phase keeps >= 1 "
        "epoch, so 3 epochs run" in out
    )
    assert lines[-1] == "  early stopping: off (the final weights are kept)"  # MNIST DenseVAE


def test_effective_patience_and_config_checks():
    assert ftrain.effective_patience(_cfg()) is None  # MNIST DenseVAE: no early stopping
    assert ftrain.effective_patience(_cfg(dataset="static-mnist")) == 10
    assert ftrain.effective_patience(_cfg(model=tiny_model(model="pixel"))) == 10
    assert ftrain.effective_patience(_cfg(dataset="static-mnist", patience=3)) == 3
    assert ftrain.effective_patience(_cfg(dataset="static-mnist", early_stopping=False)) is None
    with pytest.raises(ValueError, match="patience must be >= 1"):
        _cfg(patience=0)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        _cfg(lr=-1.0)
    assert [p.lr for p in _cfg(lr=2e-3).phases()] == pytest.approx([2e-3, 2e-4, 2e-5])


def test_run_state_of_an_older_checkpoint():
    st = ftrain.RunState.from_saved(
        {"epoch": 6, "best": {"stage": "iter2a", "epoch": 5, "nll": 1.5}, "seconds": 2.0}
    )
    assert (st.epoch, st.trained, st.bad, st.stops) == (6, 6, 0, [])
    assert st.best == {"scope": "iterative", "epoch": 5, "nll": 1.5}
