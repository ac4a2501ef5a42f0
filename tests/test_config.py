"""Configuration: the fast ModelConfig shares the reference VAEConfig's fields and defaults."""

from __future__ import annotations

from dataclasses import fields

import pytest

from vaeprior.fast.config import ModelConfig, TrainConfig
from vaeprior.reference.config import VAEConfig


def test_model_config_extends_the_reference_config():
    shared = {f.name for f in fields(VAEConfig)}
    assert shared <= {f.name for f in fields(ModelConfig)}
    assert ModelConfig().to_reference() == VAEConfig()  # same defaults
    cfg = ModelConfig(model="conv", z_dim=64, prior="rnvp", flow_depth=5)
    ref = cfg.to_reference()
    assert isinstance(ref, VAEConfig) and type(ref) is VAEConfig
    assert all(getattr(ref, n) == getattr(cfg, n) for n in shared)


def test_model_config_round_trips_and_accepts_old_config_dicts():
    cfg = ModelConfig(model="resnet", prior="rnvp", flow_depth=3)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k != "x_dim"}  # written before x_dim
    assert ModelConfig.from_dict(old) == cfg


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"model": "mlp"}, "unknown model"),
        ({"flow_depth": -1}, "flow depth K must be >= 0"),
        ({"z_dim": 1}, "z_dim must be >= 2"),
        ({"x_dim": 100}, "x_dim 784"),
    ],
)
def test_model_config_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kw)


def test_train_config_carries_a_model_config():
    cfg = TrainConfig(dataset="mnist", model=ModelConfig(prior="rnvp"), epochs=3)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TypeError, match="ModelConfig"):
        TrainConfig(dataset="mnist", model={"prior": "rnvp"})
