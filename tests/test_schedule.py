"""Paper schedules (Appendix B.3, Algorithm B.1) at full size, and their scaled shapes."""

from __future__ import annotations

import pytest

from vaeprior.fast.training import schedule as sch


def _summary(phases):
    return [(p.stage, p.epochs, p.lr, p.groups, p.prior) for p in phases]


VAE = ("encoder", "decoder", "posterior_flow")
ALL = (*VAE, "prior")


def test_joint_full_size_is_the_paper_schedule():
    ph = sch.build_schedule("joint", "mnist", "rnvp")
    assert _summary(ph) == [("joint", 800, lr, ALL, "model") for lr in (1e-3, 1e-4, 1e-5)]
    assert [p.warmup for p in ph] == [100] * 3
    assert [p.stage_offset for p in ph] == [0, 800, 1600]


def test_static_mnist_full_size():
    ph = sch.build_schedule("joint", "static-mnist", "gaussian")
    assert [(p.epochs, p.lr) for p in ph] == [(1600, 1e-4), (800, 1e-5)]
    assert sch.uses_early_stopping("static-mnist", "dense")
    assert sch.uses_early_stopping("mnist", "pixel")
    assert not sch.uses_early_stopping("mnist", "resnet")
    assert sch.validation_every(None) == 20


def test_post_hoc_full_size():
    ph = sch.build_schedule("post-hoc", "fashion-mnist", "rnvp")
    std = [("standard", 800, lr, VAE, "unit") for lr in (1e-3, 1e-4, 1e-5)]
    prior = [("post-hoc-prior", 1600, lr, ("prior",), "model") for lr in (1e-3, 1e-4)]
    assert _summary(ph) == std + prior
    assert [p.warmup for p in ph[3:]] == [0, 0]
    skip = sch.build_schedule("post-hoc", "mnist", "rnvp", skip_standard=True)
    assert _summary(skip) == prior


@pytest.mark.parametrize(("dataset", "n_iter", "m"), [("mnist", 16, 100), ("static-mnist", 4, 400)])
def test_iterative_full_size_algorithm_b1(dataset, n_iter, m):
    ph = sch.build_schedule("iterative", dataset, "rnvp")
    n_std = 2 if dataset == "static-mnist" else 3
    assert all(p.stage == "standard" and p.prior == "unit" for p in ph[:n_std])
    assert sum(p.epochs for p in ph[:n_std]) == 2400
    rest = ph[n_std:]
    assert _summary(rest[:2]) == [
        ("iter1b", m, 1e-3, ("prior",), "model"),
        ("iter1b", m, 1e-4, ("prior",), "model"),
    ]
    rounds = rest[2:]
    assert len(rounds) == 2 * (n_iter - 1)
    assert all(p.epochs == m and p.lr == 1e-4 for p in rounds)
    assert [p.groups for p in rounds] == [VAE, ("prior",)] * (n_iter - 1)
    # "trained for totally 3,200 epochs on all datasets (starting from Iteration 1b)"
    assert sum(p.epochs for p in rest) == 3200


def test_scaled_schedule_keeps_the_paper_shape():
    ph = sch.build_schedule("joint", "mnist", "rnvp", 24)
    assert [p.epochs for p in ph] == [8, 8, 8] and ph[0].warmup == 1
    ph = sch.build_schedule("post-hoc", "mnist", "rnvp", 240)
    assert [p.epochs for p in ph] == [80, 80, 80, 160, 160] and ph[0].warmup == 10
    ph = sch.build_schedule("iterative", "mnist", "rnvp", 240)
    assert [p.epochs for p in ph[3:5]] == [10, 10] and all(p.epochs == 10 for p in ph[5:])
    assert sch.total_epochs(ph) == 240 + 320
    assert sch.validation_every(240) == 2 and sch.validation_every(24) == 1


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 37, 100, 999, 2400])
def test_scaled_lengths_are_proportional_and_at_least_one(n):
    ph = sch.build_schedule("joint", "mnist", "rnvp", n)
    lengths = [p.epochs for p in ph]
    assert min(lengths) >= 1
    assert sum(lengths) == max(n, 3)
    if n >= 3:  # cumulative boundaries within rounding of the exact 1/3, 2/3 points
        assert abs(lengths[0] - n / 3) <= 0.5 and abs(lengths[0] + lengths[1] - 2 * n / 3) <= 0.5
    assert 1 <= ph[0].warmup <= sum(lengths)


def test_scale_lengths_rounding():
    assert sch.scale_lengths([800, 800, 800], 10 / 2400) == [3, 4, 3]
    assert sch.scale_lengths([800, 800, 800], 2 / 2400) == [1, 1, 1]
    assert sch.scale_lengths([1600, 800], 0.5) == [800, 400]


