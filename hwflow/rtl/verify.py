"""`hwflow verify`: simulate an exported directory and compare it with the emulation.

A received export is data, never code: verify imports no Python from it and believes
none of its verdicts. It checks, with hwflow's own installed code,

- the manifest (`hwflow.artifacts.Manifest`: identifiers, paths inside the export);
- every multiplier file against the library entry it names: the RTL hwflow makes from
  that entry (its generator, or its stored netlist, itself checked against the sha256 the
  library records) must have the sha256 the manifest records, and the file must too;
- every layer's expected sums against hwflow's own emulation of the layer's operand
  vectors with the library's table;
- the design files for system tasks (a simulated file may not reach outside the circuit).

Each simulation (the engines, the whole network) then runs hwflow's own testbench
(`sim/top_tb.py`), own feeders and a harness regenerated from the manifest, with the
export's `rtl/` files, through the shared wrapper (`hwflow.simulator.run_cocotb`) in a
private build directory, in parallel processes, on Verilator (default, when usable) or
Icarus; the testbench only runs the harness, and hwflow's own checker
(`hwflow.rtl.check`) compares the raw outputs. The export's `tb/` Python and Makefile
are for users without hwflow.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hwflow import io
from hwflow.artifacts import Manifest, VerifyReport
from hwflow.errors import HwflowError, NetlistError, SimulationError, VerificationError
from hwflow.executor import run_parallel
from hwflow.resources import resource_dir
from hwflow.rtl import check, design
from hwflow.rtl.check import merge_reports
from hwflow.rtl.lint import describe_lint, lint_export
from hwflow.simulator import simulator_version


def load_manifest(export_dir: str | os.PathLike[str]) -> Manifest:
    """The export's manifest, checked (`Manifest.load`)."""
    return Manifest.load(export_dir)


# per simulation: compile and run, wall and CPU (`hwflow.simulator.run_cocotb`'s timings)
TIMINGS = ("build_seconds", "test_seconds", "build_cpu_seconds", "test_cpu_seconds")
# what the check reads: a change here changes what was verified (the Makefile does not)
CHECKED_DIRS = ("rtl/", "tb/", "vectors/")
# hwflow's own feeder of each simulation (never the export's copy)
FEEDERS = {"layers": "hwflow_feeder.v", "net": "hwflow_net_feeder.v"}
RUN_REPORT = "hwflow_run.json"  # what sim/top_tb.py writes for verify (no verdict)


def modified_files(export_dir: Path, manifest: Manifest) -> list[str]:
    """Files whose sha256 differs from the export's record (or that are missing)."""
    out = []
    for rel, digest in manifest["files"].items():
        path = export_dir / rel
        if not path.is_file() or io.sha256_file(path) != digest:
            out.append(rel)
    return out


def check_unchanged(export_dir: Path, manifest: Manifest, allow_changed: bool = False) -> list[str]:
    """The files changed since export; a VerificationError when one of them is a file the
    check reads (design, testbench, vectors), unless `allow_changed`."""
    changed = modified_files(export_dir, manifest)
    checked = [rel for rel in changed if rel.startswith(CHECKED_DIRS)]
    if checked and not allow_changed:
        shown = ", ".join(checked[:5]) + (" ..." if len(checked) > 5 else "")
        raise VerificationError(
            f"{export_dir}: {len(checked)} files changed since export ({shown}); "
            "export again, or pass --allow-changed to verify the changed files"
        )
    return changed


def choose_simulator(requested: str | None) -> tuple[str, str]:
    """(simulator, why): the one asked for, or Verilator when it works here and Icarus
    otherwise. Asking for Verilator where it cannot work is a VerificationError."""
    from hwflow.simulator import SIMULATORS, verilator_problem

    if requested is not None and requested not in SIMULATORS:
        raise VerificationError(
            f"--simulator {requested}: unknown (one of {', '.join(SIMULATORS)})"
        )
    if requested == "icarus":
        return "icarus", "asked for"
    problem = verilator_problem()
    if requested == "verilator":
        if problem:
            raise VerificationError(f"--simulator verilator: {problem}")
        return "verilator", "asked for"
    if problem:
        return "icarus", f"default; Verilator not usable: {problem}"
    return "verilator", "default"


# ---- what hwflow checks before simulating ----------------------------------------------


