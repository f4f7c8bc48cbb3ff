"""Bench: characterization speed (and, given published costs, energy-ranking quality).

Prints, measured side by side in one run:
1. seconds per netlist of the cocotb exhaustive simulation as `hwflow characterize`
   runs it (batched launches, many copies per await) vs a plain Icarus testbench that
   loops over the same 65,536 pairs writing results with `$fwrite` (compile + run per
   netlist), and their ratio (target <= 1.5); plus full `characterize` per netlist
   (synthesis, simulation, metrics, energy) for reference;
2. the whole built-in library with `--jobs 2`, fresh and cached (targets < 120 s, < 5 s);
3. with `--costs FILE --netlists DIR`: Spearman rank correlation of the switching-energy
   estimate vs the published power of the netlists in DIR (names = file stems).

    .venv/bin/python -m bench.characterize [--sample 8] [--jobs 2] [--skip-library]
        [--costs costs.csv --netlists DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hwflow.characterize.netlist import inspect_netlist
from hwflow.characterize.simulate import (
    SimDesign,
    plain_testbench_table,
    plan_batches,
    simulate_batch,
)


def sample_netlists(work: Path, n: int) -> list[SimDesign]:
    """`n` built-in designs spread over the families, written as Verilog files."""
    from hwflow.multipliers.generators import builtin_specs, to_verilog

    specs = builtin_specs()
    pick = [specs[i] for i in np.linspace(0, len(specs) - 1, n).round().astype(int)]
    designs = []
    for spec in dict.fromkeys(pick):
        path = work / f"{spec.name}.v"
        path.write_text(to_verilog(spec))
        designs.append(SimDesign(spec.name, path, spec.name, ("a", "b", "o"), frozenset()))
    return designs


def bench_per_netlist(designs: list[SimDesign], work: Path) -> None:
    t0 = time.perf_counter()
    plain = [plain_testbench_table(d, work / "plain" / d.name) for d in designs]
    t_plain = (time.perf_counter() - t0) / len(designs)

    t0 = time.perf_counter()
    tables = []
    for batch in plan_batches(designs):
        tables += zip(batch, simulate_batch([designs[i] for i in batch]), strict=True)
    t_cocotb = (time.perf_counter() - t0) / len(designs)
    same = all(np.array_equal(t, plain[i]) for i, t in tables)

    lib = work / "lib-sample"
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "hwflow.cli", "characterize", "--quiet", "--library", str(lib)]
    subprocess.run([*cmd, *(str(d.source) for d in designs)], check=True)
    t_full = (time.perf_counter() - t0) / len(designs)

    print(f"per netlist over {len(designs)} built-in designs (tables identical: {same}):")
    print(f"  {'plain Icarus testbench ($fwrite)':<37} {t_plain:7.3f} s")
    for label, t in (("cocotb exhaustive (as characterize)", t_cocotb),
                     ("full characterize (synth+sim+energy)", t_full)):  # fmt: skip
        print(f"  {label:<37} {t:7.3f} s   ratio {t / t_plain:5.2f}x")


def bench_library(work: Path, jobs: int) -> None:
    lib = work / "lib-builtin"
    cmd = [sys.executable, "-m", "hwflow.cli", "characterize", "--builtin", "--quiet"]
    cmd += ["--jobs", str(jobs), "--library", str(lib)]
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        times.append(time.perf_counter() - t0)
    index = (lib / "library.yaml").read_text().splitlines()
    n = sum(1 for line in index if line.startswith("- name:"))
    print(f"built-in library ({n} designs, --jobs {jobs}):")
    print(f"  fresh  {times[0]:7.1f} s   (target < 120 s)")
    print(f"  cached {times[1]:7.1f} s   (target < 5 s)")


def bench_ranking(costs: Path, netlists: Path, work: Path, jobs: int) -> None:
    from scipy.stats import spearmanr

    from hwflow.characterize.pipeline import characterize_netlists, read_costs

    published = read_costs(costs)
    files = sorted(p for p in netlists.glob("*.v") if p.stem in published)
    if len(files) < 3:
        print(f"ranking: only {len(files)} netlists in {netlists} have published costs")
        return
    for f in files:
        inspect_netlist(f)  # fail early with a clear message
    out = characterize_netlists(files, work / "lib-costs", jobs=jobs, costs=costs)
    est = [o.entry.cost["energy"] for o in out]
    power = [o.entry.cost["published"]["power"] for o in out]
    area = [o.entry.cost["area"] for o in out]
    rho_e = spearmanr(est, power).statistic
    rho_a = spearmanr(area, power).statistic
    print(f"ranking vs published power ({len(files)} netlists):")
    print(f"  Spearman(switching energy, power) = {rho_e:.3f}")
    print(f"  Spearman(transistor area, power)  = {rho_a:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=8, help="designs for the per-netlist timing")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--skip-library", action="store_true", help="skip the built-in library run")
    ap.add_argument("--costs", type=Path, default=None, help="CSV name,power,area,delay")
    ap.add_argument("--netlists", type=Path, default=None, help="folder of netlists for --costs")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hwflow-bench-"))
    try:
        bench_per_netlist(sample_netlists(work, args.sample), work)
        if not args.skip_library:
            bench_library(work, args.jobs)
        if args.costs is not None and args.netlists is not None:
            bench_ranking(args.costs, args.netlists, work, args.jobs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
