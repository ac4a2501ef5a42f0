"""The reproduction harness: table descriptions, budgets, the runner and `vaeprior reproduce`.

The paper values are checked against independent truths: spot values read from the paper,
tables the paper prints twice (transcribed separately), and the identities the paper's metric
tables obey (elbo = recons - kl, NLL = -elbo - klz|x, post-hoc keeps the standard VAE's q and
p(x|z)). The runner is tested with an injected fake `train` (exact means/stds, resume, skip)
and end to end with the real one on MNIST at the smoke budget.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from vaeprior.fast.config import ModelConfig
from vaeprior.fast.reproduce import runner as rr
from vaeprior.fast.reproduce import tasks
from vaeprior.fast.reproduce.appendix import TABLE_B2_AGGREGATE_KL, TABLE_B2_N_Z
from vaeprior.fast.reproduce.budgets import BUDGETS, get_budget
from vaeprior.fast.reproduce.specs import METRICS, RunSpec
from vaeprior.fast.reproduce.tables import TABLES, get_table, normalize_key

PAIRS = [("1", "B.3"), ("2", "B.5"), ("3", "B.4"), ("4", "B.10"), ("5", "B.6"), ("6", "B.7")]
PAIRS += [("7", "B.13")]
ROUNDING = 0.0151  # three values each rounded to 0.01


def by_run_metric(key: str) -> dict[tuple[RunSpec, str], float]:
    return {(c.run, c.metric): c.paper for c in TABLES[key].cells}


def paper(key: str, cell_key: str) -> tuple[float | None, float | None]:
    (cell,) = [c for c in TABLES[key].cells if c.key == cell_key]
    return cell.paper, cell.paper_std


# ---- table descriptions ---------------------------------------------------------------------


def test_every_table_of_the_issue_is_described() -> None:
    want = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "B.1", "B.3", "B.4", "B.5", "B.6"}
    want |= {"B.7", "B.8", "B.9", "B.10", "B.11", "B.12", "B.13", "B.14"}
    assert set(TABLES) == want
    sizes = {"1": 36, "2": 32, "3": 12, "4": 16, "5": 3, "7": 32, "8": 8, "9": 24, "B.1": 16}
    sizes |= {"B.3": 48, "B.5": 32, "B.11": 48, "B.14": 48}
    for key, n in sizes.items():
        assert len(TABLES[key].cells) == n, key


@pytest.mark.parametrize("budget", list(BUDGETS))
def test_every_cell_builds_a_valid_train_config(budget: str) -> None:
    for table in TABLES.values():
        for spec in table.runs():
            base = spec.base()
            cfg = tasks.train_config(
                spec, get_budget(budget), 0, base_run="/x/base" if base else None
            )
            assert isinstance(cfg.model, ModelConfig)
            assert cfg.dataset == spec.dataset and cfg.strategy == spec.strategy
            assert cfg.reg_qz == spec.reg_qz and cfg.eval_split == "test"
            assert cfg.phases()  # the schedule of the strategy builds


def test_every_cell_has_a_paper_value_and_std_where_the_appendix_prints_one() -> None:
    for key, table in TABLES.items():
        for c in table.cells:
            assert c.paper is not None and math.isfinite(c.paper), c.key
            assert c.metric in METRICS
        with_std = key in {"B.1", "B.3", "B.4", "B.5", "B.6", "B.7", "B.8", "B.9", "B.10"}
        assert all((c.paper_std is not None) == with_std for c in table.cells), key


def test_spot_values_read_from_the_paper() -> None:
    assert paper("1", "MNIST/DenseVAE standard/NLL") == (84.48, None)
    assert paper("1", "MNIST/DenseVAE RNVP q(z|x)/NLL") == (82.53, None)
    assert paper("1", "MNIST/DenseVAE RNVP p(z)/NLL") == (80.43, None)
    assert paper("1", "Omniglot/PixelVAE standard/NLL") == (89.83, None)
    assert paper("B.3", "StaticMNIST/DenseVAE standard/NLL") == (88.84, 0.05)
    assert paper("B.3", "Omniglot/ConvVAE RNVP q(z|x)/NLL") == (94.90, 0.03)
    assert paper("2", "FashionMNIST/ResnetVAE RNVP p(z) K=1/NLL") == (225.27, None)
    assert paper("B.10", "MNIST/ResnetVAE post-hoc/NLL") == (79.90, 0.04)
    assert paper("B.8", "Omniglot/Our PixelVAE + RNVP p(z), K = 50/NLL") == (89.60, 0.01)
    assert paper("8", "MNIST/ResnetVAE standard/au") == (25.3, None)
    assert paper("9", "StaticMNIST/ResnetVAE iterative/au") == (38.7, None)
    assert paper("B.1", "StaticMNIST/ResnetVAE RNVP p(z) un-regularized/Avg. Var[z_k]") == (
        1.50,
        0.02,
    )
    assert paper("B.14", "Omniglot/PixelVAE RNVP p(z)/kl") == (12.07, None)


@pytest.mark.parametrize(("main", "appendix"), PAIRS)
def test_tables_printed_twice_agree(main: str, appendix: str) -> None:
    a, b = by_run_metric(main), by_run_metric(appendix)
    assert set(a) <= set(b)
    for k, v in a.items():
        assert b[k] == v, k


@pytest.mark.parametrize("key", ["7", "B.11", "B.12", "B.13", "B.14"])
def test_metric_tables_obey_elbo_identities(key: str) -> None:
    """elbo = recons - kl, and NLL (Table B.3, same run) = -elbo - klz|x, up to rounding."""
    vals, nll = by_run_metric(key), by_run_metric("B.3")
    runs = {run for run, _ in vals}
    assert len(runs) in (8, 12)
    for run in runs:
        elbo, recon, kl, klzx = (vals[run, m] for m in ("elbo", "recon", "kl", "klzx"))
        assert elbo == pytest.approx(recon - kl, abs=ROUNDING), run
        assert nll[run, "nll"] == pytest.approx(-elbo - klzx, abs=ROUNDING), run


def test_post_hoc_keeps_the_standard_vae_in_table_9() -> None:
    """Post-hoc fits only p(z): its recons and active units are those of the standard VAE."""
    t9, t7, t8 = by_run_metric("9"), by_run_metric("7"), by_run_metric("8")
    for ds in ("static-mnist", "mnist", "fashion-mnist", "omniglot"):
        post, std = RunSpec(ds, "resnet", "rnvp", strategy="post-hoc"), RunSpec(ds, "resnet")
        assert t9[post, "recon"] == pytest.approx(t7[std, "recon"], abs=0.05)
        assert t9[post, "active_units"] == t8[std, "active_units"]
        assert post.base() == std


def test_run_specs_are_canonical_and_shared() -> None:
    assert RunSpec("mnist", "resnet", "rnvp", flow_depth=0) == RunSpec("mnist", "resnet")
    assert RunSpec("mnist", "dense").flow_depth == 0
    assert RunSpec("mnist", "dense", "rnvp").run_id == "dense-mnist-p20"
    assert RunSpec("mnist", "dense", "rnvp", "rnvp", 5).run_id == "dense-mnist-pq5"
    spec = RunSpec("omniglot", "resnet", "rnvp", strategy="post-hoc")
    assert spec.run_id == "resnet-omniglot-p20-post-hoc"
    assert spec.model_config().z_dim == 64  # Appendix B.2
    assert len(TABLES["7"].runs()) == 8  # 32 cells, 4 metrics per run
    runs = TABLES["4"].runs()  # a post-hoc run's base is trained before it
    post = RunSpec("mnist", "resnet", "rnvp", strategy="post-hoc")
    assert runs.index(RunSpec("mnist", "resnet")) < runs.index(post)
    ids: dict[str, RunSpec] = {}
    for t in TABLES.values():
        for s in t.runs():
            assert ids.setdefault(s.run_id, s) == s  # one id, one configuration
    with pytest.raises(ValueError, match="prior='rnvp'"):
        RunSpec("mnist", "resnet", strategy="iterative")
    with pytest.raises(ValueError, match="unknown dataset"):
        RunSpec("cifar", "resnet")


def test_table_lookup_and_cell_selection() -> None:
    assert normalize_key("table1") == "1" and normalize_key("b3") == "B.3"
    assert get_table("TableB.11").key == "B.11"
    with pytest.raises(ValueError, match="unknown table 'X'"):
        get_table("X")
    sel = TABLES["1"].select(["mnist/densevae*"])  # case-insensitive, anchored
    assert [c.key for c in sel.cells] == [
        "MNIST/DenseVAE standard/NLL",
        "MNIST/DenseVAE RNVP q(z|x)/NLL",
        "MNIST/DenseVAE RNVP p(z)/NLL",
    ]
    with pytest.raises(ValueError, match="matches no cell"):
        TABLES["1"].select(["nothing*"])


def test_budgets() -> None:
    assert get_budget("paper").train_kwargs() == {
        "epochs": None,
        "eval_samples": 1000,
        "eval_limit": None,
        "train_limit": None,
    }
    assert get_budget("small").epochs == 100 and get_budget("smoke").train_limit == 256
    assert get_budget("small").with_limit(0).eval_limit is None
    assert get_budget("paper").with_limit(500).eval_limit == 500
    with pytest.raises(ValueError, match="--limit must be >= 0"):
        get_budget("small").with_limit(-1)
    with pytest.raises(ValueError, match="unknown budget"):
        get_budget("huge")


# ---- every stored value is in the paper's text ------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO.parent / "shared" / "paper" / "000_4d551225bd704903.txt"
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def paper_text() -> str:
    if not PAPER.is_file():
        pytest.skip(f"the paper's text is not at {PAPER} (../shared/paper from the repo root)")
    return PAPER.read_text().replace("\u2212", "-")  # the extract prints minus as U+2212


def table_regions(text: str, keys: list[str]) -> dict[str, str]:
    """Text from each table's caption 'Table X:' to the caption after the next one: tables are
    extracted around their captions, and a caption may precede its neighbour's numbers."""
    starts = sorted((text.index(f"Table {k}:"), k) for k in keys)
    ends = [pos for pos, _ in starts[2:]] + [len(text)] * 2
    return {k: text[pos:end] for (pos, k), end in zip(starts, ends, strict=True)}


