"""The `vaeprior` command line: train, evaluate, sample, export, analyze, reproduce.

Every user error (bad option value, missing data, unreadable run, non-finite loss) prints one
line `vaeprior: error: ...` on stderr and returns exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from vaeprior.fast.backends import BACKENDS
from vaeprior.fast.config import DATASETS, MODELS
from vaeprior.fast.training.schedule import STRATEGIES
from vaeprior.reference.config import POSTERIORS, PRIORS

EXIT_USAGE = 2
# subcommands implemented elsewhere: module exposing add_arguments(parser) and run(args) -> int
LAZY = {
    "analyze": (
        "vaeprior.fast.analysis.cli",
        "analyses of trained runs (paper's figures/tables)",
    ),
    "reproduce": ("vaeprior.fast.reproduce.cli", "reproduce the paper's tables"),
}


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a VAE (Appendix B.3)")
    p.add_argument("--model", default="dense", choices=MODELS)
    p.add_argument("--prior", default="gaussian", choices=PRIORS)
    p.add_argument("--posterior", default="gaussian", choices=POSTERIORS)
    p.add_argument("--flow-depth", type=int, default=20, metavar="K")
    p.add_argument("--dataset", default="mnist", choices=DATASETS)
    p.add_argument("--strategy", default="joint", choices=STRATEGIES)
    p.add_argument("--epochs", type=int, default=None, help="main schedule length (paper 2400)")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--z-dim", type=int, default=None)
    p.add_argument("--reg-qz", action="store_true", help="add Reg[q(z)] (Appendix B.3)")
    p.add_argument("--train-limit", type=int, default=None, metavar="N")
    p.add_argument("--eval-samples", type=int, default=1000, metavar="S")
    p.add_argument("--eval-limit", type=int, default=None, metavar="N")
    p.add_argument("--checkpoint-every", type=int, default=1, metavar="E")
    p.add_argument("--iterations", type=int, default=None, metavar="I")
    p.add_argument("--m-epochs", type=int, default=None, metavar="M")
    p.add_argument("--base-run", default=None, metavar="DIR")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="1000-sample NLL, ELBO, KL, active units of a run")
    p.add_argument("run_dir")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--split", default="test", choices=("test", "validation", "train"))
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--device", default=None)


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="a grid of samples x ~ p(x|z), z ~ p(z) (plot extra)")
    p.add_argument("run_dir")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="save a DenseVAE run's weights for the NumPy reference (DESIGN.md keys)"
    )
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="the .npz to write")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaeprior", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_evaluate(sub)
    _add_sample(sub)
    _add_export(sub)
    for name, (_, help_) in LAZY.items():  # listed for --help; main() dispatches them
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from vaeprior.fast.config import ModelConfig, TrainConfig
    from vaeprior.fast.training.loop import train

    model_kw = {"model": args.model, "prior": args.prior, "posterior": args.posterior}
    model_kw["flow_depth"] = args.flow_depth
    if args.z_dim is not None:
        model_kw["z_dim"] = args.z_dim
    cfg = TrainConfig(
        dataset=args.dataset,
        model=ModelConfig.for_dataset(args.dataset, **model_kw),
        strategy=args.strategy,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        data_dir=args.data_dir,
        reg_qz=args.reg_qz,
        checkpoint_every=args.checkpoint_every,
        eval_samples=args.eval_samples,
        eval_limit=args.eval_limit,
        iterations=args.iterations,
        m_epochs=args.m_epochs,
        base_run=args.base_run,
        train_limit=args.train_limit,
    )
    train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from vaeprior.fast.evaluation.evaluate import evaluate_run, summary_line

    res = evaluate_run(
        args.run_dir,
        samples=args.samples,
        limit=args.limit,
        split=args.split,
        backend=args.backend,
        device=args.device,
    )
    print(f"{args.run_dir} [{args.split}]: {summary_line(res)}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from vaeprior.fast.analysis.samples import save_samples_png

    save_samples_png(args.run_dir, n=args.n, out=args.out, seed=args.seed, device=args.device)
    print(f"wrote {args.out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import numpy as np

    from vaeprior.fast.models.convert import to_reference_params
    from vaeprior.fast.runs import load_run

    vae, _ = load_run(args.run_dir, device="cpu")
    params = to_reference_params(vae)  # clear error for non-dense models
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **params)
    tmp.replace(out)  # atomic: never a half-written file
    print(f"wrote {out} ({len(params)} arrays): python -m vaeprior.reference.demo --params {out}")
    return 0


def _cmd_lazy(name: str, rest: list[str]) -> int:
    """Import the module behind `name` only now, and let it parse its own arguments."""
    try:
        mod = importlib.import_module(LAZY[name][0])
    except ImportError as e:
        raise ValueError(f"the {name} subcommand is unavailable ({e})") from None
    p = argparse.ArgumentParser(prog=f"vaeprior {name}")
    mod.add_arguments(p)
    return int(mod.run(p.parse_args(rest)))


COMMANDS = {
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "sample": _cmd_sample,
    "export": _cmd_export,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vaeprior` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from vaeprior.fast.runs import CheckpointError
    from vaeprior.fast.training.loop import TrainingError

    try:
        if argv and argv[0] in LAZY:
            return _cmd_lazy(argv[0], argv[1:])
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, CheckpointError, TrainingError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"vaeprior: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
