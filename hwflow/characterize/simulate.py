"""Exhaustive simulation of 8x8 multipliers with cocotb + Icarus (all 65,536 pairs).

Speed comes from two batching levels (TOOLCHAIN.md: ~0.4 s per simulator launch, and
Python per vector would cost 5-10x): a generated Verilog wrapper instantiates 2^C copies
of each design, copy i seeing first operand `{a_hi, i}`, so one `await` in
`sim/multiplier_tb.py` evaluates 2^C pairs; and several designs share one wrapper (one
launch), as long as their module names do not collide.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwflow.errors import SimulationError
from hwflow.simulator import run_cocotb

_ROOT = Path(__file__).resolve().parents[2]
TESTBENCH = _ROOT / "sim" / "multiplier_tb.py"
PLAIN_TESTBENCH = _ROOT / "rtl_templates" / "mul_exhaustive_tb.v"
WRAPPER_TOP = "hwflow_mul_bench"
DEFAULT_COPIES_LOG2 = 5
MAX_BATCH = 8


@dataclass(frozen=True)
class SimDesign:
    """One multiplier to simulate: its Verilog file, top module and (a, b, o) port names."""

    name: str
    source: Path
    top: str
    ports: tuple[str, str, str] = ("a", "b", "o")
    modules: frozenset[str] = frozenset()  # every module the file defines (batching)


def wrapper_verilog(designs: Sequence[SimDesign], copies_log2: int) -> str:
    """The bench top: 2^C copies of each design; `o` = all outputs, design-major."""
    c = copies_log2
    if not 1 <= c <= 7:
        raise ValueError(f"copies_log2 must be in 1..7, got {c}")
    copies = 1 << c
    lanes = len(designs) * copies
    lines = [
        f"module {WRAPPER_TOP}(input [{7 - c}:0] a_hi, input [7:0] b,",
        f"    output [{lanes * 16 - 1}:0] o);",
        "  genvar i;",
        f"  generate for (i = 0; i < {copies}; i = i + 1) begin : lane",
        f"    localparam [{c - 1}:0] LO = i;",
    ]
    for d, design in enumerate(designs):
        pa, pb, po = design.ports
        lines.append(f"    wire [15:0] y{d};")
        lines.append(f"    {design.top} u{d} (.{pa}({{a_hi, LO}}), .{pb}(b), .{po}(y{d}));")
    lines.append("  end endgenerate")
    # One concatenation (MSB first): part-select writes into the wide bus cost
    # O(width) each, which made many copies quadratically slower in Icarus.
    parts = [f"lane[{i}].y{d}" for d in range(len(designs)) for i in range(copies)]
    lines.append("  assign o = {" + ", ".join(reversed(parts)) + "};")
    lines += ["endmodule", ""]
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
    copies_log2: int = DEFAULT_COPIES_LOG2,
) -> list[np.ndarray]:
    """Simulate designs (disjoint module names) in one launch.

    Returns one `uint16[256, 256]` table of raw output patterns per design, indexed
    `[a, b]`. Raises SimulationError naming the file and the first (a, b) pair (in
    ascending order of a, then b) whose output holds X or Z.
    """
    if not designs:
        return []
    with tempfile.TemporaryDirectory(prefix="hwflow-sim-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        wrapper = work / f"{WRAPPER_TOP}.v"
        wrapper.write_text(wrapper_verilog(designs, copies_log2))
        out, xz_out = work / "raw.bin", work / "xz.json"
        names = [d.name for d in designs]
        run_cocotb(
            [*(d.source for d in designs), wrapper],
            WRAPPER_TOP,
            TESTBENCH,
            work / "build",
            args={
                "designs": names,
                "copies_log2": copies_log2,
                "out": str(out),
                "xz_out": str(xz_out),
            },
        )
        xz = json.loads(xz_out.read_text())
        for design in designs:
            if design.name in xz:
                a, b = xz[design.name]
                raise SimulationError(
                    f"{design.source}: output {design.ports[2]} of {design.top} is X or Z "
                    f"for {design.ports[0]}={a}, {design.ports[1]}={b} (first such pair); "
                    "check for undriven or multiply-driven output bits"
                )
        raw = np.fromfile(out, dtype="<u2")
    copies = 1 << copies_log2
    if raw.size != len(designs) * 65536:
        raise SimulationError(f"testbench wrote {raw.size} outputs, expected {len(designs)}x65536")
    # [a_hi, b, design, copy] -> [design, a_hi, copy, b] = [design, a, b] with a = a_hi*C+copy
    lanes = raw.reshape(256 // copies, 256, len(designs), copies).transpose(2, 0, 3, 1)
    return [np.ascontiguousarray(lanes[i]).reshape(256, 256) for i in range(len(designs))]


def plain_testbench_table(design: SimDesign, workdir: str | Path) -> np.ndarray:
    """Raw uint16[256, 256] outputs from the plain-Verilog testbench (iverilog + vvp,
    `$fwrite`, no cocotb): the independent reference for tests and the speed bench."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    pa, pb, po = design.ports
    defines = [f"-DMUL_TOP={design.top}", f"-DPORT_A={pa}", f"-DPORT_B={pb}", f"-DPORT_O={po}"]
    compile_cmd = ["iverilog", "-g2012", "-o", "tb.vvp", *defines, str(PLAIN_TESTBENCH)]
    for cmd in ([*compile_cmd, str(Path(design.source).absolute())], ["vvp", "-n", "tb.vvp"]):
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SimulationError(f"{cmd[0]} failed: {(proc.stderr or proc.stdout).strip()}")
    text = (work / "products.txt").read_text().split()
    if len(text) != 65536:
        raise SimulationError(f"plain testbench wrote {len(text)} products, expected 65536")
    return np.array([int(t, 16) for t in text], dtype=np.uint16).reshape(256, 256)
