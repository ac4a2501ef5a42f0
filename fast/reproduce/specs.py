"""The vocabulary of the paper's tables: runs (`RunSpec`), cells, tables, and grid parsing.

Every cell names the run that produces it (`RunSpec`: dataset, architecture, prior, posterior,
flow depth K, training strategy, Reg[q(z)]), the metric read from that run, and the paper's value
(± its standard deviation over 3 runs where the appendix gives one). Values are transcribed grid
by grid in the paper's own orientation from the text extract; tables printed twice (Table 1 and
B.3, 2 and B.5, 3 and B.4, 4 and B.10, 5 and B.6, 6 and B.7, 7 and B.13) are transcribed
separately, so the tests can cross-check them, and the identities elbo = recons − kl and
NLL = −elbo − klz|x check the metric tables. Every value could be read; a cell whose value
could not would carry `paper=None` and a note.

Cells of different tables that need the same training run share it (same `RunSpec.run_id`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from vaeprior.fast.config import DATASETS, MODELS, ModelConfig
from vaeprior.fast.training.schedule import STRATEGIES

# Metrics of a run: results.json keys of `vaeprior.fast.training.loop.train` (Appendix B.3),
# plus the Table B.1 posterior moments of `vaeprior.fast.analysis.posterior_stats`.
RESULT_METRICS = {
    "nll": "NLL",
    "elbo": "elbo",
    "recon": "recons",
    "kl": "kl",
    "klzx": "klz|x",
    "active_units": "au",
}
ANALYSIS_METRICS = {"z_mean": "Avg. Mean[z_k]", "z_var": "Avg. Var[z_k]"}
METRICS = {**RESULT_METRICS, **ANALYSIS_METRICS}

DATASET_LABELS = {
    "static-mnist": "StaticMNIST",
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
    "omniglot": "Omniglot",
}
MODEL_LABELS = {"dense": "DenseVAE", "conv": "ConvVAE", "resnet": "ResnetVAE", "pixel": "PixelVAE"}
PAPER_K = 20  # flow depth of every table except Table 2 / B.5 and the K = 50 rows


@dataclass(frozen=True)
class RunSpec:
    """One training run (all seeds share it), canonicalised so equal models get equal ids.

    A flow of depth K = 0 is the identity, so K = 0 means "standard" (Table 2's K = 0 column
    is the standard VAE, value for value); without an RNVP the depth is stored as 0.
    """

    dataset: str
    model: str
    prior: str = "gaussian"
    posterior: str = "gaussian"
    flow_depth: int = PAPER_K
    strategy: str = "joint"
    reg_qz: bool = False

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}: choose one of {DATASETS}")
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}: choose one of {MODELS}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}: choose one of {STRATEGIES}")
        if self.flow_depth == 0:
            object.__setattr__(self, "prior", "gaussian")
            object.__setattr__(self, "posterior", "gaussian")
        if "rnvp" not in (self.prior, self.posterior):
            object.__setattr__(self, "flow_depth", 0)
        if self.strategy != "joint" and self.prior != "rnvp":
            raise ValueError(f"strategy {self.strategy!r} trains an RNVP prior: set prior='rnvp'")
        self.model_config()  # validates prior / posterior / depth

    @property
    def run_id(self) -> str:
        """Folder name under DIR/runs, e.g. 'dense-mnist-p20', 'resnet-mnist-p20-post-hoc'."""
        flows = ("p" if self.prior == "rnvp" else "") + ("q" if self.posterior == "rnvp" else "")
        parts = [self.model, self.dataset, f"{flows}{self.flow_depth}" if flows else "standard"]
        if self.strategy != "joint":
            parts.append(self.strategy)
        if self.reg_qz:
            parts.append("regqz")
        return "-".join(parts)

    def model_config(self) -> ModelConfig:
        """The architecture of Appendix B.2 (latent size by dataset)."""
        return ModelConfig.for_dataset(
            self.dataset,
            model=self.model,
            prior=self.prior,
            posterior=self.posterior,
            flow_depth=self.flow_depth,
        )

    def base(self) -> RunSpec | None:
        """Post-hoc training fits the prior onto a trained standard VAE (Appendix B.3)."""
        if self.strategy != "post-hoc":
            return None
        return RunSpec(self.dataset, self.model, posterior=self.posterior, flow_depth=0)


@dataclass(frozen=True)
class Cell:
    """One number of a paper table: the run that produces it and the paper's value."""

    row: str
    column: str
    metric: str
    run: RunSpec
    paper: float | None
    paper_std: float | None = None
    note: str = ""

    @property
    def key(self) -> str:
        """'row/column/metric', e.g. 'MNIST/DenseVAE standard/NLL' (matched by --cells)."""
        return f"{self.row}/{self.column}/{METRICS[self.metric]}"