def open_library(export_dir: Path, manifest: Manifest, library: Any = None) -> Any:
    """The library the export's multipliers are checked against: `library`, else the one
    the manifest names. A library inside the export is refused (it would vouch for
    itself)."""
    from hwflow.multipliers.library import Library

    if library is None:
        named = manifest.get("library")
        if not isinstance(named, str):
            raise VerificationError(
                f"{export_dir}: the manifest names no library to check the multipliers "
                "against; pass --library LIB"
            )
        library = Path(named)
    path = Path(library).resolve()
    if path.is_relative_to(export_dir):
        raise VerificationError(
            f"{path}: the library is inside the export it would vouch for; "
            "pass your own library with --library LIB"
        )
    if not path.is_dir():
        raise VerificationError(
            f"{path}: library not found (the export's multipliers are checked against "
            "it); pass --library LIB"
        )
    return Library.open(path)


def check_multipliers(export_dir: Path, manifest: Manifest, lib: Any) -> list[dict]:
    """Every multiplier file is the RTL of the library entry it names, by sha256 (the
    manifest's, the file's and the one hwflow computes from the entry). Returns one
    record per multiplier; VerificationError on the first that differs."""
    from hwflow.rtl.export import library_rtl

    out = []
    for m in manifest["multipliers"]:
        try:
            rtl = library_rtl(lib, m["name"], m["module"])
        except HwflowError as exc:
            raise VerificationError(f"multiplier {m['name']}: {exc}") from None
        want = io.sha256_bytes(rtl.verilog.encode())
        path = _inside(export_dir, m["file"])
        got = io.sha256_file(path) if path.is_file() else None
        if rtl.module != m["module"] or m["sha256"] != want or got != want:
            raise VerificationError(
                f"{path}: is not the RTL of library entry {m['name']} of {lib.path} "
                f"(sha256 {str(got)[:12]}, manifest {m['sha256'][:12]}, library "
                f"{want[:12]}); the export's multiplier differs from the library's"
            )
        out.append({"name": m["name"], "file": m["file"], "sha256": want, "library": True})
    names = {m["name"] for m in manifest["multipliers"]}
    for lay in manifest["layers"]:
        if lay["multiplier"] not in names:
            raise VerificationError(
                f"{export_dir}: layer {lay['layer']} uses multiplier {lay['multiplier']}, "
                "which the manifest does not list; export the design again"
            )
    return out


def emulated_sums(export_dir: Path, layer: dict, table: np.ndarray, signed: bool) -> list[int]:
    """hwflow's own emulation of a layer's recorded operand streams: every job's sum
    `sum_k table[x, w]` (sign-magnitude weights on unsigned multipliers)."""
    lanes, k = layer["lanes"], layer["fan_in"]
    mems = []
    for kind in ("x", "w"):
        path = _inside(export_dir, f"vectors/{layer['port']}_{kind}.hex")
        try:
            words = check.read_hex_words(path)
            if len(words) < layer["passes"] * k:
                raise ValueError(f"{len(words)} rows, the manifest says {layer['passes'] * k}")
            raw = b"".join(w.to_bytes(lanes, "little") for w in words[: layer["passes"] * k])
        except (OSError, ValueError, OverflowError, UnicodeDecodeError) as exc:
            raise VerificationError(f"{path}: unreadable operand vectors ({exc})") from None
        mems.append(np.frombuffer(raw, np.uint8).reshape(layer["passes"], k, lanes))
    x = mems[0].astype(np.int64)
    w = mems[1].astype(np.int8).astype(np.int64)
    table = np.asarray(table, np.int64)
    if signed:
        acc = table[x, w & 0xFF].sum(axis=1)
    else:
        acc = (np.sign(w) * table[x, np.abs(w)]).sum(axis=1)
    return [int(acc[check.slot(layer, job)]) for job in range(layer["jobs"])]


