"""`hwflow study`: heterogeneous vs homogeneous approximation over training seeds, with
statistics that say whether a difference is beyond noise.

Per training seed: train the config (`OUT/seed-<s>/`, resumed or reused when finished),
assign at every scale with each selection energy (`hetero-<energy>-x<scale>`), build the
homogeneous points (every design on the library's error/energy Pareto front, in every
layer; not the exact one, which is the int8 baseline, nor, with `homog_min_saved`, designs
saving less), retrain every point the same way (sweep's machinery, retraining seed =
training seed) and keep each retrained model's test-set predictions. Then, at the
scale where accuracy starts to drop, retrain the heterogeneous point again with the
table's own gradients (`retrain.gradient: table`) for the same seeds.

Statistics (`hwflow.experiments.statistics`): mean, sample std and a Student-t 95 % confidence
interval over training seeds for each point; paired tests over the same test images,
McNemar's exact test (two-sided binomial test on the discordant pairs), pooled over seeds
(every (seed, image) pair is one paired observation).

Writes `OUT/study.csv` (one row per point) and `OUT/study.json` (rows, comparisons);
`hwflow.present` draws `OUT/study.md` (tables) and `OUT/pareto.png` (accuracy vs energy
saved, both energy figures, 95 % CI error bars) from study.json. Every file is written
atomically; a rerun skips finished trainings and retrainings.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.artifacts import ASSIGNMENT_FILE, SUMMARY_FILE, Assignment
from hwflow.assign import energy as energy_mod
from hwflow.assign.budget import check_recovery
from hwflow.assign.flow import add_corrections, assign, check_selection, library_view, run_stats
from hwflow.assign.retrain import (
    DEFAULT_SCHEDULE,
    Schedule,
    check_retrain_options,
    predict_test_set,
)
from hwflow.errors import AssignmentError
from hwflow.executor import run_parallel
from hwflow.experiments.statistics import discordant, mcnemar_exact, mean_ci, paired
from hwflow.experiments.sweep import (
    RetrainJob,
    homogeneous_docs,
    retrain_point,
    save_npy,
)
from hwflow.io import (
    check_dir,
    claim_dir,
    exclusive_writer,
    read_json,
    write_json,
    write_text,
)
from hwflow.pareto import pareto_front
from hwflow.progress import prefixed, silent

DEFAULT_SCALES = (0.5, 1.0, 1.5, 2.0, 3.0)
STUDY_KIND = "study"  # OUT's marker (hwflow.io.claim_dir): reruns write only into their own
POINTS_KIND = "study points"  # RUN/study
# A retrained heterogeneous point "starts to drop" past this many pp below int8.
DROP_PP = 0.5

CSV_FIELDS = (
    "point",
    "kind",
    "energy_model",
    "scale",
    "max_loss_pp",
    "recovery_steps",
    "gradient",
    "seeds",
    "saved_uniform_mean",
    "saved_uniform_std",
    "saved_recorded_mean",
    "saved_recorded_std",
    "acc_mean",
    "acc_std",
    "acc_ci_low",
    "acc_ci_high",
    "acc_top5_mean",
    "acc_uncorrected_mean",
    "acc_before_mean",
    "loss_pp",
    "p_vs_int8",
    "multipliers",
)


# -- the points -------------------------------------------------------------------------------
def library_front(lib: Any, metric: str = "mae") -> set[str]:
    """Designs on the library's (error metric, uniform energy) Pareto front, per
    signedness: no other design of the same signedness has both lower error and lower
    energy (ties kept)."""
    entries = {e.name: e for e in lib.library.entries}
    keep = set()
    for signed in (False, True):
        names = [n for n in lib.names if bool(entries[n].signed) == signed]
        # lower is better in both: the front of the negated figures
        points = [
            (-float(entries[n].metrics.get(metric, np.inf)), -float(lib.energy[lib.names.index(n)]))
            for n in names
        ]
        keep |= {names[i] for i in pareto_front(points)}
    return keep


def budget_name(energy_model: str, max_loss: float, recovery_steps: int = 0) -> str:
    after = f"-r{recovery_steps}" if recovery_steps else ""
    return f"budget-{energy_model}-{float(max_loss):g}pp{after}"


def _budget_points(
    home: Path, run: Any, stats: Any, sigmas: dict, lib: Any, energy_model: str,
    error_model: str, max_losses: Sequence[float], evaluators: dict[str, Any],
    recovery_steps: int = 0, log: Callable[[str], None] = silent,
) -> dict[str, dict]:  # fmt: skip
    """{budget point: doc} per budget: `hwflow assign --max-loss` on the validation split,
    or the point's assignment.yaml read back. All budget points of a run share the one
    evaluator in `evaluators` (made on first use), so no candidate is measured twice."""
    from hwflow.assign import budget

    docs: dict[str, dict] = {}
    hist = None

    def at(scale: float) -> dict:
        return assign(
            stats, sigmas, lib, energy_model, scale=scale, error_model=error_model,
            hist_energy=hist,
        )[0]  # fmt: skip

    for max_loss in max_losses:
        name = budget_name(energy_model, max_loss, recovery_steps)
        if (saved := _saved_point(home, name)) is not None:
            docs[name] = saved
            continue
        hist = hist or energy_mod.HistogramEnergy(lib.library)
        if "val" not in evaluators:
            evaluators["val"] = budget.Evaluator(run, lib, recovery_steps=recovery_steps, keep=True)
        log(f"{name}: searching")
        docs[name] = budget.search(at, evaluators["val"], max_loss, log)
    return docs


def _saved_point(home: Path, name: str) -> dict | None:
    """A point's assignment doc read back from an earlier run of the study, or None."""
    path = home / name / ASSIGNMENT_FILE
    return Assignment.load(path).to_dict() if path.is_file() else None


