"""Gate-level synthesis with yosys: gate counts, area estimate, logic depth, gate netlist.

`synth -flatten` then `abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX` maps every
design to the same small gate set, so counts compare across designs. Area is the CMOS
transistor count of that gate set (the weights of yosys' `stat -tech cmos`, repeated in
`TRANSISTORS` so the estimate is documented and checkable). Depth is the longest path in
gates from an operand bit to a product bit. The yosys JSON of the mapped netlist is kept
(`load_gates` reads it back for the switching-energy estimate in `energy.py`).

`elaborate_batch` also writes each design's simulation view (what the simulator runs,
see `simulation_view_script`), all designs of a batch in one yosys process.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwflow.characterize.bitparallel import gate_order, view_verilog
from hwflow.characterize.netlist import (
    DEFAULT_TIMEOUT_S,
    Netlist,
    YosysItem,
    check_system_tasks,
    read_verilog_command,
    run_yosys_items,
    stage_netlist,
)
from hwflow.errors import NetlistError
from hwflow.io import temp_dir

GATE_SET = "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX"

# Static-CMOS transistor counts per gate (yosys kernel/cost.h, `stat -tech cmos`).
TRANSISTORS: dict[str, int] = {
    "BUF": 4, "NOT": 2, "AND": 6, "NAND": 4, "OR": 6, "NOR": 4,
    "ANDNOT": 6, "ORNOT": 6, "XOR": 12, "XNOR": 12, "MUX": 12,
}  # fmt: skip
# Input pins of each gate type, in yosys' port names (MUX: Y = S ? B : A).
GATE_INPUTS: dict[str, tuple[str, ...]] = {
    "BUF": ("A",), "NOT": ("A",), "MUX": ("A", "B", "S"),
    **{g: ("A", "B") for g in ("AND", "NAND", "OR", "NOR", "ANDNOT", "ORNOT", "XOR", "XNOR")},
}  # fmt: skip
_SEQUENTIAL_MARKS = ("DFF", "DLATCH", "SR_", "FF", "$mem", "$dff", "$dlatch", "$sr")
CONST0, CONST1 = -1, -2  # net ids of the constant drivers in `Gates`


@dataclass(frozen=True)
class Gates:
    """A combinational gate netlist in topological order (net ids are yosys bit numbers).

    `gates[i] = (type, input nets, output net)`; constants are the nets CONST0/CONST1
    (an 'x' constant reads as 0). `a`, `b`, `o` are the operand and product bits, LSB first.
    """

    top: str
    a: tuple[int, ...]
    b: tuple[int, ...]
    o: tuple[int, ...]
    gates: tuple[tuple[str, tuple[int, ...], int], ...]

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(g[0] for g in self.gates).items()))

    def depth(self) -> int:
        """Longest path in gates from an input (or constant) to an output bit."""
        level: dict[int, int] = {}
        for _, ins, out in self.gates:
            level[out] = 1 + max((level.get(n, 0) for n in ins), default=0)
        return max((level.get(n, 0) for n in self.o), default=0)

    def area(self) -> int:
        """Estimated area: CMOS transistor count (TRANSISTORS weights)."""
        return sum(TRANSISTORS[t] * n for t, n in self.counts().items())


@dataclass(frozen=True)
class SynthResult:
    gates: Gates
    yosys_json: dict[str, Any]  # the mapped netlist, with an added "hwflow" key (top, ports)
    yosys_stat: dict[str, Any]

    def cost(self) -> dict[str, Any]:
        """The synthesis part of a library entry's `cost` (energy is added by the caller)."""
        return {
            "cells": len(self.gates.gates),
            "gates": self.gates.counts(),
            "area": float(self.gates.area()),
            "depth": self.gates.depth(),
        }


def synthesis_script(files: Sequence[str], top: str, out_dir: str) -> list[str]:
    """yosys commands mapping `top` to GATE_SET; writes `out_dir`/stat.json, gates.json."""
    t = _yosys_name(top)
    return [
        read_verilog_command(files, synthesis=True),
        f"hierarchy -check -top {t}",
        f"synth -flatten -top {t}",
        f"abc -g {GATE_SET}",
        "opt_clean -purge",
        "delete t:$scopeinfo",
        f"tee -q -o {out_dir}/stat.json stat -json -tech cmos",
        f"write_json {out_dir}/gates.json",
    ]


def simulation_view_script(files: Sequence[str], top: str, out_dir: str) -> list[str]:
    """yosys commands writing what the simulator runs: the design as a simulator reads it
    (`SYNTHESIS` undefined), elaborated and flattened into one module. Writes
    `out_dir`/netlist.v (the library's copy: internal nets split where separate drivers
    write them, so a gate netlist wired through one wide vector reads as its scalar form)
    and `out_dir`/sim.json, the same design mapped to yosys' one-bit gates, from which
    `bitparallel.view_verilog` writes the simulated module."""
    t = _yosys_name(top)
    return [
        read_verilog_command(files, synthesis=False),
        f"hierarchy -check -top {t}",
        "proc",
        "flatten",
        f"hierarchy -top {t}",
        "opt_clean -purge",
        "splitnets -driver",
        "opt_clean -purge",
        "delete t:$scopeinfo",
        f"write_verilog -noattr {out_dir}/netlist.v",
        "memory",
        "techmap",
        "opt_clean -purge",
        f"write_json {out_dir}/sim.json",
    ]


@dataclass(frozen=True)
class ElabJob:
    """One design for `elaborate_batch`: work-relative `files` (cell library first), top,
    ports, the user's name for messages and the work -> user file-name map."""

    key: str  # work subfolder for its outputs, also names the simulation module
    files: tuple[str, ...]
    top: str
    ports: tuple[str, str, str]
    what: str
    names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Elaborated:
    """A design as simulated (`sim_path`: its bit-parallel view, module `sim_top`), its
    flattened netlist text under its own top name (`netlist`), and its synthesis (None
    when not asked for)."""

    sim_path: Path
    sim_top: str
    netlist: str
    synth: SynthResult | None


