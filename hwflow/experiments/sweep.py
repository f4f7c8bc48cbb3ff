"""`hwflow sweep`: the accuracy / energy trade-off, heterogeneous vs homogeneous.

Points: one heterogeneous assignment per tolerance scale, and one homogeneous assignment
per multiplier (the same design in every layer; layers of the other signedness get the
same family and parameters in that signedness, or the point is skipped). Every point is
retrained briefly (`epochs`, per seed) and evaluated; points run through
`hwflow.executor.run_parallel`. Each lives in `RUN/sweep/<point>/` (assignment.yaml,
retrain-s<seed>.json): a rerun skips finished points. Writes `RUN/sweep/sweep.csv`; its
figure (`pareto.png`) is drawn from the rows by `hwflow.present.plots.sweep_pareto`.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.artifacts import ASSIGNMENT_FILE, Assignment, RetrainResult
from hwflow.assign import energy as energy_mod
from hwflow.assign.flow import assign, check_selection, library_view, run_stats
from hwflow.assign.retrain import Schedule, check_retrain_options
from hwflow.errors import AssignmentError
from hwflow.executor import run_parallel
from hwflow.io import (
    check_dir,
    claim_dir,
    exclusive_writer,
    write_bytes,
    write_text,
)
from hwflow.progress import silent

SWEEP_KIND = "sweep"  # the sweep directory's marker: reruns write only into their own
CSV_FIELDS = (
    "point",
    "kind",
    "scale",
    "multipliers",
    "energy_rel",
    "reduction_pct",
    "reduction_pct_hist",
    "energy_model",
    "acc_quant",
    "acc_quant_top5",
    "acc_before",
    "acc_after_mean",
    "acc_after_std",
    "acc_after_top5_mean",
    "val_after_mean",
    "seeds",
)


def _variant_key(entry: Any) -> tuple:
    """Family and parameters without signedness: pairs u_/s_ versions of one design."""
    src = entry.source or {}
    if src.get("kind") == "generator":
        return (src.get("family"), tuple(sorted((src.get("params") or {}).items())))
    return ("netlist", entry.name)


def homogeneous_docs(
    stats: Sequence[Any], lib: Any, hist: Any, keep: Callable[[str], bool] | None = None
) -> dict[str, dict]:
    """{point name: assignment doc} with one design for every layer.

    `keep(name)`: only designs with at least one of their variants (u_/s_) kept."""
    entries = {e.name: e for e in lib.library.entries}
    by_key: dict[tuple, dict[bool, str]] = {}
    for name in lib.names:
        by_key.setdefault(_variant_key(entries[name]), {})[bool(entries[name].signed)] = name
    index = {n: i for i, n in enumerate(lib.names)}
    need = {bool(s.signed) for s in stats}
    docs = {}
    for variants in by_key.values():
        if not need <= set(variants):
            continue
        if keep is not None and not any(keep(variants[s]) for s in need):
            continue
        layers = []
        for s in stats:
            name = variants[bool(s.signed)]
            item = {"name": s.name, "multiplier": name, "signed": s.signed, "ops": s.ops}
            item["energy_rel"] = round(float(lib.energy[index[name]]), 6)
            if hist is not None:
                item["energy_rel_hist"] = round(hist.ratio(s, name), 6)
            layers.append(item)
        h = [i["energy_rel_hist"] for i in layers] if hist is not None else None
        label = "+".join(sorted(set(variants.values())))
        docs[f"homog-{label}"] = {
            "library": str(Path(lib.library.path).resolve()),
            "model": "homogeneous",
            "layers": layers,
            "energy": energy_mod.summary(
                [s.ops for s in stats], [i["energy_rel"] for i in layers], h
            ),
        }
    return docs


@dataclass(frozen=True)
class RetrainJob:
    """One retraining of one point for one seed (picklable, for `run_parallel`)."""

    run_dir: str
    point_dir: str
    epochs: int
    lr: float
    seed: int
    threads: int = 0
    max_steps: int | None = None
    gradient: str = "ste"
    predictions: bool = False  # also keep the test set's predicted classes (paired tests)
    schedule: Schedule = Schedule()  # optimizer and lr schedule
    log: Callable[[str], None] = silent  # each epoch's line (picklable: module-level)

    @property
    def stem(self) -> str:
        return f"retrain-s{self.seed}" + ("" if self.gradient == "ste" else f"-{self.gradient}")


def save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    write_bytes(path, buf.getvalue())


def retrain_point(job: RetrainJob) -> dict:
    """Worker: retrain one point for one seed (skipped when its result exists); with
    `predictions`, also writes `<stem>.pred.npy`, the kept model's test predictions."""
    point = Path(job.point_dir)
    out, pred_path = point / f"{job.stem}.json", point / f"{job.stem}.pred.npy"
    if out.is_file() and (not job.predictions or pred_path.is_file()):
        return RetrainResult.load(out).to_dict()
    import torch

    from hwflow.assign.retrain import retrain_run

    if job.threads:
        torch.set_num_threads(job.threads)
    return retrain_run(
        job.run_dir,
        point / ASSIGNMENT_FILE,
        epochs=job.epochs,
        lr=job.lr,
        seed=job.seed,
        out=out,
        max_steps=job.max_steps,
        gradient=job.gradient,
        schedule=job.schedule,
        predictions_out=pred_path if job.predictions else None,
        log=job.log,
    )


