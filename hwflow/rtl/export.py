"""`hwflow export`: a trained run + its assignment -> a verifiable design directory.

The network runs once on N test images in approx mode (every approximate layer with its
assigned multiplier's table); `hwflow.nn.trace` records each layer's im2col operand rows,
weights and accumulators, and `design.write_design` turns them into the MAC array, the
operand streams and the expected sums. Layers the assignment leaves out run on the
library's exact multiplier of their signedness (recorded as `assigned: false`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwflow import io
from hwflow.artifacts import Manifest
from hwflow.errors import (
    AssignmentError,
    HwflowError,
    LibraryError,
    RunError,
    VerificationError,
)
from hwflow.rtl import design, mac, net

EXPORT_KIND = "export"  # the export directory's marker: only an earlier export is replaced


def generator_rtl(
    name: str, spec: Any, source: dict | None = None, module: str | None = None
) -> mac.MultiplierRTL:
    """A built-in multiplier as its own Verilog module (Amaranth; default `mul_<name>`)."""
    from hwflow.multipliers import generators

    module = module or f"mul_{mac.port_name(name)}"
    text = generators.to_verilog(spec, module_name=module)
    return mac.MultiplierRTL(name, module, spec.signed, text, source)


def netlist_rtl(
    name: str,
    netlist: str,
    top: str,
    ports: list[str],
    signed: bool,
    source: dict | None = None,
    module: str | None = None,
) -> mac.MultiplierRTL:
    """A user netlist plus the wrapper (default `mul_<name>`) that gives its module the
    lane's a, b, o ports."""
    if len(ports) != 3:
        raise LibraryError(f"multiplier {name}: expected 3 port names (a, b, o), got {ports}")
    module = module or f"mul_{mac.port_name(name)}"
    if module == top:
        raise LibraryError(f"multiplier {name}: netlist module {top} clashes with its wrapper")
    wrapper = design.render(
        "mult_wrapper.v.tmpl",
        module=module,
        top=top,
        signedness="signed" if signed else "unsigned",
        port_a=ports[0],
        port_b=ports[1],
        port_o=ports[2],
    )
    return mac.MultiplierRTL(name, module, signed, netlist.rstrip() + "\n\n" + wrapper, source)


# modules an export defines besides its multipliers (the designs, harnesses, feeders)
HWFLOW_MODULES = frozenset(
    {"hwflow_top", "hwflow_net", "hwflow_harness", "hwflow_net_harness", "hwflow_feeder",
     "hwflow_net_feeder"}
)  # fmt: skip


def multiplier_modules(lib: Any, names: list[str]) -> dict[str, str]:
    """{entry: Verilog module} for the multipliers of one export, unique by construction:
    hwflow's module for an entry (`mul_<name>`, the generated design or a netlist's
    wrapper) takes a numbered suffix when a user netlist's own module, another entry's
    module or one of hwflow's design modules already has that name."""
    taken = set(HWFLOW_MODULES)
    for name in names:
        source = lib.get(name).source
        if source.get("kind") == "netlist" and isinstance(source.get("top"), str):
            taken.add(source["top"])
    out: dict[str, str] = {}
    for name in sorted(set(names)):
        base = module = f"mul_{mac.port_name(name)}"
        i = 1
        while module in taken:
            i += 1
            module = f"{base}_{i}"
        taken.add(module)
        out[name] = module
    return out


def library_rtl(lib: Any, name: str, module: str | None = None) -> mac.MultiplierRTL:
    """The RTL of library entry `name` (generator params or stored netlist), its module
    named `module` (default `mul_<name>`; see `multiplier_modules`)."""
    from hwflow.multipliers.generators import MultiplierSpec

    entry = lib.get(name)
    source = dict(entry.source)
    kind = source.get("kind")
    if kind == "generator":
        spec = MultiplierSpec(source["family"], bool(entry.signed), dict(source["params"]))
        return generator_rtl(name, spec, source, module)
    if kind == "netlist":
        path = Path(lib.netlist_path(name))
        if not path.is_file():
            raise LibraryError(f"multiplier {name}: netlist {path} not found")
        text = path.read_text()
        # netlist_sha256: of the stored (flattened) copy; sha256 keys the user's file
        expected = source.get("netlist_sha256") or source.get("sha256")
        if expected and io.sha256_bytes(text.encode()) != expected:
            raise LibraryError(
                f"multiplier {name}: {path} changed since characterization (sha256 differs); "
                "rerun `hwflow characterize`"
            )
        return netlist_rtl(
            name, text, source["top"], list(source["ports"]), entry.signed, source, module
        )
    raise LibraryError(f"multiplier {name}: unknown source kind {kind!r}")


