"""`hwflow assign`: statistics -> error model -> selection -> energy -> assignment.yaml.

Order matters for "nothing half-made": the library is opened and checked first, then the
run's statistics are loaded (or recorded and saved, once, reused later), and the
assignment is written atomically at the very end.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.artifacts import ASSIGNMENT_FILE, Assignment
from hwflow.assign import budget as budget_mod
from hwflow.assign import energy as energy_mod
from hwflow.assign.assignment import library_table, open_library
from hwflow.assign.error_model import ERROR_MODELS, Prediction, predict
from hwflow.assign.select import choose, tolerances
from hwflow.assign.stats import (
    DEFAULT_COLS,
    DEFAULT_ROWS,
    STATS_FILE,
    LayerStats,
    load_stats,
    record_stats,
    save_stats,
)
from hwflow.assign.validate import measure_errors, relative_errors, spread
from hwflow.errors import AssignmentError, LibraryError, RunError
from hwflow.multipliers.table import exact_table

DEFAULT_STATS_BATCHES = 4
DEFAULT_BATCH = 128
VALIDATE_OTHERS = 8  # multipliers per layer measured besides the chosen one


@dataclass
class LibraryView:
    """The library's multipliers as arrays the error model and selection read."""

    library: Any
    names: list[str]
    signed: np.ndarray
    tables: np.ndarray
    energy: np.ndarray
    published: np.ndarray  # published power relative to exact (NaN: no figure)


def library_view(library: Any) -> LibraryView:
    lib = open_library(library)
    entries = list(lib.entries)
    if not entries:
        raise LibraryError(f"library {getattr(lib, 'path', library)} holds no multipliers")
    tables = np.stack([library_table(lib, e.name) for e in entries]).astype(np.int32)
    exact = [
        np.array_equal(t, exact_table(bool(e.signed))) for e, t in zip(entries, tables, strict=True)
    ]
    return LibraryView(
        library=lib,
        names=[e.name for e in entries],
        signed=np.array([bool(e.signed) for e in entries]),
        tables=tables,
        energy=np.array([energy_mod.uniform_ratio(e) for e in entries]),
        published=energy_mod.published_ratios(entries, exact),
    )


