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
from pathlib import Path

import numpy as np

from bench._common import Clock, Row
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
        name = f"bench_{spec.name}"  # not the library's own (reserved) built-in names
        path = work / f"{name}.v"
        path.write_text(to_verilog(spec, module_name=name))
        designs.append(SimDesign(name, path, name, ("a", "b", "o"), frozenset()))
    return designs


def bench_per_netlist(designs: list[SimDesign], work: Path) -> dict[str, Clock]:
    """Time the plain testbench, the cocotb simulation and full `characterize` per netlist;
    prints them and returns the clocks."""
    n = len(designs)
    with Clock() as plain_clock:
        plain = [plain_testbench_table(d, work / "plain" / d.name) for d in designs]
    with Clock() as sim_clock:
        tables = []
        for batch in plan_batches(designs):
            tables += zip(batch, simulate_batch([designs[i] for i in batch]), strict=True)
    same = all(np.array_equal(t, plain[i]) for i, t in tables)
    if not same:
        raise SystemExit("bench: cocotb tables differ from the plain testbench's")
    lib = work / "lib-sample"
    from hwflow.characterize.pipeline import characterize_builtin
    from hwflow.multipliers.generators import MultiplierSpec

    # the exact references are one-time work for a new library: not part of the timing
    characterize_builtin(lib, specs=[MultiplierSpec("exact", s, {}) for s in (False, True)])
    cmd = [sys.executable, "-m", "hwflow.cli", "characterize", "--quiet", "--library", str(lib)]
    with Clock() as full_clock:
        subprocess.run([*cmd, *(str(d.source) for d in designs)], check=True)

    clocks = {"plain": plain_clock, "cocotb": sim_clock, "full": full_clock}
    print(f"per netlist over {n} built-in designs (tables identical: {same}):")
    print(f"  {'':<37} {'wall s':>8} {'cpu s':>8} {'ratio (cpu)':>12}")
    for label, key in (
        ("plain Icarus testbench ($fwrite)", "plain"),
        ("cocotb exhaustive (as characterize)", "cocotb"),
        ("full characterize (synth+sim+energy)", "full"),
    ):
        clock = clocks[key]
        ratio = clock.cpu / plain_clock.cpu
        print(f"  {label:<37} {clock.wall / n:8.3f} {clock.cpu / n:8.3f} {ratio:11.2f}x")
    return clocks


def bench_library(work: Path, jobs: int) -> tuple[int, Clock, Clock]:
    """`characterize --builtin` fresh then cached; prints and returns (designs, clocks)."""
    lib = work / "lib-builtin"
    cmd = [sys.executable, "-m", "hwflow.cli", "characterize", "--builtin", "--quiet"]
    cmd += ["--jobs", str(jobs), "--library", str(lib)]
    clocks = []
    for _ in range(2):
        with Clock() as clock:
            subprocess.run(cmd, check=True)
        clocks.append(clock)
    index = (lib / "library.yaml").read_text().splitlines()
    n = sum(1 for line in index if line.startswith("- name:"))
    print(
        f"built-in library ({n} designs, --jobs {jobs}; cpu s / {jobs} = wall on an idle machine):"
    )
    for label, clock, target in (("fresh", clocks[0], 120), ("cached", clocks[1], 5)):
        print(
            f"  {label:<7} wall {clock.wall:7.1f} s  cpu {clock.cpu:7.1f} s   (target < {target} s)"
        )
    return n, clocks[0], clocks[1]


def rows(quick: bool = False) -> list[Row]:
    """The `make bench` lines: per-netlist ratios (CPU time) and library wall times."""
    work = Path(tempfile.mkdtemp(prefix="hwflow-bench-"))
    try:
        c = bench_per_netlist(sample_netlists(work, 4 if quick else 8), work)
        sim = c["cocotb"].cpu / c["plain"].cpu
        full = c["full"].cpu / c["plain"].cpu
        out = [
            Row("characterize", "cocotb exhaustive sim vs plain Icarus tb (CPU)", sim, "x",
                "<= 1.5x", sim <= 1.5),
            Row("characterize", "full characterize (+yosys, energy) vs plain tb", full, "x", ""),
        ]  # fmt: skip
        if not quick:
            n, fresh, cached = bench_library(work, 2)
            out += [
                Row("characterize", f"built-in library, {n} designs, --jobs 2, fresh",
                    fresh.wall, "s", "< 120 s", fresh.wall < 120),
                Row("characterize", "built-in library, cached rerun", cached.wall, "s",
                    "< 5 s", cached.wall < 5),
            ]  # fmt: skip
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
