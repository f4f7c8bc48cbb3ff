"""cocotb test of an exported hwflow design (shipped as `tb/test_hwflow.py`).

Needs cocotb and Icarus only (no numpy, no hwflow). An export has one or two
simulations (`manifest["simulations"]`), each with its own harness toplevel, run as
separate (parallel) simulator processes:
- `layers` (`hwflow_harness`): every layer's recorded operands stream through its MAC
  engine at one MAC per lane per cycle, all layers at once;
- `net` (`hwflow_net_harness`): the recorded images run one after the other through the
  whole network (`hwflow_net`), every intermediate tensor and class logged.
This test finds its part from the toplevel it runs in, hands the harness the vectors
and results directories, starts it, waits for `done` and checks its part exactly
(`hwflow_check.check_part`). The report goes to `$HWFLOW_RESULTS_DIR/hwflow_verify.json`
(default: the working directory).

`hwflow verify` runs its own installed copy of this file instead, with its arguments in
the JSON file named by `$HWFLOW_SIM_ARGS` (`vectors`, `results`, `cycles`, `stale`): it
then only runs the simulation and writes `hwflow_run.json`; hwflow reads the raw outputs
and compares them itself, so nothing of the export (neither its manifest's logic nor its
checker) is imported.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.triggers import First, RisingEdge, Timer

EXPORT = Path(__file__).resolve().parent.parent
CLOCK_NS = 10  # the harness clock: always #5 clk = ~clk
PATH_BYTES = 1024  # width of the harness's vdir/rdir string registers
RUN_REPORT = "hwflow_run.json"  # what a run for `hwflow verify` writes (no verdict)


def verilog_string(text: str) -> int:
    """A Verilog string value (first character in the most significant byte)."""
    data = text.encode()
    if len(data) > PATH_BYTES:
        raise ValueError(f"path longer than {PATH_BYTES} bytes: {text}")
    return int.from_bytes(data, "big")


def harness_path(path: Path) -> str:
    """`path` as the harness opens it: relative to the simulator's working directory when
    it holds characters other than ASCII (Icarus opens no such path, and would report
    every sum as a mismatch)."""
    text = str(path)
    if not text.isascii():
        text = os.path.relpath(path)
    if not text.isascii():
        raise AssertionError(
            f"{path}: the simulator cannot open a path with non-ASCII characters; "
            "copy the export to a folder whose path is ASCII"
        )
    return text


def stale_results(manifest: dict, part: str) -> list[str]:
    """The files this part's harness writes: removed first, so that stale results never
    pass for fresh ones."""
    if part == "net":
        return ["net_trace.txt"]
    return [f"{lay['port']}_{kind}.hex" for lay in manifest["layers"] for kind in ("acc", "code")]


async def run_harness(dut, vectors: Path, results: Path, cycles: int, stale: list[str]) -> float:
    """Run the harness over the vectors into `results`; the wall seconds it took."""
    results.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (results / name).unlink(missing_ok=True)
    dut.vdir.value = verilog_string(harness_path(vectors))
    dut.rdir.value = verilog_string(harness_path(results))
    await Timer(3 * CLOCK_NS, unit="ns")  # past the harness reset
    started = time.perf_counter()
    dut.start.value = 1
    limit = (cycles + 100) * CLOCK_NS
    await First(RisingEdge(dut.done), Timer(limit, unit="ns"))
    if not dut.done.value:
        raise AssertionError(f"{dut._name} not done after {limit} ns ({cycles} cycles)")
    return time.perf_counter() - started


@cocotb.test()
async def accumulators_match_emulation(dut):
    if os.environ.get("HWFLOW_SIM_ARGS"):  # hwflow verify: run only, hwflow compares
        args = json.loads(Path(os.environ["HWFLOW_SIM_ARGS"]).read_text())
        results = Path(args["results"])
        seconds = await run_harness(
            dut, Path(args["vectors"]), results, args["cycles"], args["stale"]
        )
        report = {"sim_seconds": seconds, "cycles": args["cycles"]}
        (results / RUN_REPORT).write_text(json.dumps(report))
        return
    import hwflow_check  # the export's own checker (plain make, without hwflow)

    manifest = json.loads((EXPORT / "manifest.json").read_text())
    sims = {sim["harness"]: sim for sim in manifest["simulations"]}
    if dut._name not in sims:
        raise AssertionError(f"toplevel {dut._name} is none of the export's harnesses {sims}")
    sim = sims[dut._name]
    vectors = EXPORT / "vectors"
    results = Path(os.environ.get("HWFLOW_RESULTS_DIR") or os.getcwd()).resolve()
    stale = stale_results(manifest, sim["name"])
    sim_seconds = await run_harness(dut, vectors, results, sim["cycles"], stale)
    report = hwflow_check.check_part(manifest, sim["name"], vectors, results)
    report["sim_seconds"] = sim_seconds
    report["cycles"] = sim["cycles"]
    (results / hwflow_check.REPORT).write_text(json.dumps(report, indent=2))
    assert report["ok"], hwflow_check.summary(report)
