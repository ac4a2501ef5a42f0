"""How far a test subset's NLL sits from the whole test set's: first N rows against spread N rows.

A reduced-budget reproduction scores each model on N test rows. Which rows matters: the first N
images of a test file are not a representative sample, the rows that `vaeprior.fast.data.
spread_rows` picks are. This script measures the difference on a trained run, with the same
model, estimator (S-sample IW NLL, Appendix B.3) and noise for every subset:

    python -m vaeprior.bench.subset_bias RUN [--limit 1000] [--samples 1000] [--full] [--json F]

It prints one line per subset (rows, mean ink density, NLL) and, with `--full`, the whole test
set's NLL (for MNIST-style datasets: all 10 binarizations, 100,000 rows: slow on a CPU).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vaeprior.fast.data import load_device_data, spread_rows
from vaeprior.fast.evaluation.evaluate import evaluate
from vaeprior.fast.runs import load_run


def subsets(test: torch.Tensor, copies: int, limit: int, full: bool) -> dict[str, torch.Tensor]:
    """The test subsets to compare: first `limit` rows, `limit` spread rows, optionally all."""
    out = {
        f"first {limit}": test[:limit],
        f"spread {limit}": test[torch.as_tensor(spread_rows(test.shape[0], limit, copies))],
    }
    if full:
        out["full test set"] = test
    return out


def measure(run: Path, limit: int, samples: int, full: bool, device: str | None) -> dict:
    """NLL and ink density of each subset of `run`'s test set (same model, same noise seed)."""
    vae, cfg = load_run(run, device)
    dev = next(vae.parameters()).device
    data = load_device_data(cfg.dataset, cfg.data_dir, dev)
    rows = []
    for name, x in subsets(data.test, data.test_copies, limit, full).items():
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(0)
        r = evaluate(vae, x, samples=samples, generator=gen)
        rows.append(
            {
                "subset": name,
                "rows": x.shape[0],
                "ink": float(x.float().mean()),
                "nll": r["nll"],
                "seconds": time.perf_counter() - t0,
            }
        )
        print(f"{name:>16}: {x.shape[0]:6d} rows  ink {rows[-1]['ink']:.4f}  NLL {r['nll']:.3f}")
    return {"run": str(run), "dataset": cfg.dataset, "samples": samples, "subsets": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a trained run directory (config.json + best.pt)")
    ap.add_argument("--limit", type=int, default=1000, help="rows per subset (default 1000)")
    ap.add_argument("--samples", type=int, default=1000, help="IW samples per row (default 1000)")
    ap.add_argument("--full", action="store_true", help="also the whole test set (slow)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: the run's)")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers to this file")
    args = ap.parse_args(argv)
    if args.limit < 1 or args.samples < 1:
        ap.error("--limit and --samples must be >= 1")
    result = measure(args.run, args.limit, args.samples, args.full, args.device)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