def check_expected(export_dir: Path, manifest: Manifest, lib: Any) -> list[str]:
    """Where the export's expected sums are not hwflow's own emulation of its operands
    with the library's tables: one line per such layer (the simulation is still compared
    with the export's file, so a design fault is reported as before)."""
    problems = []
    for lay in manifest["layers"]:
        entry = lib.get(lay["multiplier"])
        if bool(entry.signed) != lay["signed"]:
            problems.append(
                f"layer {lay['layer']}: the manifest says signed={lay['signed']}, library "
                f"entry {entry.name} is signed={entry.signed}"
            )
            continue
        own = emulated_sums(export_dir, lay, lib.table(entry.name), entry.signed)
        path = _inside(export_dir, f"vectors/{lay['port']}_expected.txt")
        try:
            recorded = [int(v) for v in path.read_text().split()]
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise VerificationError(f"{path}: unreadable ({exc})") from None
        if recorded != own:
            bad = [i for i, (a, b) in enumerate(zip(recorded, own, strict=False)) if a != b]
            bad += list(range(min(len(recorded), len(own)), max(len(recorded), len(own))))
            problems.append(
                f"{path.name}: {len(bad)} expected sums are not hwflow's emulation of the "
                f"layer's operands with library entry {entry.name} (first: job {bad[0]})"
            )
    return problems


def check_design_text(export_dir: Path, manifest: Manifest) -> None:
    """The export's design files may not hold system tasks ($fopen, $system, ...)."""
    from hwflow.characterize.netlist import check_system_tasks

    for rel in _design_files(manifest):
        path = _inside(export_dir, rel)
        try:
            check_system_tasks(path.read_text(errors="replace"), path, what="an exported design")
        except NetlistError as exc:
            raise VerificationError(str(exc)) from None
        except OSError as exc:
            raise VerificationError(f"{path}: cannot read ({exc.strerror})") from None


def _design_files(manifest: Manifest, sim: dict | None = None) -> list[str]:
    """The export's files a simulation compiles: its `rtl/` sources (the testbench side
    is hwflow's own)."""
    sims = [sim] if sim is not None else manifest["simulations"]
    files = [s for one in sims for s in one["sources"] if s.startswith("rtl/")]
    return list(dict.fromkeys(files))


def _inside(root: Path, rel: str) -> Path:
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise VerificationError(f"{root / rel}: leads outside the export; export again")
    return path


# ---- the simulations -------------------------------------------------------------------


def _harness(manifest: dict, part: str) -> tuple[str, str]:
    """(module, Verilog) of a simulation's toplevel, made from the manifest by hwflow."""
    if part == "net":
        return design.NET_HARNESS, design.net_harness(manifest["net"])
    return design.HARNESS_TOP, design.engines_harness(manifest["layers"])


def stale_results(manifest: dict, part: str) -> list[str]:
    if part == "net":
        return ["net_trace.txt"]
    return [f"{lay['port']}_{kind}.hex" for lay in manifest["layers"] for kind in ("acc", "code")]


def _simulate(job: tuple[Path, dict, dict, Path, str, bool]) -> dict:
    """One simulation of an export in its own build directory (a worker process: the
    cocotb runner sets process-wide environment variables)."""
    from hwflow.simulator import run_cocotb

    export_dir, manifest, sim, build, simulator, keep_build = job
    started = time.perf_counter()
    failure = None
    timings: dict[str, float] = {}
    build.mkdir(parents=True, exist_ok=True)
    top, harness = _harness(manifest, sim["name"])
    io.write_text(build / "hwflow_harness_own.v", harness)
    # the harness reads the vectors through a link in the (ASCII) build folder: Icarus
    # cannot open a path with other characters
    vectors = build / "vectors"
    if not vectors.exists():
        vectors.symlink_to(export_dir / "vectors", target_is_directory=True)
    sources = [export_dir / rel for rel in _design_files(manifest, sim)]
    sources += [
        resource_dir("rtl_templates") / FEEDERS[sim["name"]],
        build / "hwflow_harness_own.v",
    ]
    args = {
        "vectors": str(vectors),
        "results": str(build),
        "cycles": sim["cycles"],
        "stale": stale_results(manifest, sim["name"]),
    }
    with _without_paths_inside(export_dir):
        try:
            run_cocotb(
                sources,
                top=top,
                test_module=resource_dir("sim") / "top_tb.py",
                build_dir=build,
                args=args,
                simulator=simulator,
                timings=timings,
                keep_build=keep_build,
            )
        except SimulationError as exc:
            failure = str(exc)
    ran = build / RUN_REPORT
    report = None
    if ran.is_file():
        # hwflow's own checker on the simulation's raw outputs
        report = check.check_part(manifest, sim["name"], vectors, build)
        report.update(io.read_json(ran))
    return {
        "name": sim["name"],
        "harness": top,
        "report": report,
        "failure": failure,
        "seconds": time.perf_counter() - started,
        **{k: timings.get(k) for k in TIMINGS},
        "build_cached": bool(timings.get("build_cached")),
    }