def test_beta_warmup_is_linear_from_001_to_1():
    assert sch.beta(0, 100) == pytest.approx(0.01)
    assert sch.beta(50, 100) == pytest.approx(0.505)
    assert sch.beta(100, 100) == 1.0 and sch.beta(1000, 100) == 1.0
    assert sch.beta(0, 0) == 1.0


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (("sgd", "mnist", "rnvp"), "unknown strategy"),
        (("post-hoc", "mnist", "gaussian"), "--prior rnvp"),
        (("iterative", "mnist", "gaussian"), "--prior rnvp"),
        (("joint", "mnist", "rnvp", 0), "epochs must be >= 1"),
    ],
)
def test_bad_schedules_raise(args, msg):
    with pytest.raises(ValueError, match=msg):
        sch.build_schedule(*args)


def test_iterative_overrides():
    ph = sch.build_schedule("iterative", "mnist", "rnvp", 3, iterations=2, m_epochs=1)
    assert [p.stage for p in ph] == ["standard"] * 3 + ["iter1b", "iter1b", "iter2a", "iter2b"]
    with pytest.raises(ValueError, match="iterations"):
        sch.build_schedule("iterative", "mnist", "rnvp", 3, iterations=0)


# ---- learning rate (--lr) ---------------------------------------------------------------------


def _lrs(phases):
    return [p.lr for p in phases]


@pytest.mark.parametrize("strategy", sch.STRATEGIES)
@pytest.mark.parametrize("dataset", ["mnist", "static-mnist", "omniglot"])
def test_lr_equal_to_the_papers_gives_the_papers_schedule(strategy, dataset):
    paper = sch.build_schedule(strategy, dataset, "rnvp", 240)
    first = 1e-4 if dataset == "static-mnist" else 1e-3
    assert paper[0].lr == first  # Appendix B.3
    assert sch.build_schedule(strategy, dataset, "rnvp", 240, lr=first) == paper


def test_lr_scales_every_learning_rate():
    joint = sch.build_schedule("joint", "mnist", "rnvp", lr=3e-4)
    assert _lrs(joint) == pytest.approx([3e-4, 3e-5, 3e-6], rel=1e-12)
    post = sch.build_schedule("post-hoc", "mnist", "rnvp", lr=3e-4)
    assert _lrs(post) == pytest.approx([3e-4, 3e-5, 3e-6, 3e-4, 3e-5], rel=1e-12)
    it = sch.build_schedule("iterative", "mnist", "rnvp", lr=2e-3)
    assert _lrs(it)[:5] == pytest.approx([2e-3, 2e-4, 2e-5, 2e-3, 2e-4], rel=1e-12)
    assert _lrs(it)[5:] == pytest.approx([2e-4] * 30, rel=1e-12)  # rounds 2..16 at 1e-4 x 2
    # StaticMNIST: the paper's first LR is 1e-4, so --lr 1e-3 multiplies everything by 10
    static = sch.build_schedule("post-hoc", "static-mnist", "rnvp", lr=1e-3)
    assert _lrs(static) == pytest.approx([1e-3, 1e-4, 1e-2, 1e-3], rel=1e-12)
    assert sch.lr_factor("static-mnist", 1e-3) == pytest.approx(10.0)
    assert sch.lr_factor("mnist", None) == 1.0


@pytest.mark.parametrize("bad", [0.0, -1e-3, float("nan"), float("inf")])
def test_bad_lr_raises(bad):
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        sch.build_schedule("joint", "mnist", "rnvp", lr=bad)


# ---- early-stopping scopes and the patience ---------------------------------------------------


def test_early_stopping_scopes():
    joint = sch.build_schedule("joint", "mnist", "rnvp", 24)
    assert {p.scope for p in joint} == {"joint"}
    assert [sch.scope_end(joint, i) for i in range(3)] == [24, 24, 24]
    post = sch.build_schedule("post-hoc", "mnist", "rnvp", 24)
    assert [p.scope for p in post] == ["standard"] * 3 + ["post-hoc-prior"] * 2
    assert [sch.scope_end(post, i) for i in range(5)] == [24, 24, 24, 56, 56]
    # Algorithm B.1: Iteration 1a is the standard VAE; 1b..Ib are one process
    it = sch.build_schedule("iterative", "mnist", "rnvp", 24, iterations=3, m_epochs=2)
    assert [p.scope for p in it] == ["standard"] * 3 + ["iterative"] * 6
    assert {sch.scope_end(it, i) for i in range(3, 9)} == {24 + 4 + 8}


def test_paper_epochs_of_every_phase():
    post = sch.build_schedule("post-hoc", "mnist", "rnvp", 24)
    assert [p.paper_epochs for p in post] == [800, 800, 800, 1600, 1600]
    it = sch.build_schedule("iterative", "static-mnist", "rnvp", 24)
    assert [p.paper_epochs for p in it] == [1600, 800] + [400] * 8
    assert sum(p.paper_epochs for p in it) == 2400 + 3200


