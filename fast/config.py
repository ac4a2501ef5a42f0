"""Configuration of one model of the paper (Appendix B.2): architecture + VAEConfig fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from vaeprior.reference.config import LEAKY_SLOPE, POSTERIORS, PRIORS, SCALE_SHIFT

MODELS = ("dense", "conv", "resnet", "pixel")
DATASETS = ("mnist", "static-mnist", "fashion-mnist", "omniglot")
# Appendix B.2: 40 latent dimensions on (Static)MNIST, 64 on FashionMNIST and Omniglot.
DEFAULT_Z_DIM = {"mnist": 40, "static-mnist": 40, "fashion-mnist": 64, "omniglot": 64}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a `VAE`; saved as part of a run's config.json."""

    model: str = "dense"
    z_dim: int = 40
    hidden: int = 500
    prior: str = "gaussian"
    posterior: str = "gaussian"
    flow_depth: int = 20
    flow_hidden: int = 256
    leaky_slope: float = LEAKY_SLOPE
    scale_shift: float = SCALE_SHIFT
    dropout: float = 0.5  # PixelCNN layers only (Appendix B.2)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}: choose one of {MODELS}")
        if self.prior not in PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}: choose one of {PRIORS}")
        if self.posterior not in POSTERIORS:
            raise ValueError(f"unknown posterior {self.posterior!r}: choose one of {POSTERIORS}")
        if self.flow_depth < 0:
            raise ValueError(f"flow depth K must be >= 0, got {self.flow_depth}")
        if self.z_dim < 2:
            raise ValueError(f"z_dim must be >= 2 (the coupling layer splits z), got {self.z_dim}")

    @classmethod
    def for_dataset(cls, dataset: str, **kw) -> ModelConfig:
        """Paper defaults for `dataset` (latent size), overridden by `kw`."""
        if dataset not in DEFAULT_Z_DIM:
            raise ValueError(f"unknown dataset {dataset!r}: choose one of {DATASETS}")
        kw.setdefault("z_dim", DEFAULT_Z_DIM[dataset])
        return cls(**kw)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(
                f"unknown model config keys {sorted(unknown)}: checkpoint from another version?"
            )
        return cls(**d)