@exclusive_writer("sweep", lambda a: a["out_dir"] or Path(a["run_dir"]) / "sweep")
def sweep_run(
    run_dir: str | os.PathLike[str],
    library: str | os.PathLike[str],
    scales: Sequence[float],
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    seeds: Sequence[int] = (0,),
    error_model: str = "sampled",
    homogeneous: bool = True,
    jobs: int = 1,
    hist_energy: bool = True,
    energy_model: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    max_steps: int | None = None,
    log: Callable[[str], None] = lambda _m: None,
    gradient: str | None = None,
) -> list[dict]:
    """Run the sweep; returns the CSV rows (also written to sweep.csv).

    `gradient`: retraining backward, "ste" or "table" (None: the run config's).
    `energy_model`: what the heterogeneous selections minimise (None: as `assign_run`)."""
    from hwflow.nn.run import load_run

    check_retrain_options(epochs, lr)
    if not scales:
        raise AssignmentError("--scales: give at least one scale")
    if any(s < 0 for s in scales):
        raise AssignmentError(f"--scales must be >= 0, got {list(scales)}")
    energy_model = check_selection(error_model, energy_model, hist_energy, log)
    out = sweep_dir(run_dir, out_dir)
    check_dir(out, SWEEP_KIND)  # before the work; claimed when the first file is written
    lib = library_view(library)
    run = load_run(run_dir)
    stats = run_stats(run)
    sigmas = run.summary.sigmas()
    hist = energy_mod.HistogramEnergy(lib.library) if hist_energy else None
    docs: dict[str, dict] = {}
    for s in scales:
        doc, _ = assign(
            stats, sigmas, lib, energy_model, scale=float(s), error_model=error_model,
            hist_energy=hist,
        )  # fmt: skip
        docs[f"scale-{float(s):g}"] = doc
    if homogeneous:
        docs |= homogeneous_docs(stats, lib, hist)
    for name, doc in docs.items():
        _check_earlier_point(out / name / ASSIGNMENT_FILE, doc)
    claim_dir(out, SWEEP_KIND)
    for name, doc in docs.items():
        path = out / name / ASSIGNMENT_FILE
        if not path.is_file():
            Assignment.from_dict(doc).save(path)
    threads = 1 if jobs > 1 else 0
    gradient = gradient if gradient is not None else run.config.retrain.gradient
    items = [
        RetrainJob(str(run_dir), str(out / name), epochs, lr, seed, threads, max_steps, gradient)
        for name in docs
        for seed in seeds
    ]
    log(f"sweep: {len(docs)} points x {len(seeds)} seeds, {epochs} retraining epochs each")
    results = list(run_parallel(retrain_point, items, jobs))
    per_point: dict[str, list[dict]] = {}
    for item, res in zip(items, results, strict=True):
        per_point.setdefault(Path(item.point_dir).name, []).append(res)
    rows = [_row(name, doc, per_point[name]) for name, doc in docs.items()]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "sweep.csv", buf.getvalue())
    return rows


def sweep_dir(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None) -> Path:
    """Where a sweep writes: `out_dir`, by default RUN/sweep."""
    return Path(out_dir) if out_dir is not None else Path(run_dir) / "sweep"


def _row(name: str, doc: dict, res: list[dict]) -> dict[str, Any]:
    """One point's sweep.csv row from its assignment and its retraining results."""
    after = np.array([r["accuracy"]["approx_after"] for r in res])
    # results from before top-5 was recorded have none: the cell stays empty
    top5 = [r.get("accuracy_top5", {}).get("approx_after") for r in res]
    e = doc["energy"]
    kind = "homogeneous" if name.startswith("homog-") else "heterogeneous"
    return {
        "point": name,
        "kind": kind,
        "scale": doc.get("scale", ""),
        "multipliers": " ".join(i["multiplier"] for i in doc["layers"]),
        "energy_rel": e["relative"],
        "reduction_pct": e["reduction_pct"],
        "reduction_pct_hist": e.get("reduction_pct_histogram", ""),
        "energy_model": e["model"] if kind == "heterogeneous" else "",
        "acc_quant": res[0]["accuracy"]["quant"],
        "acc_quant_top5": res[0].get("accuracy_top5", {}).get("quant", ""),
        "acc_before": float(np.mean([r["accuracy"]["approx_before"] for r in res])),
        "acc_after_mean": float(after.mean()),
        "acc_after_std": float(after.std()),
        "acc_after_top5_mean": float(np.mean(top5)) if None not in top5 else "",
        "val_after_mean": float(np.mean([r["val_accuracy"]["approx_after"] for r in res])),
        "seeds": len(res),
    }


def _check_earlier_point(path: Path, doc: dict) -> None:
    """A rerun reuses a point's retraining only when its assignment chose the same
    multipliers: a sweep made with another --energy (or model, library) is refused."""
    if not path.is_file():
        return
    before = [layer.multiplier for layer in Assignment.load(path).layers]
    if before != [i["multiplier"] for i in doc["layers"]]:
        raise AssignmentError(
            f"{path}: an earlier sweep chose other multipliers here (another --energy, "
            "--model or library?); sweep into a new --out"
        )
