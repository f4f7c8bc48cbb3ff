"""A trained run: building its network and data from its config, evaluating a model,
and loading a finished run (`load_run`, `load_weights`). Later stages (assign, retrain,
export, the experiments) import this module, not the training stages in `train`.

Run directory `RUN/` (docs/reference/interfaces.md): `config.yaml` (the config as run),
`summary.json` (`hwflow.artifacts.RunSummary`), `checkpoints/<stage>.pt`, `metrics.jsonl`
(read here for the sigma search's history, `sigma_history`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwflow.artifacts import SUMMARY_FILE, RunSummary
from hwflow.config import load_dataclass
from hwflow.errors import ConfigError, RunError
from hwflow.io import load_torch, read_yaml
from hwflow.nn import layers as L
from hwflow.nn.data import Data, Split, load_data
from hwflow.nn.device import resolve_device
from hwflow.nn.models import build_from_factory, build_model, check_approximable
from hwflow.nn.train_config import TrainConfig
from hwflow.trust import check_factory_trusted


def build_data(cfg: TrainConfig) -> Data:
    d = cfg.data
    return load_data(
        d.dataset,
        d.data_dir,
        split_seed=d.split_seed,
        val_fraction=d.val_fraction,
        augment=d.augment,
        image_size=d.image_size,
        max_samples=d.max_samples,
    )


def build_float_model(cfg: TrainConfig, data: Data) -> nn.Module:
    """The configured float network: a built-in by name, or the user's factory."""
    mc = cfg.model
    if mc.factory is not None:
        return build_from_factory(mc.factory, mc.kwargs)
    model = build_model(mc.name, data.num_classes, data.in_channels, mc.bn)
    check_approximable(model, f"model.name: {mc.name}")
    return model


def build_approx_model(cfg: TrainConfig, data: Data) -> nn.Module:
    """The configured model, seeded, with approximate layers and ops counted (on the CPU:
    callers move it)."""
    torch.manual_seed(cfg.seed)
    model = build_float_model(cfg, data)
    x = data.train.x[:2]
    try:
        L.approximate(
            model,
            x,
            operands=cfg.model.operands,
            per_channel=cfg.model.per_channel,
            observer=cfg.model.observer,
        )
    except Exception as exc:  # the user's network: its error is one line naming the input
        if cfg.model.factory is None:
            raise
        raise ConfigError(
            f"model.factory: {cfg.model.factory}: the network fails on a batch of shape "
            f"{tuple(x.shape)}: {type(exc).__name__}: {exc}"
        ) from None
    if cfg.model.factory is not None:
        _check_logits(model, x, data.num_classes, cfg.model.factory)
    return model


def _check_logits(model: nn.Module, x: torch.Tensor, classes: int, factory: str) -> None:
    """A user's network must return the logits, one row of `classes` per image (in eval
    mode, as `approximate` ran it: nothing it holds changes)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        y = model(x)
    model.train(was_training)
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (len(x), classes):
        got = f"shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else f"a {type(y).__name__}"
        raise ConfigError(
            f"model.factory: {factory}: forward returns {got}; hwflow needs the logits, one "
            f"tensor of shape (batch, {classes})"
        )


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1] of `model` (in its current modes) on `split`."""
    return accuracies(model, split, batch_size, topk=(1,))[1]


@torch.no_grad()
def accuracies(
    model: nn.Module, split: Split, batch_size: int = 512, topk: tuple[int, ...] = (1, 5)
) -> dict[int, float]:
    """{k: top-k accuracy in [0, 1]} of `model` (in its current modes) on `split`; k beyond
    the number of classes counts every image as correct."""
    was_training = model.training
    model.eval()
    correct = dict.fromkeys(topk, 0)
    for x, y in split.batches(batch_size, augment=False):
        logits = model(x)
        ranked = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices
        hit = ranked == y[:, None]
        for k in topk:
            correct[k] += int(hit[:, :k].any(1).sum())
    model.train(was_training)
    return {k: c / max(1, len(split)) for k, c in correct.items()}


@torch.no_grad()
def evaluate_noisy(model: nn.Module, split: Split, batch_size: int, seed: int) -> float:
    """Accuracy with AGN noise drawn in eval mode too (seeded, global RNG untouched)."""
    return accuracies_noisy(model, split, batch_size, seed, topk=(1,))[1]