@contextlib.contextmanager
def _without_paths_inside(folder: Path):
    """sys.path (which the simulator's Python inherits) without entries in `folder`
    (`python -m hwflow` run inside an export puts it first)."""
    saved = list(sys.path)
    sys.path[:] = [
        p for p in saved if not Path(os.path.abspath(p or os.getcwd())).is_relative_to(folder)
    ]
    try:
        yield
    finally:
        sys.path[:] = saved


def verify(
    export_dir: str | os.PathLike[str],
    build_dir: str | None = None,
    record: bool = True,
    jobs: int | None = None,
    simulator: str | None = None,
    allow_changed: bool = False,
    keep_dir: str | os.PathLike[str] | None = None,
    library: str | os.PathLike[str] | None = None,
    on_simulate: Callable[[str, str, Manifest], None] | None = None,
    rebuild: bool = False,
) -> dict:
    """Check, simulate and compare every accumulator with hwflow's own code (see the
    module's docstring). Returns the report (`ok`, `checked`, `mismatches`, `layers`,
    `first_mismatch`, `net`, `multipliers`, code checks, timing, one entry per
    simulation, the simulator), also written to `DIR/verify.json` when `record`; raises
    VerificationError when the check could not run at all, when a multiplier is not its
    library entry's, when the expected sums are not the emulation's, and (before
    simulating) when a design, testbench or vector file differs from the export's
    record, unless `allow_changed`. `library`: the library to check the multipliers
    against (default: the one the manifest names). The simulations run in `jobs`
    processes (default: one each, up to the CPU count) on `simulator` (default: see
    `choose_simulator`). `keep_dir`: build each simulation in `keep_dir/<name>` and keep
    it (its outputs beside the build); default a temporary directory under `build_dir`.
    `on_simulate(simulator, why, manifest)` is called once the checks before the
    simulations have passed. A Verilator simulation built before from the same files is
    taken from `hwflow.sim_cache` (each simulation's `build_cached`) unless `rebuild`."""
    export_dir = Path(export_dir).resolve()
    manifest = load_manifest(export_dir)
    changed = check_unchanged(export_dir, manifest, allow_changed)
    lib = open_library(export_dir, manifest, library)
    multipliers = check_multipliers(export_dir, manifest, lib)
    emulation_problems = check_expected(export_dir, manifest, lib)
    check_design_text(export_dir, manifest)
    simulator, why = choose_simulator(simulator)
    if on_simulate is not None:
        on_simulate(simulator, why, manifest)
    sims = manifest["simulations"]
    if jobs is None:
        jobs = min(len(sims), os.cpu_count() or 1)
    doc = manifest.to_dict()
    with contextlib.ExitStack() as stack:
        if keep_dir is None:
            root = Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="hwflow-verify-", dir=build_dir)
                )
            )
        else:
            root = Path(keep_dir).resolve()
        started = time.perf_counter()
        work = [(export_dir, doc, sim, root / sim["name"], simulator, not rebuild) for sim in sims]
        runs = list(run_parallel(_simulate, work, jobs))
        seconds = time.perf_counter() - started
    missing = [r for r in runs if r["report"] is None]
    if missing:
        raise VerificationError(
            f"{export_dir}: the check did not run: "
            + "; ".join(f"simulation {r['name']}: {r['failure']}" for r in missing)
        )
    report = merge_reports([r["report"] for r in runs])
    report["simulations"] = [
        {
            "name": r["name"],
            "harness": r["harness"],
            "ok": r["report"]["ok"],
            "cycles": r["report"]["cycles"],
            "sim_seconds": r["report"]["sim_seconds"],
            "seconds": r["seconds"],
            **{k: r[k] for k in TIMINGS},
            "build_cached": r["build_cached"],
        }
        for r in runs
    ]
    report["simulator"] = {"name": simulator, "version": simulator_version(simulator), "why": why}
    report["sim_seconds"] = max(r["report"]["sim_seconds"] for r in runs)
    report["seconds"] = seconds
    report["jobs"] = jobs
    # both designs' sums: the MAC array's and, when exported, the network's
    report["accumulations_checked"] = report["checked"] + (report["net"] or {}).get(
        "accumulations", 0
    )
    report["accumulations_per_second"] = (
        report["accumulations_checked"] / seconds if seconds else 0.0
    )
    report["macs"] = manifest.get("macs")
    report["modified_files"] = changed
    report["multipliers"] = multipliers
    report["library"] = str(lib.path.resolve())
    report["lint"] = lint_export(export_dir)  # informational: `ok` stays the bit-exact check
    if emulation_problems:
        report["ok"] = False
        report["errors"] += emulation_problems
    for r in runs:  # a test that failed for a reason the checker did not see
        if r["failure"] and r["report"]["ok"]:
            report["ok"] = False
            report["errors"].append(f"simulation {r['name']}: {r['failure']}")
    if record:
        VerifyReport(report).save(export_dir)
    return report


