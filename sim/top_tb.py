"""cocotb test of an exported hwflow design (shipped as `tb/test_hwflow.py`).

Needs cocotb and Icarus only (no numpy, no hwflow). The harness streams every layer's
recorded operands through its MAC engine at one MAC per lane per cycle, all layers at
once, on its own clock; this test hands it the vectors and results directories, starts
it, waits for `done` and compares every accumulator with the emulation's
(`hwflow_check`); where the export has the whole network (`hwflow_net`), the harness
also runs the recorded images through it and the check covers its every intermediate
tensor and class. The report goes to `$HWFLOW_RESULTS_DIR/hwflow_verify.json` (default:
the working directory).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import hwflow_check
from cocotb.triggers import First, RisingEdge, Timer

EXPORT = Path(__file__).resolve().parent.parent
CLOCK_NS = 10  # the harness clock: always #5 clk = ~clk
PATH_BYTES = 1024  # width of the harness's vdir/rdir string registers


def verilog_string(text: str) -> int:
    """A Verilog string value (first character in the most significant byte)."""
    data = text.encode()
    if len(data) > PATH_BYTES:
        raise ValueError(f"path longer than {PATH_BYTES} bytes: {text}")
    return int.from_bytes(data, "big")


@cocotb.test()
async def accumulators_match_emulation(dut):
    manifest = json.loads((EXPORT / "manifest.json").read_text())
    vectors = EXPORT / "vectors"
    results = Path(os.environ.get("HWFLOW_RESULTS_DIR") or os.getcwd()).resolve()
    results.mkdir(parents=True, exist_ok=True)
    for layer in manifest["layers"]:  # stale results must never pass for fresh ones
        (results / f"{layer['port']}_acc.hex").unlink(missing_ok=True)
    (results / "net_trace.txt").unlink(missing_ok=True)

    dut.vdir.value = verilog_string(str(vectors))
    dut.rdir.value = verilog_string(str(results))
    await Timer(3 * CLOCK_NS, unit="ns")  # past the harness reset
    started = time.perf_counter()
    dut.start.value = 1
    limit = (manifest["cycles"] + 100) * CLOCK_NS
    await First(RisingEdge(dut.done), Timer(limit, unit="ns"))
    sim_seconds = time.perf_counter() - started
    if not dut.done.value:
        raise AssertionError(f"harness not done after {limit} ns ({manifest['cycles']} cycles)")

    report = hwflow_check.check_design(manifest, vectors, results)
    report["sim_seconds"] = sim_seconds
    report["cycles"] = manifest["cycles"]
    (results / "hwflow_verify.json").write_text(json.dumps(report, indent=2))
    assert report["ok"], hwflow_check.summary(report)