def stored_values(key: str) -> list[float]:
    """Every number of table `key` the harness holds: cell values, stds, literature rows."""
    if key == "B.2":
        return list(TABLE_B2_AGGREGATE_KL.values())
    t = TABLES[key]
    vals = [c.paper for c in t.cells] + [c.paper_std for c in t.cells if c.paper_std is not None]
    return vals + [v for _, _, v in t.references]


def test_every_stored_paper_value_is_in_the_papers_table() -> None:
    """Each table's numbers, read back from the definitions, are found (with multiplicity) among
    the numbers printed in that table's part of the paper's text."""
    text = paper_text()
    keys = [*TABLES, "B.2"]
    regions = table_regions(text, keys)
    checked = 0
    for key in keys:
        want = Counter(stored_values(key))
        found = Counter(float(t) for t in NUMBER.findall(regions[key]))
        missing = want - found
        assert not missing, f"Table {key}: stored values not printed in the paper: {missing}"
        checked += sum(want.values())
    assert checked >= 660  # 22 tables of runs (values and stds) + literature + Table B.2


def test_table_b2_drift_is_stored_in_order() -> None:
    text = paper_text()
    region = table_regions(text, [*TABLES, "B.2"])["B.2"]
    row = re.search(r"nx\s+((?:\d+\s+)+)DKL[^\n]*\s+((?:\d+\.\d+\s+)+)", region)
    assert row is not None, "Table B.2's rows not found in the paper's text"
    n_x = [int(v) for v in row.group(1).split()]
    kl = [float(v) for v in row.group(2).split()]
    assert dict(zip(n_x, kl, strict=True)) == TABLE_B2_AGGREGATE_KL
    assert f"nz = {TABLE_B2_N_Z} for all nx" in region
    assert list(TABLE_B2_AGGREGATE_KL.values()) == sorted(TABLE_B2_AGGREGATE_KL.values())[::-1]