def test_patience_spans_200_paper_epochs_and_scales_with_epochs():
    assert sch.DEFAULT_PATIENCE * sch.validation_every(None) == 200
    assert sch.DEFAULT_PATIENCE * sch.validation_every(240) == 20  # 200 x 240/2400
    assert sch.DEFAULT_PATIENCE * sch.validation_every(24) == 10  # interval floors at 1 epoch


# ---- the schedule shown to the user ---------------------------------------------------------


def test_describe_one_epoch_says_every_phase_keeps_an_epoch():
    ph = sch.build_schedule("joint", "mnist", "rnvp", 1)
    lines = sch.describe(ph, 1, strategy="joint", dataset="mnist")
    assert lines[0] == "schedule: joint training on mnist, 3 phases, 3 epochs"
    assert len(lines) == 1 + 3 + 2
    for line, lr in zip(lines[1:4], ("0.001", "0.0001", "1e-05"), strict=True):
        assert "1 epochs (paper 800)" in line and f"lr {lr} " in line
    assert "β warm-up 0.01 -> 1 over 1 epoch" in lines[1]
    assert lines[4] == (
        "  total 3 epochs: --epochs 1 scales the paper's 2400-epoch schedule by 1/2400; "
        "every phase keeps >= 1 epoch, so 3 epochs run"
    )
    assert lines[5] == "  early stopping: off (the final weights are kept)"


def test_describe_post_hoc_lr_and_early_stopping():
    ph = sch.build_schedule("post-hoc", "static-mnist", "rnvp", 240, lr=3e-4)
    lines = sch.describe(
        ph, 240, strategy="post-hoc", dataset="static-mnist", lr=3e-4, validate_every=2,
        patience=10,
    )  # fmt: skip
    assert lines[0] == "schedule: post-hoc training on static-mnist, 4 phases, 560 epochs"
    phase_lines = lines[1:5]
    assert [int(s.split()[1]) for s in phase_lines] == [160, 80, 160, 160]
    assert "trains q(z|x) + p(x|z), N(0, I) prior" in phase_lines[0]
    assert "trains p(z), model prior" in phase_lines[3] and "lr 0.0003 " in phase_lines[3]
    assert lines[5] == (
        "  total 560 epochs: --epochs 240 scales the paper's 5600-epoch schedule by 240/2400"
    )
    assert "--lr 0.0003 replaces the paper's first learning rate 0.0001" in lines[6]
    assert "scaled by 3" in lines[6]
    assert lines[7] == (
        "  early stopping: validation NLL (100 samples) every 2 epochs; a scope stops after 10 "
        "validations (20 epochs) without improvement; its best weights are restored at its end"
    )


def test_describe_full_size_and_fixed_m():
    ph = sch.build_schedule("iterative", "mnist", "rnvp")
    lines = sch.describe(ph, None, strategy="iterative", dataset="mnist")
    assert len(lines) == 1 + len(ph) + 2
    assert lines[1 + len(ph)] == (
        "  total 5600 epochs: the paper's schedule, unscaled (Appendix B.3)"
    )
    ph = sch.build_schedule("iterative", "mnist", "rnvp", 3, iterations=2, m_epochs=5)
    lines = sch.describe(ph, 3, strategy="iterative", dataset="mnist", m_epochs=5)
    assert "  M = 5 epochs as given (not scaled by --epochs)" in lines


def test_schedule_constants_are_the_papers_words():
    """Appendix B.3's sentences, rebuilt from the constants, are in the paper's text."""
    from pathlib import Path

    paper = Path(__file__).resolve().parents[1].parent / "shared" / "paper"
    path = paper / "000_4d551225bd704903.txt"
    if not path.is_file():
        pytest.skip(f"the paper's text is not at {path} (../shared/paper from the repo root)")
    text = " ".join(path.read_text().replace("\u2212", "-").split())
    (i, m), (i_s, m_s) = sch.ITERATIONS["default"], sch.ITERATIONS["static-mnist"]
    third, half = sch.PAPER_EPOCHS // 3, sch.POSTHOC_EPOCHS // 2
    sentences = [
        f"The models are trained for {sch.PAPER_EPOCHS:,} epochs.",
        f"learning rate to be 10-3 in the first {third} epochs, 10-4 in the next {third} epochs, "
        f"and 10-5 in the last {third} epochs",
        f"10-4 in the first {2 * third:,} epochs, and 10-5 in the last {third} epochs",
        f"β is increased from {sch.BETA_START} to 1 linearly in the first {sch.WARMUP_EPOCHS} "
        "epochs",
        f"100 z samples for each x, every {sch.VALIDATION_EVERY} epochs",
        f"for {sch.POSTHOC_EPOCHS:,} epochs, with learning rate set to 10-3 in the first {half:,}",
        f"I is chosen to be {i}, and the number of epochs M is chosen to be {m}",
        f"we choose I to be {i_s}, and M to be {m_s}",
    ]
    for s in sentences:
        assert s in text, s
    assert sch.PAPER_LR == {"default": 1e-3, "static-mnist": 1e-4}