def _stats_batches(split: Any, batches: int, batch_size: int, seed: int) -> list[Any]:
    """Seeded, unaugmented input batches drawn from a data split (on its device)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(split), generator=gen)[: batches * batch_size]
    return [
        split.on_device(split.x[order[i : i + batch_size]])
        for i in range(0, len(order), batch_size)
    ]


def run_stats(
    run: Any,
    *,
    batches: int = DEFAULT_STATS_BATCHES,
    batch_size: int = DEFAULT_BATCH,
    rows: int = DEFAULT_ROWS,
    cols: int = DEFAULT_COLS,
    seed: int = 0,
    record: bool = True,
) -> list[LayerStats]:
    """RUN/stats.npz, recorded (from the training split) when absent or made differently."""
    path = Path(run.path) / STATS_FILE
    meta = {"batches": batches, "batch_size": batch_size, "rows": rows, "cols": cols}
    meta |= {"seed": seed, "split": "train"}
    if path.is_file():
        try:
            layers, old = load_stats(path)
        except RunError:
            old = None  # damaged or from an older format: record afresh
        if old == meta:
            return layers
    if not record:
        raise RunError(f"{path}: no operand statistics recorded with these settings; rerun assign")
    ops = run.summary.ops()
    xs = _stats_batches(run.data.train, batches, batch_size, seed)
    layers = record_stats(run.model, xs, ops, rows=rows, cols=cols, seed=seed)
    save_stats(path, layers, meta)
    return layers


def assign(
    stats: list[LayerStats],
    sigmas: dict[str, float],
    lib: LibraryView,
    energy_model: str,
    *,
    scale: float = 1.0,
    error_model: str = "sampled",
    hist_energy: energy_mod.HistogramEnergy | None = None,
) -> tuple[dict[str, Any], Prediction]:
    """The assignment document (without validation) for one scale, and the predictions.

    `energy_model` (as `check_selection` returned it): minimise the library's
    uniform-operand energy, each layer's energy under its recorded operands (`histogram`,
    needs `hist_energy`), or the published power.
    """
    assert energy_model != "histogram" or hist_energy is not None, "check_selection"
    missing = [s.name for s in stats if s.name not in sigmas]
    if missing:
        raise RunError(f"stats name layers the run does not have: {', '.join(missing)}")
    pred = predict(lib.tables, lib.signed, stats, error_model)
    acc_std = [s.acc_std for s in stats]
    tol = tolerances([sigmas[s.name] for s in stats], acc_std, scale)
    energy: np.ndarray = lib.energy
    if energy_model == "histogram":
        assert hist_energy is not None
        # Only fitting candidates compete, so only their energies are simulated.
        fits = np.isfinite(pred.std) & (pred.std <= tol[:, None] * (1 + 1e-12))
        energy = np.full(pred.std.shape, np.inf)
        for i, j in zip(*np.nonzero(fits), strict=True):
            energy[i, j] = hist_energy.ratio(stats[i], lib.names[j])
    elif energy_model == "published":
        energy = lib.published
        _check_published(stats, lib, pred, tol)
    choices = choose([s.name for s in stats], lib.names, pred.mean, pred.std, energy, tol)
    layers = []
    for s, c in zip(stats, choices, strict=True):
        ref = s.acc_std if s.acc_std > 0 else 1.0
        item: dict[str, Any] = {
            "name": s.name,
            "multiplier": lib.names[c.index],
            "signed": s.signed,
            "ops": s.ops,
            "sigma_learned": round(float(sigmas[s.name]), 6),
            "sigma_tolerated": round(c.tolerated / ref, 6),
            "sigma_predicted": round(c.predicted / ref, 6),
            "mean_predicted": round(c.predicted_mean / ref, 6),
            "energy_rel": round(float(lib.energy[c.index]), 6),
        }
        if hist_energy is not None:
            item["energy_rel_hist"] = round(hist_energy.ratio(s, item["multiplier"]), 6)
        if np.isfinite(lib.published[c.index]):
            item["energy_rel_published"] = round(float(lib.published[c.index]), 6)
        layers.append(item)
    hist = [item["energy_rel_hist"] for item in layers] if hist_energy is not None else None
    doc = {
        "library": str(Path(getattr(lib.library, "path", "")).resolve()),
        "model": error_model,
        "scale": scale,
        "layers": layers,
        "energy": energy_mod.summary(
            [s.ops for s in stats],
            lib.energy[[c.index for c in choices]],
            hist,
            energy_model,
            lib.published[[c.index for c in choices]],
        ),
    }
    return doc, pred


def chosen_tables(doc: dict[str, Any], lib: LibraryView) -> dict[str, tuple[np.ndarray, bool]]:
    """{layer: (table, signed)} of the multipliers an assignment document chose."""
    index = {n: i for i, n in enumerate(lib.names)}
    return {
        item["name"]: (
            lib.tables[index[item["multiplier"]]],
            bool(lib.signed[index[item["multiplier"]]]),
        )
        for item in doc["layers"]
    }


def add_corrections(doc: dict[str, Any], run: Any, lib: LibraryView, *, seed: int = 0) -> None:
    """Record the free corrections of `doc`'s choices in it (`hwflow.assign.correct`)
    where they help: both validation top-1 figures go into `corrections`, the offsets
    (and batch-norm re-estimation) only when corrected is at least as accurate."""
    import copy

    from hwflow.assign.correct import apply_corrections, record_corrections
    from hwflow.nn import apply_tables

    model = run.fresh_model()
    apply_tables(model, chosen_tables(doc, lib))
    raw = run.evaluate(model, "val")
    corrected = copy.deepcopy(doc)
    record_corrections(corrected, run, chosen_tables(doc, lib), seed=seed)
    apply_corrections(run, model, corrected, "assignment")
    fixed = run.evaluate(model, "val")
    figures = {"val_top1_uncorrected": round(raw, 6), "val_top1_corrected": round(fixed, 6)}
    if fixed >= raw:
        doc.clear()
        doc.update(corrected)
        doc["corrections"] |= {"applied": True, **figures}
    else:  # measured, and left out: they cost accuracy on this network
        doc["corrections"] = {"applied": False, **figures}


def check_selection(
    error_model: str,
    requested: str | None,
    hist_energy: bool,
    log: Callable[[str], None] = lambda _m: None,
) -> str:
    """Check the error model and the selection's energy once, before any work, and
    return the energy the selection minimises (for a run with or without the
    recorded-operand figure): an explicit `histogram` without it is an error; the default
    falls back to uniform, said in one log line."""
    if error_model not in ERROR_MODELS:
        raise AssignmentError(
            f"unknown --error-model {error_model!r} (choose from {', '.join(ERROR_MODELS)})"
        )
    if requested is not None and requested not in energy_mod.ENERGY_MODELS:
        raise AssignmentError(
            f"unknown --energy {requested!r} (choose from {', '.join(energy_mod.ENERGY_MODELS)})"
        )
    if requested == "histogram" and not hist_energy:
        raise AssignmentError("--energy histogram needs the recorded-operand energy figure")
    chosen = energy_mod.selection_model(requested, hist_energy)
    if requested is None and chosen != energy_mod.DEFAULT_MODEL:
        log(
            "--no-hist-energy: no recorded-operand figure, so the selection minimises the "
            "uniform-operand energy"
        )
    return chosen


def _check_published(
    stats: list[LayerStats], lib: LibraryView, pred: Prediction, tol: np.ndarray
) -> None:
    """`--energy published` needs a figure for every multiplier a layer could choose."""
    fits = np.isfinite(pred.std) & (pred.std <= tol[:, None] * (1 + 1e-12))
    for i, s in enumerate(stats):
        lacking = [
            lib.names[j] for j in np.nonzero(fits[i])[0] if not np.isfinite(lib.published[j])
        ]
        if lacking:
            raise AssignmentError(
                f"--energy published: layer {s.name}: no published power for candidate(s) "
                f"{', '.join(lacking)} (or no exact {'signed' if s.signed else 'unsigned'} "
                "multiplier with one as reference); attach figures with `hwflow characterize "
                "NETLIST... --costs FILE`, or use --energy uniform"
            )


def validate(
    run: Any,
    stats: list[LayerStats],
    lib: LibraryView,
    doc: dict[str, Any],
    pred: Prediction,
    *,
    batches: int = 2,
    batch_size: int = DEFAULT_BATCH,
    others: int = VALIDATE_OTHERS,
    seed: int = 1,
    jobs: int = 1,
) -> dict[str, Any]:
    """Measure chosen + a spread of other multipliers per layer on held-out (val) batches
    (layers in `jobs` parallel tasks)."""
    pred_std = pred.std
    index = {n: i for i, n in enumerate(lib.names)}
    tables: dict[str, list[tuple[str, np.ndarray, bool]]] = {}
    for s, item in zip(stats, doc["layers"], strict=True):
        same = [j for j in np.argsort(lib.energy, kind="stable") if lib.signed[j] == s.signed]
        picked = {index[item["multiplier"]], *spread(same, others)}
        tables[s.name] = [
            (lib.names[j], lib.tables[j], bool(lib.signed[j])) for j in sorted(picked)
        ]
    xs = _stats_batches(run.data.val, batches, batch_size, seed)
    measured = measure_errors(run.model, xs, tables, jobs=jobs)
    pairs = []
    for i, s in enumerate(stats):
        for name, _, _ in tables[s.name]:
            m = measured[(s.name, name)]
            pairs.append(
                {
                    "layer": s.name,
                    "multiplier": name,
                    "chosen": name == doc["layers"][i]["multiplier"],
                    "energy_rel": round(float(lib.energy[index[name]]), 6),
                    "predicted_std": float(pred_std[i, index[name]]),
                    "measured_std": m.std,
                    "measured_mean": m.mean,
                    "acc_std": s.acc_std,
                }
            )
        chosen = measured[(s.name, doc["layers"][i]["multiplier"])]
        ref = s.acc_std if s.acc_std > 0 else 1.0
        doc["layers"][i]["sigma_measured"] = round(chosen.std / ref, 6)
    return {"pairs": pairs, "summary": relative_errors(pairs)}


def assign_run(
    run_dir: str | os.PathLike[str],
    library: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    scale: float = 1.0,
    error_model: str = "sampled",
    do_validate: bool = False,
    record: bool = True,
    hist_energy: bool = True,
    energy_model: str | None = None,
    stats_batches: int = DEFAULT_STATS_BATCHES,
    seed: int = 0,
    jobs: int = 1,
    log: Callable[[str], None] = lambda _m: None,
    device: str | None = None,
    correct: bool = True,
    max_loss: float | None = None,
    recovery_steps: int = 0,
) -> dict[str, Any]:
    """The whole `hwflow assign`: returns the document written to `out` (`jobs`: parallel
    layer tasks of the validation). `device`: where the network runs to record statistics
    ("cpu", "cuda"; default cuda when available). `energy_model` None: the recorded-operand
    energy, or with `hist_energy` off the uniform-operand one (logged). `correct`: record
    the free corrections (`hwflow.assign.correct`) for the chosen multipliers.
    `max_loss`: search the scale (and per-layer back-offs) for the cheapest assignment
    within this many pp of validation top-1 below int8 (`hwflow.assign.budget`; `scale`
    is then unused); the result's `budget.met` says whether it fits. `recovery_steps`:
    measure each budget candidate after that many retraining batches."""
    from hwflow.nn.run import load_run

    energy_model = check_selection(error_model, energy_model, hist_energy, log)
    budget_mod.check_recovery(recovery_steps, max_loss is not None)
    lib = library_view(library)
    run = load_run(run_dir, device=device)
    log("operand statistics ...")
    stats = run_stats(run, batches=stats_batches, seed=seed, record=record)
    sigmas = run.summary.sigmas()
    he = energy_mod.HistogramEnergy(lib.library, seed=seed) if hist_energy else None
    log("error model and selection ...")

    def at(s: float) -> tuple[dict[str, Any], Prediction]:
        return assign(
            stats, sigmas, lib, energy_model, scale=s, error_model=error_model, hist_energy=he
        )

    doc, pred = at(scale)
    if max_loss is not None:
        log(f"searching the cheapest assignment within {max_loss:g} pp (validation) ...")
        evaluate = budget_mod.Evaluator(run, lib, seed, recovery_steps, keep=True)
        doc = budget_mod.search(lambda s: at(s)[0], evaluate, max_loss, log)
    elif correct:
        add_corrections(doc, run, lib, seed=seed)
    doc["run"] = str(Path(run_dir).resolve())
    validation = None
    if do_validate:
        log("validating against table emulation ...")
        validation = validate(run, stats, lib, doc, pred, jobs=jobs)
        doc["validation"] = validation["summary"]
    path = Path(out) if out is not None else Path(run_dir) / ASSIGNMENT_FILE
    Assignment.from_dict(doc).save(path)
    if validation is not None:
        doc["validation_pairs"] = validation["pairs"]
    return doc