def check_netlist_modules(rtls: list[mac.MultiplierRTL]) -> None:
    """Two different netlists may not define the same Verilog module (one design, one
    namespace)."""
    owners: dict[str, str] = {}
    for rtl in rtls:
        src = rtl.source or {}
        if src.get("kind") != "netlist":
            continue
        top = src["top"]
        if top in HWFLOW_MODULES:
            raise VerificationError(
                f"multiplier {rtl.name}: its netlist's module {top} has the name of one of "
                "hwflow's own modules; rename the module and recharacterize it"
            )
        if owners.get(top, rtl.name) != rtl.name:
            raise VerificationError(
                f"multipliers {owners[top]} and {rtl.name} both define Verilog module {top}; "
                "rename one netlist's module and recharacterize it"
            )
        owners[top] = rtl.name


def trace_plans(
    model: Any,
    x: Any,
    assigned: Mapping[str, tuple[str, np.ndarray, bool]],
    rtl_for: Callable[[str], mac.MultiplierRTL],
    exact_for: Callable[[bool], tuple[str, np.ndarray]],
    requant: bool = True,
) -> tuple[list[design.LayerPlan], dict[str, bool]]:
    """Apply the tables, trace one forward of `x`, and plan every approximate layer.

    Returns the plans (network order) and {layer: assigned?}. With `requant`, layers
    followed by another approximate layer get the integer-only output stage
    (`hwflow.rtl.intinfer`) whose codes verify checks too.
    """
    import torch

    from hwflow import nn as hnn
    from hwflow.rtl.intinfer import requant_stages

    layers = dict(hnn.approx_layers(model))
    unknown = sorted(set(assigned) - set(layers))
    if unknown:
        raise AssignmentError(f"assignment names layers the network lacks: {unknown}")
    tables: dict[str, tuple[str, np.ndarray, bool]] = {}
    for name, layer in layers.items():
        if name in assigned:
            tables[name] = assigned[name]
        else:
            mult, table = exact_for(bool(layer.signed))
            tables[name] = (mult, table, bool(layer.signed))
    hnn.apply_tables(model, {n: (t, s) for n, (_, t, s) in tables.items()})
    with torch.no_grad():
        traces = hnn.trace(model, x)
    stages = requant_stages(model) if requant else {}
    rtls: dict[str, mac.MultiplierRTL] = {}
    plans = []
    for name in layers:
        mult, table, signed = tables[name]
        if mult not in rtls:
            rtls[mult] = rtl_for(mult)
        tr = traces[name]
        requant, offsets, argmax = None, None, None
        if name in stages:
            st = stages[name]
            w_int = tr.w_int.numpy()
            g, _, ng = w_int.shape
            offsets = st.bias_int.numpy().reshape(g, ng) - st.input_zero_point * w_int.sum(1)
        if name in stages and st.classes:
            argmax = mac.Argmax(st.classes, int(offsets.min()), int(offsets.max()))
        elif name in stages:
            requant = mac.Requant(
                st.m0,
                st.shift,
                st.zero_point,
                st.signed,
                st.relu,
                int(offsets.min()),
                int(offsets.max()),
            )
        plans.append(
            design.LayerPlan(
                layer=name,
                multiplier=rtls[mult],
                table=np.asarray(table),
                signed=bool(tr.signed),
                x_int=tr.x_int.numpy(),
                w_int=tr.w_int.numpy(),
                acc=tr.acc.numpy(),
                requant=requant,
                offsets=offsets,
                argmax=argmax,
            )
        )
    check_netlist_modules(list(rtls.values()))
    return plans, {name: name in assigned for name in layers}