def hetero_name(energy_model: str, scale: float) -> str:
    return f"hetero-{energy_model}-x{float(scale):g}"


@dataclass(frozen=True)
class _SeedTask:
    """One seed's share of the study before retraining: train it (or reuse the finished
    run), then write its points. Seeds are independent, so they run side by side."""

    config: str
    seed: int
    run_dir: str
    data_dir: str | None
    library: str
    scales: tuple[float, ...]
    energy_models: tuple[str, ...]
    error_model: str
    homog_min_saved: float
    max_losses: tuple[float, ...]
    recovery_steps: int
    threads: int  # 0: torch's default (the study runs seeds one at a time)
    log: Callable[[str], None]  # picklable when the seeds run in a pool


def _seed_task(task: _SeedTask) -> dict[str, dict]:
    """Worker: train (or resume) one seed's run, then its points ({point: doc})."""
    from hwflow.assign.flow import library_view
    from hwflow.nn.run import torch_threads
    from hwflow.nn.train import load_train_config, train

    run_dir = Path(task.run_dir)
    # seeds share one log, so each line says whose it is
    log = prefixed(task.log, f"seed {task.seed}: ")
    if not (run_dir / SUMMARY_FILE).is_file():
        cfg = replace(load_train_config(task.config), seed=task.seed)
        if task.data_dir is not None:
            cfg = replace(cfg, data=replace(cfg.data, data_dir=task.data_dir))
        train(cfg, run_dir, resume=run_dir.exists(), quiet=True, log=log)  # no bars
    with torch_threads(task.threads or None):
        return seed_points(
            run_dir, library_view(task.library), task.scales, task.energy_models,
            task.error_model, task.homog_min_saved, task.max_losses, task.recovery_steps,
            log,
        )  # fmt: skip


