"""Seconds per training epoch of a DenseVAE + RNVP prior, per flow backend.

Times `vaeprior.fast.training.loop._run_epoch` (the loop `vaeprior train` runs: on-device dynamic
binarization, shuffling, warm-up ELBO, L2, Adam) on MNIST-sized data held on the device:

- eager:   the torch flow (`RealNVP.backend = "torch"`);
- fused:   the Triton flow kernel (`RealNVP.backend = "triton"`, forward + backward);
- compile: eager modules under `torch.compile` (the VAE's `forward` pieces compiled).

The first epoch (ActNorm init, kernel compilation, autotuning) is excluded. Extrapolates the
paper's 2400-epoch schedule. Usage (any device; on the CPU use --rows to keep it short):

    python -m vaeprior.bench.gpu.train_speed --backends eager,fused,compile --out speed.json
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from vaeprior.bench.gpu.report import emit
from vaeprior.fast.config import ModelConfig, TrainConfig
from vaeprior.fast.data import DeviceData, load_device_data
from vaeprior.fast.models.vae import build_vae
from vaeprior.fast.training import schedule as sch
from vaeprior.fast.training.loop import _run_epoch

PAPER_EPOCHS = 2400


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_epoch(
    backend: str, data: DeviceData, cfg: TrainConfig, device: torch.device, epochs: int
) -> float:
    """Median wall seconds of `epochs` timed epochs after one warm-up epoch."""
    torch.manual_seed(cfg.seed)
    vae = build_vae(cfg.model).to(device)
    vae.prior_flow.backend = "torch" if backend in ("eager", "compile") else "triton"
    if backend == "compile":
        vae.prior_flow.forward = torch.compile(vae.prior_flow.forward)
        vae.decoder = torch.compile(vae.decoder)
        vae.encoder = torch.compile(vae.encoder)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    phase = sch.Phase(
        name="speed",
        stage="joint",
        epochs=epochs + 1,
        lr=1e-3,
        groups=(*sch.VAE_GROUPS, *sch.PRIOR_GROUPS),
        prior="model",
        warmup=0,
        stage_offset=0,
    )
    times = []
    for e in range(epochs + 1):
        _sync(device)
        t0 = time.perf_counter()
        _run_epoch(vae, opt, data, phase, e, e, cfg, gen, None)
        _sync(device)
        times.append(time.perf_counter() - t0)
    timed = sorted(times[1:])
    return timed[len(timed) // 2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="eager,fused,compile")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--flow-depth", type=int, default=20)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per backend")
    p.add_argument("--rows", type=int, default=None, help="training images (default: all)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    model = ModelConfig.for_dataset(args.dataset, prior="rnvp", flow_depth=args.flow_depth)
    cfg = TrainConfig(dataset=args.dataset, model=model, epochs=PAPER_EPOCHS, device=args.device)
    data = load_device_data(args.dataset, None, device, train_limit=args.rows)
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "rows": int(data.train.shape[0]),
        "flow_depth": args.flow_depth,
        "seconds_per_epoch": {},
        "paper_schedule_minutes": {},
    }
    for backend in args.backends.split(","):
        try:
            s = seconds_per_epoch(backend, data, cfg, device, args.epochs)
        except Exception as e:  # report and go on: one backend failing must not hide the rest
            print(f"{backend}: failed: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        result["seconds_per_epoch"][backend] = s
        result["paper_schedule_minutes"][backend] = s * PAPER_EPOCHS / 60
        print(f"{backend}: {s:.3f} s/epoch -> {s * PAPER_EPOCHS / 60:.1f} min for 2400 epochs")
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
