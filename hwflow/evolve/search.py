"""The (1 + lambda) evolution strategy, with checkpoints it resumes from exactly.

Each generation makes `lam` children of the parent. A child changes one gene that
matters (a function or used connection of an active gate, or an output) and up to
`mutations - 1` more genes anywhere (unused genes drift freely, as in CGP). Fitness,
best first: within the error constraint, lower energy; outside it, lower error std. The
best child replaces the parent when it is at least as fit (neutral drift: ties go to the
child). A child whose energy already exceeds that of the best fitting candidate of the
generation cannot win, so its error is not computed (it is still counted).

The genomes of the last `finalists` improvements are kept (the best last) for a choice
after resynthesis (`flow`).

With the compiled evaluator whole generations run in C++ (`fused`): the same
mutation, selection and fitness, draw for draw on the search's own generator (its state
goes in and comes back), float for float in the error std; the tests check that it ends
in the same checkpoint as this module's loop, which calls the evaluator once per child.

Every random choice comes from one `random.Random(seed)`, whose state the checkpoint
keeps with the parent genome and the counters; a resumed run continues the same
sequence, so its result equals an uninterrupted run's (tests check it). Checkpoints are
written atomically every `checkpoint_s` seconds and at the end.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.errors import RunError
from hwflow.evolve.evaluator import BACKENDS, NumpyEvaluator, Score, active_genes
from hwflow.evolve.genome import FIELDS, FUNCS, N_IN, Genome
from hwflow.evolve.problem import Problem
from hwflow.io import read_json, write_json

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class SearchConfig:
    budget: int = 100_000  # candidate evaluations
    lam: int = 4
    mutations: int = 3  # genes changed per child, at most
    seed: int = 0
    checkpoint_s: float = 30.0
    backend: str = "auto"
    finalists: int = 1  # the last improved circuits kept for a choice after resynthesis
    # The compiled backend runs whole generations in C++ on the same generator, with the
    # same results; False: one call per child from the Python loop (the reference).
    fused: bool = True


@dataclass
class Progress:
    """What a progress callback sees (and the search returns)."""

    evaluations: int
    generations: int
    score: Score
    std: float
    fits: bool
    wall_s: float  # this session's seconds
    rate: float  # evaluations per second in this session
    trace: list[list[float]] = field(default_factory=list)  # [evaluations, energy, std]
    finalists: list[dict] = field(default_factory=list)  # genomes, the best last


def make_evaluator(problem: Problem, genome: Genome, backend: str = "auto") -> Any:
    """The compiled evaluator where it builds (`auto`, `compiled`), else numpy."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "numpy":
        from hwflow.evolve.compiled import CompiledEvaluator, kernel

        if kernel() is not None:
            return CompiledEvaluator(problem, genome)
        if backend == "compiled":
            raise RuntimeError("the compiled evaluator could not be built")
    return NumpyEvaluator(problem, genome)


def fitness_key(problem: Problem, s: Score) -> tuple[float, ...]:
    """Smaller is fitter: (0, energy) within the constraints, else (1, pairs beyond the
    worst-case bound, std)."""
    if problem.fits(s.s1, s.s2, s.violations):
        return (0, float(s.energy))
    return (1, float(s.violations), problem.std(s.s1, s.s2))


def mutate(rng: random.Random, genome: Genome, genes: np.ndarray, mutations: int) -> list:
    """(gene, value) changes: one of `genes` (those that matter) to a new value, then up to
    `mutations - 1` genes of any kind to random values."""
    out = []
    extra = rng.randrange(mutations)
    for k in range(1 + extra):
        gene = int(genes[rng.randrange(len(genes))]) if k == 0 else rng.randrange(genome.genes)
        if gene >= FIELDS * genome.n:
            span = N_IN + genome.n
        elif gene % FIELDS == 0:
            span = len(FUNCS)
        else:
            span = N_IN + gene // FIELDS
        if k == 0:  # a value other than the current one: the circuit changes
            v = rng.randrange(span - 1)
            v += v >= genome.get(gene)
        else:
            v = rng.randrange(span)
        out.append((gene, v))
    return out


def finalists_of(improved: list[dict], current: dict, n: int) -> list[dict]:
    """The last `n` distinct circuits, the best last: the current parent (as fit as the
    last improvement, maybe drifted since) after the improvements before it."""
    others = [d for d in improved if d != current]
    return others[max(0, len(others) - n + 1) :] + [current]


def problem_key(problem: Problem, seed_genome: Genome, cfg: SearchConfig) -> str:
    """What a checkpoint must match to be resumed (not the budget: it may grow)."""
    h = hashlib.sha256()
    for a in (problem.inputs, problem.pairs, problem.exact, problem.h_ptr, problem.h_row,
              problem.h_val, seed_genome.func, seed_genome.conn, seed_genome.outs):  # fmt: skip
        h.update(np.ascontiguousarray(a).tobytes())
    setting = [problem.signed, problem.tolerance, problem.max_error, cfg.lam, cfg.mutations]
    h.update(json.dumps([*setting, cfg.seed]).encode())
    return h.hexdigest()


