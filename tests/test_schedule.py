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
