"""The training config (`hwflow train --config`): its dataclasses, loaded strictly.

Every numeric field carries its range (`hwflow.config.ranged`), checked where the config
is read, so a value torch would reject late, or accept and train on silently (a negative
λ reverses the AGN reward, a negative σ learning rate makes σ explode), is one
ConfigError naming the key. `validate` checks a config built in Python the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from hwflow.config import check_ranges, load_config, ranged
from hwflow.errors import ConfigError
from hwflow.io import read_yaml
from hwflow.nn.agn import LAMBDA, SIGMA_INIT, SIGMA_MAX
from hwflow.nn.models import is_factory_file

STAGES = ("float", "qat", "agn")
REQUIRED_KEYS = ("data.dataset",)  # a config file must name these (and model.name or .factory)
# Seeds reach torch.manual_seed (at most 2**64 - 1) with small offsets added: stay below
SEED_LIMIT = 2**63


@dataclass
class DataConfig:
    dataset: Literal["digits", "mnist", "fashion_mnist", "cifar10", "imagefolder"] = "digits"
    data_dir: str | None = None
    split_seed: int = ranged(0, ge=0, lt=SEED_LIMIT)
    val_fraction: float = ranged(0.15, gt=0, lt=1)
    augment: bool = True
    image_size: int = ranged(64, ge=1)
    max_samples: int | None = ranged(None, ge=1)  # truncate every split (smoke runs)
    batch_size: int = ranged(64, ge=1)
    eval_batch_size: int = ranged(512, ge=1)


@dataclass
class ModelConfig:
    name: str = "digits_cnn"  # a built-in model (hwflow.nn.models.MODELS); or:
    # a user's network: "file.py:build_net" (relative to the config file) or
    # "package.module:build_net", called with `kwargs`, returning an nn.Module
    factory: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    # torch.save(model.state_dict()) of the trained float network (relative to the config
    # file): the float stage is skipped and QAT starts from these weights
    weights: str | None = None
    bn: bool | None = None
    operands: Literal["auto", "signed", "unsigned"] = "auto"
    per_channel: bool = False
    observer: Literal["ema", "minmax"] = "ema"


@dataclass
class StageConfig:
    epochs: int = ranged(10, ge=0)
    lr: float = ranged(0.05, gt=0)
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = ranged(0.9, ge=0, lt=1)
    weight_decay: float = ranged(0.0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    max_steps: int | None = ranged(None, ge=1)  # per-epoch cap on training steps (smoke runs)


@dataclass
class QATConfig(StageConfig):
    lr: float = ranged(0.01, gt=0)
    calibration_batches: int = ranged(8, ge=1)


@dataclass
class AGNConfig(StageConfig):
    lr: float = ranged(0.1, gt=0)
    lam: float = ranged(LAMBDA, ge=0)  # negative would reward less noise
    sigma_init: float = ranged(SIGMA_INIT, ge=0)
    sigma_max: float = ranged(SIGMA_MAX, gt=0)
    sigma_lr: float | None = ranged(None, gt=0)  # default: lr
    noise: Literal["pool", "randn"] = "pool"  # see hwflow.nn.agn.standard_noise


@dataclass
class RetrainConfig:
    # Backward of approx-mode layers when retraining: "ste" (the exact product's) or
    # "table" (the multiplier table's own slopes, hwflow.nn.kernels.table_gradients).
    gradient: Literal["ste", "table"] = "ste"


@dataclass
class TrainConfig:
    seed: int = ranged(0, ge=0, lt=SEED_LIMIT)
    # torch intra-op threads (None: chosen by measurement, `auto_threads`). Small models
    # train several times faster on one thread: OpenMP threads spin and thrash on a busy
    # machine.
    threads: int | None = ranged(None, ge=1)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    float: StageConfig = field(default_factory=StageConfig)
    qat: QATConfig = field(default_factory=QATConfig)
    agn: AGNConfig = field(default_factory=AGNConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)


def load_train_config(path: str | Path) -> TrainConfig:
    """A training config; the model's factory file and weights are resolved relative to the
    config file's directory (absolute in the run's copy, so the run loads from anywhere)."""
    cfg = load_config(TrainConfig, path, required=REQUIRED_KEYS)
    model = (read_yaml(path) or {}).get("model")
    if not isinstance(model, dict) or not {"name", "factory"} & set(model):
        raise ConfigError(
            f"{path}: model.name: required key is missing (or model.factory for your own network)"
        )
    cfg = replace(cfg, model=_resolve_model_paths(cfg.model, Path(path).parent))
    validate(cfg, str(path))
    return cfg


def _resolve_model_paths(mc: ModelConfig, base: Path) -> ModelConfig:
    factory, weights = mc.factory, mc.weights
    if factory is not None:
        source, sep, attr = factory.rpartition(":")
        if sep and is_factory_file(source) and not Path(source).expanduser().is_absolute():
            factory = f"{(base / source).resolve()}:{attr}"
    if weights is not None and not Path(weights).expanduser().is_absolute():
        weights = str((base / weights).resolve())
    return replace(mc, factory=factory, weights=weights)


def validate(cfg: TrainConfig, where: str) -> None:
    """Every field in its range, and the fields that only go together; `where` names the
    config in the message."""
    try:
        check_ranges(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if cfg.model.factory is None and (cfg.model.kwargs or cfg.model.weights):
        raise ConfigError(f"{where}: model.kwargs and model.weights need model.factory")
