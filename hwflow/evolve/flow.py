"""`hwflow evolve`: one multiplier per layer, evolved for the operands the layer sees.

Per target layer (default: every approximate layer of the run):

1. the tolerance is assign's fit rule, `scale * |sigma_l| * std(exact accumulator)`, and
   the best existing design is what `assign` would choose for the layer alone (the
   cheapest fitting library design under the layer's recorded operands, or with
   `energy="uniform"` under uniform operands: the energy the search then minimises);
2. the seed is the library's exact multiplier of the layer's signedness (its yosys gate
   netlist), or with `from_library` that best existing design when the evolver's own
   scoring agrees it fits;
3. the (1 + lambda) search runs (`search.evolve`, checkpointed in RUN/evolve/), layers
   side by side through the executor;
4. the best circuit is written as plain gate-level Verilog into LIB/evolved/ and
   characterized like any user netlist (`characterize_netlists`): the library's table,
   costs and energy come from that, never from the evolver. The entry's source records
   where it came from (`evolved`: run, layer, sigma, scale, seed, evaluations, fitness);
5. the constraint and the recorded-operand energy are checked again on the
   characterized table, with assign's own error model and energy model.

Results: RUN/evolve/summary.json (one item per layer) and one line per layer appended
to RUN/evolve/evolve.log.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.artifacts import SUMMARY_FILE, RunSummary
from hwflow.assign.error_model import predict
from hwflow.assign.select import tolerances
from hwflow.assign.stats import STATS_FILE, LayerStats, load_stats
from hwflow.characterize.synth import Gates, load_gates
from hwflow.errors import ConfigError
from hwflow.evolve.genome import Genome, from_gates, to_verilog
from hwflow.evolve.problem import (
    DEFAULT_STREAM,
    ENERGY_OPERANDS,
    energy_operand_hists,
    layer_problem,
)
from hwflow.evolve.search import Progress, SearchConfig, evolve, make_evaluator
from hwflow.executor import run_parallel
from hwflow.io import write_json, write_text

OUT_DIR = "evolve"  # inside the run
NETLIST_DIR = "evolved"  # inside the library
SUMMARY = "summary.json"
LOG = "evolve.log"


@dataclass(frozen=True)
class EvolveOptions:
    scale: float = 1.0
    budget: int = 100_000
    seed: int = 0
    lam: int = 4
    mutations: int = 3
    stream: int = DEFAULT_STREAM
    from_library: bool = False
    backend: str = "auto"
    report_s: float = 5.0
    max_error: int | None = None  # bound on |product error| at every operand pair
    finalists: int = 4  # last improved circuits compared after resynthesis
    energy: str = "histogram"  # the objective's operands: recorded, or uniform


@dataclass(frozen=True)
class LayerJob:
    """One layer's search (picklable: it may run in another process or on Ray)."""

    name: str  # the library name of the result
    layer: LayerStats
    sigma: float
    tolerance: float
    seeds: tuple[tuple[str, Gates], ...]  # candidates, preferred first; the last is exact
    checkpoint: str
    options: EvolveOptions
    quiet: bool


