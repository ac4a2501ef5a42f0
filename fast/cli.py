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

import numpy as np

from vaeprior.fast.analysis.curves import plot_curves
from vaeprior.fast.analysis.samples import save_samples_png
from vaeprior.fast.backends import BACKENDS, DEVICE_HELP
from vaeprior.fast.evaluation.evaluate import evaluate_run, summary_line
from vaeprior.fast.models.convert import to_reference_params
from vaeprior.fast.runs import CheckpointError, load_run
from vaeprior.fast.threads import THREADS_HELP, set_threads
from vaeprior.fast.training.loop import TrainingError

EXIT_USAGE = 2
# subcommands implemented elsewhere: module exposing add_arguments(parser) and run(args) -> int
LAZY = {
    "train": ("vaeprior.fast.training.cli", "train a VAE (Appendix B.3)"),
    "analyze": (
        "vaeprior.fast.analysis.cli",
        "analyses of trained runs (paper's figures/tables)",
    ),
    "reproduce": ("vaeprior.fast.reproduce.cli", "reproduce the paper's tables"),
}


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


def _cmd_evaluate(args: argparse.Namespace) -> int:
    set_threads(args.threads)

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

    save_samples_png(args.run_dir, n=args.n, out=args.out, seed=args.seed, device=args.device)
    print(f"wrote {args.out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:

    vae, _ = load_run(args.run_dir, device="cpu")
    params = to_reference_params(vae)  # clear error for non-dense models
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **params)
    tmp.replace(out)  # atomic: never a half-written file
    print(f"wrote {out} ({len(params)} arrays): python -m vaeprior.reference.demo --params {out}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:

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
    "evaluate": _cmd_evaluate,
    "sample": _cmd_sample,
    "export": _cmd_export,
    "plot": _cmd_plot,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vaeprior` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)

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
