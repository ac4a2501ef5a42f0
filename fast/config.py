"""Configuration of a model (Appendix B.2) and of a training run (Appendix B.3).

`ModelConfig` extends the reference's `VAEConfig` (one source of the shared field names and
defaults) with the architecture; `TrainConfig` is everything that defines a run and is saved as
the run directory's config.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from vaeprior.fast.training import schedule as sch
from vaeprior.reference.config import VAEConfig
from vaeprior.reference.data import DATASETS, SPLITS

MODELS = ("dense", "conv", "resnet", "pixel")
# PixelVAE decoder variants (`vaeprior.fast.models.networks.pixelcnn`): "paper" is Appendix B.2's
# PixelCNN[...] on Concat[x, h~(z)]; "gated" adds gated blocks and h~(z) at every layer.
PIXELCNNS = ("paper", "gated")
# Appendix B.2: 40 latent dimensions on (Static)MNIST, 64 on FashionMNIST and Omniglot.
DEFAULT_Z_DIM = {"mnist": 40, "static-mnist": 40, "fashion-mnist": 64, "omniglot": 64}


@dataclass(frozen=True)
class ModelConfig(VAEConfig):
    """Everything needed to build a `VAE`: the reference's `VAEConfig` fields (sizes, prior,
    posterior, flow depth K, LeakyReLU slope, coupling scale shift) plus the architecture.
    Saved as part of a run's config.json."""

    model: str = "dense"  # dense | conv | resnet | pixel: DenseVAE, ConvVAE, ResnetVAE, PixelVAE
    dropout: float = 0.5  # PixelCNN layers only (Appendix B.2)
    pixelcnn: str = "paper"  # PixelVAE decoder variant (PIXELCNNS); other models ignore it

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}: choose one of {MODELS}")
        if self.pixelcnn not in PIXELCNNS:
            raise ValueError(f"unknown pixelcnn {self.pixelcnn!r}: choose one of {PIXELCNNS}")
        super().__post_init__()
        if self.z_dim < 2:
            raise ValueError(f"z_dim must be >= 2 (the coupling layer splits z), got {self.z_dim}")
        if self.x_dim != 784:
            raise ValueError(f"the models take 28x28 images (x_dim 784), got x_dim={self.x_dim}")

    def to_reference(self) -> VAEConfig:
        """The `VAEConfig` of the NumPy reference with the same shared fields."""
        return VAEConfig(**{f.name: getattr(self, f.name) for f in fields(VAEConfig)})

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
        """The config saved by `to_dict`. A PixelVAE saved before the `pixelcnn` field existed
        was trained with the gated decoder, and loads as such."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(
                f"unknown model config keys {sorted(unknown)}: checkpoint from another version?"
            )
        if d.get("model") == "pixel" and "pixelcnn" not in d:
            d = {**d, "pixelcnn": "gated"}
        return cls(**d)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; saved as config.json."""

    dataset: str
    model: ModelConfig
    strategy: str = "joint"
    epochs: int | None = None  # None: the paper's 2400-epoch schedule
    batch_size: int | None = None  # None: 128, or 64 for PixelVAE (Appendix B.3)
    seed: int = 0
    device: str | None = None  # "cpu" | "cuda" | None (auto)
    data_dir: str | None = None
    reg_qz: bool = False  # Reg[q(z)] of Appendix B.3
    checkpoint_every: int = 1  # epochs
    eval_samples: int = 1000
    eval_limit: int | None = None
    eval_split: str = "test"
    iterations: int | None = None  # I of Algorithm B.1 (None: 16, or 4 on StaticMNIST)
    m_epochs: int | None = None  # M of Algorithm B.1 (None: 100 or 400, scaled)
    base_run: str | None = None  # standard run whose q and p(x|z) post-hoc training reuses
    train_limit: int | None = None  # only the first N training images
    lr: float | None = None  # None: the paper's (1e-3 first, StaticMNIST 1e-4); else scales all
    # Early stopping on validation NLL (Appendix B.3: StaticMNIST and PixelVAE runs only).
    # False: no validation, no early stop, no best-weights restore (the final weights are kept).
    early_stopping: bool = True
    patience: int | None = None  # validations without improvement (None: DEFAULT_PATIENCE)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}: choose one of {DATASETS}")
        if not isinstance(self.model, ModelConfig):
            raise TypeError(f"model must be a ModelConfig, got {type(self.model).__name__}")
        if self.eval_split not in SPLITS:
            raise ValueError(f"unknown split {self.eval_split!r}: choose one of {SPLITS}")
        for name in ("epochs", "batch_size", "eval_limit", "train_limit", "patience"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if self.checkpoint_every < 1 or self.eval_samples < 1:
            raise ValueError("checkpoint_every and eval_samples must be >= 1")
        if self.base_run is not None and self.strategy != "post-hoc":
            raise ValueError("--base-run is only used by the post-hoc strategy")
        self.phases()  # validates strategy / prior / I / M

    @property
    def effective_batch_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return 64 if self.model.model == "pixel" else 128

    def phases(self) -> list[sch.Phase]:
        return sch.build_schedule(
            self.strategy,
            self.dataset,
            self.model.prior,
            self.epochs,
            iterations=self.iterations,
            m_epochs=self.m_epochs,
            skip_standard=self.base_run is not None,
            lr=self.lr,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown train config keys {sorted(unknown)}: another version?")
        return cls(**{**d, "model": ModelConfig.from_dict(d["model"])})

    def identity(self) -> dict:
        """The fields a resumed run must share with the original (device may change)."""
        d = self.to_dict()
        d.pop("device")
        return d
