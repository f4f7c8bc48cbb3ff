"""Bench: the Ray executor's fixed costs and its scaling from 1 to 2 workers.

Prints, for a local Ray instance of 1 and of 2 CPUs (one worker each), measured in one run:
1. start-up: `ray.init` of a local instance, and the first round of tasks (worker
   processes start and import hwflow);
2. per-task overhead: empty tasks through `run_parallel`, one at a time (round trip) and
   `workers` at once (throughput);
3. `characterize` of the same built-in designs, local pool and Ray, fresh library each,
   with results checked identical.

From these a run of N netlists on W workers costs about
    start + ceil(groups / W) * seconds_per_group + tasks * overhead_per_task / W
(see README "Running on a cluster").

    .venv/bin/python -m bench.executor [--designs 8] [--tasks 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import Row
from hwflow import executor


def _specs(n: int) -> list:
    """`n` built-in designs spread over the families (the exact ones come on top)."""
    from hwflow.multipliers.generators import builtin_specs

    specs = [s for s in builtin_specs() if s.family != "exact"]
    return [specs[i] for i in np.linspace(0, len(specs) - 1, n).round().astype(int)]


def _characterize(specs: list, lib: Path, jobs: int) -> tuple[float, dict]:
    from hwflow.characterize.pipeline import characterize_builtin
    from hwflow.multipliers.library import Library

    t0 = time.perf_counter()
    characterize_builtin(lib, specs=specs, jobs=jobs)
    wall = time.perf_counter() - t0
    opened = Library.open(lib)
    return wall, {e.name: opened.table(e.name).tobytes() for e in opened.entries}


def measure(workers: int, specs: list, tasks: int, work: Path) -> dict[str, float]:
    import ray

    t0 = time.perf_counter()
    executor.connect_ray("local", num_cpus=workers)
    out = {"init": time.perf_counter() - t0}
    try:
        with executor.using("ray"):
            t0 = time.perf_counter()
            list(executor.run_parallel(abs, range(workers), workers))
            out["first_round"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            list(executor.run_parallel(abs, range(tasks // 4), 1))
            out["round_trip"] = (time.perf_counter() - t0) / (tasks // 4)
            t0 = time.perf_counter()
            list(executor.run_parallel(abs, range(tasks), workers))
            out["throughput_overhead"] = (time.perf_counter() - t0) * workers / tasks
            out["ray"], out["ray_tables"] = _characterize(specs, work / f"ray{workers}", workers)
    finally:
        ray.shutdown()
    out["local"], out["local_tables"] = _characterize(specs, work / f"local{workers}", workers)
    return out


def run(designs: int, tasks: int) -> dict[int, dict[str, float]]:
    specs = _specs(designs)
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="hwflow-bench-executor-"))
    try:
        results = {w: measure(w, specs, tasks, work) for w in (1, 2)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    same = all(r["ray_tables"] == r["local_tables"] for r in results.values())
    n = designs + 2  # both exact references are characterized too
    print(f"load average before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f} (shared cores)")
    print(f"characterize: {n} built-in designs, tables identical local vs Ray: {same}")
    print(f"  {'':<44} {'1 worker':>10} {'2 workers':>10}")
    rows_ = [
        ("ray.init, local instance [s]", "init"),
        ("first round of tasks (workers start) [s]", "first_round"),
        ("empty task, one at a time [ms]", "round_trip"),
        ("empty tasks, all workers busy [ms/task/worker]", "throughput_overhead"),
        ("characterize, Ray [s]", "ray"),
        ("characterize, local pool (--jobs W) [s]", "local"),
    ]
    for label, key in rows_:
        scale = 1000 if key in ("round_trip", "throughput_overhead") else 1
        values = [results[w][key] * scale for w in (1, 2)]
        print(f"  {label:<44} {values[0]:10.2f} {values[1]:10.2f}")
    print(f"  Ray speed-up 1 -> 2 workers: {results[1]['ray'] / results[2]['ray']:.2f}x")
    if not same:
        raise SystemExit("bench: tables through Ray differ from the local executor's")
    return results


def rows(quick: bool = False) -> list[Row]:
    """The `make bench` lines: Ray's 1 -> 2 worker speed-up and its per-task overhead."""
    r = run(4 if quick else 8, 100 if quick else 200)
    speedup = r[1]["ray"] / r[2]["ray"]
    return [
        Row("executor", "Ray characterize, 2 workers vs 1 (wall)", speedup, "x", ""),
        Row("executor", "Ray empty-task overhead, one at a time [ms]",
            r[1]["round_trip"] * 1000, "ms", ""),
        Row("executor", "Ray start-up (local instance + first tasks)",
            r[2]["init"] + r[2]["first_round"], "s", ""),
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--designs", type=int, default=8, help="built-in designs to characterize")
    ap.add_argument("--tasks", type=int, default=200, help="empty tasks for the overhead")
    args = ap.parse_args()
    run(args.designs, args.tasks)


if __name__ == "__main__":
    main()