@torch.no_grad()
def accuracies_noisy(
    model: nn.Module, split: Split, batch_size: int, seed: int, topk: tuple[int, ...] = (1, 5)
) -> dict[int, float]:
    """`accuracies` with AGN noise drawn in eval mode too (seeded, global RNG untouched)."""
    noisy = [layer for _, layer in L.approx_layers(model)]
    dev = split.device
    cuda = [dev.index or 0] if dev is not None and dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        for layer in noisy:
            layer.agn_eval_noise = True
        try:
            return accuracies(model, split, batch_size, topk)
        finally:
            for layer in noisy:
                layer.agn_eval_noise = False


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run a block on `threads` intra-op threads (None: leave torch's setting), then restore.

    Small models train several times faster on one thread: OpenMP threads spin and thrash
    on a busy machine. Stages that train a run's model (train, retrain) use its config's.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Run:
    """A finished training run: its config, summary, trained model (quant mode) and data."""

    path: Path
    config: TrainConfig
    summary: RunSummary
    model: nn.Module
    data: Data
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def threads(self) -> int | None:
        """The config's threads, else those training chose (None: runs from before)."""
        return self.config.threads or self.summary.threads

    def evaluate(self, model: nn.Module | None = None, split: str = "test") -> float:
        """Top-1 accuracy of `model` (default: this run's) in its current modes."""
        return evaluate(
            self.model if model is None else model,
            self.data.split(split),
            self.config.data.eval_batch_size,
        )

    def accuracies(self, model: nn.Module | None = None, split: str = "test") -> dict[str, float]:
        """{"top1", "top5"} accuracy of `model` (default: this run's) in its current modes."""
        acc = accuracies(
            self.model if model is None else model,
            self.data.split(split),
            self.config.data.eval_batch_size,
        )
        return {"top1": acc[1], "top5": acc[5]}

    def fresh_model(self) -> nn.Module:
        """An independent copy of the trained model (quant mode), for retraining."""
        return copy.deepcopy(self.model)


def load_run(
    run_dir: str | Path, data_dir: str | None = None, device: str | torch.device | None = None
) -> Run:
    """Load a finished run: the AGN-stage model (weights, observers, sigmas) in quant mode.

    `data_dir` overrides the recorded data directory (the data moved). `device`: where the
    model runs and its data's batches arrive ("cpu", "cuda"; default cuda when available).
    """
    dev = resolve_device(device)
    run_dir = Path(run_dir)
    for need in ("config.yaml", SUMMARY_FILE, "checkpoints/agn.pt"):
        if not (run_dir / need).is_file():
            raise RunError(
                f"{run_dir / need}: not found (is {run_dir} a finished hwflow train run?)"
            )
    try:
        cfg = load_dataclass(TrainConfig, read_yaml(run_dir / "config.yaml"))
    except ConfigError as exc:
        raise RunError(f"{run_dir / 'config.yaml'}: {exc}") from None
    check_factory_trusted(cfg.model.factory, str(run_dir / "config.yaml"))
    if data_dir is not None:
        cfg = replace(cfg, data=replace(cfg.data, data_dir=data_dir))
    data = build_data(cfg)
    model = build_approx_model(cfg, data)
    load_weights(model, run_dir / "checkpoints" / "agn.pt")
    L.set_mode(model, "quant")
    model.eval().to(dev)
    data.to(dev)
    summary = RunSummary.load(run_dir / SUMMARY_FILE)
    summary.check_layers([name for name, _ in L.approx_layers(model)], run_dir / SUMMARY_FILE)
    return Run(run_dir, cfg, summary, model, data, dev)


def sigma_history(run_dir: str | Path) -> dict[str, list[float]]:
    """{layer: learned sigma after each AGN epoch} from the run's `metrics.jsonl` (the
    file `hwflow train` writes one record per epoch into); empty for a run without it."""
    import json

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return {}
    history: dict[str, list[float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise RunError(f"{path}: not one JSON record per line") from None
        if record.get("stage") == "agn":
            for name, sigma in record.get("sigmas", {}).items():
                history.setdefault(name, []).append(float(sigma))
    return history


def evaluate_run(
    run_dir: str | Path,
    mode: str = "quant",
    split: str = "test",
    data_dir: str | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Accuracy of a finished run on `split`.

    `quant`: the run's final model (`load_run`, the AGN-stage weights, = summary's
    `quant_after_agn`); `agn`: the same with its learned noise drawn (seeded); `float`:
    the float-stage checkpoint.
    """
    run = load_run(run_dir, data_dir, device)
    model, checkpoint = run.model, "checkpoints/agn.pt"
    if mode == "float":
        checkpoint = "checkpoints/float.pt"
        load_weights(model, run.path / checkpoint)
        L.set_mode(model, "float")
    elif mode == "agn":
        L.set_mode(model, "agn")
    elif mode != "quant":
        raise RunError(f"evaluate: unknown mode {mode!r} (float, quant, agn)")
    bs = run.config.data.eval_batch_size
    with torch_threads(run.threads):
        if mode == "agn":
            acc = accuracies_noisy(model, run.data.split(split), bs, run.config.seed)
        else:
            acc = accuracies(model, run.data.split(split), bs)
    return {
        "run": str(run_dir),
        "mode": mode,
        "split": split,
        "checkpoint": checkpoint,
        "accuracy": acc[1],
        "accuracy_top5": acc[5],
        "device": run.device.type,
    }


def load_weights(model: nn.Module, checkpoint: str | Path) -> None:
    """Load a checkpoint's `model` state (a stage or retrain checkpoint) into `model`."""
    path = Path(checkpoint)
    state = load_torch(path)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise RunError(f"{path}: not a checkpoint of this model ({reason})") from None
