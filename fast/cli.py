"""The `vaeprior` command line: train, evaluate, sample, export, plot, analyze, reproduce.

Every option's help states its unit and default (`vaeprior SUBCOMMAND --help`). A mistake on
the command line prints `vaeprior: error: ...` and one `vaeprior: hint: ...` line; every other
user error (bad option value, missing data, unreadable run, non-finite loss) prints one line
`vaeprior: error: ...`. Both exit with code 2. Long steps show tqdm bars with an ETA
(`--no-progress` hides them; the final summary line is printed either way).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from vaeprior.fast.backends import BACKENDS
from vaeprior.fast.config import DATASETS, MODELS, PIXELCNNS
from vaeprior.fast.threads import set_threads
from vaeprior.fast.training.schedule import DEFAULT_PATIENCE, STRATEGIES, VALIDATION_EVERY
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
DEVICE_HELP = "cpu, cuda or cuda:N (default: cuda when available, else cpu)"
THREADS_HELP = (
    "CPU threads for torch (default: $OMP_NUM_THREADS if set, else the CPUs minus the 1-minute "
    "load average of other processes, at least 1; see vaeprior.fast.threads)"
)


class HelpFormatter(argparse.HelpFormatter):
    """Appends '(default: X)' to an option's help unless the help already speaks of its default
    or there is none to show (None, False, or a required option). Descriptions and epilogs are
    wrapped by paragraph; lines indented by two spaces (examples) are kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and not action.required
            and not any(default is v for v in (None, False, argparse.SUPPRESS))
            and "default" not in text.lower()
        ):
            text += " (default: %(default)s)"
        return text

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        paragraph: list[str] = []

        def flush() -> None:
            if paragraph:
                joined = " ".join(paragraph)
                out.append(
                    textwrap.fill(joined, width, initial_indent=indent, subsequent_indent=indent)
                )
                paragraph.clear()

        for line in text.splitlines():
            if line.startswith("  ") or not line.strip():  # an example, or a paragraph break
                flush()
                out.append(indent + line if line.strip() else "")
            else:
                paragraph.append(line.strip())
        flush()
        return "\n".join(out)


