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
3. with `--netlists DIR --costs FILE` (and no timing): Spearman rank correlation of each
   estimate (switching energy, the former typed energy model, cell count, transistor area)
   vs the published power of the netlists under DIR (CSV or EvoApprox meta.json, matched by
   module name), per signedness, overall and among circuits of >= 0.3 mW. Each netlist is
   synthesized and its energy estimated as `characterize` does (no simulation: the
   signedness comes from evaluating the gate netlist); `--cells FILE` is read with every
   netlist (published gate-level netlists keep their standard cells apart), `--cache DIR`
   keeps the yosys output between runs.

    .venv/bin/python -m bench.characterize [--sample 8] [--jobs 2] [--skip-library]
    .venv/bin/python -m bench.characterize --netlists DIR --costs meta.json [--cells cells.v]
        [--cache DIR] [--jobs 2]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
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


RANK_BATCH = 24  # netlists per yosys process (its start-up dominates small designs)


@dataclass(frozen=True)
class RankJob:
    paths: tuple[Path, ...]
    cells: Path | None  # cell library read with each netlist, as `characterize --cells`
    cache: Path | None


def _estimate(job: RankJob) -> list[LibraryEntry | str]:
    """Synthesize netlists (one yosys process, as `characterize` batches them) and estimate
    their costs: an entry each, or the reason it failed."""
    import json

    from hwflow.characterize.energy import uniform_energy
    from hwflow.characterize.netlist import PORT_STYLES, read_source, stage_netlist
    from hwflow.characterize.pipeline import choose_signedness, gate_level_table
    from hwflow.characterize.synth import ElabJob, Gates, elaborate_batch, parse_gates
    from hwflow.errors import HwflowError
    from hwflow.io import sha256_bytes

    cell_text = read_source(job.cells)[1] if job.cells is not None else ""
    found: dict[Path, Gates | str] = {}
    todo: list[tuple[Path, str, tuple[str, str, str], Path | None]] = []
    for path in job.paths:
        text = read_source(path)[1]
        own = re.findall(r"^\s*module\s+([A-Za-z_]\w*)", text, flags=re.M)
        tops = [m for m in own if not re.search(rf"^\s*{m}\s+[\w\\]", text, flags=re.M)]
        ports = next(
            (ps for ps in PORT_STYLES if all(re.search(rf"\b{p}\b", text) for p in ps)), None
        )
        if len(tops) != 1 or ports is None:
            found[path] = f"{path}: top modules {tops}, ports {ports}"
            continue
        cached = None
        if job.cache is not None:
            key = sha256_bytes((cell_text + "\0" + text).encode())
            cached = job.cache / f"{key}.json"
            if cached.is_file():
                found[path] = parse_gates(json.loads(cached.read_text()), str(path))
                continue
        todo.append((path, tops[0], ports, cached))
    if todo:
        with tempfile.TemporaryDirectory(prefix="hwflow-rank-") as tmp:
            work = Path(tmp)
            cells = [stage_netlist(job.cells, work / "cells").copy] if job.cells else []
            jobs = []
            for i, (path, top, ports, _) in enumerate(todo):
                staged = stage_netlist(path, work / f"n{i}")
                jobs.append(ElabJob(f"n{i}", (*cells, staged.copy), top, ports, str(path)))
            for (path, _, _, cached), result in zip(todo, elaborate_batch(jobs, work), strict=True):
                if isinstance(result, HwflowError):
                    found[path] = f"{path}: {str(result).split(': ', 1)[-1]}"
                    continue
                found[path] = result.synth.gates
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    cached.write_text(json.dumps(result.synth.yosys_json))
    out: list[LibraryEntry | str] = []
    for path in job.paths:
        gates = found[path]
        if isinstance(gates, str):
            out.append(gates)
            continue
        cost = {
            "energy": uniform_energy(gates),
            "energy_typed": uniform_energy(gates, model="typed"),
            "cells": len(gates.gates),
            "area": float(gates.area()),
        }
        signed, _ = choose_signedness(gate_level_table(gates))  # as characterize decides
        source = {"kind": "netlist", "path": str(path), "top": gates.top}
        out.append(LibraryEntry(path.stem, signed, source, {}, cost))
    return out


def bench_ranking(
    costs: Path, netlists: Path, cells: Path | None, cache: Path | None, jobs: int
) -> None:
    """Correlation of each estimate with the published power (see the module docstring)."""
    from hwflow.characterize.costs import Comparison, correlations, lookup, read_costs
    from hwflow.executor import run_parallel

    published = read_costs(costs)
    files = sorted(p for p in netlists.rglob("*.v") if cells is None or p != cells)
    batches = [
        RankJob(tuple(files[i : i + RANK_BATCH]), cells, cache)
        for i in range(0, len(files), RANK_BATCH)
    ]
    with Clock() as clock:
        results = [r for batch in run_parallel(_estimate, batches, jobs) for r in batch]
    failed = [r for r in results if isinstance(r, str)]
    by_module: dict[str, LibraryEntry] = {}
    for e in results:  # one entry per module: `X.v` and `X_pdk45.v` are the same circuit
        if isinstance(e, LibraryEntry) and lookup(e, published) is not None:
            by_module.setdefault(e.source["top"], e)
    entries = list(by_module.values())
    print(
        f"{len(files)} netlists under {netlists}: {len(failed)} not synthesized "
        f"({clock.wall:.0f} s wall, {clock.cpu / max(1, len(files)):.2f} s CPU per netlist)"
    )
    for reason in failed[:5]:
        print(f"  skipped {reason}")
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
    ap.add_argument("--cache", type=Path, default=None, help="keep yosys output here")
    args = ap.parse_args()
    if (args.costs is None) != (args.netlists is None):
        ap.error("--costs and --netlists go together")
    if args.costs is not None:  # the correlations alone, without the timing part
        bench_ranking(args.costs, args.netlists, args.cells, args.cache, args.jobs)
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