def evolve_run(
    run_dir: str | os.PathLike[str],
    library: str | os.PathLike[str],
    *,
    layers: Sequence[str] | None = None,
    options: EvolveOptions = EvolveOptions(),  # noqa: B008 (frozen)
    jobs: int = 1,
    quiet: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """The whole `hwflow evolve`; returns the summary document it writes."""
    run, stats, sigmas = read_run(Path(run_dir), layers)
    _check_options(options)
    view, doc = best_existing(stats, sigmas, library, options.scale, options.energy)
    lib = view.library
    out = run / OUT_DIR
    out.mkdir(exist_ok=True)
    work = []
    for s, item in zip(stats, doc["layers"], strict=True):
        tol = float(tolerances([sigmas[s.name]], [s.acc_std], options.scale)[0])
        exact = lib.exact_name(s.signed)
        seeds = [(exact, load_gates(lib.gate_netlist_path(exact)))]
        if options.from_library and item["multiplier"] != exact:
            best = item["multiplier"]
            seeds.insert(0, (best, load_gates(lib.gate_netlist_path(best))))
        name, key = _names(run, s, options)
        ck = str(out / f"{key}.checkpoint.json")
        work.append(LayerJob(name, s, sigmas[s.name], tol, tuple(seeds), ck, options, quiet))
    log(f"evolving {len(work)} layer(s), {options.budget:,} evaluations each ...")
    results = list(run_parallel(_evolve_layer, work, jobs))
    items = []
    for job, res, best in zip(work, results, doc["layers"], strict=True):
        item = _characterize(lib.path, job, res, best, run)
        items.append(item)
        line = _summary_line(item)
        log(line)
        with open(out / LOG, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    summary = {
        "run": str(run.resolve()),
        "library": str(Path(lib.path).resolve()),
        "options": dataclasses.asdict(options),
        "layers": items,
    }
    write_json(out / SUMMARY, summary)
    return summary


def best_existing(
    stats: Sequence[LayerStats],
    sigmas: dict[str, float],
    library: Any,
    scale: float,
    energy: str = "histogram",
) -> tuple[Any, dict[str, Any]]:
    """(the library's view without evolved designs, assign's document at `scale` under
    the `energy` operands): each layer's item names the cheapest fitting design that
    existed before evolution, and its energies (`energy_rel_hist`, `energy_rel`)."""
    from hwflow.assign.energy import HistogramEnergy
    from hwflow.assign.flow import assign, library_view

    view = _without_evolved(library_view(library))
    he = HistogramEnergy(view.library, seed=0)
    doc, _ = assign(stats, sigmas, view, energy, scale=scale, hist_energy=he)
    return view, doc


def _without_evolved(view: Any) -> Any:
    """The library minus earlier evolved designs: the baseline is what existed before."""
    keep = [i for i, n in enumerate(view.names) if "evolved" not in view.library.get(n).source]
    return dataclasses.replace(
        view,
        names=[view.names[i] for i in keep],
        signed=view.signed[keep],
        tables=view.tables[keep],
        energy=view.energy[keep],
        published=view.published[keep],
    )


def read_run(run: Path, layers: Sequence[str] | None) -> tuple[Path, list, dict]:
    """(run, its recorded layer statistics, {layer: sigma}); `layers` picks some."""
    stats, _ = load_stats(run / STATS_FILE)
    sigmas = RunSummary.load(run / SUMMARY_FILE).sigmas()
    if layers:
        known = [s.name for s in stats]
        unknown = [n for n in layers if n not in known]
        if unknown:
            raise ConfigError(
                f"--layers: {', '.join(unknown)} not in the run (its layers: {', '.join(known)})"
            )
        stats = [s for s in stats if s.name in layers]
    return run, stats, sigmas


def _check_options(o: EvolveOptions) -> None:
    if o.budget < 1 or o.lam < 1 or o.mutations < 1:
        raise ConfigError("--budget, --lam and --mutations must be at least 1")
    if o.max_error is not None and o.max_error < 0:
        raise ConfigError(f"--max-error must be >= 0, got {o.max_error}")
    if o.scale < 0:
        raise ConfigError(f"--scale must be >= 0, got {o.scale}")
    if o.energy not in ENERGY_OPERANDS:
        raise ConfigError(f"--energy must be one of {', '.join(ENERGY_OPERANDS)}, got {o.energy!r}")
    if o.stream < 128 or o.stream % 64:
        raise ConfigError(f"--stream must be a multiple of 64, at least 128; got {o.stream}")


def _names(run: Path, s: LayerStats, o: EvolveOptions) -> tuple[str, str]:
    """(library name, checkpoint key): the key leaves out the budget and the finalists,
    so a rerun with more resumes; the name includes them, so each result keeps its own
    entry."""
    setting = [str(run.resolve()), s.name, o.scale, o.seed, o.lam, o.mutations, o.stream]
    setting += [o.from_library, o.max_error]
    if o.energy != "histogram":  # (keys of earlier recorded-operand runs unchanged)
        setting.append(o.energy)
    key = hashlib.sha256(json.dumps(setting).encode()).hexdigest()[:8]
    result = [*setting, o.budget, o.finalists]
    full = hashlib.sha256(json.dumps(result).encode()).hexdigest()[:8]
    layer = re.sub(r"[^A-Za-z0-9_]", "_", s.name)
    prefix = "s" if s.signed else "u"
    return f"{prefix}_evo_{layer}_{full}", f"{layer}_{key}"


def _evolve_layer(job: LayerJob) -> dict[str, Any]:
    """Search one layer; returns the Verilog and the search's figures."""
    o = job.options
    bound = -1 if o.max_error is None else o.max_error
    problem = layer_problem(
        job.layer, job.tolerance, stream=o.stream, max_error=bound, energy=o.energy
    )
    exact_name, exact_gates = job.seeds[-1]
    exact_energy = make_evaluator(problem, from_gates(exact_gates), o.backend).score.energy
    seed_name, genome = exact_name, from_gates(exact_gates)
    for name, gates in job.seeds[:-1]:
        g = from_gates(gates)
        s = make_evaluator(problem, g, o.backend).score
        if problem.fits(s.s1, s.s2, s.violations):
            seed_name, genome = name, g
            break
    cfg = SearchConfig(
        o.budget, o.lam, o.mutations, o.seed, backend=o.backend, finalists=o.finalists
    )

    def report(p: Progress) -> None:
        if not job.quiet:
            print(_progress_line(job, p, exact_energy), file=sys.stderr, flush=True)

    t0 = time.monotonic()
    _, prog = evolve(problem, genome, cfg, Path(job.checkpoint), report, o.report_s)
    best = [Genome.from_dict(d) for d in reversed(prog.finalists)]  # the evolver's best first
    verilogs = [to_verilog(g, job.name) for g in best]
    pick, energies = _choose_after_resynthesis(job, verilogs)
    return {
        "verilog": verilogs[pick],
        "finalist": pick,
        "finalist_energy": energies,
        "seed": seed_name,
        "evaluations": prog.evaluations,
        "wall_s": round(time.monotonic() - t0, 2),
        "rate": round(prog.rate, 1),
        "fitness": {
            "energy_rel": round(prog.score.energy / exact_energy, 6) if exact_energy else None,
            "std": round(prog.std, 6),
            "fits": prog.fits,
        },
        "gates": int(best[pick].active().sum()),
    }


def _choose_after_resynthesis(job: LayerJob, verilogs: list[str]) -> tuple[int, list[float]]:
    """The finalist whose netlist, mapped by yosys as characterize maps it, has the lowest
    energy under the objective's operands (ties: the evolver's best), and each
    finalist's energy relative to the exact seed's. The evolver counts toggles on its
    own gates; yosys/abc restructures them, optimising area rather than switching."""
    if len(verilogs) == 1:
        return 0, []
    from hwflow.characterize.energy import energy_under_histograms
    from hwflow.characterize.netlist import Netlist
    from hwflow.characterize.synth import synthesize

    p_a, p_b = energy_operand_hists(job.layer, job.options.energy)
    exact = energy_under_histograms(job.seeds[-1][1], p_a, p_b)
    energies = []
    with tempfile.TemporaryDirectory(prefix="hwflow-evolve-") as tmp:
        for i, text in enumerate(verilogs):
            path = Path(tmp) / f"finalist{i}.v"
            path.write_text(text, encoding="utf-8")
            gates = synthesize(Netlist(path, job.name, ("a", "b", "o"))).gates
            energies.append(round(energy_under_histograms(gates, p_a, p_b) / exact, 6))
    return min(range(len(energies)), key=lambda i: (energies[i], i)), energies


def _progress_line(job: LayerJob, p: Progress, exact_energy: int) -> str:
    e = p.score.energy / exact_energy if exact_energy else float("nan")
    ok = "fits" if p.fits else "outside"
    return (
        f"[{job.layer.name}] {p.evaluations:,}/{job.options.budget:,} evals "
        f"({p.rate:,.0f}/s)  energy {e:.4f} of exact  std {p.std:.4g} / {job.tolerance:.4g} {ok}"
    )


def _characterize(
    lib_path: Path, job: LayerJob, res: dict, best: dict, run: Path
) -> dict[str, Any]:
    """Characterize the evolved netlist into the library; check it as assign would."""
    from hwflow.assign.energy import HistogramEnergy
    from hwflow.characterize.pipeline import characterize_netlists
    from hwflow.multipliers.library import Library

    path = Path(lib_path) / NETLIST_DIR / f"{job.name}.v"
    path.parent.mkdir(exist_ok=True)
    write_text(path, res["verilog"])
    characterize_netlists([path], lib_path, signed=job.layer.signed)
    lib = Library.open(lib_path)
    entry = lib.get(job.name)
    provenance = _provenance(job, res, run)
    if entry.source.get("evolved") != provenance:
        entry.source["evolved"] = provenance
        lib.update([entry])
    table = lib.table(job.name)
    pred = predict(table[None], [job.layer.signed], [job.layer], "sampled")
    std = float(pred.std[0, 0])
    bound = job.options.max_error
    wce_ok = bound is None or float(entry.metrics.get("wce", np.inf)) <= bound
    ref = job.layer.acc_std if job.layer.acc_std > 0 else 1.0
    he = HistogramEnergy(lib, seed=0)  # as assign measures it
    return {
        "layer": job.layer.name,
        "signed": job.layer.signed,
        "sigma": round(job.sigma, 6),
        "scale": job.options.scale,
        "tolerated_std": round(job.tolerance / ref, 6),
        "best_existing": best["multiplier"],
        "energy": job.options.energy,  # the objective's operands
        "best_existing_energy_hist": best.get("energy_rel_hist"),
        "best_existing_energy_uniform": best.get("energy_rel"),
        "evolved": job.name,
        "evolved_energy_hist": round(he.ratio(job.layer, job.name), 6),
        "evolved_energy_uniform": round(float(entry.cost.get("energy_rel", np.nan)), 6),
        "predicted_std": round(std / ref, 6),
        "fits": bool(std <= job.tolerance * (1 + 1e-12) and wce_ok),
        "wce": entry.metrics.get("wce"),
        "cells": entry.cost.get("cells"),
        "netlist": str(path),
        **{k: res[k] for k in ("seed", "evaluations", "wall_s", "rate", "fitness", "gates")},
        "finalist": res["finalist"],
        "finalist_energy_hist": res["finalist_energy"],
    }


def _provenance(job: LayerJob, res: dict, run: Path) -> dict[str, Any]:
    """The library entry's `source.evolved`: where the design came from."""
    return {
        "run": str(run.resolve()),
        "layer": job.layer.name,
        "sigma": round(job.sigma, 6),
        "scale": job.options.scale,
        "max_error": job.options.max_error,
        "energy": job.options.energy,
        "seed": job.options.seed,
        "seeded_from": res["seed"],
        "finalist": res["finalist"],
        "evaluations": res["evaluations"],
        "fitness": res["fitness"],
    }


def _summary_line(item: dict[str, Any]) -> str:
    fits = "fits" if item["fits"] else "DOES NOT FIT"
    energy = "uniform" if item.get("energy") == "uniform" else "hist"
    operands = "uniform" if energy == "uniform" else "recorded"
    return (
        f"layer {item['layer']}: {item['evolved']} energy {item[f'evolved_energy_{energy}']:.4f} "
        f"of exact under {operands} operands (best existing {item['best_existing']} "
        f"{item[f'best_existing_energy_{energy}']}), std {item['predicted_std']:.4f} vs "
        f"{item['tolerated_std']:.4f} tolerated ({fits}), {item['evaluations']:,} evals in "
        f"{item['wall_s']:.1f} s"
    )