def elaborate_batch(
    jobs: Sequence[ElabJob],
    work: Path,
    timeout: float = DEFAULT_TIMEOUT_S,
    synthesize: bool = True,
) -> list[Elaborated | NetlistError]:
    """Simulation view and (`synthesize`) gate-level synthesis of every job, in one yosys
    process."""
    items = []
    for job in jobs:
        (work / job.key).mkdir(parents=True, exist_ok=True)
        script = simulation_view_script(job.files, job.top, job.key)
        done = f"{job.key}/sim.json"
        if synthesize:
            script += ["design -reset", *synthesis_script(job.files, job.top, job.key)]
            done = f"{job.key}/gates.json"
        items.append(YosysItem(tuple(script), done, job.what, job.names))
    out: list[Elaborated | NetlistError] = []
    for job, error in zip(jobs, run_yosys_items(items, work, timeout), strict=True):
        if error is not None:
            out.append(error)
            continue
        try:
            folder = work / job.key
            synth = None
            if synthesize:
                design = json.loads((folder / "gates.json").read_text())
                stat = json.loads((folder / "stat.json").read_text())
                design["hwflow"] = {"top": job.top, "ports": list(job.ports)}
                synth = SynthResult(parse_gates(design, job.what), design, stat)
            netlist = (folder / "netlist.v").read_text()
            # yosys drops what it cannot build; check its output as the user's text anyway
            check_system_tasks(netlist, f"{job.what} (as elaborated by yosys)")
            view = json.loads((folder / "sim.json").read_text())
            sim_top = _sim_top(job.key)
            sim_text = view_verilog(view, job.top, job.ports, sim_top, job.what)
            (folder / "sim.v").write_text(sim_text)
            out.append(Elaborated(folder / "sim.v", sim_top, netlist, synth))
        except NetlistError as exc:
            out.append(exc)
    return out


def synthesize(netlist: Netlist, timeout: float = DEFAULT_TIMEOUT_S) -> SynthResult:
    """Map a multiplier netlist to GATE_SET with yosys; reject sequential designs."""
    with temp_dir("hwflow-synth-") as tmp:
        work = Path(tmp)
        files = []
        names = {}
        if netlist.cells is not None:
            cells = stage_netlist(netlist.cells, work / "cells")
            files.append(cells.copy)
            names[cells.copy] = str(netlist.cells)
        staged = stage_netlist(netlist.path, work / "n0")
        files.append(staged.copy)
        names[staged.copy] = str(netlist.path)
        job = ElabJob("n0", tuple(files), netlist.top, netlist.ports, str(netlist.path), names)
        result = elaborate_batch([job], work, timeout)[0]
    if isinstance(result, NetlistError):
        raise result
    assert result.synth is not None
    return result.synth


def _sim_top(key: str) -> str:
    return f"hwflow_sim_{key}"


def parse_gates(design: dict[str, Any], where: str = "gate netlist") -> Gates:
    """Read a yosys JSON netlist (with the "hwflow" key written by `synthesize`)."""
    try:
        top = design["hwflow"]["top"]
        pa, pb, po = design["hwflow"]["ports"]
        module = design["modules"][top]
    except (KeyError, ValueError, TypeError):
        raise NetlistError(f"{where}: not a gate netlist written by hwflow") from None
    cells = module.get("cells", {})
    seq = sorted({c["type"] for c in cells.values() if _is_sequential(c["type"])})
    if seq:
        raise NetlistError(
            f"{where}: {top} is a sequential design (yosys finds {', '.join(seq)}); "
            "hwflow characterizes combinational 8x8 multipliers only"
        )
    raw: list[tuple[str, tuple[int, ...], int]] = []
    for name, cell in cells.items():
        kind = cell["type"].strip("$_")
        if kind not in GATE_INPUTS:
            raise NetlistError(f"{where}: unexpected cell {cell['type']} ({name}) after mapping")
        conn = cell["connections"]
        ins = tuple(_net(conn[p][0]) for p in GATE_INPUTS[kind])
        raw.append((kind, ins, _net(conn["Y"][0])))
    ports = module["ports"]

    def bits(p: str) -> tuple[int, ...]:
        return tuple(_net(x) for x in ports[p]["bits"])

    order = gate_order([(ins, out) for _, ins, out in raw], where, top)
    return Gates(top, bits(pa), bits(pb), bits(po), tuple(raw[i] for i in order))


def load_gates(path: str | os.PathLike[str]) -> Gates:
    """Read a stored gate netlist (`gates/<name>.json` of a library)."""
    path = Path(path)
    if not path.is_file():
        raise NetlistError(f"{path}: gate netlist not found")
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, OSError) as exc:  # truncated or overwritten: a damaged entry
        raise NetlistError(
            f"{path}: damaged gate netlist ({type(exc).__name__}); re-characterize the entry "
            "(`hwflow characterize` repairs a damaged entry)"
        ) from None
    return parse_gates(doc, str(path))


def _net(bit: int | str) -> int:
    if isinstance(bit, int):
        return bit
    return CONST1 if bit == "1" else CONST0  # "0", "x", "z"


def _is_sequential(cell_type: str) -> bool:
    return any(mark in cell_type for mark in _SEQUENTIAL_MARKS)


def _yosys_name(name: str) -> str:
    """Module names with characters outside [A-Za-z0-9_$] need yosys' backslash escape."""
    return name if all(ch.isalnum() or ch in "_$" for ch in name) else "\\" + name
