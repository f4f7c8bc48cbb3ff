"""Bench: characterization speed (and, given published costs, energy-ranking quality).

Prints, measured side by side in one run:
1. seconds per netlist of the cocotb exhaustive simulation as `hwflow characterize`
   runs it (yosys' bit-parallel view, batched launches) vs a plain Icarus testbench that
   loops over the same 65,536 pairs writing results with `$fwrite` (compile + run per
   netlist), and their ratio (target <= 1.5); plus full `characterize` per netlist
   (synthesis, simulation, gate-level check, metrics, energy) and the gate-level check's
   own cost; the same designs as published gate netlists (EvoApprox style: cells in a
   separate file, scalar or vector-wired nets): full `characterize` vs the plain
   testbench on the scalar form (target <= 1.5x);
2. a cached rerun of 500 netlists (target < 5 s); the whole built-in library with
   `--jobs 2`, fresh and cached (targets < 120 s, < 5 s);
3. with `--netlists DIR --costs FILE` (instead of 1 and 2): the full `characterize` of
   the netlists under DIR, CPU seconds per netlist, then the Spearman rank correlation of
   each estimate (switching energy, the former typed energy model, cell count, transistor
   area) vs their published power (CSV or EvoApprox meta.json, matched by module name),
   per signedness, overall and among circuits of >= 0.3 mW; `--cells FILE` is read with
   every netlist (published gate-level netlists keep their standard cells apart),
   `--library DIR` keeps the library between runs (a rerun is all cache hits).

    .venv/bin/python -m bench.characterize [--sample 8] [--jobs 2] [--skip-library]
    .venv/bin/python -m bench.characterize --netlists DIR --costs meta.json [--cells cells.v]
        [--library DIR] [--jobs 2]
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
from hwflow.characterize.simulate import (
    MAX_BATCH,
    SimDesign,
    plain_testbench_table,
    simulate_batch,
)
from hwflow.multipliers.library import LibraryEntry


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
        designs.append(SimDesign(name, path, name, ("a", "b", "o")))
    return designs


def _cli(lib: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "hwflow.cli", "characterize", "--library", str(lib), *args]


def _new_library(path: Path) -> Path:
    """A library holding the exact references (one-time work, not part of a timing)."""
    from hwflow.characterize.pipeline import characterize_builtin
    from hwflow.multipliers.generators import MultiplierSpec

    characterize_builtin(path, specs=[MultiplierSpec("exact", s, {}) for s in (False, True)])
    return path


def _print_clocks(title: str, n: int, rows: list[tuple[str, Clock]], base: Clock) -> None:
    print(title)
    print(f"  {'':<50} {'wall s':>8} {'cpu s':>8} {'ratio (cpu)':>12}")
    for label, clock in rows:
        ratio = clock.cpu / base.cpu
        print(f"  {label:<50} {clock.wall / n:8.3f} {clock.cpu / n:8.3f} {ratio:11.2f}x")


def bench_per_netlist(designs: list[SimDesign], work: Path) -> dict[str, Clock]:
    """Time the plain testbench, the cocotb simulation and full `characterize` per netlist
    (built-in RTL written as files); prints them and returns the clocks."""
    n = len(designs)
    with Clock() as plain_clock:
        plain = [plain_testbench_table(d, work / "plain" / d.name) for d in designs]
    with Clock() as sim_clock:
        tables = []
        for start in range(0, n, MAX_BATCH):
            batch = range(start, min(start + MAX_BATCH, n))
            tables += zip(batch, simulate_batch([designs[i] for i in batch]), strict=True)
    same = all(np.array_equal(t, plain[i]) for i, t in tables)
    if not same:
        raise SystemExit("bench: cocotb tables differ from the plain testbench's")
    lib = _new_library(work / "lib-sample")
    with Clock() as full_clock:
        subprocess.run([*_cli(lib, "--quiet"), *(str(d.source) for d in designs)], check=True)
    with Clock() as check_clock:  # the simulation = synthesis check alone, in-process
        gate_check_cost(lib, [d.name for d in designs])

    clocks = {"plain": plain_clock, "cocotb": sim_clock, "full": full_clock, "check": check_clock}
    _print_clocks(
        f"per netlist over {n} built-in designs as RTL files (tables identical: {same}):",
        n,
        [
            ("plain Icarus testbench ($fwrite)", plain_clock),
            ("cocotb exhaustive, bit-parallel view (+ yosys)", sim_clock),
            ("full characterize (synth+sim+gate check+energy)", full_clock),
            ("  of which the gate-level check (65,536 pairs)", check_clock),
        ],
        plain_clock,
    )
    return clocks


def gate_check_cost(lib: Path, names: list[str]) -> None:
    """Run the simulation = synthesis check of stored entries (for its cost)."""
    from hwflow.characterize.pipeline import check_gates_match
    from hwflow.characterize.synth import load_gates
    from hwflow.multipliers.library import Library

    library = Library.open(lib)
    for name in names:
        entry = library.get(name)
        raw = (library.table(name) & 0xFFFF).astype(np.uint16)
        check_gates_match(raw, load_gates(library.gate_netlist_path(name)), entry.signed, name)


def bench_gate_level(designs: list[SimDesign], work: Path) -> dict[str, Clock]:
    """The published form: each design as an EvoApprox-style gate netlist (cells in a
    separate file), with scalar wires and wired through one wide vector (N[2031:0]).
    Plain testbench on the scalar form vs full `characterize` of either form."""
    from hwflow.characterize.netlist import Netlist
    from hwflow.characterize.synth import synthesize
    from tests.netlist_forms import cells_verilog, gate_netlist_forms

    folder = {form: work / "gate-level" / form for form in ("scalar", "vector")}
    for f in folder.values():
        f.mkdir(parents=True)
    cells = work / "gate-level" / "cells.v"
    cells.write_text(cells_verilog())
    scalar = []
    for d in designs:
        gates = synthesize(Netlist(d.source, d.top, d.ports)).gates
        for form, path in folder.items():
            name = f"evo_{form}_{d.name}"
            text = gate_netlist_forms(gates, name, vector=form == "vector")
            (path / f"{name}.v").write_text(text)
            if form == "scalar":
                scalar.append(SimDesign(name, path / f"{name}.v", name, ("A", "B", "O")))
    n = len(designs)
    with Clock() as plain_clock:
        for d in scalar:
            plain_testbench_table(d, work / "plain-gl" / d.name, extra_sources=[cells])
    clocks = {"plain": plain_clock}
    for form, path in folder.items():
        lib = _new_library(work / f"lib-{form}")
        with Clock() as clock:
            subprocess.run([*_cli(lib, "--quiet", "--cells", str(cells)), str(path)], check=True)
        clocks[form] = clock
    _print_clocks(
        f"per netlist over {n} EvoApprox-style gate netlists (cells in cells.v):",
        n,
        [
            ("plain Icarus testbench, scalar wires", plain_clock),
            ("full characterize, scalar wires", clocks["scalar"]),
            ("full characterize, vector-wired N[2031:0]", clocks["vector"]),
        ],
        plain_clock,
    )
    return clocks


def bench_cached_rerun(work: Path, n: int = 500) -> Clock:
    """`hwflow characterize DIR` of n netlists that are all in the library already."""
    from dataclasses import replace

    from hwflow.characterize.pipeline import characterize_netlists
    from hwflow.io import sha256_bytes
    from hwflow.multipliers.library import Library, NewEntry

    folder = work / "cached"
    folder.mkdir()
    text = (Path(__file__).parents[1] / "tests/fixtures/netlists/trunc_u.v").read_text()
    files = []
    for i in range(n):  # n different files (the content differs by a comment)
        files.append(folder / f"m{i:03d}.v")
        files[-1].write_text(f"// netlist {i}\n{text}")
    lib_dir = _new_library(work / "lib-cached")
    first = characterize_netlists(files[:1], lib_dir)[0].entry
    lib = Library.load(lib_dir)
    table = lib.table(first.name)
    netlist = lib.netlist_path(first.name).read_text()
    gates = lib.gate_netlist_path(first.name).read_text()
    copies = []
    for f in files[1:]:  # as characterize would have made them, without simulating n times
        source = {**first.source, "path": str(f.resolve()), "sha256": sha256_bytes(f.read_bytes())}
        copies.append(NewEntry(replace(first, name=f.stem, source=source), table, netlist, gates))
    lib.commit(copies)
    with Clock() as clock:
        out = subprocess.run(_cli(lib_dir, str(folder)), check=True, capture_output=True, text=True)
    cached = out.stdout.count("(cached)")
    if cached != n:
        raise SystemExit(f"bench: expected {n} cache hits, got {cached}")
    print(f"cached rerun of {n} netlists: wall {clock.wall:.2f} s, cpu {clock.cpu:.2f} s (< 5 s)")
    return clock


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
        designs = sample_netlists(work, 4 if quick else 8)
        c = bench_per_netlist(designs, work)
        g = bench_gate_level(designs, work)
        sim = c["cocotb"].cpu / c["plain"].cpu
        full = c["full"].cpu / c["plain"].cpu
        check = c["check"].cpu / c["full"].cpu * 100
        gl = {form: g[form].cpu / g["plain"].cpu for form in ("scalar", "vector")}
        out = [
            Row("characterize", "cocotb exhaustive sim vs plain Icarus tb (CPU)", sim, "x",
                "<= 1.5x", sim <= 1.5),
            Row("characterize", "full characterize vs plain tb, built-in RTL files (CPU)",
                full, "x", ""),
            Row("characterize", "gate-level check share of full characterize (CPU)",
                check, "%", ""),
            Row("characterize", "full characterize vs plain tb, gate netlists (CPU)",
                gl["scalar"], "x", "<= 1.5x", gl["scalar"] <= 1.5),
            Row("characterize", "same, vector-wired N[2031:0] vs plain tb on scalar form",
                gl["vector"], "x", "<= 1.5x", gl["vector"] <= 1.5),
        ]  # fmt: skip
        if not quick:
            cached500 = bench_cached_rerun(work)
            n, fresh, cached = bench_library(work, 2)
            out += [
                Row("characterize", "cached rerun of 500 netlists", cached500.wall, "s",
                    "< 5 s", cached500.wall < 5),
                Row("characterize", f"built-in library, {n} designs, --jobs 2, fresh",
                    fresh.wall, "s", "< 120 s", fresh.wall < 120),
                Row("characterize", "built-in library, cached rerun", cached.wall, "s",
                    "< 5 s", cached.wall < 5),
            ]  # fmt: skip
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_ranking(
    costs: Path, netlists: Path, cells: Path | None, library: Path | None, jobs: int
) -> None:
    """Full `characterize` of a folder of published netlists (timed per netlist), then
    the correlation of each estimate with the published power (module docstring)."""
    from dataclasses import replace

    from hwflow.characterize.costs import Comparison, correlations, lookup, read_costs
    from hwflow.characterize.energy import uniform_energy
    from hwflow.characterize.pipeline import CharacterizeError, characterize_netlists
    from hwflow.characterize.synth import load_gates
    from hwflow.multipliers.library import Library

    lib_dir = library or Path(tempfile.mkdtemp(prefix="hwflow-bench-lib-"))
    failed = []
    with Clock() as clock:
        try:
            outcomes = characterize_netlists(
                [netlists], lib_dir, cells=cells, costs=costs, jobs=jobs
            )
        except CharacterizeError as exc:  # the good ones were kept
            outcomes, failed = exc.outcomes, exc.failures
    done = sum(not o.cached for o in outcomes)
    per = f", {clock.cpu / done:.2f} CPU s per characterized netlist" if done else ""
    print(
        f"{len(outcomes) + len(failed)} netlists under {netlists}: {len(failed)} failed, "
        f"{done} characterized, {len(outcomes) - done} cached ({clock.wall:.0f} s wall{per})"
    )
    for f in failed[:5]:
        print(f"  failed {f.line()}")
    published = read_costs(costs)
    lib = Library.open(lib_dir)
    by_module: dict[str, LibraryEntry] = {}
    for o in outcomes:  # one entry per module: `X.v` and `X_pdk45.v` are the same circuit
        e = o.entry
        if lookup(e, published) is not None and e.source.get("top") not in by_module:
            typed = uniform_energy(load_gates(lib.gate_netlist_path(e.name)), model="typed")
            by_module[e.source.get("top", e.name)] = replace(
                e, cost={**e.cost, "energy_typed": typed}
            )
    entries = list(by_module.values())
    estimates = ("energy", "energy_typed", "cells", "area")
    rows = correlations(entries, published, estimates=estimates)
    for line in Comparison(str(costs), len(entries), [], rows).lines():
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=8, help="designs for the per-netlist timing")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--skip-library", action="store_true", help="skip the built-in library run")
    ap.add_argument("--costs", type=Path, default=None, help="CSV or EvoApprox meta.json")
    ap.add_argument("--netlists", type=Path, default=None, help="folder of netlists for --costs")
    ap.add_argument("--cells", type=Path, default=None, help="cell library read with each")
    ap.add_argument(
        "--library",
        type=Path,
        default=None,
        help="characterize --netlists into this library (reruns are cached)",
    )
    args = ap.parse_args()
    if (args.costs is None) != (args.netlists is None):
        ap.error("--costs and --netlists go together")
    if args.costs is not None:  # the correlations alone, without the timing part
        bench_ranking(args.costs, args.netlists, args.cells, args.library, args.jobs)
        return
    work = Path(tempfile.mkdtemp(prefix="hwflow-bench-"))
    try:
        designs = sample_netlists(work, args.sample)
        bench_per_netlist(designs, work)
        bench_gate_level(designs, work)
        if not args.skip_library:
            bench_cached_rerun(work)
            bench_library(work, args.jobs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
