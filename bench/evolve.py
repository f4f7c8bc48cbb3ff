"""Bench: candidate evaluations per second of the CGP evolver, one core.

The seed is the built-in exact unsigned multiplier as the library synthesizes it (318
gates); the layer is synthetic (K = 144, ReLU-like activations with 70 % zeros,
bell-shaped weights, the default 2048 sampled outputs of the error model). CPU time of
this process:

- circuit evaluations/s: a child scored on all 65,536 operand pairs and the 8192-op
  energy stream, only its changed active gates recomputed (the error model skipped:
  `try_child` with an energy limit of 0);
- search evaluations/s: the (1 + 4) search itself, from the seed (mutation, active
  genes, scoring with the error model wherever a child could win, selection), target
  >= 10,000; whole generations in the compiled evaluator (`fused`, the default) beside
  the reference loop that calls it once per child from Python, same trajectory, best
  of interleaved rounds.

    .venv/bin/python -m bench.evolve [--evaluations 20000] [--backend compiled]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np

from bench._common import Clock, Row, best_times
from hwflow.assign.stats import layer_stats_from_arrays
from hwflow.evolve.evaluator import active_genes
from hwflow.evolve.genome import from_gates
from hwflow.evolve.problem import layer_problem
from hwflow.evolve.search import SearchConfig, evolve, make_evaluator, mutate


def seed_gates(folder: Path):  # noqa: ANN201 (a Gates)
    from hwflow.characterize.pipeline import characterize_builtin
    from hwflow.characterize.synth import load_gates
    from hwflow.multipliers.generators import MultiplierSpec
    from hwflow.multipliers.library import Library

    characterize_builtin(folder, specs=[MultiplierSpec("exact", False, {})])
    lib = Library.open(folder)
    return load_gates(lib.gate_netlist_path(lib.exact_name(False)))


def synthetic_layer(k: int = 144):  # noqa: ANN201 (a LayerStats)
    rng = np.random.default_rng(0)
    x = np.minimum(rng.exponential(20, size=(1, 1024, k)), 255).astype(np.int64)
    x[rng.random(x.shape) < 0.7] = 0
    w = np.clip(np.round(rng.normal(0, 25, size=(1, k, 64))), -128, 127).astype(np.int64)
    acc = np.einsum("gmk,gkn->gmn", x, w)
    return layer_stats_from_arrays(
        "bench", x, w, acc, False, ops=x.size * 64, rows=256, cols=32, rng=rng
    )


def timings(evaluations: int, backend: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hwflow-bench-evolve-") as tmp:
        gates = seed_gates(Path(tmp) / "lib")
    layer = synthetic_layer()
    problem = layer_problem(layer, tolerance=0.02 * layer.acc_std)
    genome = from_gates(gates)
    ev = make_evaluator(problem, genome, backend)
    rng = random.Random(0)
    genes = active_genes(genome, ev.active)
    children = [mutate(rng, genome, genes, 3) for _ in range(evaluations)]
    with Clock() as circuit:
        for deltas in children:
            ev.try_child(deltas, 0)
    ends: dict[bool, object] = {}

    def search(fused: bool) -> None:
        cfg = SearchConfig(budget=evaluations, backend=backend, fused=fused)
        ends[fused] = evolve(problem, genome, cfg)

    cpu = best_times({"search": lambda: search(True), "loop": lambda: search(False)}, 2, Clock._cpu)
    rates = {"circuit": evaluations / circuit.cpu} | {k: evaluations / t for k, t in cpu.items()}
    (best, prog), (loop_best, _) = ends[True], ends[False]
    print(f"seed: {len(gates.gates)} gates; backend {type(ev).__name__}")
    print(f"circuit evaluations/s: {rates['circuit']:,.0f} (CPU time, {evaluations} children)")
    ratio = prog.score.energy / ev.score.energy if ev.score.energy else float("nan")
    print(
        f"search evaluations/s:  {rates['search']:,.0f} (CPU time; energy {ratio:.3f} "
        f"of the seed's after {evaluations})"
    )
    same = "same" if best.to_dict() == loop_best.to_dict() else "DIFFERENT"
    print(f"  one call per child:  {rates['loop']:,.0f} (the reference loop; {same} circuit)")
    return rates


def rows(quick: bool = False) -> list[Row]:
    r = timings(5000 if quick else 20000, "auto")
    return [
        Row("evolve", "circuit evaluations/s, 318-gate seed, all pairs + energy", r["circuit"],
            "/s", ""),
        Row("evolve", "(1+4) search evaluations/s with the sampled error model", r["search"],
            "/s", ">= 10,000", r["search"] >= 10_000),
        Row("evolve", "  the same search, one evaluator call per child", r["loop"], "/s", ""),
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaluations", type=int, default=20000)
    ap.add_argument("--backend", default="auto", choices=["auto", "compiled", "numpy"])
    args = ap.parse_args()
    timings(args.evaluations, args.backend)


if __name__ == "__main__":
    main()