def seed_points(
    run_dir: Path,
    lib: Any,
    scales: Sequence[float],
    energy_models: Sequence[str],
    error_model: str = "sampled",
    homog_min_saved: float = 0.0,
    max_losses: Sequence[float] = (),
    recovery_steps: int = 0,
    log: Callable[[str], None] = silent,
) -> dict[str, dict]:
    """{point: assignment doc} for one trained run; points whose assignment.yaml exists
    are read back (the recorded-operand energies are slow to simulate), others written.
    `max_losses`: also a budget point (`budget_name`) per budget and energy model, its
    candidates measured after `recovery_steps` retraining batches (each logged)."""
    from hwflow.nn.run import load_run

    run = load_run(run_dir)
    stats = run_stats(run)
    sigmas = run.summary.sigmas()
    home = claim_dir(run_dir / "study", POINTS_KIND)
    hist = None
    docs: dict[str, dict] = {}
    for em in energy_models:
        for s in scales:
            name = hetero_name(em, s)
            if (saved := _saved_point(home, name)) is not None:
                docs[name] = saved
                continue
            hist = hist or energy_mod.HistogramEnergy(lib.library)
            doc, _ = assign(
                stats, sigmas, lib, em, scale=float(s), error_model=error_model, hist_energy=hist
            )
            docs[name] = doc
    evaluators: dict[str, Any] = {}
    for em in energy_models if max_losses else ():
        docs |= _budget_points(
            home, run, stats, sigmas, lib, em, error_model, max_losses, evaluators,
            recovery_steps, log,
        )  # fmt: skip
    # The exact design is the int8 baseline itself (its row and tests are `int8`).
    wce = {e.name: e.metrics.get("wce") for e in lib.library.entries}
    front = {n for n in library_front(lib) if wce[n] != 0}
    homog = homogeneous_docs(stats, lib, None, keep=front.__contains__)
    for name, doc in homog.items():
        if doc["energy"]["reduction_pct"] < homog_min_saved:
            continue
        if (saved := _saved_point(home, name)) is not None:
            docs[name] = saved
        else:
            hist = hist or energy_mod.HistogramEnergy(lib.library)
            docs[name] = homogeneous_docs(stats, lib, hist, keep={name_of(doc)}.__contains__)[name]
    for name, doc in docs.items():
        path = home / name / ASSIGNMENT_FILE
        if not path.is_file():
            if "corrections" not in doc:  # (the budget search measured them already)
                add_corrections(doc, run, lib)  # where they help, for every point alike
            Assignment.from_dict(doc).save(path)
    baseline = home / "int8.pred.npy"
    if not baseline.is_file():
        save_npy(baseline, predict_test_set(run, run.model))
    return docs


def name_of(doc: dict) -> str:
    """A homogeneous doc's design (its first layer's multiplier)."""
    return doc["layers"][0]["multiplier"]


# -- aggregation ------------------------------------------------------------------------------
def _correct(path: Path, labels: np.ndarray) -> np.ndarray:
    return np.load(path) == labels


def point_row(
    name: str,
    docs: dict[int, dict],
    results: dict[int, dict],
    correct: dict[int, np.ndarray],
    int8_correct: dict[int, np.ndarray],
    gradient: str = "ste",
) -> dict[str, Any]:
    """One CSV row: a point's numbers over the seeds it ran."""
    seeds = sorted(results)
    uni = [docs[s]["energy"]["reduction_pct"] for s in seeds]
    rec = [docs[s]["energy"].get("reduction_pct_histogram", np.nan) for s in seeds]
    acc = [results[s]["accuracy"]["approx_after"] for s in seeds]
    int8 = [results[s]["accuracy"]["quant"] for s in seeds]
    m, sd, lo, hi = mean_ci(acc)
    b = c = 0
    for s in seeds:
        db, dc = discordant(correct[s], int8_correct[s])
        b, c = b + db, c + dc
    first = docs[seeds[0]]
    budget = first.get("budget") or {}
    kind = "homogeneous" if name.startswith("homog-") else "heterogeneous"
    mults = [" ".join(i["multiplier"] for i in docs[s]["layers"]) for s in seeds]
    return {
        "point": name,
        "kind": kind,
        "energy_model": first["energy"].get("model", "") if kind == "heterogeneous" else "",
        "scale": first.get("scale", "") if kind == "heterogeneous" else "",
        "max_loss_pp": budget.get("max_loss_pp", ""),
        "recovery_steps": budget.get("recovery_steps", ""),
        "gradient": gradient,
        "seeds": len(seeds),
        "saved_uniform_mean": float(np.mean(uni)),
        "saved_uniform_std": float(np.std(uni, ddof=1)) if len(uni) > 1 else 0.0,
        "saved_recorded_mean": float(np.mean(rec)),
        "saved_recorded_std": float(np.std(rec, ddof=1)) if len(rec) > 1 else 0.0,
        "acc_mean": m,
        "acc_std": sd,
        "acc_ci_low": max(0.0, lo),  # an accuracy's interval stays within [0, 1]
        "acc_ci_high": min(1.0, hi),
        # NaN for results from before top-5 was recorded
        "acc_top5_mean": float(
            np.mean(
                [results[s].get("accuracy_top5", {}).get("approx_after", np.nan) for s in seeds]
            )
        ),
        # each lever's share: tables alone, + free corrections, + retraining (acc_mean)
        "acc_uncorrected_mean": float(
            np.mean([r["accuracy"].get("approx_uncorrected", np.nan) for r in results.values()])
        ),
        "acc_before_mean": float(
            np.mean([r["accuracy"]["approx_before"] for r in results.values()])
        ),
        "loss_pp": 100 * (float(np.mean(int8)) - m),
        "p_vs_int8": mcnemar_exact(b, c),
        "multipliers": mults[0] if len(set(mults)) == 1 else " | ".join(mults),
    }


