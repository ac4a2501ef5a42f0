"""Weights of a torch DenseVAE <-> the NumPy reference's parameter dict (DESIGN.md keys).

Dense layers: the reference stores W (in, out) for `y = x @ W + b`; nn.Linear stores (out, in),
so W is transposed. Flow parameters: the torch flow stacks them over blocks and joins the
coupling heads, ST[k] = [S | T] and st0[k] = [s0 | t0] (`vaeprior.fast.models.flows`); the
reference keys `prior.{k}.S`, `.T`, `.s0`, `.t0` are views of their column halves.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vaeprior.fast.models.flows import RealNVP
from vaeprior.fast.models.vae import VAE
from vaeprior.reference.flows import PARAM_NAMES as REFERENCE_PARAM_NAMES


def _linears(vae: VAE) -> dict[str, nn.Linear]:
    """Reference prefix -> torch Linear layer of a DenseVAE."""
    if vae.cfg.model != "dense":
        raise ValueError(
            f"weight conversion supports only the DenseVAE (the reference has no {vae.cfg.model!r} "
            "model): build the VAE with ModelConfig(model='dense')"
        )
    e, d = vae.encoder, vae.decoder
    return {
        "enc.l1": e.trunk.l1,
        "enc.l2": e.trunk.l2,
        "enc.mean": e.mean,
        "enc.logstd": e.logstd,
        "dec.l1": d.trunk.l1,
        "dec.l2": d.trunk.l2,
        "dec.out": d.out,
    }


def reference_flow_tensors(flow: RealNVP, prefix: str) -> dict[str, torch.Tensor]:
    """Reference key -> view of the flow's stacked parameter ('prior.3.S' -> ST[3, :, :Dr]).

    Views share storage: reading them gives the reference layout, `copy_` into them loads it.
    """
    dr = flow.dim - flow.dim // 2
    out = {}
    for k in range(flow.depth):
        views = {
            "W": flow.W[k],
            "A": flow.A[k],
            "a": flow.a[k],
            "S": flow.ST[k, :, :dr],
            "s0": flow.st0[k, :dr],
            "T": flow.ST[k, :, dr:],
            "t0": flow.st0[k, dr:],
            "log_scale": flow.log_scale[k],
            "bias": flow.bias[k],
        }
        out.update({f"{prefix}.{k}.{name}": views[name] for name in REFERENCE_PARAM_NAMES})
    return out


def _flow_tensors(vae: VAE) -> dict[str, torch.Tensor]:
    """Reference key -> torch flow tensor view, for the prior and the posterior flow."""
    out = {}
    for prefix, flow in (("prior", vae.prior_flow), ("posterior", vae.posterior_flow)):
        if flow is not None:
            out.update(reference_flow_tensors(flow, prefix))
    return out


def _reference_tensors(vae: VAE) -> dict[str, torch.Tensor]:
    """Every reference key -> its torch tensor, in the reference layout (Linear W transposed)."""
    out: dict[str, torch.Tensor] = {}
    for prefix, lin in _linears(vae).items():
        out[f"{prefix}.W"] = lin.weight.T  # (in, out)
        out[f"{prefix}.b"] = lin.bias
    out.update(_flow_tensors(vae))
    return out


def to_reference_params(vae: VAE) -> dict[str, np.ndarray]:
    """The DenseVAE's weights as the reference's float64 parameter dict (DESIGN.md keys)."""
    return {
        k: t.detach().cpu().to(torch.float64).numpy().copy()
        for k, t in _reference_tensors(vae).items()
    }


@torch.no_grad()
def load_reference_params(vae: VAE, params: dict[str, np.ndarray]) -> VAE:
    """Copy a reference parameter dict into the DenseVAE in place; ActNorms count as initialised."""
    targets = _reference_tensors(vae)
    missing, unexpected = sorted(set(targets) - set(params)), sorted(set(params) - set(targets))
    if missing or unexpected:
        raise ValueError(
            f"reference params do not match the model (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}): build the VAE with the same prior/posterior/flow depth"
        )
    for key, target in targets.items():
        value = np.asarray(params[key])
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(
                f"reference param {key} has shape {value.shape}, the model expects "
                f"{tuple(target.shape)}: check z_dim, hidden and flow_hidden"
            )
        target.copy_(torch.from_numpy(value).to(target.dtype))
    for flow in (vae.prior_flow, vae.posterior_flow):
        _mark_initialized(flow)
    return vae


def _mark_initialized(flow: RealNVP | None) -> None:
    if flow is not None:
        flow.actnorm_initialized.fill_(True)
