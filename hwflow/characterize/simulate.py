"""Exhaustive simulation of 8x8 multipliers with cocotb + Icarus (all 65,536 pairs).

What is simulated is each design's bit-parallel view (`bitparallel.view_verilog`:
yosys' elaborated design as one-bit gates, every net 65,536 bits wide, bit p = operand
pair p = 256 a + b). A generated wrapper instantiates every design of a launch on shared
operand bit planes, which it sets once; the cocotb testbench (`sim/multiplier_tb.py`)
then reads the 16 product planes of each design: one launch, one evaluation, 16 reads
per design. Designs share a launch freely: each view is one module of its own name.
(Before: the wrapper swept the pairs event by event, 256 awaits of 256 pairs: ~0.45 CPU
s per gate netlist, as much as a plain `$fwrite` testbench; the bit-parallel view takes
~0.1 s including its share of the launch.)
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwflow.characterize.bitparallel import A_PLANES, B_PLANES, O_PLANES, PAIRS
from hwflow.errors import HwflowError, NetlistError, SimulationError
from hwflow.io import temp_dir
from hwflow.resources import resource_dir
from hwflow.simulator import SimulationTimeout, run_cocotb

TESTBENCH = resource_dir("sim") / "multiplier_tb.py"
PLAIN_TESTBENCH = resource_dir("rtl_templates") / "mul_exhaustive_tb.v"
WRAPPER_TOP = "hwflow_mul_bench"
MAX_BATCH = 16
DEFAULT_TIMEOUT_S = 300.0  # per design and launch step; see characterize.netlist


@dataclass(frozen=True)
class SimDesign:
    """A multiplier as a Verilog file: its top module and (a, b, o) port names."""

    name: str
    source: Path
    top: str
    ports: tuple[str, str, str] = ("a", "b", "o")

    def where(self) -> str:
        return str(self.source)


@dataclass(frozen=True)
class SimView:
    """A design's bit-parallel simulation view: module `module` in `path`. `what`, `top`
    and `ports` name the user's file, top and (a, b, o) ports in messages."""

    name: str
    path: Path
    module: str
    what: str
    top: str
    ports: tuple[str, str, str] = ("a", "b", "o")


def _plane(k: int) -> str:
    """Bit k of the pair index for every pair p (bit p of the value): runs of 2^k zeros
    and 2^k ones."""
    half = 1 << k
    return f"{{{PAIRS >> (k + 1)}{{{{{half}{{1'b1}}}}, {{{half}{{1'b0}}}}}}}}"


def wrapper_verilog(views: Sequence[SimView]) -> str:
    """The bench top: one instance per view on shared operand planes (a_i = bit 8 + i of
    the pair index, b_i = bit i), set at 1 ns when every process waits; product bit k of
    design d is the wire `y<d>_<k>`."""
    width = f"[{PAIRS - 1}:0]"
    lines = [f"module {WRAPPER_TOP};", f"  reg {width} {', '.join(A_PLANES + B_PLANES)};"]
    for d, view in enumerate(views):
        outs = [f"y{d}_{k}" for k in range(len(O_PLANES))]
        conns = [f".{p}({p})" for p in A_PLANES + B_PLANES]
        conns += [f".{p}({y})" for p, y in zip(O_PLANES, outs, strict=True)]
        lines += [
            f"  wire {width} {', '.join(outs)};",
            f"  {view.module} u{d} ({', '.join(conns)});",
        ]
    lines += ["  initial begin", "    #1;"]
    lines += [f"    {p} = {_plane(8 + i)};" for i, p in enumerate(A_PLANES)]
    lines += [f"    {p} = {_plane(i)};" for i, p in enumerate(B_PLANES)]
    lines += ["  end", "endmodule", ""]
    return "\n".join(lines)