def compare(
    rows: list[dict], correct: dict[str, dict[int, np.ndarray]], energy: str
) -> list[dict[str, Any]]:
    """For every heterogeneous point: the best homogeneous point of equal or higher mean
    accuracy (most energy saved under `energy`: "uniform" or "recorded"), its paired test,
    and every homogeneous point that saves more without being significantly less
    accurate (p >= 0.05 or more accurate): the counterexamples to the method's claim."""
    key = f"saved_{energy}_mean"
    homog = [r for r in rows if r["kind"] == "homogeneous"]
    out = []
    for h in (r for r in rows if r["kind"] == "heterogeneous" and r["gradient"] == "ste"):
        equal_or_better = [g for g in homog if g["acc_mean"] >= h["acc_mean"]]
        best = max(equal_or_better, key=lambda g: g[key], default=None)
        item: dict[str, Any] = {"point": h["point"], "energy": energy, "saved": h[key]}
        item["acc"] = h["acc_mean"]
        if best is not None:
            t = paired(correct[h["point"]], correct[best["point"]])
            item["best_homogeneous"] = {
                "point": best["point"],
                "saved": best[key],
                "acc": best["acc_mean"],
                **t,
            }
        cheaper = []
        for g in homog:
            if g[key] <= h[key]:
                continue
            t = paired(correct[h["point"]], correct[g["point"]])
            significantly_worse = g["acc_mean"] < h["acc_mean"] and t["p"] < 0.05
            if not significantly_worse:
                cheaper.append({"point": g["point"], "saved": g[key], "acc": g["acc_mean"], **t})
        item["cheaper_not_worse"] = cheaper
        out.append(item)
    return out


def drop_scale(rows: list[dict], energy_model: str, int8_mean: float) -> float | None:
    """The smallest scale whose retrained heterogeneous point lies more than DROP_PP below
    int8 (where retraining has something to recover); else the largest scale."""
    het = sorted(
        (r for r in rows if r["kind"] == "heterogeneous" and r["energy_model"] == energy_model),
        key=lambda r: r["scale"],
    )
    if not het:
        return None
    for r in het:
        if 100 * (int8_mean - r["acc_mean"]) > DROP_PP:
            return float(r["scale"])
    return float(het[-1]["scale"])


# -- outputs ----------------------------------------------------------------------------------
def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


