"""`hwflow verify`: run an exported directory's cocotb test and read its exact comparison.

Each of the export's simulations (the engines, the whole network) runs through the
shared wrapper (`hwflow.simulator.run_cocotb`) in a private build directory, in
parallel processes, on Verilator (default, when usable) or Icarus; the testbench
(`tb/test_hwflow.py`, the same file plain `make` runs) writes each part's
`hwflow_verify.json` (counts, first mismatch) and this module merges them
(`hwflow.rtl.check.merge_reports`, as the exported Makefile's last step does).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from hwflow import io
from hwflow.errors import HwflowError, SimulationError, VerificationError
from hwflow.executor import run_parallel
from hwflow.rtl.check import FORMAT, REPORT, merge_reports
from hwflow.rtl.lint import describe_lint, lint_export
from hwflow.simulator import simulator_version


def load_manifest(export_dir: Path) -> dict:
    path = export_dir / "manifest.json"
    if not path.is_file():
        raise VerificationError(
            f"{path}: not found (is {export_dir} an `hwflow export` directory?)"
        )
    try:
        manifest = io.read_json(path)
    except HwflowError as exc:
        raise VerificationError(str(exc)) from None
    if manifest.get("format") != FORMAT:
        raise VerificationError(
            f"{path}: export format {manifest.get('format')}, this hwflow reads format "
            f"{FORMAT}; export the design again"
        )
    for key in ("sources", "simulations", "test_module", "layers"):
        if key not in manifest:
            raise VerificationError(f"{path}: missing key `{key}`")
    return manifest


# per simulation: compile and run, wall and CPU (`hwflow.simulator.run_cocotb`'s timings)
TIMINGS = ("build_seconds", "test_seconds", "build_cpu_seconds", "test_cpu_seconds")
# what the check reads: a change here changes what was verified (the Makefile does not)
CHECKED_DIRS = ("rtl/", "tb/", "vectors/")


def modified_files(export_dir: Path, manifest: dict) -> list[str]:
    """Files whose sha256 differs from the export's record (or that are missing)."""
    out = []
    for rel, digest in manifest.get("files", {}).items():
        path = export_dir / rel
        if not path.is_file() or io.sha256_file(path) != digest:
            out.append(rel)
    return out


def check_unchanged(export_dir: Path, manifest: dict, allow_changed: bool = False) -> list[str]:
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


def _simulate(job: tuple[Path, dict, Path, Path, str]) -> dict:
    """One simulation of an export in its own build directory (a worker process: the
    cocotb runner sets process-wide environment variables)."""
    from hwflow.simulator import run_cocotb

    export_dir, sim, test_module, build, simulator = job
    started = time.perf_counter()
    failure = None
    timings: dict[str, float] = {}
    try:
        run_cocotb(
            [export_dir / s for s in sim["sources"]],
            top=sim["harness"],
            test_module=test_module,
            build_dir=build,
            extra_env={"HWFLOW_RESULTS_DIR": str(build)},
            simulator=simulator,
            timings=timings,
        )
    except SimulationError as exc:
        failure = str(exc)
    path = build / REPORT
    return {
        "name": sim["name"],
        "harness": sim["harness"],
        "report": io.read_json(path) if path.is_file() else None,
        "failure": failure,
        "seconds": time.perf_counter() - started,
        **{k: timings.get(k) for k in TIMINGS},
    }


def verify(
    export_dir: str | os.PathLike[str],
    build_dir: str | None = None,
    record: bool = True,
    jobs: int | None = None,
    simulator: str | None = None,
    allow_changed: bool = False,
    keep_dir: str | os.PathLike[str] | None = None,
) -> dict:
    """Simulate and compare every accumulator. Returns the report (`ok`, `checked`,
    `mismatches`, `layers`, `first_mismatch`, `net`, code checks, timing, one entry per
    simulation, the simulator), also written to `DIR/verify.json` when `record`; raises
    VerificationError when the check could not run at all, and (before simulating) when
    a design, testbench or vector file differs from the export's record, unless
    `allow_changed`. The simulations run in `jobs` processes (default: one each, up to
    the CPU count) on `simulator` (default: see `choose_simulator`). `keep_dir`: build
    each simulation in `keep_dir/<name>` and keep it (its outputs beside the build);
    default a temporary directory under `build_dir`."""
    export_dir = Path(export_dir).resolve()
    manifest = load_manifest(export_dir)
    changed = check_unchanged(export_dir, manifest, allow_changed)
    simulator, why = choose_simulator(simulator)
    test_module = export_dir / "tb" / f"{manifest['test_module']}.py"
    sims = manifest["simulations"]
    if jobs is None:
        jobs = min(len(sims), os.cpu_count() or 1)
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
        work = [(export_dir, sim, test_module, root / sim["name"], simulator) for sim in sims]
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
    report["lint"] = lint_export(export_dir)  # informational: `ok` stays the bit-exact check
    for r in runs:  # a test that failed for a reason the checker did not see
        if r["failure"] and r["report"]["ok"]:
            report["ok"] = False
            report["errors"].append(f"simulation {r['name']}: {r['failure']}")
    if record:
        io.write_json(export_dir / "verify.json", report)
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
    if report.get("simulator"):
        sim = report["simulator"]
        lines.append(f"simulator: {sim['version']} ({sim['why']})")
    if report.get("simulations"):
        lines.append(
            f"simulations ({report['jobs']} at a time): "
            + ", ".join(
                f"{s['name']} {s['cycles']:,} cycles in {s['seconds']:.1f} s"
                + (
                    f" (compile {s['build_seconds']:.1f} s, run {s['test_seconds']:.1f} s)"
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