class Parser(argparse.ArgumentParser):
    """argparse with a two-line error: `vaeprior: error: MSG` and `vaeprior: hint: ...`,
    instead of the usage block; exit code 2. `hint` overrides the default hint (see the
    subcommand's --help)."""

    hint: str | None = None

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        msg = " ".join(message.split())
        hint = self.hint or f"see `{self.prog} --help`"
        self.exit(EXIT_USAGE, f"vaeprior: error: {msg}\nvaeprior: hint: {hint}\n")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a VAE (Appendix B.3)",
        description="Train a VAE into a run folder: config.json, metrics.jsonl (one line per "
        "epoch), checkpoints, and results.json from a final evaluation (Appendix B.3).",
        epilog="example (24 epochs = the paper's schedule scaled by 1/100):\n"
        "  vaeprior train --model dense --prior rnvp --dataset mnist --epochs 24 \\\n"
        "      --eval-limit 1000 --out runs/mnist-rnvp",
    )
    g = p.add_argument_group("model (Appendix B.2)")
    g.add_argument("--model", default="dense", choices=MODELS, help="architecture")
    g.add_argument("--prior", default="gaussian", choices=PRIORS, help="p(z): N(0, I) or Real NVP")
    g.add_argument(
        "--posterior", default="gaussian", choices=POSTERIORS, help="q(z|x): Gaussian or Real NVP"
    )
    g.add_argument(
        "--flow-depth",
        type=int,
        default=20,
        metavar="K",
        help="Real NVP blocks per flow (prior and/or posterior); K = 0 is the identity",
    )
    g.add_argument(
        "--pixelcnn",
        default="paper",
        choices=PIXELCNNS,
        help="PixelVAE decoder: paper = Appendix B.2's PixelCNN on Concat[x, h(z)]; gated = "
        "gated blocks with h(z) at every layer (other models ignore it)",
    )
    g.add_argument(
        "--z-dim",
        type=int,
        default=None,
        metavar="Z",
        help="latent dimensions (default: the paper's, 40 on (Static)MNIST, 64 otherwise)",
    )
    g = p.add_argument_group("data (Appendix B.1)")
    g.add_argument("--dataset", default="mnist", choices=DATASETS, help="training data set")
    g.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="folder holding the data sets (default: $VAEPRIOR_DATA, else ~/.cache/vaeprior, "
        "downloading what is missing)",
    )
    g.add_argument(
        "--train-limit",
        type=int,
        default=None,
        metavar="N",
        help="train on N training images only (default: all of them)",
    )
    g = p.add_argument_group("schedule (Appendix B.3, Algorithm B.1)")
    g.add_argument(
        "--strategy",
        default="joint",
        choices=STRATEGIES,
        help="joint: prior and VAE together (Eq. 5); post-hoc: prior fitted after a standard "
        "VAE; iterative: Algorithm B.1",
    )
    g.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="N",
        help="length of the main schedule in epochs; every phase (warm-up, learning-rate "
        "steps, post-hoc, iterative) scales by N/2400 (default: the paper's 2400)",
    )
    g.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="B",
        help="images per step (default: 128, 64 for PixelVAE)",
    )
    g.add_argument(
        "--lr",
        type=float,
        default=None,
        metavar="LR",
        help="first Adam learning rate of the main schedule; every other one (later steps, "
        "post-hoc, iterative) scales by the same factor (default: the paper's 1e-3, then 1e-4 "
        "and 1e-5; 1e-4 then 1e-5 on StaticMNIST)",
    )
    g.add_argument(
        "--patience",
        type=int,
        default=None,
        metavar="N",
        help="early stopping (StaticMNIST and PixelVAE): stop a stage after N validations "
        f"without a better validation NLL; one validation every {VALIDATION_EVERY} paper "
        f"epochs, scaled like --epochs (default: {DEFAULT_PATIENCE})",
    )
    g.add_argument(
        "--no-early-stop",
        action="store_true",
        help="never stop early: no validation, no best-weights restore (StaticMNIST and "
        "PixelVAE stop on validation NLL by default)",
    )
    g.add_argument(
        "--iterations",
        type=int,
        default=None,
        metavar="I",
        help="iterative strategy: rounds I of Algorithm B.1 (default: 16, 4 on StaticMNIST)",
    )
    g.add_argument(
        "--m-epochs",
        type=int,
        default=None,
        metavar="M",
        help="iterative strategy: epochs M per half-round, taken as is (default: the paper's "
        "100, 400 on StaticMNIST, scaled by --epochs/2400)",
    )
    g.add_argument(
        "--base-run",
        default=None,
        metavar="DIR",
        help="post-hoc strategy: reuse this standard run's q(z|x) and p(x|z) and fit only the "
        "prior (default: train the standard VAE first)",
    )
    g.add_argument("--reg-qz", action="store_true", help="add the Reg[q(z)] term (Appendix B.3)")
    g.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    g = p.add_argument_group("final evaluation (Appendix B.3)")
    g.add_argument(
        "--eval-samples",
        type=int,
        default=1000,
        metavar="S",
        help="importance samples z ~ q(z|x) per test image for the NLL, as in the paper",
    )
    g.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        metavar="N",
        help="evaluate N test rows spread over the test set, and active units on N training "
        "images (default: all rows: 100,000 = 10 binarizations x 10,000 images on MNIST)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to write")
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        metavar="E",
        help="write checkpoint.pt every E epochs (and at every phase's end)",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in RUN_DIR from its last checkpoint (same options)",
    )
    g.add_argument(
        "--no-progress", action="store_true", help="hide progress bars (the summary still prints)"
    )
    g = p.add_argument_group("hardware")
    g.add_argument("--device", default=None, help=DEVICE_HELP)
    g.add_argument("--threads", type=int, default=None, metavar="N", help=THREADS_HELP)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="1000-sample NLL, ELBO, KL, active units of a run",
        description="Importance-weighted NLL, ELBO, recon, KL, klz|x (Appendix B.3) of a "
        "trained run on one split, and its active units (Table 8); writes RUN_DIR/eval.json. "
        "The full MNIST test set is 100,000 rows (10 binarizations): at S = 1000 that takes "
        "hours on a CPU; --limit and --samples shorten it.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by `vaeprior train`")
    g = p.add_argument_group("evaluation (Appendix B.3)")
    g.add_argument(
        "--samples",
        type=int,
        default=1000,
        metavar="S",
        help="importance samples z ~ q(z|x) per row, as in the paper",
    )
    g.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="N rows spread evenly over the split's images and binarizations (default: all)",
    )
    g.add_argument("--split", default="test", choices=("test", "validation", "train"), help="data")
    g.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="log p(x|z) implementation; auto: the fused Triton kernel on CUDA, torch on CPU",
    )
    g = p.add_argument_group("output")
    g.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bar (the time estimate and summary still print)",
    )
    g = p.add_argument_group("hardware")
    g.add_argument("--device", default=None, help=DEVICE_HELP)
    g.add_argument("--threads", type=int, default=None, metavar="N", help=THREADS_HELP)


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="a grid of samples x ~ p(x|z), z ~ p(z) (plot extra)",
        description="Draw z ~ p(z) (the prior flow's inverse for an RNVP prior), decode, and "
        "save the Bernoulli means (sampled pixels for PixelVAE) as a PNG grid.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by `vaeprior train`")
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--n", type=int, default=100, metavar="N", help="images, ceil(sqrt(N)) per grid row"
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the prior draws")
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, metavar="PNG", help="image file to write")
    g = p.add_argument_group("hardware")
    g.add_argument("--device", default=None, help=DEVICE_HELP)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="save a DenseVAE run's weights for the NumPy reference (DESIGN.md keys)",
        description="Write a DenseVAE run's weights as an .npz with the NumPy reference's "
        "parameter names (DESIGN.md), for `python -m vaeprior.reference.demo --params`.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by `vaeprior train`")
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, metavar="NPZ", help="the .npz to write")


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="training curves of one or more runs (plot extra)",
        description="Training curves from each run's metrics.jsonl: ELBO per epoch, validation "
        "NLL where recorded, warm-up β and learning rate; several runs are overlaid.",
        epilog="example:\n  vaeprior plot runs/standard runs/rnvp --out curves.png",
    )
    p.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="run folders written by `vaeprior train`"
    )
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, metavar="PNG", help="image file to write")
    g.add_argument(
        "--labels",
        default=None,
        metavar="A,B,...",
        help="legend names, one per run, comma-separated (default: the run folders' names)",
    )