@dataclass(frozen=True)
class Table:
    """A paper table: its cells, plus literature rows printed for context (never run)."""

    key: str
    title: str
    cells: tuple[Cell, ...]
    notes: tuple[str, ...] = ()
    references: tuple[tuple[str, str, float], ...] = ()  # (dataset label, model, NLL)

    def runs(self) -> list[RunSpec]:
        """Distinct runs of the cells, base runs (post-hoc) first, in first-use order."""
        out: list[RunSpec] = []
        for cell in self.cells:
            for spec in (cell.run.base(), cell.run):
                if spec is not None and spec not in out:
                    out.append(spec)
        return out

    def select(self, patterns: Sequence[str] | None) -> Table:
        """The cells whose key matches one of the shell-style `patterns` (case-insensitive)."""
        if not patterns:
            return self
        pats = [p.strip().lower() for p in patterns if p.strip()]
        cells = tuple(
            c for c in self.cells if any(fnmatch.fnmatchcase(c.key.lower(), p) for p in pats)
        )
        if not cells:
            raise ValueError(
                f"--cells {','.join(patterns)} matches no cell of table {self.key}: "
                f"keys look like {self.cells[0].key!r} (use --dry-run to list them)"
            )
        return replace(self, cells=cells)


# ---- grids in the paper's layout ------------------------------------------------------------

Axis = tuple[str, dict]  # (label printed in the paper, RunSpec fields and/or metric)

DS: list[Axis] = [(label, {"dataset": ds}) for ds, label in DATASET_LABELS.items()]
VARIANTS = {
    "standard": {},
    "RNVP q(z|x)": {"posterior": "rnvp"},
    "RNVP p(z)": {"prior": "rnvp"},
    "both": {"prior": "rnvp", "posterior": "rnvp"},
}


def variants(model: str, names: Iterable[str]) -> list[Axis]:
    """Axis of prior/posterior variants of one architecture, K = 20."""
    return [(f"{MODEL_LABELS[model]} {n}", {"model": model, **VARIANTS[n]}) for n in names]


def metric_axis(*metrics: str) -> list[Axis]:
    return [(METRICS[m], {"metric": m}) for m in metrics]


def _value(text: str) -> tuple[float | None, float | None]:
    """'88.84' -> (88.84, None); '88.84±0.05' -> (88.84, 0.05); '?' -> (None, None)."""
    if text == "?":
        return None, None
    mean, _, std = text.partition("±")
    return float(mean), (float(std) if std else None)


def grid(
    rows: Sequence[Axis],
    cols: Sequence[Axis],
    text: str,
    *,
    fixed: Axis = ("", {}),
    notes: dict[str, str] | None = None,
) -> list[Cell]:
    """Cells of one printed grid; `text` has one line 'row label: v v ...' per row.

    The dataset's label becomes the cell's row, the metric comes from a metric axis (default
    NLL), and every other label (fixed, row, column) joins into the cell's column label.
    `notes` maps a cell key to a note (e.g. why its value is None).
    """
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) != len(rows):
        raise ValueError(f"grid has {len(lines)} lines for {len(rows)} rows")
    cells = []
    for (rlabel, rfields), line in zip(rows, lines, strict=True):
        head, _, values = line.partition(":")
        if head.strip() != rlabel:
            raise ValueError(f"grid line {line!r} should start with {rlabel!r}:")
        vals = values.split()
        if len(vals) != len(cols):
            raise ValueError(f"grid line {line!r} has {len(vals)} values for {len(cols)} columns")
        for (clabel, cfields), v in zip(cols, vals, strict=True):
            cells.append(_cell([fixed, (rlabel, rfields), (clabel, cfields)], v, notes or {}))
    return cells


def _cell(axes: list[Axis], value: str, notes: dict[str, str]) -> Cell:
    fields_: dict = {}
    row, column = "", []
    for label, f in axes:
        fields_.update(f)
        if "dataset" in f:
            row = label
        elif label and set(f) != {"metric"}:
            column.append(label)
    metric = fields_.pop("metric", "nll")
    paper, std = _value(value)
    cell = Cell(row, " ".join(column), metric, RunSpec(**fields_), paper, std)
    return replace(cell, note=notes.get(cell.key, ""))


def table(key: str, title: str, *grids: list[Cell], **kw) -> Table:
    """A Table of the cells of `grids` (cell keys must be unique)."""
    cells = tuple(c for g in grids for c in g)
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise ValueError(f"table {key}: duplicate cell keys")
    return Table(key, title, cells, **kw)


THREE = ("standard", "RNVP q(z|x)", "RNVP p(z)")  # the three models of most tables
ELBO_METRICS = metric_axis("elbo", "recon", "kl", "klzx")  # columns of Tables 7, B.11-B.14


def metric_grid(model: str, variant: str, text: str) -> list[Cell]:
    """One dataset x (elbo, recons, kl, klz|x) grid of one model variant (Tables 7, B.11-B.14)."""
    ((label, f),) = variants(model, (variant,))
    return grid(DS, ELBO_METRICS, text, fixed=(label, f))
