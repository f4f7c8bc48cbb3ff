"""`hwflow verify`: run an exported directory's cocotb test and read its exact comparison.

The simulation runs through the shared wrapper (`hwflow.simulator.run_cocotb`) in a
private build directory; the testbench (`tb/test_hwflow.py`, the same file plain `make`
runs) writes `hwflow_verify.json` with per-layer counts and the first mismatch.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from hwflow import io
from hwflow.errors import HwflowError, SimulationError, VerificationError

REPORT = "hwflow_verify.json"


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
    for key in ("sources", "harness", "test_module", "layers"):
        if key not in manifest:
            raise VerificationError(f"{path}: missing key `{key}`")
    return manifest


def modified_files(export_dir: Path, manifest: dict) -> list[str]:
    """Files whose sha256 differs from the export's record (informational)."""
    out = []
    for rel, digest in manifest.get("files", {}).items():
        path = export_dir / rel
        if not path.is_file() or io.sha256_file(path) != digest:
            out.append(rel)
    return out


def verify(
    export_dir: str | os.PathLike[str], build_dir: str | None = None, record: bool = True
) -> dict:
    """Simulate and compare every accumulator. Returns the report (`ok`, `checked`,
    `mismatches`, `layers`, `first_mismatch`, code checks, timing), also written to
    `DIR/verify.json` when `record`; raises VerificationError only when the check could
    not run at all."""
    from hwflow.simulator import run_cocotb

    export_dir = Path(export_dir).resolve()
    manifest = load_manifest(export_dir)
    test_module = export_dir / "tb" / f"{manifest['test_module']}.py"
    with tempfile.TemporaryDirectory(prefix="hwflow-verify-", dir=build_dir) as tmp:
        started = time.perf_counter()
        failure = None
        try:
            run_cocotb(
                [export_dir / s for s in manifest["sources"]],
                top=manifest["harness"],
                test_module=test_module,
                build_dir=tmp,
                extra_env={"HWFLOW_RESULTS_DIR": tmp},
            )
        except SimulationError as exc:
            failure = str(exc)
        seconds = time.perf_counter() - started
        report_path = Path(tmp) / REPORT
        if not report_path.is_file():
            raise VerificationError(f"{export_dir}: the check did not run: {failure}")
        report = io.read_json(report_path)
    report["seconds"] = seconds
    report["accumulations_per_second"] = report["checked"] / seconds if seconds else 0.0
    report["macs"] = manifest.get("macs")
    report["modified_files"] = modified_files(export_dir, manifest)
    if failure and report["ok"]:  # the test failed for a reason the checker did not see
        report["ok"] = False
        report["errors"] = [*report.get("errors", []), failure]
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
        f"{report['checked']:,} accumulations checked in {report['seconds']:.1f} s "
        f"({report['accumulations_per_second']:,.0f}/s), {report['mismatches']:,} mismatches"
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