def format_report(report: dict) -> list[str]:
    """Human-readable lines: one per layer, then the verdict."""
    from hwflow.rtl.check import describe_mismatch

    lines = []
    for lay in report["layers"]:
        bad = lay["mismatches"] or lay.get("code_mismatches") or lay.get("error")
        codes = (
            f"  codes {lay['codes_checked']:>9,} / mismatches {lay['code_mismatches']:>7,}"
            if "codes_checked" in lay
            else ""
        )
        lines.append(
            f"{lay['layer']:<24} {lay['multiplier']:<20} checked {lay['checked']:>9,}  "
            f"mismatches {lay['mismatches']:>7,}{codes}  {'MISMATCH' if bad else 'ok'}"
        )
    lines.append(
        f"MAC array: {report['checked']:,} accumulations checked, "
        f"{report['mismatches']:,} mismatches"
    )
    if report.get("codes_checked"):
        lines.append(
            f"{report['codes_checked']:,} requantized output codes checked, "
            f"{report['code_mismatches']:,} mismatches"
        )
    if report.get("classes_checked"):
        lines.append(
            f"{report['classes_checked']:,} classes checked, "
            f"{report['class_mismatches']:,} mismatches"
        )
    if report.get("net"):
        from hwflow.rtl.check import describe_net

        lines.append(describe_net(report["net"]) + ("" if report["net"]["ok"] else "  MISMATCH"))
    if report.get("multipliers"):
        lines.append(
            f"multipliers: {len(report['multipliers'])} files are their library entries' RTL "
            f"(sha256; library {report['library']})"
        )
    if report.get("simulator"):
        sim = report["simulator"]
        lines.append(f"simulator: {sim['version']} ({sim['why']})")
    if report.get("simulations"):
        lines.append(
            f"simulations ({report['jobs']} at a time): "
            + ", ".join(
                f"{s['name']} {s['cycles']:,} cycles in {s['seconds']:.1f} s"
                + (
                    f" ({'compiled before' if s.get('build_cached') else 'compile'}"
                    f" {s['build_seconds']:.1f} s, run {s['test_seconds']:.1f} s)"
                    if s.get("build_seconds") is not None and s.get("test_seconds") is not None
                    else ""
                )
                for s in report["simulations"]
            )
        )
    total = report.get("accumulations_checked", report["checked"])
    lines.append(
        f"in all: {total:,} accumulations checked in {report['seconds']:.1f} s "
        f"({report['accumulations_per_second']:,.0f}/s), "
        + ("0 mismatches" if report["ok"] else "MISMATCHES")
    )
    lines += describe_lint(report.get("lint"))
    for err in report.get("errors", []):
        lines.append(f"error: {err}")
    if report.get("first_mismatch"):
        lines.append("first mismatch: " + describe_mismatch(report["first_mismatch"]))
    for lay in report["layers"]:
        m = lay.get("first_code_mismatch")
        if m:
            lines.append(
                f"first code mismatch: layer {lay['layer']} lane {m['lane']} pass {m['pass']}: "
                f"expected {m['expected']}, actual {m['actual']}"
            )
            break
    if report.get("modified_files"):
        lines.append("files changed since export: " + ", ".join(report["modified_files"]))
    return lines