# -- the study --------------------------------------------------------------------------------
@exclusive_writer("study", lambda a: a["out"])
def study_run(
    config: str | os.PathLike[str],
    library: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    scales: Sequence[float] = DEFAULT_SCALES,
    energy_models: Sequence[str] = ("uniform", "histogram"),
    epochs: int = 1,
    lr: float = 1e-3,
    max_steps: int | None = None,
    gradient_scale: float | None = None,
    compare_gradients: bool = True,
    data_dir: str | None = None,
    error_model: str = "sampled",
    homog_min_saved: float = 0.0,
    jobs: int = 1,
    log: Callable[[str], None] = silent,
    max_losses: Sequence[float] = (),
    schedule: Schedule = DEFAULT_SCHEDULE,
    recovery_steps: int = 0,
) -> dict[str, Any]:
    """Run (or resume) the study; returns the result written to OUT/study.json.

    `max_losses`: also a budget point per budget (`hwflow assign --max-loss`, validation
    split) beside the scale points, measured after `recovery_steps` retraining batches.
    `log`: progress lines (training epochs and budget candidates, prefixed by the seed);
    with `jobs` > 1 the seeds' workers call it, so it must pickle (a module-level
    function such as `hwflow.progress.to_stderr`).
    `schedule`: the retraining's optimizer and lr schedule.

    `homog_min_saved`: leave out homogeneous designs saving less (uniform-operand %).

    `gradient_scale`: the scale at which table and STE gradients are compared (None: the
    first scale more than DROP_PP below int8 under the first energy model)."""
    # Long for its signature and the study.json it assembles; the retraining is _Study's.
    from hwflow.nn.run import sigma_history
    from hwflow.nn.train import load_train_config
    from hwflow.trust import trusting

    _check_input(seeds, scales, max_losses, energy_models, epochs, lr, error_model)
    check_recovery(recovery_steps, bool(max_losses))
    check_dir(out, STUDY_KIND)  # a user's folder is refused before any work
    # a bad config fails before anything is trained; its factory is the user's to run
    with trusting(load_train_config(config).model.factory):
        lib = library_view(library)
        out = claim_dir(out, STUDY_KIND)
        seeds = [int(s) for s in seeds]
        run_dirs = {s: out / f"seed-{s}" for s in seeds}
        log(f"study: training {len(seeds)} seed(s) and their points (finished ones are reused)")
        tasks = [
            _SeedTask(
                str(config),
                s,
                str(run_dirs[s]),
                data_dir,
                str(lib.library.path),
                tuple(float(x) for x in scales),
                tuple(energy_models),
                error_model,
                homog_min_saved,
                tuple(float(m) for m in max_losses),
                recovery_steps,
                1 if jobs > 1 else 0,
                log,
            )  # fmt: skip
            for s in seeds
        ]
        st = _Study(run_dirs, lib, error_model, homog_min_saved, epochs, lr, max_steps, jobs)
        st.schedule, st.log = schedule, log
        st.docs = dict(zip(seeds, run_parallel(_seed_task, tasks, jobs), strict=True))
        names = list(st.docs[seeds[0]])
        log(f"study: retraining {len(names)} points x {len(seeds)} seeds "
            f"({len(st.jobs_for(names, 'ste'))} runs)")  # fmt: skip
        st.retrain_ste(names)
        int8_correct = {
            s: _correct(run_dirs[s] / "study" / "int8.pred.npy", st.labels()) for s in seeds
        }
        int8_acc = [float(c.mean()) for c in int8_correct.values()]
        int8_mean, int8_std, int8_lo, int8_hi = mean_ci(int8_acc)
        rows = [st.row(p, int8_correct) for p in names]
        gradients = None
        if compare_gradients:
            scale = gradient_scale
            if scale is None:
                scale = drop_scale(rows, energy_models[0], int8_mean)
            gradients = st.compare_gradients(scale, energy_models[0], rows, int8_correct, log)
        result = {
            "config": str(Path(config).resolve()),
            "library": str(Path(lib.library.path).resolve()),
            "seeds": seeds,
            "scales": [float(s) for s in scales],
            "energy_models": list(energy_models),
            "epochs": epochs,
            "schedule": asdict(schedule),
            "max_losses": [float(m) for m in max_losses],
            "recovery_steps": recovery_steps,
            "lr": lr,
            "max_steps": max_steps,
            "homog_min_saved": homog_min_saved,
            "test_images": int(st.labels().size),
            "int8": {
                "seeds": len(seeds),
                "per_seed": int8_acc,
                "mean": int8_mean,
                "std": int8_std,
                "ci": [int8_lo, int8_hi],
            },
            "rows": rows,
            "comparisons": {e: compare(rows, st.correct, e) for e in ("uniform", "recorded")},
            "gradients": gradients,
            # how settled the sigma search was: each layer's sigma after every AGN epoch
            "sigma_history": {str(s): sigma_history(run_dirs[s]) for s in seeds},
        }
        write_text(out / "study.csv", _csv(rows))
        write_json(out / "study.json", result)
        return result


def _check_input(
    seeds: Sequence[int],
    scales: Sequence[float],
    max_losses: Sequence[float],
    energy_models: Sequence[str],
    epochs: int,
    lr: float,
    error_model: str,
) -> None:
    if not seeds:
        raise AssignmentError("--seeds: give at least one training seed")
    if not (scales or max_losses) or any(s < 0 for s in scales):
        raise AssignmentError(
            f"--scales: give scales >= 0 (or budgets with --max-loss), got {list(scales)}"
        )
    if not energy_models:
        raise AssignmentError(
            f"--energy: choose from {', '.join(energy_mod.ENERGY_MODELS)}, got none"
        )
    for em in energy_models:  # the study always records the operand energy
        check_selection(error_model, em, hist_energy=True)
    check_retrain_options(epochs, lr)