@dataclass
class _State:
    """What a checkpoint holds: the parent, the generator and the counters."""

    genome: Genome
    rng: random.Random
    evaluations: int = 0
    generations: int = 0
    trace: list[list[float]] = field(default_factory=list)
    finalists: list[dict] = field(default_factory=list)
    wall_s: float = 0.0  # of earlier sessions

    @classmethod
    def start(cls, checkpoint: Path | None, key: str, seed: Genome, cfg: SearchConfig) -> _State:
        """A fresh state, or the one `checkpoint` holds (RunError if made otherwise)."""
        st = cls(seed.copy(), random.Random(cfg.seed))
        if checkpoint is None or not checkpoint.is_file():
            return st
        d = read_json(checkpoint)
        if d.get("key") != key or d.get("version") != CHECKPOINT_VERSION:
            raise RunError(
                f"{checkpoint}: checkpoint of another layer, tolerance or search setting; "
                "delete it to start afresh"
            )
        v, mt, gauss = d["rng"]
        st.rng.setstate((v, tuple(mt), gauss))
        st.genome = Genome.from_dict(d["genome"])
        st.evaluations, st.generations, st.trace = d["evaluations"], d["generations"], d["trace"]
        st.finalists = d.get("finalists", [])  # none in checkpoints of older versions
        st.wall_s = d["wall_s"]
        return st

    def save(self, checkpoint: Path | None, key: str, session_s: float) -> None:
        if checkpoint is None:
            return
        write_json(checkpoint, {
            "version": CHECKPOINT_VERSION, "key": key, "genome": self.genome.to_dict(),
            "rng": list(self.rng.getstate()), "evaluations": self.evaluations,
            "generations": self.generations, "trace": self.trace,
            "finalists": self.finalists, "wall_s": self.wall_s + session_s,
        })  # fmt: skip


def _generation(ev: Any, st: _State, problem: Problem, cfg: SearchConfig, parent: tuple) -> tuple:
    """One generation: `lam` children, the fittest replaces the parent if at least as fit.
    Returns the parent's fitness key afterwards."""
    genes = active_genes(st.genome, ev.active)
    limit = int(ev.score.energy) if parent[0] == 0 else -1
    best, kept = None, None
    for _ in range(cfg.lam):
        deltas = mutate(st.rng, st.genome, genes, cfg.mutations)
        s = ev.try_child(deltas, limit)
        st.evaluations += 1
        if s.skipped:
            continue
        k = fitness_key(problem, s)
        if best is None or k <= best:
            best, kept = k, deltas
            ev.keep()
            if k[0] == 0:
                limit = s.energy
    st.generations += 1
    if best is None or best > parent:
        return parent
    ev.accept()
    for gene, value in kept:
        st.genome.set(gene, value)
    if best < parent:
        s = ev.score
        st.trace.append([st.evaluations, float(s.energy), problem.std(s.s1, s.s2)])
        if best[0] == 0:
            st.finalists = [*st.finalists, st.genome.to_dict()][-cfg.finalists :]
    return best


def _fused(ev: Any, st: _State, problem: Problem, cfg: SearchConfig, seconds: float) -> None:
    """`_generation` repeated in the compiled evaluator for about `seconds` (at most up to
    the budget), then its improvements recorded as `_generation` records them."""
    st.evaluations, generations, improved = ev.run(
        st.rng, cfg.lam, cfg.mutations, st.evaluations, cfg.budget, seconds
    )
    st.generations += generations
    for evaluations, energy, s1, s2, _, fits, genome in improved:
        st.trace.append([evaluations, float(energy), problem.std(s1, s2)])
        if fits:
            st.finalists = [*st.finalists, Genome(*genome).to_dict()][-cfg.finalists :]
    st.genome = ev.genome


def evolve(
    problem: Problem,
    seed_genome: Genome,
    cfg: SearchConfig,
    checkpoint: Path | None = None,
    report: Callable[[Progress], None] | None = None,
    report_s: float = 1.0,
) -> tuple[Genome, Progress]:
    """Run (or resume, from `checkpoint`) the search; returns the best genome and the
    final counters. `report` is called about every `report_s` seconds."""
    key = problem_key(problem, seed_genome, cfg)
    st = _State.start(checkpoint, key, seed_genome, cfg)
    ev = make_evaluator(problem, st.genome, cfg.backend)
    start = last_ck = last_rep = time.monotonic()
    start_evals = st.evaluations

    def progress() -> Progress:
        s, wall = ev.score, time.monotonic() - start
        rate = (st.evaluations - start_evals) / wall if wall > 0 else 0.0
        fits = problem.fits(s.s1, s.s2, s.violations)
        kept = finalists_of(st.finalists, st.genome.to_dict(), cfg.finalists)
        std = problem.std(s.s1, s.s2)
        return Progress(st.evaluations, st.generations, s, std, fits, wall, rate, st.trace, kept)

    parent = fitness_key(problem, ev.score)
    fused = cfg.fused and hasattr(ev, "run")
    while st.evaluations < cfg.budget:
        if fused:
            _fused(ev, st, problem, cfg, min(report_s, cfg.checkpoint_s, 1.0))
        else:
            parent = _generation(ev, st, problem, cfg, parent)
        now = time.monotonic()
        if now - last_ck >= cfg.checkpoint_s:
            st.save(checkpoint, key, now - start)
            last_ck = now
        if report is not None and now - last_rep >= report_s:
            report(progress())
            last_rep = now
    st.save(checkpoint, key, time.monotonic() - start)
    return st.genome, progress()
