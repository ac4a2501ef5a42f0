"""Compute budgets of a reproduction: the paper's full schedule, a CPU-sized one, a smoke test.

`epochs` is the length of the paper's 2400-epoch main schedule (Appendix B.3); every other
length (β warm-up of 100 epochs, the learning-rate steps, post-hoc's 3200 prior epochs, the
iterative M / 2M phases, the early-stopping interval) scales with it in `fast/schedule.py`, so a
reduced budget keeps the paper's schedule shape.

- paper: the full schedule (2400 epochs; post-hoc and iterative as in Algorithm B.1),
  evaluated with 1000 importance samples on the full test set (Appendix B.3).
- small: 100 epochs (1/24 of every phase: warm-up 4 epochs, learning rate 1e-3 / 1e-4 / 1e-5
  for 33 / 33 / 34 epochs), 1000-sample NLL on 2000 test images spread evenly over the test set
  and its binarizations, active units on 2000 training images (one per stratum, seeded); the
  same images for every model (`vaeprior.fast.data.spread_rows`). A DenseVAE row fits a 2-core
  CPU in a few hours.
- smoke: seconds per run, for tests: the first 256 training images, 1 epoch per schedule
  phase, 10 samples on 32 spread test images. Its numbers mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Budget:
    """How much training and evaluation every run of a reproduction gets."""

    name: str
    epochs: int | None  # main schedule length; None = the paper's 2400 epochs
    eval_samples: int  # importance samples per test image (NLL, elbo, kl; AU posterior means)
    eval_limit: int | None  # N spread test (and, for active units, training) images; None = all
    train_limit: int | None  # first N training images; None = all

    @property
    def description(self) -> str:
        """One line for reports, always computed from the fields (so overrides stay true)."""
        if self.epochs is None:
            schedule = "the paper's schedule (2400 epochs, Appendix B.3)"
        else:
            unit = "epoch" if self.epochs == 1 else "epochs"
            schedule = f"{self.epochs} {unit} (the paper's 2400-epoch schedule scaled by "
            schedule += f"{self.epochs}/2400, shape kept)"
        if self.train_limit is not None:
            schedule += f" on the first {self.train_limit} training images"
        if self.eval_limit is None:
            where = "the full test set"
        else:
            where = f"{self.eval_limit} test images spread evenly over the test set"
        return f"{schedule}; {self.eval_samples}-sample NLL on {where}"

    def with_limit(self, limit: int | None) -> Budget:
        """This budget evaluated on `limit` spread test images (0 = the full test set)."""
        if limit is None:
            return self
        if limit < 0:
            raise ValueError(f"--limit must be >= 0 (0 = full test set), got {limit}")
        return replace(self, eval_limit=None if limit == 0 else limit)

    def with_epochs(self, epochs: int | None) -> Budget:
        """This budget with a main schedule of `epochs` (every phase scaled the same way)."""
        if epochs is None:
            return self
        if epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {epochs}")
        return replace(self, epochs=epochs)

    def train_kwargs(self) -> dict:
        """The `vaeprior.fast.training.loop.TrainConfig` fields set by the budget."""
        return {
            "epochs": self.epochs,
            "eval_samples": self.eval_samples,
            "eval_limit": self.eval_limit,
            "train_limit": self.train_limit,
        }


BUDGETS: dict[str, Budget] = {
    "paper": Budget("paper", epochs=None, eval_samples=1000, eval_limit=None, train_limit=None),
    "small": Budget("small", epochs=100, eval_samples=1000, eval_limit=2000, train_limit=None),
    "smoke": Budget("smoke", epochs=1, eval_samples=10, eval_limit=32, train_limit=256),
}


def get_budget(name: str) -> Budget:
    """The budget called `name`, with a clear error otherwise."""
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}: choose one of {', '.join(BUDGETS)}")
    return BUDGETS[name]
