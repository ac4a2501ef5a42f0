"""`vaeprior train`: train a VAE of any architecture, prior, posterior and strategy into a run.

The options map one to one onto `vaeprior.fast.config.TrainConfig` / `ModelConfig`; `run`
builds them and calls `vaeprior.fast.training.loop.train`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vaeprior.fast.backends import DEVICE_HELP
from vaeprior.fast.config import DATASETS, MODELS, PIXELCNNS, ModelConfig, TrainConfig
from vaeprior.fast.evaluation.evaluate import summary_line
from vaeprior.fast.threads import THREADS_HELP, set_threads
from vaeprior.fast.training.loop import train
from vaeprior.fast.training.schedule import DEFAULT_PATIENCE, STRATEGIES, VALIDATION_EVERY
from vaeprior.reference.config import POSTERIORS, PRIORS

DESCRIPTION = (
    "Train a VAE into a run folder: config.json, metrics.jsonl (one line per "
    "epoch), checkpoints, and results.json from a final evaluation (Appendix B.3)."
)
EPILOG = (
    "example (24 epochs = the paper's schedule scaled by 1/100):\n"
    "  vaeprior train --model dense --prior rnvp --dataset mnist --epochs 24 \\\n"
    "      --eval-limit 1000 --out runs/mnist-rnvp"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `vaeprior train`, grouped (model, data, schedule, evaluation, output)."""
    p.epilog = EPILOG
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


def run(args: argparse.Namespace) -> int:
    """Train the run the options describe; prints its final summary line."""
    set_threads(args.threads)

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