BUILDERS = {
    "train": _add_train,
    "evaluate": _add_evaluate,
    "sample": _add_sample,
    "export": _add_export,
    "plot": _add_plot,
}


def build_parser() -> Parser:
    """The top-level parser; `analyze` and `reproduce` are listed here, parsed by their module."""
    parser = Parser(
        prog="vaeprior",
        description=__doc__.splitlines()[0],
        epilog="`vaeprior SUBCOMMAND --help` lists a subcommand's options with their defaults.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for add in BUILDERS.values():
        add(sub)
    for name, (_, help_) in LAZY.items():  # listed for --help; main() dispatches them
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def lazy_parser(name: str) -> Parser:
    """The full parser of a subcommand implemented elsewhere (`LAZY`), importing its module;
    its help opens with the module's DESCRIPTION (else its docstring)."""
    try:
        mod = importlib.import_module(LAZY[name][0])
    except ImportError as e:
        raise ValueError(f"the {name} subcommand is unavailable ({e})") from None
    about = getattr(mod, "DESCRIPTION", None) or (mod.__doc__ or "").strip() or None
    p = Parser(prog=f"vaeprior {name}", description=about)
    mod.add_arguments(p)
    p.set_defaults(_module=mod)
    return p


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser by name (the lazy ones fully built)."""
    root = build_parser()
    action = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    out = {name: action.choices[name] for name in BUILDERS}
    out.update({name: lazy_parser(name) for name in LAZY})
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    from vaeprior.fast.config import ModelConfig, TrainConfig
    from vaeprior.fast.evaluation.evaluate import summary_line
    from vaeprior.fast.training.loop import train

    model_kw = {"model": args.model, "prior": args.prior, "posterior": args.posterior}
    model_kw.update(flow_depth=args.flow_depth, pixelcnn=args.pixelcnn)
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
        lr=args.lr,
        patience=args.patience,
        early_stopping=not args.no_early_stop,
    )
    res = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    if args.no_progress:  # with progress, train() prints this line itself
        print(f"{Path(args.out)}: {summary_line(res)}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    from vaeprior.fast.evaluation.evaluate import evaluate_run, summary_line

    res = evaluate_run(
        args.run_dir,
        samples=args.samples,
        limit=args.limit,
        split=args.split,
        backend=args.backend,
        device=args.device,
        progress=not args.no_progress,
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


def _cmd_plot(args: argparse.Namespace) -> int:
    from vaeprior.fast.analysis.curves import plot_curves

    labels = None if args.labels is None else [s.strip() for s in args.labels.split(",")]
    curves = plot_curves(args.runs, args.out, labels)
    epochs = ", ".join(f"{name} ({len(c['epoch'])} epochs)" for name, c in curves.items())
    print(f"wrote {args.out}: {epochs}")
    return 0


def _cmd_lazy(name: str, rest: list[str]) -> int:
    """Import the module behind `name` only now, and let it parse its own arguments."""
    args = lazy_parser(name).parse_args(rest)
    return int(args._module.run(args))


COMMANDS = {
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "sample": _cmd_sample,
    "export": _cmd_export,
    "plot": _cmd_plot,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vaeprior` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from vaeprior.fast.runs import CheckpointError
    from vaeprior.fast.training.loop import TrainingError

    try:
        if argv and argv[0] in LAZY:
            return _cmd_lazy(argv[0], argv[1:])
        parser = build_parser()
        if argv and argv[0] in COMMANDS:  # errors the top level reports for a subcommand
            parser.hint = f"see `vaeprior {argv[0]} --help`"
        args = parser.parse_args(argv)
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, CheckpointError, TrainingError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"vaeprior: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
