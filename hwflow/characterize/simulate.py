"""Exhaustive simulation of 8x8 multipliers with cocotb + Icarus (all 65,536 pairs).

Speed (TOOLCHAIN.md: ~0.4 s per simulator launch; Python per vector costs 5-10x): a
generated Verilog wrapper sweeps the second operand itself. For each first operand `a`
that the cocotb testbench (`sim/multiplier_tb.py`) drives, the wrapper steps `b` through
0..255 and stores every product in a 4096-bit row register per design; the testbench
awaits once per row and reads each row in one access: 256 awaits for all 65,536 pairs
of every design in the launch. Several designs share one wrapper (one launch) as long as
their module names do not collide (the pipeline simulates yosys' flattened view of each
design under a module name of its own, `synth.simulation_view_script`, so any designs
can share a launch). (Measured alternatives: 2^C copies of each design
behind a wide output bus cost 2-4x more simulator time, because every copy adds work
to Icarus' event queue and every output toggle re-evaluates the bus.)
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwflow.errors import HwflowError, SimulationError
from hwflow.simulator import SimulationTimeout, run_cocotb

_ROOT = Path(__file__).resolve().parents[2]
TESTBENCH = _ROOT / "sim" / "multiplier_tb.py"
PLAIN_TESTBENCH = _ROOT / "rtl_templates" / "mul_exhaustive_tb.v"
WRAPPER_TOP = "hwflow_mul_bench"
MAX_BATCH = 16
DEFAULT_TIMEOUT_S = 300.0  # per design and launch step; see characterize.netlist
STEP_NS = 10  # time per operand pair inside the wrapper (zero-delay netlists settle at once)


@dataclass(frozen=True)
class SimDesign:
    """One multiplier to simulate: its Verilog file, top module and (a, b, o) port names."""

    name: str
    source: Path
    top: str
    ports: tuple[str, str, str] = ("a", "b", "o")
    modules: frozenset[str] = frozenset()  # every module the file defines (batching)
    label: str = ""  # names the design in messages (the user's file), default `source`
    label_top: str = ""  # its top as the user knows it, default `top`

    def where(self) -> str:
        return self.label or str(self.source)


def wrapper_verilog(designs: Sequence[SimDesign], step_ns: int = STEP_NS) -> str:
    """The bench top: one instance per design; on each toggle of `go` it sweeps `b`
    through 0..255 (`step_ns` apart) for the current `a`, storing product b of design d
    in `row<d>[16 b +: 16]`. A sweep takes 256 * step_ns."""
    ports = ", ".join(f"row{d}" for d in range(len(designs)))
    lines = [
        f"module {WRAPPER_TOP}(input [7:0] a, input go, output reg [4095:0] {ports});",
        "  reg [7:0] b;",
        "  integer k;",
    ]
    for d, design in enumerate(designs):
        pa, pb, po = design.ports
        lines.append(f"  wire [15:0] y{d};")
        lines.append(f"  {design.top} u{d} (.{pa}(a), .{pb}(b), .{po}(y{d}));")
    lines += [
        "  always @(go) begin",
        "    for (k = 0; k < 256; k = k + 1) begin",
        f"      b = k; #{step_ns};",
        *(f"      row{d}[k * 16 +: 16] = y{d};" for d in range(len(designs))),
        "    end",
        "  end",
        "endmodule",
        "",
    ]
    return "\n".join(lines)


def plan_batches(designs: Sequence[SimDesign], max_batch: int = MAX_BATCH) -> list[list[int]]:
    """Group design indices into launches whose files define disjoint module names."""
    batches: list[tuple[list[int], set[str]]] = []
    for i, design in enumerate(designs):
        names = set(design.modules) or {design.top}
        for members, used in batches:
            if len(members) < max_batch and not (names & used):
                members.append(i)
                used |= names
                break
        else:
            batches.append(([i], set(names)))
    return [members for members, _ in batches]


def simulate_batch(
    designs: Sequence[SimDesign],
    workdir: str | Path | None = None,
    timeout: float | None = None,
) -> list[np.ndarray]:
    """Simulate designs (disjoint module names) in one launch.

    Returns one `uint16[256, 256]` table of raw output patterns per design, indexed
    `[a, b]`. Raises SimulationError naming the file and the first (a, b) pair (in
    ascending order of a, then b) whose output holds X or Z (the first such design).
    """
    out = simulate_designs(designs, workdir, timeout)
    for item in out:
        if isinstance(item, HwflowError):
            raise item
    return out  # type: ignore[return-value]


def simulate_designs(
    designs: Sequence[SimDesign],
    workdir: str | Path | None = None,
    timeout: float | None = None,
) -> list[np.ndarray | SimulationError]:
    """Like `simulate_batch`, one result per design: its table or its own error.

    `timeout` bounds each design (a launch of n designs gets n * timeout). When a launch
    of several designs fails as a whole (did not finish, did not compile), each design
    is simulated alone, so only the faulty one fails: `FILE: simulation did not finish
    in N s` for a circuit that never settles (e.g. a zero-delay loop)."""
    if not designs:
        return []
    with tempfile.TemporaryDirectory(prefix="hwflow-sim-") as tmp:
        # absolute: the testbench writes its files from inside the build folder
        work = Path(workdir).absolute() if workdir is not None else Path(tmp)
        limit = None if timeout is None else timeout * len(designs)
        try:
            return _launch(designs, work, limit)
        except SimulationError as exc:
            if len(designs) > 1:  # the launch failed as a whole: find the faulty design
                alone = [
                    simulate_designs([d], work / f"alone{i}", timeout)
                    for i, d in enumerate(designs)
                ]
                return [r[0] for r in alone]
            if isinstance(exc, SimulationTimeout) and timeout is not None:
                msg = f"{designs[0].where()}: simulation did not finish in {timeout:g} s"
                return [SimulationTimeout(msg)]
            return [exc]


def _launch(
    designs: Sequence[SimDesign], work: Path, timeout: float | None
) -> list[np.ndarray | SimulationError]:
    work.mkdir(parents=True, exist_ok=True)
    wrapper = work / f"{WRAPPER_TOP}.v"
    wrapper.write_text(wrapper_verilog(designs))
    out, xz_out = work / "raw.bin", work / "xz.json"
    names = [d.name for d in designs]
    run_cocotb(
        [*(d.source for d in designs), wrapper],
        WRAPPER_TOP,
        TESTBENCH,
        work / "build",
        args={
            "designs": names,
            "sweep_ns": 256 * STEP_NS + STEP_NS,
            "out": str(out),
            "xz_out": str(xz_out),
        },
        timeout=timeout,
    )
    xz = json.loads(xz_out.read_text())
    raw = np.fromfile(out, dtype="<u2")
    if raw.size != len(designs) * 65536:
        raise SimulationError(f"testbench wrote {raw.size} outputs, expected {len(designs)}x65536")
    by_design = raw.reshape(256, len(designs), 256).transpose(1, 0, 2)  # [a, d, b] -> [d, a, b]
    results: list[np.ndarray | SimulationError] = []
    for i, design in enumerate(designs):
        if design.name in xz:
            a, b = xz[design.name]
            results.append(
                SimulationError(
                    f"{design.where()}: output {design.ports[2]} of "
                    f"{design.label_top or design.top} is X or Z for {design.ports[0]}={a}, "
                    f"{design.ports[1]}={b} (first such pair); "
                    "check for undriven or multiply-driven output bits"
                )
            )
        else:
            results.append(np.ascontiguousarray(by_design[i]))
    return results


def plain_testbench_table(
    design: SimDesign, workdir: str | Path, extra_sources: Sequence[Path] = ()
) -> np.ndarray:
    """Raw uint16[256, 256] outputs from the plain-Verilog testbench (iverilog + vvp,
    `$fwrite`, no cocotb): the independent reference for tests and the speed bench.
    `extra_sources`: further files the design needs (a cell library)."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    pa, pb, po = design.ports
    defines = [f"-DMUL_TOP={design.top}", f"-DPORT_A={pa}", f"-DPORT_B={pb}", f"-DPORT_O={po}"]
    compile_cmd = ["iverilog", "-g2012", "-o", "tb.vvp", *defines, str(PLAIN_TESTBENCH)]
    files = [str(Path(f).absolute()) for f in (design.source, *extra_sources)]
    for cmd in ([*compile_cmd, *files], ["vvp", "-n", "tb.vvp"]):
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SimulationError(f"{cmd[0]} failed: {(proc.stderr or proc.stdout).strip()}")
    text = (work / "products.txt").read_text().split()
    if len(text) != 65536:
        raise SimulationError(f"plain testbench wrote {len(text)} products, expected 65536")
    try:
        return np.array([int(t, 16) for t in text], dtype=np.uint16).reshape(256, 256)
    except ValueError:
        first = next(i for i, t in enumerate(text) if not all(c in "0123456789abcdef" for c in t))
        raise SimulationError(
            f"{design.source}: plain testbench output is X or Z for a={first >> 8}, b={first & 255}"
        ) from None
