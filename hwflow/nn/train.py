"""`hwflow train`: float baseline -> QAT -> AGN sigma search, checkpointed and resumable.

Run directory `RUN/` (docs/reference/file-formats.md):
- `config.yaml`: the config as run (seed included; a factory's file and the weights as
  absolute paths); `summary.json`: seed, test accuracies `{float, quant, agn,
  quant_after_agn}` in [0, 1] (top-1; `accuracy_top5` likewise), `threads`, `device`,
  `classes` (names, where the data set has them) and per layer `{name, ops, fan_in, sigma,
  signed}` (sigma = |sigma_l| learned; `hwflow.artifacts.RunSummary`); `metrics.jsonl`:
  one record per epoch. Later stages read a finished run through `hwflow.nn.run`.
- `checkpoints/<stage>.pt` when a stage is complete, `checkpoints/<stage>.last.pt` after
  every epoch (model, optimizer, scheduler, RNG states, metrics): `--resume` continues from
  the last completed epoch and reproduces an uninterrupted run with the same seed.
Stages:
- `float`: plain training; the checkpoint with the best validation accuracy is kept
  (the latest of equals). With `model.weights` (a user's trained float network) the
  stage does not train: the weights are loaded, evaluated and kept as its checkpoint.
- `qat`: calibrate activation observers on training batches (this fixes each layer's
  operand signedness), then fine-tune in `quant` mode with observers adapting; best by
  validation accuracy.
- `agn`: sigmas start at `sigma_init`, observers frozen, the AGN loss trains weights and
  sigmas together; the *last* epoch is kept (best validation accuracy would simply pick the
  least noise). Test accuracy is reported for each stage's kept model, never used to choose.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hwflow.artifacts import SUMMARY_FILE, RunSummary, SummaryLayer
from hwflow.config import dump_dataclass
from hwflow.errors import RunError
from hwflow.io import (
    RUN_KIND,
    check_dir,
    claim_dir,
    exclusive_writer,
    load_torch,
    read_yaml,
    save_torch,
    write_text,
    write_yaml,
)
from hwflow.nn import layers as L
from hwflow.nn.agn import agn_loss
from hwflow.nn.data import Data
from hwflow.nn.device import resolve_device
from hwflow.nn.models import (
    load_float_weights,
)
from hwflow.nn.run import (  # noqa: F401 (their old home: callers elsewhere import them here)
    Run,
    accuracies,
    accuracies_noisy,
    build_approx_model,
    build_data,
    build_float_model,
    evaluate,
    evaluate_noisy,
    evaluate_run,
    load_run,
    load_weights,
    torch_threads,
)
from hwflow.nn.train_config import (  # noqa: F401 (the configs' old home: callers import them here)
    STAGES,
    AGNConfig,
    DataConfig,
    ModelConfig,
    QATConfig,
    RetrainConfig,
    StageConfig,
    TrainConfig,
    load_train_config,
    validate,
)
from hwflow.progress import progress


def _optimizer(st: StageConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    if st.optimizer == "adam":
        return torch.optim.Adam(groups, lr=st.lr, weight_decay=st.weight_decay)
    return torch.optim.SGD(groups, lr=st.lr, momentum=st.momentum, weight_decay=st.weight_decay)


def _scheduler(st: StageConfig, opt: torch.optim.Optimizer):
    if st.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, st.epochs))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _e: 1.0)


def _calibration_batches(data: Data, cfg: TrainConfig):
    bs = cfg.data.batch_size
    x = data.train.x
    for i in range(min(cfg.qat.calibration_batches, -(-len(x) // bs))):
        yield data.train.on_device(x[i * bs : (i + 1) * bs])


# -- the run ---------------------------------------------------------------------------
Hook = Callable[[str, int], None]


@dataclass
class _Ctx:
    cfg: TrainConfig
    out: Path
    data: Data
    quiet: bool
    on_epoch: Hook | None
    log: Callable[[str], None]
    done_metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ckpt(self) -> Path:
        return self.out / "checkpoints"

    def write_metrics(self, current: list[dict[str, Any]]) -> None:
        lines = [json.dumps(r) for r in self.done_metrics + current]
        write_text(self.out / "metrics.jsonl", "".join(line + "\n" for line in lines))


def _sigmas(model: nn.Module) -> dict[str, float]:
    return {name: abs(float(layer.sigma.detach())) for name, layer in L.approx_layers(model)}


def _prepare_stage(stage: str, model: nn.Module, ctx: _Ctx) -> None:
    """Set modes (and do calibration / sigma init) when a stage starts fresh."""
    cfg = ctx.cfg
    if stage == "float":
        L.set_mode(model, "float")
    elif stage == "qat":
        L.calibrate(model, _calibration_batches(ctx.data, cfg))
        L.set_mode(model, "quant")
    else:
        for _, layer in L.approx_layers(model):
            with torch.no_grad():
                layer.sigma.fill_(cfg.agn.sigma_init)
        L.set_mode(model, "agn")


def _stage_modes(stage: str, model: nn.Module, cfg: TrainConfig) -> None:
    L.set_mode(model, {"float": "float", "qat": "quant", "agn": "agn"}[stage])
    L.set_observing(model, stage == "qat")
    for _, layer in L.approx_layers(model):
        layer.agn_noise = cfg.agn.noise


def _param_groups(
    stage: str, model: nn.Module, layers: list[Any], cfg: TrainConfig
) -> list[dict[str, Any]]:
    """The weights; in the agn stage also the noise scales, at their own learning rate."""
    st: StageConfig = getattr(cfg, stage)
    sigma_ids = {id(layer.sigma) for layer in layers}
    weights = [p for p in model.parameters() if id(p) not in sigma_ids]
    groups: list[dict[str, Any]] = [{"params": weights}]
    if stage == "agn":
        sigma_lr = cfg.agn.sigma_lr if cfg.agn.sigma_lr is not None else st.lr
        # no weight decay on the noise scales: decay would bias the sigma search to 0
        groups.append(
            {"params": [layer.sigma for layer in layers], "lr": sigma_lr, "weight_decay": 0.0}
        )
    return groups


def _stage_epoch(
    stage: str,
    epoch: int,
    model: nn.Module,
    layers: list[Any],
    ctx: _Ctx,
    opt: torch.optim.Optimizer,
    sched: Any,
    gen: torch.Generator,
) -> dict[str, Any]:
    """One epoch of `stage` (training, the scheduler's step, validation): its metrics record."""
    cfg = ctx.cfg
    st: StageConfig = getattr(cfg, stage)
    bs = cfg.data.batch_size
    t0 = time.perf_counter()
    model.train()
    n_steps = ctx.data.train.num_batches(bs, st.max_steps)
    bar = progress(
        ctx.data.train.batches(bs, shuffle=True, generator=gen, max_batches=st.max_steps),
        total=n_steps,
        desc=f"{stage} {epoch + 1}/{st.epochs}",
        quiet=ctx.quiet,
    )
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in bar:
        logits = model(x)
        if stage == "agn":
            loss = agn_loss(logits, y, layers, cfg.agn.lam, cfg.agn.sigma_max)
        else:
            loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}")
    bar.close()
    lr = opt.param_groups[0]["lr"]
    sched.step()
    val = evaluate(model, ctx.data.val, cfg.data.eval_batch_size)
    record: dict[str, Any] = {
        "stage": stage,
        "epoch": epoch + 1,
        "train_loss": loss_sum / max(1, seen),
        "train_acc": correct / max(1, seen),
        "val_acc": val,
        "lr": lr,
    }
    if stage == "agn":
        record["sigmas"] = _sigmas(model)
        record["val_acc_noisy"] = evaluate_noisy(
            model, ctx.data.val, cfg.data.eval_batch_size, cfg.seed
        )
    record["seconds"] = round(time.perf_counter() - t0, 3)
    return record


