"""Tables 7, B.11-B.14: test elbo, recons, kl, klz|x in the paper's column order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaeprior.fast.analysis.common import write_json
from vaeprior.fast.evaluation import evaluate


def metrics(
    run_dir: str | Path,
    *,
    samples: int = 1000,
    limit: int | None = None,
    device: str | None = None,
    backend: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """Test elbo, recon, kl, klz|x in the paper's column order (Table 7), from `evaluate_run`."""
    r = evaluate.evaluate_run(
        run_dir, samples=samples, limit=limit, backend=backend, device=device, progress=progress
    )
    columns = ("elbo", "recon", "kl", "klzx")
    out = {k: float(r[k]) for k in columns}
    out.update({k: r[k] for k in ("nll", "active_units", "samples", "n") if k in r})
    out["columns"] = ["elbo", "recon", "kl", "klz|x"]
    return out


def run(args, vae, cfg, data, out: Path) -> list[Path]:
    """metrics.json (evaluates the run on its test set)."""
    r = metrics(
        args.run_dir,
        samples=args.samples,
        limit=args.limit,
        device=args.device,
        progress=not args.no_progress,
    )
    return [write_json(out, "metrics", {**r, "table": "Table 7"})]