def test_the_paper_check_can_fail() -> None:
    """A value that is not printed in the table's region is reported missing."""
    text = paper_text()
    region = table_regions(text, [*TABLES, "B.2"])["1"]
    found = Counter(float(t) for t in NUMBER.findall(region))
    assert Counter([84.48]) - found == Counter()
    assert Counter([84.49]) - found == Counter([84.49])
    assert found[84.48] == 1  # MNIST DenseVAE standard: once in Table 1
    assert Counter([84.48] * 2) - found == Counter([84.48])  # multiplicity counts


# ---- runner with an injected train ----------------------------------------------------------


class FakeTrain:
    """Writes a run directory like `train`: nll = 80 + 2 * seed (+ 1 for an RNVP prior)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, bool, str | None]] = []

    def __call__(self, cfg, out, *, resume: bool = False, progress: bool = True) -> dict:
        out = Path(out)
        self.calls.append((out.parent.name, cfg.seed, resume, cfg.base_run))
        if cfg.base_run is not None:
            assert (Path(cfg.base_run) / "results.json").exists()  # base trained first
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict()))
        nll = 80.0 + 2 * cfg.seed + (cfg.model.prior == "rnvp")
        res = {"nll": nll, "elbo": -nll - 1, "recon": -50.0, "kl": 31 + nll, "klzx": 1.0}
        res["active_units"] = 7
        (out / "results.json").write_text(json.dumps(res))
        return res


def fake_rep(tmp_path: Path, table: str = "1", cells=("MNIST/DenseVAE*",), seeds: int = 3):
    fake = FakeTrain()
    rep = rr.Reproduction(
        TABLES[table].select(list(cells)),
        get_budget("smoke"),
        seeds,
        tmp_path / "repro",
        device="cpu",
        train_fn=fake,
        cells=tuple(cells),
    )
    return rep, fake


def md_row(md: str, key_start: str) -> list[str]:
    (line,) = [ln for ln in md.splitlines() if ln.startswith(key_start)]
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_runner_writes_means_stds_and_differences(tmp_path: Path) -> None:
    rep, fake = fake_rep(tmp_path)
    path = rr.reproduce(rep, log=lambda m: None)
    assert path == tmp_path / "repro" / "table1.md"
    assert len(fake.calls) == 9  # 3 runs x 3 seeds
    md = path.read_text()
    # standard: 80, 82, 84 -> 82.00 ± 2.00; paper 84.48
    assert md_row(md, "| MNIST | DenseVAE standard |") == [
        "MNIST", "DenseVAE standard", "NLL", "82.00 ± 2.00", "3", "84.48", "-2.48"
    ]  # fmt: skip
    # RNVP p(z): 81, 83, 85 -> 83.00 ± 2.00; paper 80.43
    assert md_row(md, "| MNIST | DenseVAE RNVP p(z) |")[3:] == [
        "83.00 ± 2.00",
        "3",
        "80.43",
        "+2.57",
    ]
    assert "DenseVAE RNVP q(z\\|x)" in md  # '|' escaped in Markdown cells
    assert "--cells 'MNIST/DenseVAE*'" in md and "Budget: **smoke**" in md
    assert "torch " in md and "9 finished runs" in md


def test_runner_skips_finished_and_resumes_partial_runs(tmp_path: Path) -> None:
    rep, fake = fake_rep(tmp_path, cells=("MNIST/DenseVAE standard*",), seeds=2)
    rr.reproduce(rep, log=lambda m: None)
    assert len(fake.calls) == 2
    fake.calls.clear()
    rr.reproduce(rep, log=lambda m: None)
    assert fake.calls == []  # everything finished: nothing trained
    partial = rep.run_dir(RunSpec("mnist", "dense"), 1)
    (partial / "results.json").unlink()
    (partial / "checkpoint.pt").write_bytes(b"")
    killed = rep.run_dir(RunSpec("mnist", "dense"), 2)
    killed.mkdir(parents=True)
    (killed / "config.json").write_text("{}")  # killed before its first checkpoint
    rep3 = rr.Reproduction(**{**rep.__dict__, "seeds": 3})
    rr.reproduce(rep3, log=lambda m: None)
    assert fake.calls == [
        ("dense-mnist-standard", 1, True, None),
        ("dense-mnist-standard", 2, False, None),
    ]


def test_post_hoc_runs_on_the_standard_run_of_the_same_seed(tmp_path: Path) -> None:
    rep, fake = fake_rep(tmp_path, table="4", cells=("MNIST/*post-hoc*",), seeds=1)
    rr.reproduce(rep, log=lambda m: None)
    base = str(rep.run_dir(RunSpec("mnist", "resnet"), 0))
    assert fake.calls == [
        ("resnet-mnist-standard", 0, False, None),
        ("resnet-mnist-p20-post-hoc", 0, False, base),
    ]


def test_runner_refuses_mixed_budgets_and_configs(tmp_path: Path) -> None:
    rep, _ = fake_rep(tmp_path, cells=("MNIST/DenseVAE standard*",), seeds=1)
    rr.reproduce(rep, log=lambda m: None)
    other = rr.Reproduction(**{**rep.__dict__, "budget": get_budget("small")})
    with pytest.raises(ValueError, match="use another --out"):
        rr.reproduce(other, log=lambda m: None)
    cfg = rep.run_dir(RunSpec("mnist", "dense"), 0) / "config.json"
    saved = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**saved, "reg_qz": True}))
    with pytest.raises(ValueError, match="holds another configuration"):
        rr.reproduce(rep, log=lambda m: None)
    with pytest.raises(ValueError, match="--seeds must be >= 1"):
        rr.Reproduction(**{**rep.__dict__, "seeds": 0})


def test_machine_description() -> None:
    m = tasks.machine("cpu")
    assert m["gpu"] is None and m["cpu"] and m["cores"] >= 1
    assert m["torch"] == __import__("torch").__version__


# ---- end to end with the real train ---------------------------------------------------------


def mnist_dir() -> str:
    root = os.environ.get("VAEPRIOR_DATA")
    if not root or not (Path(root) / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("MNIST not found: set VAEPRIOR_DATA to a folder holding mnist/*.gz")
    return root


def test_smoke_reproduction_end_to_end(tmp_path: Path, monkeypatch, capsys) -> None:
    data = mnist_dir()
    from vaeprior.fast import cli
    from vaeprior.fast.runs import read_json

    out = tmp_path / "repro"
    cells = "MNIST/DenseVAE standard*,MNIST/DenseVAE RNVP p*"
    argv = ["reproduce", "1", "--budget", "smoke", "--seeds", "1", "--device", "cpu"]
    argv += ["--out", str(out), "--data-dir", data, "--cells", cells]
    assert cli.main(argv) == 0
    md = (out / "table1.md").read_text()
    for run_id, label, value in (
        ("dense-mnist-standard", "DenseVAE standard", 84.48),
        ("dense-mnist-p20", "DenseVAE RNVP p(z)", 80.43),
    ):
        res = read_json(out / "runs" / run_id / "seed0" / "results.json")
        assert res["n"] == 32 and res["samples"] == 10  # the smoke budget was applied
        row = md_row(md, f"| MNIST | {label} |")
        assert row[3:] == [f"{res['nll']:.2f}", "1", f"{value:.2f}", f"{res['nll'] - value:+.2f}"]
    assert len(md_row(md, "| --- |")) == 7 and md.count("| MNIST |") == 2

    calls = []
    monkeypatch.setattr("vaeprior.fast.training.loop.train", lambda *a, **k: calls.append(a))
    capsys.readouterr()
    assert cli.main(argv) == 0  # resume: both cells finished, nothing trained
    assert calls == []
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| MNIST")]
    assert rows == [ln for ln in md.splitlines() if ln.startswith("| MNIST")]

    # Table B.1's posterior moments, computed from a finished run and cached
    rep = rr.Reproduction(TABLES["1"], get_budget("smoke"), 1, out, device="cpu")
    run_dir = out / "runs" / "dense-mnist-standard" / "seed0"
    stats = tasks.ensure_posterior_stats(rep, run_dir)
    assert stats["n"] == 32 and stats["samples"] == 10
    assert math.isfinite(stats["z_mean"]) and stats["z_var"] > 0
    assert read_json(run_dir / rr.POSTERIOR_STATS) == stats


def test_epochs_override_scales_the_budget_and_says_so() -> None:
    from vaeprior.fast.reproduce.budgets import get_budget

    b = get_budget("small").with_limit(1000).with_epochs(24)
    assert b.train_kwargs() == {
        "epochs": 24,
        "eval_samples": 1000,
        "eval_limit": 1000,
        "train_limit": None,
    }
    assert b.description.startswith("24 epochs") and b.description.endswith(
        "1000 test images spread evenly over the test set"
    )
    with pytest.raises(ValueError, match="--epochs must be >= 1"):
        get_budget("small").with_epochs(0)