@io.exclusive_writer("export", lambda a: a["out"])
def export_run(
    run_dir: str | os.PathLike[str],
    assignment: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    lanes: int = 16,
    images: int = 16,
    library: str | os.PathLike[str] | None = None,
    split: str = "test",
    checkpoint: str | os.PathLike[str] | None = None,
    network: bool = True,
    rows: int | None = None,
) -> dict:
    """Export the run's network under `assignment` to `out` (atomically). Returns the
    manifest. `checkpoint`: weights to deploy instead of the run's (a retrain checkpoint,
    `retrain.json`'s `checkpoint`). `network`: also export the whole network
    (`hwflow.rtl.net`, plain conv/ReLU/max-pool/flatten/linear stacks only). `rows`: at
    most this many operand rows per layer for the per-layer engines (`write_design`)."""
    from hwflow import nn as hnn
    from hwflow.artifacts import Assignment
    from hwflow.assign.assignment import assignment_tables
    from hwflow.assign.correct import apply_corrections
    from hwflow.multipliers.library import Library
    from hwflow.nn import layer_info
    from hwflow.nn.run import load_run, load_weights

    if images < 1:
        raise VerificationError(f"--images must be >= 1, got {images}")
    if lanes < 1:
        raise VerificationError(f"--lanes must be >= 1, got {lanes}")
    if rows is not None and rows < 1:
        raise VerificationError(f"--rows must be >= 1, got {rows}")
    adopt_earlier_export(out)
    io.check_dir(out, EXPORT_KIND)  # before the work; atomic_dir checks again at the end
    assignment = Path(assignment)
    chosen = Assignment.load(assignment)
    lib_path = chosen.library_path(library)
    lib = Library.open(lib_path)
    run = load_run(run_dir)
    if checkpoint is not None:
        load_weights(run.model, checkpoint)
    signedness = {info.name: bool(info.signed) for info in layer_info(run.model)}
    assigned = assignment_tables(chosen, lib, layers=signedness)
    # the assignment's free corrections: accumulator offsets join the integer bias (and
    # so the engines' offsets); batch norm is re-estimated unless retrained weights bring it
    hnn.apply_tables(run.model, {n: (t, s) for n, (_, t, s) in assigned.items()})
    apply_corrections(run, run.model, chosen.to_dict(), str(assignment), bn=not checkpoint)
    data = run.data.split(split)
    if images > len(data):
        raise RunError(f"--images {images}: the {split} split has only {len(data)} images")
    x = data.x[:images]

    def exact_for(signed: bool) -> tuple[str, np.ndarray]:
        name = lib.exact_name(signed)
        return name, np.asarray(lib.table(name))

    used = [mult for mult, _, _ in assigned.values()]
    used += [lib.exact_name(s) for s in {s for n, s in signedness.items() if n not in assigned}]
    modules = multiplier_modules(lib, used)
    plans, is_assigned = trace_plans(
        run.model, x, assigned, lambda n: library_rtl(lib, n, modules[n]), exact_for
    )
    meta = {
        "run": str(Path(run_dir).resolve()),
        "assignment": str(assignment.resolve()),
        "library": str(lib_path.resolve()),
        "split": split,
        "images": images,
        "assigned": is_assigned,
        "weights": str(Path(checkpoint).resolve()) if checkpoint else "checkpoints/agn.pt",
        **split_accuracy(run, data),
    }
    whole = None
    spec = net.plan_network(run.model, x, plans) if network else None
    if spec is not None:  # a plain stack: the whole network in RTL too
        whole = (spec, net.expected_tensors(run.model, x, spec))
    elif network:
        meta["net_skipped"] = NOT_A_PLAIN_STACK
    with io.atomic_dir(out, EXPORT_KIND) as tmp:
        return design.write_design(tmp, plans, lanes, meta, whole, rows=rows)


def adopt_earlier_export(out: str | os.PathLike[str]) -> None:
    """Mark `out` as an export when an export made before directories carried a marker
    left it: its manifest is one (`Manifest.load`) and every file it lists is present.
    Anything else stays unmarked (and so is never replaced)."""
    out = Path(out)
    if not out.is_dir() or (out / io.DIR_MARK).exists():
        return
    try:
        files = Manifest.load(out)["files"]
    except (HwflowError, OSError):
        return
    if files and all(_inside(out, rel) and (out / rel).is_file() for rel in files):
        io.write_text(out / io.DIR_MARK, EXPORT_KIND + "\n")


def _inside(root: Path, rel: Any) -> bool:
    return isinstance(rel, str) and (root / rel).resolve().is_relative_to(root.resolve())


NOT_A_PLAIN_STACK = (
    "whole-network RTL (hwflow_net) not exported: the network is not a plain nn.Sequential "
    "stack of conv / ReLU / max-pool / flatten / linear layers (e.g. it has residual "
    "additions, batch norm, average pooling or grouped convs); every approximate layer's "
    "MAC engine is exported and verified with its recorded vectors"
)


def split_accuracy(run: Any, data: Any) -> dict[str, Any]:
    """The manifest's `accuracy` (top-1) and `accuracy_top5` on the whole split with the
    exported tables: the fake-quant emulation and the integer-only pipeline
    (`hwflow.rtl.intinfer`; None where the network has no integer form, and then
    `integer_skipped` says why)."""
    from hwflow.nn.run import accuracies
    from hwflow.rtl.intinfer import integer_accuracies

    fake = accuracies(run.model, data, run.config.data.eval_batch_size)
    why = None
    try:
        integer: dict[int, float] | None = integer_accuracies(run.model, data.x, data.y)
    except HwflowError as e:
        integer, why = None, str(e)
    out: dict[str, Any] = {
        key: {"fake_quant": fake[k], "integer_only": None if integer is None else integer[k]}
        for key, k in (("accuracy", 1), ("accuracy_top5", 5))
    }
    if why is not None:
        out["integer_skipped"] = why
    return out