def simulate_batch(
    designs: Sequence[SimDesign],
    workdir: str | Path | None = None,
    timeout: float | None = None,
    cells: Path | None = None,
) -> list[np.ndarray]:
    """Simulate Verilog files (elaborated by yosys, `cells` read with each) in one launch.

    Returns one `uint16[256, 256]` table of raw output patterns per design, indexed
    `[a, b]`. Raises the first design's error: a NetlistError from elaboration, or a
    SimulationError naming the file and the first (a, b) pair (in ascending order of
    a, then b) whose output holds X or Z.
    """
    from hwflow.characterize.netlist import stage_netlist
    from hwflow.characterize.synth import ElabJob, elaborate_batch

    with temp_dir("hwflow-sim-") as tmp:
        work = Path(workdir).absolute() if workdir is not None else Path(tmp)
        cell_files = () if cells is None else (stage_netlist(cells, work / "cells").copy,)
        jobs = []
        for i, d in enumerate(designs):
            own = stage_netlist(Path(d.source), work / f"n{i}").copy
            files = (*cell_files, own)
            jobs.append(ElabJob(f"n{i}", files, d.top, d.ports, d.where(), {own: d.where()}))
        limit = DEFAULT_TIMEOUT_S if timeout is None else timeout
        views: list[SimView] = []
        for d, e in zip(designs, elaborate_batch(jobs, work, limit, synthesize=False), strict=True):
            if isinstance(e, NetlistError):
                raise e
            views.append(SimView(d.name, e.sim_path, e.sim_top, d.where(), d.top, d.ports))
        out = simulate_views(views, work / "sim", timeout)
    for item in out:
        if isinstance(item, HwflowError):
            raise item
    return out  # type: ignore[return-value]


def simulate_views(
    views: Sequence[SimView],
    workdir: str | Path | None = None,
    timeout: float | None = None,
) -> list[np.ndarray | SimulationError]:
    """Simulate views in one launch; one result per view: its table or its own error.

    `timeout` bounds each design (a launch of n designs gets n * timeout). When a launch
    of several designs fails as a whole (did not finish, did not compile), each design
    is simulated alone, so only the faulty one fails (`FILE: simulation did not finish
    in N s`)."""
    if not views:
        return []
    with temp_dir("hwflow-sim-") as tmp:
        # absolute: the testbench writes its files from inside the build folder
        work = Path(workdir).absolute() if workdir is not None else Path(tmp)
        limit = None if timeout is None else timeout * len(views)
        try:
            return _launch(views, work, limit)
        except SimulationError as exc:
            if len(views) > 1:  # the launch failed as a whole: find the faulty design
                alone = [
                    simulate_views([v], work / f"alone{i}", timeout) for i, v in enumerate(views)
                ]
                return [r[0] for r in alone]
            if isinstance(exc, SimulationTimeout) and timeout is not None:
                msg = f"{views[0].what}: simulation did not finish in {timeout:g} s"
                return [SimulationTimeout(msg)]
            return [exc]


def planes_to_table(planes: np.ndarray) -> np.ndarray:
    """uint16[256, 256] outputs from uint8[16, PAIRS // 8] product planes (bit p of plane k,
    little-endian, = output bit k for pair p = 256 a + b)."""
    bits = np.unpackbits(planes, axis=1, bitorder="little").astype(np.uint16)
    weights = (np.uint16(1) << np.arange(len(O_PLANES), dtype=np.uint16))[:, None]
    return (bits * weights).sum(axis=0, dtype=np.uint16).reshape(256, 256)


def _launch(
    views: Sequence[SimView], work: Path, timeout: float | None
) -> list[np.ndarray | SimulationError]:
    work.mkdir(parents=True, exist_ok=True)
    wrapper = work / f"{WRAPPER_TOP}.v"
    wrapper.write_text(wrapper_verilog(views))
    out, xz_out = work / "raw.bin", work / "xz.json"
    names = [v.name for v in views]
    run_cocotb(
        [*(v.path for v in views), wrapper],
        WRAPPER_TOP,
        TESTBENCH,
        work / "build",
        args={"designs": names, "planes": len(O_PLANES), "out": str(out), "xz_out": str(xz_out)},
        timeout=timeout,
    )
    xz = json.loads(xz_out.read_text())
    raw = np.fromfile(out, dtype=np.uint8)
    if raw.size != len(views) * len(O_PLANES) * PAIRS // 8:
        raise SimulationError(
            f"testbench wrote {raw.size} bytes, expected {len(views)} x 16 planes"
        )
    planes = raw.reshape(len(views), len(O_PLANES), PAIRS // 8)
    results: list[np.ndarray | SimulationError] = []
    for i, view in enumerate(views):
        if view.name in xz:
            a, b = divmod(int(xz[view.name]), 256)
            results.append(
                SimulationError(
                    f"{view.what}: output {view.ports[2]} of {view.top} is X or Z for "
                    f"{view.ports[0]}={a}, {view.ports[1]}={b} (first such pair); "
                    "check for undriven or multiply-driven output bits"
                )
            )
        else:
            results.append(planes_to_table(planes[i]))
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