@dataclass
class _Study:
    """What the study's steps share: each seed's run and points, the retraining settings,
    and every STE-retrained result with its per-image correctness ({point: {seed: ...}})."""

    run_dirs: dict[int, Path]
    lib: Any
    error_model: str
    homog_min_saved: float
    epochs: int
    lr: float
    max_steps: int | None
    jobs: int
    schedule: Schedule = DEFAULT_SCHEDULE
    log: Callable[[str], None] = silent  # picklable: the retraining workers log through it
    docs: dict[int, dict[str, dict]] = field(default_factory=dict)
    test_labels: np.ndarray | None = None
    per_point: dict[str, dict[int, dict]] = field(default_factory=dict)
    correct: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return list(self.run_dirs)

    def labels(self) -> np.ndarray:
        """The test split's labels (every seed's run has the same split)."""
        if self.test_labels is None:
            from hwflow.nn.run import load_run

            self.test_labels = load_run(self.run_dirs[self.seeds[0]]).data.test.y.numpy()
        return self.test_labels

    def jobs_for(self, points: Sequence[str], gradient: str) -> list[RetrainJob]:
        threads = 1 if self.jobs > 1 else 0
        return [
            RetrainJob(
                str(self.run_dirs[s]),
                str(self.run_dirs[s] / "study" / p),
                self.epochs,
                self.lr,
                s,
                threads,
                self.max_steps,
                gradient,
                predictions=True,
                schedule=self.schedule,
                log=prefixed(self.log, f"seed {s}, {p}: "),
            )  # fmt: skip
            for p in points
            for s in self.seeds
            if p in self.docs[s]
        ]

    def retrain(
        self, points: Sequence[str], gradient: str
    ) -> tuple[dict[str, dict[int, dict]], dict[str, dict[int, np.ndarray]]]:
        """Retrain (or read back) every seed's `points`: ({point: {seed: retrain result}},
        {point: {seed: correct per test image}})."""
        todo = self.jobs_for(points, gradient)
        results: dict[str, dict[int, dict]] = {}
        correct: dict[str, dict[int, np.ndarray]] = {}
        done = list(run_parallel(retrain_point, todo, self.jobs))  # all, then the labels
        for job, res in zip(todo, done, strict=True):
            p = Path(job.point_dir).name
            results.setdefault(p, {})[job.seed] = res
            pred = Path(job.point_dir) / f"{job.stem}.pred.npy"
            correct.setdefault(p, {})[job.seed] = _correct(pred, self.labels())
        return results, correct

    def retrain_ste(self, points: Sequence[str]) -> None:
        results, correct = self.retrain(points, "ste")
        for p in results:
            self.per_point.setdefault(p, {}).update(results[p])
            self.correct.setdefault(p, {}).update(correct[p])

    def row(self, point: str, int8_correct: dict[int, np.ndarray]) -> dict[str, Any]:
        res = self.per_point[point]
        docs = {s: self.docs[s][point] for s in res}
        return point_row(point, docs, res, self.correct[point], int8_correct)

    def compare_gradients(
        self,
        scale: float,
        energy_model: str,
        rows: list[dict],
        int8_correct: dict[int, np.ndarray],
        log: Callable[[str], None],
    ) -> dict[str, Any]:
        """Retrain the heterogeneous point at `scale` with the table's own gradients too
        (and with STE first, where the point is new); appends its rows."""
        point = hetero_name(energy_model, scale)
        if point not in self.docs[self.seeds[0]]:
            for s in self.seeds:
                self.docs[s] |= seed_points(
                    self.run_dirs[s], self.lib, [scale], [energy_model], self.error_model,
                    self.homog_min_saved,
                )  # fmt: skip
            self.retrain_ste([point])
            rows.append(self.row(point, int8_correct))
        log(
            f"study: table-gradient retraining at {point} "
            f"({len(self.jobs_for([point], 'table'))} runs)"
        )
        results, correct = self.retrain([point], "table")
        tres, tcorrect = results[point], correct[point]
        docs = {s: self.docs[s][point] for s in tres}
        rows.append(point_row(point, docs, tres, tcorrect, int8_correct, gradient="table"))
        return {
            "point": point,
            "scale": scale,
            "ste": [self.per_point[point][s]["accuracy"]["approx_after"] for s in self.seeds],
            "table": [tres[s]["accuracy"]["approx_after"] for s in self.seeds],
            "paired": paired(self.correct[point], tcorrect),
        }


def load_study(out: str | os.PathLike[str]) -> dict[str, Any]:
    return read_json(Path(out) / "study.json")
