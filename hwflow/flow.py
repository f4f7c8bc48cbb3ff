"""The whole flow as one ordered list of steps (FINN style): `hwflow demo`.

A `FlowConfig` dataclass says where things go and how big the run is; `STEPS` is the
ordered list of (name, function). Every step only calls the stage libraries and leaves
its outputs in `out/` under the same names the single-stage commands use, so a user can
rerun any stage by hand. Steps resume: the library is a sha256 cache, training resumes
from its checkpoints, and steps whose outputs exist are skipped unless `force` names them.
Verification is a step of the flow, not an afterthought: the flow fails when the
exported hardware disagrees with the emulation.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwflow.artifacts import (
    ASSIGNMENT_FILE,
    MANIFEST_FILE,
    RETRAIN_FILE,
    SUMMARY_FILE,
    VALIDATION_FILE,
    VERIFY_FILE,
    RetrainResult,
    ValidationReport,
    VerifyReport,
)
from hwflow.errors import HwflowError, VerificationError
from hwflow.io import claim_dir, write_json
from hwflow.resources import resource_dir
from hwflow.trust import trusting

FLOW_KIND = "flow"  # `demo --out` marker: a rerun resumes only a directory a flow made


def default_train_config() -> Path:
    """examples/digits.yaml of this installation (a checkout's, or the one a wheel carries)."""
    return resource_dir("examples") / "digits.yaml"


@dataclass
class FlowConfig:
    out: Path = Path("runs/demo")
    library: Path = Path("hwflow-lib")
    # the checkout's examples/, or the copy a wheel carries: the demo runs from anywhere
    train_config: Path = field(default_factory=default_train_config)
    quick: bool = False  # a few steps per stage: the end-to-end test, not a result
    scale: float = 1.0  # used only without a budget (max_loss None)
    max_loss: float | None = 1.0  # assign: the cheapest within this validation loss (pp)
    recovery_steps: int = 0  # assign: each budget candidate measured after this retraining
    error_model: str = "sampled"
    energy_model: str | None = None  # what assign/sweep minimise (None: recorded operands)
    retrain_epochs: int = 5
    sweep_scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    sweep_epochs: int = 2
    lanes: int = 8
    images: int = 16
    jobs: int = 2
    seed: int = 0
    force: tuple[str, ...] = ()

    @property
    def run(self) -> Path:
        return self.out / "run"

    @property
    def assignment(self) -> Path:
        return self.run / ASSIGNMENT_FILE

    @property
    def export_dir(self) -> Path:
        return self.out / "rtl"

    def quick_version(self) -> FlowConfig:
        return dataclasses.replace(
            self, retrain_epochs=1, sweep_scales=(0.5, 2.0), sweep_epochs=1, images=4, lanes=4
        )


Log = Callable[[str], None]


def _done(cfg: FlowConfig, step: str, path: Path) -> bool:
    return path.exists() and step not in cfg.force


def step_library(cfg: FlowConfig, log: Log) -> dict[str, Any]:
    from hwflow.characterize.pipeline import characterize_builtin
    from hwflow.multipliers.generators import builtin_specs

    specs = builtin_specs()
    if cfg.quick:  # every 4th design (they come grouped by family): a spread, 4x faster
        specs = specs[::4]
    outcomes = characterize_builtin(cfg.library, jobs=cfg.jobs, specs=specs)
    cached = sum(o.cached for o in outcomes)
    return {"multipliers": len(outcomes), "cached": cached}


def step_train(cfg: FlowConfig, log: Log) -> dict[str, Any]:
    from hwflow.nn.train import load_train_config, train

    tc = load_train_config(cfg.train_config)
    tc = dataclasses.replace(tc, seed=cfg.seed)
    if cfg.quick:
        tc = _quick_train_config(tc)
    summary = train(tc, cfg.run, resume=True, quiet=True, log=log)
    return {
        "accuracy": summary["accuracy"],
        "sigmas": {layer["name"]: round(layer["sigma"], 4) for layer in summary["layers"]},
    }


def _quick_train_config(tc: Any) -> Any:
    """Short stages: every code path runs and the network still learns digits (~90 %)."""
    stages = {
        name: dataclasses.replace(getattr(tc, name), epochs=epochs)
        for name, epochs in (("float", 4), ("qat", 1), ("agn", 1))
    }
    return dataclasses.replace(tc, **stages)


def step_assign(cfg: FlowConfig, log: Log) -> dict[str, Any]:
    from hwflow.assign.flow import assign_run

    doc = assign_run(
        cfg.run, cfg.library, out=cfg.assignment, scale=cfg.scale, error_model=cfg.error_model,
        energy_model=cfg.energy_model, do_validate=True, seed=cfg.seed, log=log,
        max_loss=cfg.max_loss, recovery_steps=cfg.recovery_steps,
    )  # fmt: skip
    b = doc.get("budget")
    if b and not b["met"]:
        log(
            f"assign: WARNING: no assignment within {b['max_loss_pp']:g} pp; continuing with "
            f"the closest ({b['chosen']}, validation loss {b['val_loss_pp']:.2f} pp)"
        )
    pairs = doc.pop("validation_pairs", [])
    ValidationReport.of(doc.get("validation"), pairs).save(cfg.run / VALIDATION_FILE)
    return {
        "layers": {item["name"]: item["multiplier"] for item in doc["layers"]},
        "energy": doc["energy"],
        "validation": doc.get("validation"),
        "budget": {k: v for k, v in (doc.get("budget") or {}).items() if k != "candidates"},
    }


def step_retrain(cfg: FlowConfig, log: Log) -> dict[str, Any]:
    from hwflow.assign.retrain import retrain_run

    res = retrain_run(
        cfg.run, cfg.assignment, epochs=cfg.retrain_epochs, seed=cfg.seed,
        max_steps=8 if cfg.quick else None, log=log,
    )  # fmt: skip
    return {"accuracy": res["accuracy"]}


def step_sweep(cfg: FlowConfig, log: Log) -> dict[str, Any]:
    from hwflow.experiments.sweep import sweep_dir, sweep_run
    from hwflow.present.experiments import render_sweep

    rows = sweep_run(
        cfg.run, cfg.library, cfg.sweep_scales, epochs=cfg.sweep_epochs,
        error_model=cfg.error_model, energy_model=cfg.energy_model, jobs=cfg.jobs,
        max_steps=8 if cfg.quick else None, seeds=(cfg.seed,), log=log,
    )  # fmt: skip
    render_sweep(rows, sweep_dir(cfg.run, None))
    return {"points": len(rows)}


def step_export(cfg: FlowConfig, log: Log) -> dict[str, Any]:
    from hwflow.rtl.export import export_run

    manifest = export_run(
        cfg.run, cfg.assignment, cfg.export_dir, lanes=cfg.lanes, images=cfg.images,
        checkpoint=_retrained_checkpoint(cfg),
    )  # fmt: skip
    return {"accumulations": manifest["accumulations"], "cycles": manifest["cycles"]}


def _retrained_checkpoint(cfg: FlowConfig) -> Path | None:
    """The retrained weights are the network we deploy; export records their operands."""
    path = cfg.run / RETRAIN_FILE
    return RetrainResult.load(path).checkpoint if path.is_file() else None


def step_verify(cfg: FlowConfig, log: Log) -> dict[str, Any]:
    from hwflow.rtl.check import failure_message
    from hwflow.rtl.verify import verify

    report = verify(cfg.export_dir, jobs=cfg.jobs)
    VerifyReport(report).save(cfg.out / VERIFY_FILE)
    if not report["ok"]:
        raise VerificationError(failure_message(cfg.export_dir, report, cfg.out / VERIFY_FILE))
    net = report.get("net") or {}
    return {
        "checked": report["checked"],
        "mismatches": report["mismatches"],
        "net_checked": net.get("checked", 0),
        "net_mismatches": net.get("mismatches", 0),
    }


def step_report(cfg: FlowConfig, log: Log) -> dict[str, Any]:
    from hwflow.present.report import write_report

    paths = write_report(cfg.out, library=cfg.library, html=True)
    return {"report": [str(p) for p in paths]}


# (name, function, the output whose presence means "done"; None = always run)
STEPS: list[
    tuple[str, Callable[[FlowConfig, Log], dict[str, Any]], Callable[[FlowConfig], Path] | None]
] = [
    ("library", step_library, None),  # the library's own sha256 cache makes reruns cheap
    ("train", step_train, lambda c: c.run / SUMMARY_FILE),
    ("assign", step_assign, lambda c: c.assignment),
    ("retrain", step_retrain, lambda c: c.run / RETRAIN_FILE),
    ("sweep", step_sweep, lambda c: c.run / "sweep" / "pareto.png"),  # drawn last
    ("export", step_export, lambda c: c.export_dir / MANIFEST_FILE),
    ("verify", step_verify, lambda c: c.out / VERIFY_FILE),
    ("report", step_report, None),
]


@dataclass
class StepResult:
    name: str
    seconds: float
    skipped: bool
    info: dict[str, Any] = field(default_factory=dict)


def run_flow(cfg: FlowConfig, log: Log = print) -> list[StepResult]:
    """Run every step in order; returns what each did and how long it took."""
    if cfg.quick:
        cfg = cfg.quick_version()
    unknown = set(cfg.force) - {name for name, _, _ in STEPS}
    if unknown:
        raise HwflowError(f"--force: unknown steps {sorted(unknown)}")
    from hwflow.assign.budget import check_recovery

    check_recovery(cfg.recovery_steps, cfg.max_loss is not None)
    claim_dir(cfg.out, FLOW_KIND)
    with trusting(_config_factory(cfg.train_config)):  # the config the user named
        results = _run_steps(cfg, log)
    write_json(cfg.out / "flow.json", [dataclasses.asdict(r) for r in results])
    return results


def _config_factory(path: Path) -> str | None:
    from hwflow.nn.train import load_train_config

    return load_train_config(path).model.factory


def _run_steps(cfg: FlowConfig, log: Log) -> list[StepResult]:
    results: list[StepResult] = []
    for i, (name, fn, output) in enumerate(STEPS, 1):
        header = f"[{i}/{len(STEPS)}] {name}"
        if output is not None and _done(cfg, name, output(cfg)):
            log(f"{header}: done before ({output(cfg)}), skipped")
            results.append(StepResult(name, 0.0, True))
            continue
        log(f"{header} ...")
        started = time.perf_counter()
        info = fn(cfg, lambda msg, h=header: log(f"{h}: {msg}"))
        seconds = time.perf_counter() - started
        log(f"{header}: {seconds:.1f} s {_short(info)}")
        results.append(StepResult(name, seconds, False, info))
    return results


def _short(info: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in info.items() if not isinstance(v, dict | list))
    return f"({text})" if text else ""