def _run_stage(stage: str, model: nn.Module, ctx: _Ctx) -> None:
    """Train one stage, checkpointing every epoch; leaves `model` holding the kept state."""
    cfg = ctx.cfg
    st: StageConfig = getattr(cfg, stage)
    stage_idx = STAGES.index(stage)
    layers = [layer for _, layer in L.approx_layers(model)]
    opt = _optimizer(st, _param_groups(stage, model, layers, cfg))
    sched = _scheduler(st, opt)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + stage_idx)
    last = ctx.ckpt / f"{stage}.last.pt"
    if last.is_file():
        state = load_torch(last)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        start, best_val, best_state = state["epoch"], state["best_val"], state["best_state"]
        metrics = state["metrics"]
        ctx.log(f"{stage}: resuming after epoch {start}")
    else:
        _prepare_stage(stage, model, ctx)
        torch.manual_seed(cfg.seed * 1000 + 100 + stage_idx)
        start, best_val, best_state, metrics = 0, -1.0, None, []
    _stage_modes(stage, model, cfg)

    for epoch in range(start, st.epochs):
        record = _stage_epoch(stage, epoch, model, layers, ctx, opt, sched, gen)
        val = record["val_acc"]
        metrics.append(record)
        # ties go to the later epoch: small validation sets saturate, and a later epoch
        # of the same validation accuracy has trained longer at a lower learning rate
        if stage == "agn" or val >= best_val:
            best_val, best_state = val, copy.deepcopy(model.state_dict())
        sig = ", ".join(f"{k} {v:.3f}" for k, v in record.get("sigmas", {}).items())
        extra = f" sigmas: {sig}" if sig else ""
        ctx.log(
            f"{stage} epoch {epoch + 1}/{st.epochs}: loss {record['train_loss']:.4f} "
            f"train {record['train_acc']:.4f} val {val:.4f}{extra}"
        )
        save_torch(
            last,
            {  # on the training device: `--resume` continues where it ran
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "rng": torch.get_rng_state(),
                "best_val": best_val,
                "best_state": best_state,
                "metrics": metrics,
            },
        )
        ctx.write_metrics(metrics)
        if ctx.on_epoch is not None:
            ctx.on_epoch(stage, epoch + 1)
    if best_state is not None:
        model.load_state_dict(best_state)
    else:  # epochs: 0 keeps the stage's starting point (e.g. PTQ: calibration, no QAT)
        best_val = evaluate(model, ctx.data.val, cfg.data.eval_batch_size)
    save_torch(
        ctx.ckpt / f"{stage}.pt",
        {"model": cpu_state(model.state_dict()), "val_acc": best_val, "metrics": metrics},
    )
    last.unlink(missing_ok=True)


