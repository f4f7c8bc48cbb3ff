"""Write a self-contained, verifiable design directory from per-layer traces.

Layout of the directory (`manifest.json` lists every file with its sha256):

  manifest.json      modules, multipliers (+ sha256), layers, simulations, file hashes
  Makefile           plain `make` reruns the check with cocotb's makefiles (no hwflow)
  rtl/hwflow_top.v   the MAC array: one engine per layer (Amaranth)
  rtl/hwflow_net.v   the whole network, image codes to class (plain stacks only)
  rtl/mul_<name>.v   each multiplier module (Amaranth generator, or netlist + wrapper)
  tb/                harnesses (Verilog), feeders, cocotb test and its checker
  vectors/           per layer: operand streams (.hex) and expected accumulators (.txt);
                     the network's images and expected tensors

Two simulations check it (`simulations` in the manifest; separate simulator processes,
so they run in parallel): `layers` streams every layer's operands through the MAC
array's engines, `net` runs the images through hwflow_net.

This module knows nothing of runs or libraries: `export.py` gathers those and calls
`write_design`. Everything is checked before anything is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from string import Template

import numpy as np

from hwflow import io, verilator_kit
from hwflow.artifacts import Manifest
from hwflow.errors import VerificationError
from hwflow.resources import resource_dir
from hwflow.rtl import check, mac, net, vectors

TEMPLATES = resource_dir("rtl_templates")
SIM = resource_dir("sim")
HARNESS_TOP = "hwflow_harness"  # toplevel of the `layers` simulation (the engines)
NET_HARNESS = "hwflow_net_harness"  # toplevel of the `net` simulation (hwflow_net)
TEST_MODULE = "test_hwflow"


@dataclass(frozen=True)
class LayerPlan:
    """One approximate layer: its multiplier and the integers the emulation recorded."""

    layer: str
    multiplier: mac.MultiplierRTL
    table: np.ndarray  # int32[256, 256] of the multiplier
    signed: bool
    x_int: np.ndarray  # (G, M, K)
    w_int: np.ndarray  # (G, K, Ng)
    acc: np.ndarray  # (G, M, Ng)
    # integer-only output stage: parameters and per-channel offsets (G, Ng) int64
    requant: mac.Requant | None = None
    offsets: np.ndarray | None = None
    argmax: mac.Argmax | None = None  # the classifier's stage (offsets as for requant)
    row_ids: np.ndarray | None = None  # kept rows of the trace's M when sampled (`rows`)


def keep_rows(plan: LayerPlan, rows: int | None, seed: int = 0) -> LayerPlan:
    """The plan with at most `rows` of its M operand rows (`vectors.sample_rows`), the
    original row of each kept one in `row_ids`; unchanged when `rows` is None or M fits."""
    m = plan.x_int.shape[1]
    if rows is None or m <= rows:
        return plan
    ids = vectors.sample_rows(m, rows, seed)
    return replace(plan, x_int=plan.x_int[:, ids], acc=plan.acc[:, ids], row_ids=ids)


def render(template: str, **values: object) -> str:
    """Fill an `rtl_templates/` file (string.Template `${name}` fields)."""
    return Template((TEMPLATES / template).read_text()).substitute(values)


def check_plan(plan: LayerPlan) -> None:
    """Refuse inconsistent input: signedness, operand ranges, and sums that disagree with
    the table equation of docs/concepts/operands.md (computed here independently of the
    nn kernels)."""
    if plan.multiplier.signed != plan.signed:
        kind = "signed" if plan.multiplier.signed else "unsigned"
        raise VerificationError(
            f"layer {plan.layer}: multiplier {plan.multiplier.name} is {kind} but the layer's "
            f"operands are {'signed' if plan.signed else 'unsigned'}"
        )
    try:
        vectors.check_operands(plan.x_int, plan.w_int, plan.signed, plan.layer)
    except ValueError as exc:
        raise VerificationError(str(exc)) from None
    ref = vectors.reference_acc(plan.x_int, plan.w_int, plan.table, plan.signed)
    acc = np.asarray(plan.acc, dtype=np.int64)
    if ref.shape != acc.shape or not np.array_equal(ref, acc):
        bad = int((ref != acc).sum()) if ref.shape == acc.shape else acc.size
        raise VerificationError(
            f"layer {plan.layer}: the emulation's accumulators disagree with the table "
            f"equation of {plan.multiplier.name} in {bad} places; not exporting"
        )


def harness_verilog(module: str, what: str, body: str, done: str) -> str:
    """A cocotb toplevel: clock, reset, start, the directory strings, `body`, `done`."""
    return render("harness.v.tmpl", module=module, what=what, body=body, done=done)


def engines_harness(layers: list[dict]) -> str:
    """The `layers` simulation's toplevel: every engine of the MAC array with its feeder
    (`layers`: the manifest's entries, so that `hwflow verify` builds the same harness
    from a received export's manifest instead of running the export's own)."""
    wires, ports, feeders = [], [], []
    for lay in layers:
        stage = lay.get("requant") or lay.get("argmax")
        port, lanes, width = lay["port"], lay["lanes"], lay["acc_width"]
        offset_width = stage["offset_width"] if stage else 1
        fields = {
            "layer": lay["layer"],
            "port": port,
            "lanes": lanes,
            "fan_in": lay["fan_in"],
            "passes": lay["passes"],
            "acc_width": width,
            "xw": 8 * lanes - 1,
            "accw": width * lanes - 1,
            "requant": int(stage is not None),
            "offset_width": offset_width,
            "offw": offset_width * lanes - 1,
            "codew": 8 * lanes - 1,
            "code_tie": "" if stage else f"\n    assign {port}__code = 0;",
        }
        wires.append(render("harness_layer.v.tmpl", **fields))
        feeders.append(render("harness_feeder.v.tmpl", **fields))
        members = ["x", "w", "valid", "clear", "last", "acc", "acc_valid"]
        for member in members + (["offset", "code"] if stage else []):
            ports.append(f",\n        .{port}__{member}({port}__{member})")
    body = render(
        "harness_engines.v.tmpl",
        top=mac.TOP_MODULE,
        wires="".join(wires),
        top_ports="".join(ports),
        feeders="".join(feeders),
    )
    done = " & ".join(f"{lay['port']}__done" for lay in layers)
    return harness_verilog(HARNESS_TOP, "the MAC array's engines", body, done)


def net_harness(network: dict) -> str:
    """The `net` simulation's toplevel (`network`: the manifest's `net` entry)."""
    body = render(
        "harness_net.v.tmpl",
        module=network["module"],
        images=network["images"],
        pixels=network["pixels"],
        acc_bits=network["acc_bits"],
        word_bits=network["word_bits"],
        addr_bits=network["addr_bits"],
        acc_msb=network["acc_bits"] - 1,
        word_msb=network["word_bits"] - 1,
        addr_msb=network["addr_bits"] - 1,
    )
    return harness_verilog(NET_HARNESS, "the whole network", body, "net_done")


def makefile(simulations: list[dict]) -> str:
    """The exported Makefile: one cocotb run per simulation, then the merge."""
    blocks = []
    for sim in simulations:
        files = " \\\n    ".join(f"$(CURDIR)/{s}" for s in sim["sources"])
        blocks.append(
            f"ifeq ($(PART),{sim['name']})\nVERILOG_SOURCES = \\\n    {files}\n"
            f"COCOTB_TOPLEVEL = {sim['harness']}\nendif"
        )
    return render(
        "export.mk.tmpl",
        parts=" ".join(sim["name"] for sim in simulations),
        part_sources="\n".join(blocks),
        test_module=TEST_MODULE,
    )


def write_design(
    out: Path,
    plans: list[LayerPlan],
    lanes: int,
    meta: dict,
    network: tuple[net.NetSpec, dict] | None = None,
    rows: int | None = None,
) -> dict:
    """Write the design directory into `out` (an existing, empty directory).

    Returns the manifest. `meta` (run, assignment, images, ...) is recorded as is.
    `network`: the whole-network design (`hwflow.rtl.net`) and its expected tensors
    (`net.expected_tensors`), exported beside the per-layer engines and checked by the
    same test in a simulation of its own. `rows`: the per-layer engines check at most
    this many operand rows per layer (a seeded uniform sample; every accumulator of a
    kept row), for networks too large to simulate whole; the network design still runs
    every image.
    """
    plans = _checked_plans(plans, lanes, rows)
    engines = [
        mac.engine_spec(
            p.layer, lanes, p.x_int.shape[2], p.multiplier, p.table, p.requant, p.argmax
        )
        for p in plans
    ]
    files, modules = _rtl_files(engines)
    layers = [
        _layer_vectors(files, plan, eng, lanes) for plan, eng in zip(plans, engines, strict=True)
    ]
    net_entry = _network_files(files, *network) if network is not None else None
    _testbench_files(files, layers)
    simulations = _simulations(files, layers, [f"rtl/{m}.v" for m in modules], net_entry)
    files["Makefile"] = makefile(simulations)

    for rel, text in files.items():
        io.write_text(out / rel, text)
    manifest = {
        "format": check.FORMAT,
        **meta,
        "top": mac.TOP_MODULE,
        "test_module": TEST_MODULE,
        "latency": mac.LATENCY,
        "lanes": lanes,
        "cycles": max(sim["cycles"] for sim in simulations),
        "accumulations": sum(lay["jobs"] for lay in layers),
        "macs": sum(lay["jobs"] * lay["fan_in"] for lay in layers),
        "modules": [
            mac.TOP_MODULE,
            *(f"{mac.TOP_MODULE}.{e.port}" for e in engines),
            *([net.NET_MODULE] if net_entry else []),
            *modules,
        ],
        "sources": list(dict.fromkeys(s for sim in simulations for s in sim["sources"])),
        "simulations": simulations,
        "multipliers": _multiplier_entries(plans),
        "layers": layers,
        "net": net_entry,
        "files": {rel: io.sha256_bytes(text.encode()) for rel, text in sorted(files.items())},
    }
    Manifest(manifest).save(out)
    return manifest


def _checked_plans(plans: list[LayerPlan], lanes: int, rows: int | None) -> list[LayerPlan]:
    """The plans to export: checked (`check_plan`), sampled to `rows`, and without the
    classifier stage where it cannot run (it needs one row, all classes, per pass)."""
    if not plans:
        raise VerificationError("no approximate layers to export")
    if lanes < 1:
        raise VerificationError(f"--lanes must be >= 1, got {lanes}")
    if rows is not None and rows < 1:
        raise VerificationError(f"--rows must be >= 1, got {rows}")
    for plan in plans:
        check_plan(plan)
    plans = [keep_rows(p, rows) for p in plans]
    return [
        replace(p, argmax=None)
        if p.argmax and (p.w_int.shape[0] != 1 or p.argmax.classes > lanes)
        else p
        for p in plans
    ]


def _rtl_files(engines: list[mac.EngineSpec]) -> tuple[dict[str, str], list[str]]:
    """({path: text} with the MAC array and each multiplier module, the modules' names)."""
    try:
        top = mac.top_verilog(engines)
        mult_files = mac.multiplier_verilog(engines)
    except ValueError as exc:
        raise VerificationError(str(exc)) from None
    files = {f"rtl/{mac.TOP_MODULE}.v": top}
    for module, text in mult_files.items():
        files[f"rtl/{module}.v"] = text
    return files, list(mult_files)


def _layer_vectors(files: dict[str, str], plan: LayerPlan, eng: mac.EngineSpec, lanes: int) -> dict:
    """Add one layer's vectors to `files`; return its manifest entry."""
    sched = vectors.schedule(
        plan.x_int, plan.w_int, plan.acc, lanes, row_aligned=plan.argmax is not None
    )
    files[f"vectors/{eng.port}_x.hex"] = vectors.hex_lines(sched.x_mem)
    files[f"vectors/{eng.port}_w.hex"] = vectors.hex_lines(sched.w_mem)
    files[f"vectors/{eng.port}_expected.txt"] = vectors.decimal_lines(sched.expected)
    if plan.requant is not None:
        offsets, codes = vectors.requant_vectors(sched, plan.offsets, plan.requant)
        files[f"vectors/{eng.port}_offset.hex"] = vectors.wide_hex_lines(
            offsets, plan.requant.offset_width
        )
        files[f"vectors/{eng.port}_expected_code.txt"] = vectors.decimal_lines(codes)
    if plan.argmax is not None:
        offsets, classes = vectors.argmax_vectors(sched, plan.offsets)
        files[f"vectors/{eng.port}_offset.hex"] = vectors.wide_hex_lines(
            offsets, plan.argmax.offset_width
        )
        files[f"vectors/{eng.port}_expected_class.txt"] = vectors.decimal_lines(classes)
    return {
        "layer": plan.layer,
        "port": eng.port,
        "multiplier": plan.multiplier.name,
        "module": plan.multiplier.module,
        "signed": plan.signed,
        "lanes": lanes,
        "fan_in": eng.fan_in,
        "jobs": sched.jobs,
        "passes": sched.passes,
        "shape": list(sched.shape),
        "acc_width": eng.acc_width,
        "product_range": [eng.product_min, eng.product_max],
        "requant": None
        if plan.requant is None
        else {
            "m0": plan.requant.m0,
            "shift": plan.requant.shift,
            "zero_point": plan.requant.zero_point,
            "signed": plan.requant.signed,
            "relu": plan.requant.relu,
            "offset_width": plan.requant.offset_width,
        },
        "argmax": None
        if plan.argmax is None
        else {"classes": plan.argmax.classes, "offset_width": plan.argmax.offset_width},
        "row_aligned": sched.row_aligned,
        # sampled rows: the trace's row of each kept one (the checker's index)
        "row_ids": None if plan.row_ids is None else plan.row_ids.tolist(),
    }


def _network_files(files: dict[str, str], spec: net.NetSpec, expected: dict) -> dict:
    """Add the whole-network design, its feeder and vectors to `files`; return the
    manifest's `net` entry."""
    entry = net.manifest_entry(spec, expected["images"])
    try:
        files[f"rtl/{net.NET_MODULE}.v"] = net.net_verilog(spec)
    except ValueError as exc:
        raise VerificationError(str(exc)) from None
    files["tb/hwflow_net_feeder.v"] = (TEMPLATES / "hwflow_net_feeder.v").read_text()
    image = np.transpose(np.asarray(expected["buffers"][0]), (0, 2, 1)).reshape(-1)
    files["vectors/net_image.hex"] = "".join(f"{int(v) & 0xFF:02x}\n" for v in image)
    files["vectors/net_expected.json"] = json.dumps(expected, separators=(",", ":"))
    return entry


def _testbench_files(files: dict[str, str], layers: list[dict]) -> None:
    """Add the engines' harness, the feeder and the cocotb test with its checker."""
    files[f"tb/{HARNESS_TOP}.v"] = engines_harness(layers)
    files["tb/hwflow_feeder.v"] = (TEMPLATES / "hwflow_feeder.v").read_text()
    files[f"tb/{TEST_MODULE}.py"] = (SIM / "top_tb.py").read_text()
    files["tb/hwflow_check.py"] = Path(check.__file__).read_text()
    files["tb/hwflow_verilator.py"] = Path(verilator_kit.__file__).read_text()  # SIM=verilator


def _simulations(
    files: dict[str, str], layers: list[dict], multiplier_files: list[str], net_entry: dict | None
) -> list[dict]:
    """The manifest's `simulations`: `layers`, and `net` (its harness added to `files`)
    when the network is exported."""
    simulations = [
        {
            "name": "layers",
            "harness": HARNESS_TOP,
            "sources": [
                *multiplier_files,
                f"rtl/{mac.TOP_MODULE}.v",
                "tb/hwflow_feeder.v",
                f"tb/{HARNESS_TOP}.v",
            ],
            "cycles": max(lay["passes"] * lay["fan_in"] + mac.LATENCY for lay in layers),
        }
    ]
    if net_entry:
        files[f"tb/{NET_HARNESS}.v"] = net_harness(net_entry)
        simulations.append(
            {
                "name": "net",
                "harness": NET_HARNESS,
                "sources": [
                    *multiplier_files,
                    f"rtl/{net.NET_MODULE}.v",
                    "tb/hwflow_net_feeder.v",
                    f"tb/{NET_HARNESS}.v",
                ],
                "cycles": net_entry["cycles"],
            }
        )
    return simulations


def _multiplier_entries(plans: list[LayerPlan]) -> list[dict]:
    """The manifest's `multipliers`: each one used, once, in first-use order."""
    multipliers: dict[str, dict] = {}
    for plan in plans:
        m = plan.multiplier
        multipliers.setdefault(
            m.name,
            {
                "name": m.name,
                "module": m.module,
                "signed": m.signed,
                "file": f"rtl/{m.module}.v",
                "sha256": io.sha256_bytes(m.verilog.encode()),
                **({"source": m.source} if m.source else {}),
            },
        )
    return list(multipliers.values())