def cpu_state(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict with every tensor on the CPU: kept checkpoints load on any machine."""
    return {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def _float_from_weights(model: nn.Module, ctx: _Ctx) -> None:
    """The float stage of a network brought with trained weights: load, evaluate, keep."""
    path = ctx.cfg.model.weights
    assert path is not None
    load_float_weights(model, path)
    L.set_mode(model, "float")
    val = evaluate(model, ctx.data.val, ctx.cfg.data.eval_batch_size)
    ctx.log(f"float: weights from {path} (not trained here), val {val:.4f}")
    metrics = [{"stage": "float", "epoch": 0, "weights": str(path), "val_acc": val}]
    save_torch(
        ctx.ckpt / "float.pt",
        {"model": cpu_state(model.state_dict()), "val_acc": val, "metrics": metrics},
    )


def _check_out_dir(out: Path, cfg: TrainConfig, resume: bool) -> None:
    check_dir(out, RUN_KIND)
    saved = out / "config.yaml"
    ckpts = out / "checkpoints"
    if not saved.exists() or not (ckpts.is_dir() and any(ckpts.glob("*.pt"))):
        return  # no finished epoch: nothing to protect, the (corrected) run starts afresh
    if not resume:
        raise RunError(f"{out}: a run already exists here; pass --resume or choose another --out")
    old = read_yaml(saved)
    if old != dump_dataclass(cfg):
        raise RunError(
            f"{saved}: the run was started with a different config (or seed); "
            "resume with the same config or choose another --out"
        )


@exclusive_writer("run", lambda a: a["out"])
def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    on_epoch: Hook | None = None,
    log: Callable[[str], None] | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Run all stages into `out` (resuming finished work with `resume`); return the summary.

    `quiet`: no progress bars; `log` gets one line per epoch either way (none by default).
    `on_epoch(stage, epoch)` is called after each epoch's checkpoint is written. `device`:
    "cpu" or "cuda" (default: cuda when available); the threads are `cfg.threads`, or
    chosen by measurement (`auto_threads`) when that is None.
    """
    out = Path(out)
    validate(cfg, "config")
    _check_out_dir(out, cfg, resume)
    if resume and (out / SUMMARY_FILE).is_file():
        return RunSummary.load(out / SUMMARY_FILE).to_dict()
    return _train(cfg, out, quiet, on_epoch, log, resolve_device(device))


# Below this many multiplications per sample (LeNet-5 has 0.42 M) one thread always won:
# on the busy 2-core machine two threads made a LeNet-5 step 10-15x slower.
SMALL_MODEL_OPS = 1_000_000


def auto_threads(model: nn.Module, x: torch.Tensor, device: torch.device) -> int:
    """Intra-op threads for training `model` on batches like `x`, chosen by measurement:
    one thread for small models (and off the CPU), else a forward + backward of a copy of
    the model timed on one thread and on every core, twice, interleaved; every core only
    when it is clearly faster (on a busy machine spinning OpenMP threads are far slower:
    ResNet-20 on 2 shared cores, 7-12x). Override with `threads:` in the config."""
    if device.type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ops = sum(layer.ops for _, layer in L.approx_layers(model))
    if (cores or 1) < 2 or ops < SMALL_MODEL_OPS:
        return 1
    probe = copy.deepcopy(model).train()
    best = {1: math.inf, cores: math.inf}
    before = torch.get_num_threads()
    try:
        with torch.random.fork_rng(devices=[]):
            for _ in range(2):
                for threads in best:
                    torch.set_num_threads(threads)
                    start = time.perf_counter()
                    probe(x).square().mean().backward()
                    best[threads] = min(best[threads], time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return cores if best[cores] < 0.7 * best[1] else 1


def _train(
    cfg: TrainConfig, out: Path, quiet: bool, on_epoch, log, device: torch.device
) -> dict[str, Any]:
    data = build_data(cfg)  # data and model first: a bad config writes nothing
    model = build_approx_model(cfg, data)
    claim_dir(out, RUN_KIND)
    write_yaml(out / "config.yaml", dump_dataclass(cfg))
    threads = cfg.threads or auto_threads(model, data.train.x[: cfg.data.batch_size], device)
    data.to(device)
    model.to(device)
    ctx = _Ctx(cfg, out, data, quiet, on_epoch, log or (lambda _m: None))
    ctx.log(f"training on {device.type}, {threads} thread(s)")
    kept: dict[str, dict[str, Any]] = {}
    with torch_threads(threads):
        for stage in STAGES:
            final = ctx.ckpt / f"{stage}.pt"
            if final.is_file():
                (ctx.ckpt / f"{stage}.last.pt").unlink(missing_ok=True)  # killed before cleanup
                kept[stage] = load_torch(final)
                ctx.done_metrics += kept[stage]["metrics"]
                continue
            if stage != "float":
                model.load_state_dict(kept[STAGES[STAGES.index(stage) - 1]]["model"])
            if stage == "float" and cfg.model.weights is not None:
                _float_from_weights(model, ctx)
            else:
                _run_stage(stage, model, ctx)
            kept[stage] = load_torch(final)
            ctx.done_metrics += kept[stage]["metrics"]
            ctx.write_metrics([])
        summary = _summarize(cfg, data, model, kept)
    summary.threads, summary.device = threads, device.type
    summary.save(out / SUMMARY_FILE)
    return summary.to_dict()


def _summarize(
    cfg: TrainConfig, data: Data, model: nn.Module, kept: dict[str, dict[str, Any]]
) -> RunSummary:
    bs = cfg.data.eval_batch_size
    acc: dict[str, dict[int, float]] = {}
    model.load_state_dict(kept["float"]["model"])
    L.set_mode(model, "float")
    acc["float"] = accuracies(model, data.test, bs)
    model.load_state_dict(kept["qat"]["model"])
    L.set_mode(model, "quant")
    acc["quant"] = accuracies(model, data.test, bs)
    model.load_state_dict(kept["agn"]["model"])
    L.set_mode(model, "agn")
    acc["agn"] = accuracies_noisy(model, data.test, bs, cfg.seed)
    L.set_mode(model, "quant")
    acc["quant_after_agn"] = accuracies(model, data.test, bs)
    return RunSummary(
        seed=cfg.seed,
        split_seed=cfg.data.split_seed,
        accuracy={stage: a[1] for stage, a in acc.items()},
        accuracy_top5={stage: a[5] for stage, a in acc.items()},
        classes=list(data.class_names) if data.class_names else None,
        float_weights=cfg.model.weights,
        val_accuracy={s: kept[s]["val_acc"] for s in STAGES},
        layers=[
            SummaryLayer(
                name=name,
                ops=layer.ops,
                fan_in=layer.fan_in,
                sigma=abs(float(layer.sigma.detach())),
                signed=layer.signed,
            )
            for name, layer in L.approx_layers(model)
        ],
    )
