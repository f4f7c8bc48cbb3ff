"""`hwflow export` + `hwflow verify` on a real (tiny) trained digits run, through the CLI."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from test_rtl_sim import SIMULATORS, elaborates_as_verilog_2005

from hwflow.assign.correct import apply_corrections, offsets_of, record_corrections
from hwflow.cli import cli
from hwflow.multipliers.generators import MultiplierSpec, reference_table, to_verilog
from hwflow.multipliers.library import Library, LibraryEntry, NewEntry
from hwflow.nn.train import TrainConfig, load_run, train
from hwflow.rtl.check import simulation_outputs
from hwflow.rtl.verify import verify
from hwflow.trust import trusting

SPECS = [
    MultiplierSpec("exact", False, {}),
    MultiplierSpec("exact", True, {}),
    MultiplierSpec("trunc", False, {"k": 5, "comp": True}),
    MultiplierSpec("optrunc", False, {"ta": 3, "tb": 3}),
    MultiplierSpec("bam", False, {"hbl": 2, "vbl": 8}),
]


def _library(path: Path) -> Library:
    """A small library committed through the Library API (tables from the numpy models,
    which tests/test_generators.py checks against simulation of the same circuits)."""
    lib = Library.create(path)
    new = []
    for spec in SPECS:
        verilog = to_verilog(spec)
        entry = LibraryEntry(
            name=spec.name,
            signed=spec.signed,
            source={"kind": "generator", "family": spec.family, "params": dict(spec.params)},
            metrics={},
            cost={"energy": 1.0},
        )
        new.append(NewEntry(entry, reference_table(spec), verilog, "{}"))
    lib.commit(new)
    return lib


@pytest.fixture(scope="module")
def run_and_library(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    cfg = TrainConfig()
    cfg = replace(
        cfg,
        data=replace(cfg.data, max_samples=200, augment=False),
        float=replace(cfg.float, epochs=1, max_steps=3),
        qat=replace(cfg.qat, epochs=1, max_steps=2, calibration_batches=2),
        agn=replace(cfg.agn, epochs=1, max_steps=2),
    )
    train(cfg, root / "run", quiet=True)
    lib = _library(root / "lib")
    return root, root / "run", lib


def _assignment(root: Path, lib: Library, layers: dict[str, str], run: Path | None = None) -> Path:
    """An assignment file; with `run`, carrying the free corrections for it."""
    path = root / "assignment.yaml"
    doc = {
        "library": str(lib.path),
        "layers": [{"name": n, "multiplier": m} for n, m in layers.items()],
    }
    if run is not None:
        tables = {n: (np.asarray(lib.table(m)), False) for n, m in layers.items()}
        record_corrections(doc, load_run(run), tables)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.slow
def test_export_then_verify_heterogeneous_digits(run_and_library, make_without_hwflow):
    root, run, lib = run_and_library
    summary = json.loads((run / "summary.json").read_text())
    names = [layer["name"] for layer in summary["layers"]]
    assert len(names) == 4 and not any(layer["signed"] for layer in summary["layers"])
    # three layers on three different approximate designs, the last one left out (exact)
    chosen = dict(zip(names[:3], ["u_trunc_k5_c", "u_optrunc_a3_b3", "u_bam_h2_v8"], strict=True))
    # with the free corrections: every offset in the RTL carries the layer's bias correction
    assignment = _assignment(root, lib, chosen, run)
    assert len(offsets_of(yaml.safe_load(assignment.read_text()), "a")) == 3
    out = root / "design"
    args = ["export", str(run), "--assignment", str(assignment), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--lanes", "10", "--images", "1", "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [lay["multiplier"] for lay in manifest["layers"]] == [*chosen.values(), "u_exact"]
    assert manifest["assigned"] == {**dict.fromkeys(names[:3], True), names[3]: False}
    assert manifest["images"] == 1 and manifest["lanes"] == 10
    accuracy = manifest["accuracy"]  # whole test split, fake-quant vs integer-only
    assert (
        0 <= accuracy["integer_only"] <= 1
        and abs(accuracy["integer_only"] - accuracy["fake_quant"]) < 0.1
    )

    # Icarus and Verilator: both pass, and every sum, code, buffer word and class they
    # wrote is the same
    kept = {s: root / f"kept-{s}" for s in SIMULATORS}
    reports = [verify(out, simulator=s, keep_dir=kept[s], record=False) for s in SIMULATORS]
    assert all(r["ok"] for r in reports)
    outputs = [simulation_outputs(kept[s], manifest) for s in SIMULATORS]
    assert outputs[0] == outputs[1] and "net/net_trace.txt" in outputs[0]

    result = CliRunner().invoke(cli, ["verify", str(out), "--json"])  # default: Verilator
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["simulator"]["name"] == "verilator" and report["simulator"]["why"] == "default"
    assert report["ok"] and report["checked"] == manifest["accumulations"] > 3000
    assert elaborates_as_verilog_2005(out, root) == [
        "hwflow_top", "hwflow_net", "hwflow_harness", "hwflow_net_harness",
    ]  # fmt: skip
    # both generated tops lint clean (Verilator, -Wall less the waived categories)
    assert list(report["lint"]["tops"]) == ["hwflow_top", "hwflow_net"]
    assert report["lint"]["ok"] is True, report["lint"]
    # the engines and the network: two simulations, each with its own harness
    assert [(s["name"], s["harness"], s["ok"]) for s in report["simulations"]] == [
        ("layers", "hwflow_harness", True), ("net", "hwflow_net_harness", True),
    ]  # fmt: skip
    # both compiled by the Verilator verify above: this one compiled nothing
    assert [s["build_cached"] for s in report["simulations"]] == [True, True]
    # the integer-only output stage of every layer but the last, checked code by code
    assert [lay["requant"] is not None for lay in manifest["layers"]] == [True] * 3 + [False]
    assert report["codes_checked"] == sum(lay["jobs"] for lay in manifest["layers"][:3])
    assert report["code_mismatches"] == 0
    # and the classifier stage of the last layer: the image's class, in RTL
    assert [lay["argmax"] is not None for lay in manifest["layers"]] == [False] * 3 + [True]
    assert (report["classes_checked"], report["class_mismatches"]) == (1, 0)
    assert json.loads((out / "verify.json").read_text())["ok"]
    _codes_match_integer_reference(run, out, manifest, names)
    _whole_network_checked(run, out, manifest, report, names)
    _makefile_runs_the_network_without_hwflow(out, root, make_without_hwflow)

    # one corrupted expected code: verify fails on that layer's codes only
    mutant = root / "mutant"
    shutil.copytree(out, mutant)
    path = mutant / "vectors" / f"{manifest['layers'][2]['port']}_expected_code.txt"
    codes = path.read_text().split()
    codes[5] = str((int(codes[5]) + 1) % 256)
    path.write_text("\n".join(codes) + "\n")
    # (--jobs 1: the two simulations one after the other, in this process)
    for simulator in SIMULATORS:
        cmd = ["verify", str(mutant), "--json", "--jobs", "1", "--allow-changed"]
        result = CliRunner().invoke(cli, [*cmd, "--simulator", simulator])
        assert result.exit_code == 2 and f"(layers: {names[2]})" in result.output, result.output
        bad = json.loads(result.output[: result.output.rindex("}") + 1])
        assert (bad["mismatches"], bad["code_mismatches"]) == (0, 1)
        assert bad["jobs"] == 1 and [s["ok"] for s in bad["simulations"]] == [False, True]
        assert bad["layers"][2]["first_code_mismatch"]["job"] == 5

    # a library table that disagrees with its circuit at one operand pair the layer really
    # uses: export trusts the table (emulation and expectation agree), verify must fail
    # on exactly that layer
    port = manifest["layers"][1]["port"]
    x_rows = (out / "vectors" / f"{port}_x.hex").read_text().split()
    w_rows = (out / "vectors" / f"{port}_w.hex").read_text().split()
    x_code, w_code = next(
        (int(x[-2:], 16), int(w[-2:], 16))
        for x, w in zip(x_rows, w_rows, strict=True)
        if int(w[-2:], 16)
    )
    magnitude = abs(w_code - 256 if w_code >= 128 else w_code)
    table = lib.table("u_optrunc_a3_b3")
    table[x_code, magnitude] += 1
    # committed (not just saved over the file, which the library's table_sha256 refuses)
    name = "u_optrunc_a3_b3"
    texts = (lib.netlist_path(name).read_text(), lib.gate_netlist_path(name).read_text())
    lib.commit([NewEntry(lib.get(name), table, *texts)])
    bad = root / "bad"
    result = CliRunner().invoke(cli, [*args[:-1], str(bad), "--lanes", "10", "--images", "1"])
    assert result.exit_code == 0, result.output
    for simulator in SIMULATORS:
        result = CliRunner().invoke(cli, ["verify", str(bad), "--simulator", simulator])
        # (the whole-network design computes with the same wrong circuit)
        assert result.exit_code == 2, result.output
        assert f"layers: {names[1]}, network)" in result.output, result.output

    # the network's engine of layer 0 instantiates another multiplier: only the network
    # fails, and its first mismatch is in that layer's sums
    mutant = root / "net_mutant"
    shutil.copytree(out, mutant)
    path = mutant / "rtl" / "hwflow_net.v"
    text = path.read_text()
    assert text.count("mul_u_trunc_k5_c ") == manifest["net"]["stages"][0]["lanes"] == 16
    path.write_text(text.replace("mul_u_trunc_k5_c ", "mul_u_optrunc_a3_b3 "))
    for simulator in SIMULATORS:
        cmd = ["verify", str(mutant), "--json", "--allow-changed", "--simulator", simulator]
        result = CliRunner().invoke(cli, cmd)
        assert result.exit_code == 2 and "(layers: network)" in result.output, result.output
        bad = json.loads(result.output[: result.output.rindex("}") + 1])
        assert bad["mismatches"] == bad["code_mismatches"] == 0
        assert bad["net"]["first_mismatch"]["tensor"] == f"{names[0]}.acc"
        # the changed network was compiled again; the unchanged engines' build was reused
        cached = [s["build_cached"] for s in bad["simulations"]]
        assert cached == ([True, False] if simulator == "verilator" else [False, False])


def test_export_errors_leave_no_directory(run_and_library, tmp_path):
    root, run, lib = run_and_library
    out = tmp_path / "design"
    cases = [
        (["--lanes", "0"], "invalid value for '--lanes': 0 is not in the range x>=1"),
        (["--images", "100000"], "has only"),
    ]
    assignment = _assignment(tmp_path, lib, {})
    for extra, message in cases:
        result = CliRunner().invoke(
            cli, ["export", str(run), "--assignment", str(assignment), "--out", str(out), *extra]
        )
        assert result.exit_code == 2 and message in result.output, result.output
        assert not out.exists()
    bad = _assignment(tmp_path, lib, {"no_such_layer": "u_exact"})
    result = CliRunner().invoke(
        cli, ["export", str(run), "--assignment", str(bad), "--out", str(out)]
    )
    assert result.exit_code == 2 and "no_such_layer" in result.output
    assert not out.exists() and list(tmp_path.glob(".design*")) == []


def test_integer_inference_matches_the_emulation(run_and_library, monkeypatch):
    """Integer-only inference: layer 0's sums equal the trace's; every layer's t is its
    sums minus the zero-point correction plus the integer bias; classes mostly agree."""
    import torch

    from hwflow.nn import apply_tables, trace
    from hwflow.nn.run import load_run
    from hwflow.rtl.intinfer import integer_accuracies, integer_accuracy, integer_inference

    _, run_dir, lib = run_and_library
    run = load_run(run_dir)
    names = [layer.name for layer in run.summary.layers]
    apply_tables(run.model, {names[0]: (lib.table("u_trunc_k5_c"), False)})
    x = run.data.test.x[:16]
    result = integer_inference(run.model, x)
    traced = trace(run.model, x)
    assert torch.equal(result.tensors[f"{names[0]}.acc"], traced[names[0]].acc)
    for name in names:
        acc = result.tensors[f"{name}.acc"]
        assert acc.dtype == torch.int64 and result.tensors[f"{name}.t"].dtype == torch.int64
    with torch.no_grad():
        fake = run.model(x).argmax(dim=1)
    assert (fake == result.classes).float().mean() >= 0.75
    acc = integer_accuracy(run.model, run.data.test.x, run.data.test.y)
    assert 0.0 <= acc <= 1.0 and abs(acc - run.evaluate(run.model)) < 0.1
    # top-1 is exactly the argmax class's accuracy (ties broken the hardware's way);
    # top-k grows with k, and k = number of classes counts every image
    both = integer_accuracies(run.model, run.data.test.x, run.data.test.y, topk=(1, 2, 5, 10))
    assert both[1] == acc and acc <= both[2] <= both[5] <= both[10] == 1.0
    import hwflow.rtl.intinfer as intinfer

    y, ties = run.data.test.y[:16], torch.zeros_like(result.logits)
    # every class ties: argmax says class 0, so top-1 counts class 0, top-3 classes 0-2
    monkeypatch.setattr(intinfer, "integer_inference", lambda m, xb: replace(result, logits=ties))
    tied = integer_accuracies(run.model, x, y, topk=(1, 3))
    assert tied[1] == int((y == 0).sum()) / 16 and tied[3] == int((y < 3).sum()) / 16


def test_corrections_reach_emulation_and_integer_bias(run_and_library, tmp_path):
    """Bias correction is integer arithmetic: each layer's emulated output is exactly
    (sums - z * sum w + offset) * s, and integer inference (whose integer bias the RTL's
    per-lane offsets are made of) adds the same offset to the rounded bias."""
    import torch

    from hwflow.nn import apply_tables, approx_layers, trace
    from hwflow.rtl.intinfer import integer_inference, requant_stages

    _, run_dir, lib = run_and_library
    names = [layer.name for layer in load_run(run_dir).summary.layers]
    chosen = dict(zip(names[:3], ["u_trunc_k5_c", "u_optrunc_a3_b3", "u_bam_h2_v8"], strict=True))
    doc = yaml.safe_load(_assignment(tmp_path, lib, chosen, run_dir).read_text())
    offsets = offsets_of(doc, "doc")
    assert set(offsets) == set(chosen) and all(v.any() for v in offsets.values())
    run = load_run(run_dir)
    tables = {n: (np.asarray(lib.table(m)), False) for n, m in chosen.items()}
    apply_tables(run.model, tables | {names[3]: (lib.table("u_exact"), False)})
    apply_corrections(run, run.model, doc, "doc")
    x = run.data.test.x[:4]
    traced, result = trace(run.model, x), integer_inference(run.model, x)
    stages = requant_stages(run.model)
    assert set(stages) == set(names)
    for name, layer in approx_layers(run.model):
        tr = traced[name]
        off = torch.from_numpy(offsets.get(name, np.zeros(layer.weight.shape[0], np.int64)))
        sums = tr.acc - tr.zero_point * tr.w_int.sum(1, keepdim=True) + off.reshape(1, 1, -1)
        out = tr.output
        meta = (out.shape[0], *out.shape[2:]) if out.dim() == 4 else tuple(out.shape[:-1])
        scaled = torch.round(out.double() / (tr.x_scale * tr.w_scale.double()))
        assert torch.equal(scaled.to(torch.int64), layer._rows_to_output(sums, meta))
        bias = torch.round(layer.bias.detach().double() / (tr.x_scale * float(tr.w_scale)))
        assert torch.equal(stages[name].bias_int, bias.to(torch.int64) + off)
    # (later layers' input codes come from integer requantization, not the fake-quant's)
    first = traced[names[0]]
    assert torch.equal(result.tensors[f"{names[0]}.acc"], first.acc)
    t0 = result.tensors[f"{names[0]}.t"]
    sums = first.acc - first.zero_point * first.w_int.sum(1, keepdim=True)
    bias0 = stages[names[0]].bias_int.reshape(1, 1, -1)
    assert torch.equal(
        t0, approx_layers(run.model)[0][1]._rows_to_output(sums + bias0, (4, *t0.shape[2:]))
    )


def _makefile_runs_the_network_without_hwflow(out: Path, root: Path, make) -> None:
    """Plain `make` in a copy, `import hwflow` poisoned: the network check runs too."""
    copy = root / "make_copy"
    shutil.copytree(out, copy)
    proc = make(copy)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((copy / "sim_build" / "hwflow_verify.json").read_text())
    assert report["ok"] and report["net"]["ok"] and report["net"]["checked"] == 7882


@pytest.mark.slow
def test_whole_network_classifies_several_images(run_and_library):
    """Every layer on an approximate design; 16 images one after the other through
    hwflow_net (and the per-layer engines): every intermediate tensor and class equal to
    the integer reference's, over 100,000 accumulations in all. About
    110 s on 2 cores in Icarus; here on the default simulator, Verilator (the bench
    compares both on a 16-image digits export)."""
    import torch

    from hwflow.assign.assignment import assignment_tables
    from hwflow.nn import apply_tables
    from hwflow.nn.run import load_run
    from hwflow.rtl.intinfer import integer_inference

    root, run, lib = run_and_library
    summary = json.loads((run / "summary.json").read_text())
    names = [layer["name"] for layer in summary["layers"]]
    # (not u_optrunc_a3_b3: test_export_then_verify_heterogeneous_digits corrupts its table)
    designs = ["u_bam_h2_v8", "u_trunc_k5_c", "u_bam_h2_v8", "u_trunc_k5_c"]
    assignment = _assignment(root, lib, dict(zip(names, designs, strict=True)))
    images = 16
    out = root / "design_images"
    args = ["export", str(run), "--assignment", str(assignment), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--images", str(images)])
    assert result.exit_code == 0 and "whole network in RTL" in result.output, result.output
    result = CliRunner().invoke(cli, ["verify", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    net = report["net"]
    assert report["ok"] and net["ok"] and net["images"] == images
    assert report["checked"] == net["accumulations"] == images * 3594
    assert report["accumulations_checked"] == 2 * images * 3594 > 100_000
    assert net["checked"] == images * (64 * (1 + 16 + 32) + 16 * 64 + 4 * 32 + 3594)
    tables = assignment_tables(assignment, lib)
    model = load_run(run).model
    apply_tables(model, {n: (t, s) for n, (_, t, s) in tables.items()})
    ref = integer_inference(model, load_run(run).data.test.x[:images])
    assert net["classes"] == ref.classes.tolist() == report["layers"][3]["classes"]
    assert torch.equal(ref.classes, torch.tensor(net["expected_classes"]))


def test_export_without_the_network(run_and_library, tmp_path):
    from hwflow import io

    _, run, lib = run_and_library
    out = io.claim_dir(tmp_path / "design", "export")  # as an earlier export left it
    (out / "stale.txt").write_text("from the earlier export")
    assignment = _assignment(tmp_path, lib, {})
    args = ["export", str(run), "--assignment", str(assignment), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--images", "1", "--no-network", "--rows", "7"])
    assert result.exit_code == 0 and "whole network" not in result.output, result.output
    assert not (out / "stale.txt").exists()  # an earlier export is replaced whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["assignment.yaml", "design"]
    assert result.output.count("(7 sampled rows)") == 3, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    # 64, 64 and 16 rows sampled down to 7 (every channel of each); the classifier's one fits
    assert [len(lay["row_ids"] or []) for lay in manifest["layers"]] == [7, 7, 7, 0]
    assert [lay["jobs"] for lay in manifest["layers"]] == [7 * 16, 7 * 32, 7 * 32, 10]
    assert manifest["net"] is None and not (out / "rtl" / "hwflow_net.v").exists()
    assert "hwflow_net" not in (out / "tb" / "hwflow_harness.v").read_text()
    assert [sim["name"] for sim in manifest["simulations"]] == ["layers"]
    assert "PARTS := layers\n" in (out / "Makefile").read_text()
    # top-1 and top-5 over the whole test split, both pipelines; top-5 never below top-1
    top1, top5 = manifest["accuracy"], manifest["accuracy_top5"]
    for how in ("fake_quant", "integer_only"):
        assert 0.0 <= top1[how] <= top5[how] <= 1.0, (top1, top5)
    assert "top-1 / top-5" in result.output


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_export_replaces_only_an_earlier_export(run_and_library, tmp_path):
    """--out may name an earlier export (replaced whole); anything else, the run itself
    included, is refused before any work and left exactly as it was."""
    _, run, lib = run_and_library
    assignment = _assignment(tmp_path, lib, {})
    fast = ["--images", "1", "--no-network", "--rows", "2"]

    def export(out: Path):
        args = ["export", str(run), "--assignment", str(assignment), "--out", str(out), *fast]
        return CliRunner().invoke(cli, args)

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    afile = tmp_path / "afile"
    afile.write_text("keep")
    run_before = _tree(run)
    for out in (run, mine, run.parent):
        result = export(out)
        assert result.exit_code == 2, result.output
        assert result.output == f"error: {out} exists and is not an hwflow export\n"
    result = export(afile)
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
    assert result.output.startswith("error: ") and "is a file" in result.output
    assert _tree(run) == run_before
    assert _tree(mine) == {"notes.txt": b"keep"} and afile.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "assignment.yaml", "mine"]
    # replacing an earlier export: test_export_without_the_network

    # an export made before directories carried a marker is recognised by its manifest
    # (every file it lists present); a look-alike whose listed files are missing is not
    old = tmp_path / "old-export"
    assert export(old).exit_code == 0
    (old / ".hwflow").unlink()
    (old / "stale.txt").write_text("from the earlier export")
    fake = tmp_path / "fake-export"
    fake.mkdir()
    (fake / "manifest.json").write_text((old / "manifest.json").read_text())
    result = export(fake)
    assert result.output == f"error: {fake} exists and is not an hwflow export\n"
    assert sorted(p.name for p in fake.iterdir()) == ["manifest.json"]
    result = export(old)
    assert result.exit_code == 0, result.output
    assert not (old / "stale.txt").exists() and (old / ".hwflow").read_text() == "export\n"


def test_network_design_only_for_plain_stacks(run_and_library):
    from collections import OrderedDict

    from torch import nn

    from hwflow.nn.run import load_run
    from hwflow.rtl import export, net

    _, run_dir, lib = run_and_library
    model = load_run(run_dir).model
    x = load_run(run_dir).data.test.x[:2]

    def plans_of(model, x, requant=True):
        def exact(signed):
            name = lib.exact_name(signed)
            return name, np.asarray(lib.table(name))

        rtl = lambda name: export.library_rtl(lib, name)  # noqa: E731
        return export.trace_plans(model, x, {}, rtl, exact, requant=requant)[0]

    spec = net.plan_network(model, x, plans_of(model, x))
    assert [type(s).__name__ for s in spec.stages] == ["MacStage"] * 2 + [
        "PoolStage", "MacStage", "PoolStage", "MacStage",
    ]  # fmt: skip
    conv = spec.stages[1]
    assert conv.window == net.Window((3, 3), (1, 1), (1, 1), (1, 1))
    assert (conv.engine.lanes, conv.engine.fan_in, conv.positions) == (32, 144, 64)
    linear = spec.stages[-1]  # over the flattened 32 x 2 x 2 map
    assert linear.window.kernel == (2, 2) and linear.engine.fan_in == 128
    assert linear.engine.argmax is not None and linear.out is None
    # not plain stacks: no integer stages, a module without an integer form, flat input
    assert net.plan_network(model, x, plans_of(model, x, requant=False)) is None
    children = list(model.named_children())
    odd = nn.Sequential(OrderedDict([*children[:2], ("tanh", nn.Tanh()), *children[2:]]))
    assert net.plan_network(odd, x, plans_of(model, x)) is None
    assert net.plan_network(model, x.flatten(1), plans_of(model, x)) is None


def _whole_network_checked(run_dir, out, manifest, report, names):
    """hwflow_net ran the image from its input codes to its class; every buffer and every
    engine's sums were compared, and the class is the integer reference's."""
    import torch

    from hwflow.assign.assignment import assignment_tables
    from hwflow.nn import apply_tables
    from hwflow.nn.run import load_run
    from hwflow.rtl.intinfer import integer_inference

    net = manifest["net"]
    assert [s["kind"] for s in net["stages"]] == ["mac", "mac", "pool", "mac", "pool", "mac"]
    assert [b["tensor"] for b in net["buffers"]] == [
        "input", f"{names[0]}.codes", f"{names[1]}.codes", "4.pool", f"{names[2]}.codes",
        "7.pool",
    ]  # fmt: skip
    assert [(b["channels"], b["height"], b["width"]) for b in net["buffers"]] == [
        (1, 8, 8), (16, 8, 8), (32, 8, 8), (32, 4, 4), (32, 4, 4), (32, 2, 2),
    ]  # fmt: skip
    result = report["net"]
    assert result["ok"] and result["mismatches"] == 0 and result["class_mismatches"] == 0
    sizes = {t["tensor"]: t["checked"] for t in result["tensors"]}
    assert sizes["input"] == 64 and sizes["4.pool"] == sizes[f"{names[2]}.codes"] == 512
    assert result["accumulations"] == report["checked"] == 3594  # same sums, other design
    run = load_run(run_dir)
    assigned = assignment_tables(manifest["assignment"], manifest["library"])
    apply_tables(run.model, {n: (t, s) for n, (_, t, s) in assigned.items()})
    doc = yaml.safe_load(Path(manifest["assignment"]).read_text())
    apply_corrections(run, run.model, doc, manifest["assignment"])
    ref = integer_inference(run.model, run.data.test.x[:1])
    assert result["classes"] == ref.classes.tolist() == report["layers"][3]["classes"]
    expected = json.loads((out / "vectors" / "net_expected.json").read_text())
    pooled = torch.tensor(expected["buffers"][5])  # (1, 4 positions, 32 channels)
    want = ref.tensors[f"{names[3]}.input"].reshape(1, 32, 4).permute(0, 2, 1)
    assert torch.equal(pooled, want)  # PyTorch's flatten order, position-major buffer


def _codes_match_integer_reference(run_dir, out, manifest, names):
    """The exported codes of layer 0 are the integer-only reference's input codes of the
    next layer (no pooling between them), position by position."""
    import torch

    from hwflow.assign.assignment import assignment_tables
    from hwflow.nn import apply_tables
    from hwflow.nn.run import load_run
    from hwflow.rtl.intinfer import integer_inference

    run = load_run(run_dir)
    assigned = assignment_tables(manifest["assignment"], manifest["library"])
    apply_tables(run.model, {n: (t, s) for n, (_, t, s) in assigned.items()})
    # with the assignment's bias corrections (without them layer 0's codes differ)
    doc = yaml.safe_load(Path(manifest["assignment"]).read_text())
    apply_corrections(run, run.model, doc, manifest["assignment"])
    ref = integer_inference(run.model, run.data.test.x[: manifest["images"]])
    first = manifest["layers"][0]
    g, m, ng = first["shape"]
    codes = np.loadtxt(out / "vectors" / f"{first['port']}_expected_code.txt", dtype=np.int64)
    nxt = ref.tensors[f"{names[1]}.input"]  # (N, C, H, W) codes
    want = nxt.permute(0, 2, 3, 1).reshape(g, m, ng)
    assert torch.equal(torch.from_numpy(codes.reshape(g, m, ng)), want)


def test_export_reads_a_relative_library_against_the_assignment_folder(
    run_and_library, tmp_path, monkeypatch
):
    """One rule for `library: ../lib`: the assignment file's folder, never the working
    directory, even where the same relative path names a folder there too."""
    _, run, lib = run_and_library
    shutil.copytree(lib.path, tmp_path / "a" / "lib")
    assignment = tmp_path / "a" / "point" / "assignment.yaml"
    assignment.parent.mkdir()
    assignment.write_text(yaml.safe_dump({"library": "../lib", "layers": []}))
    (tmp_path / "b" / "lib").mkdir(parents=True)  # ../lib seen from the working directory
    (tmp_path / "b" / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "b" / "cwd")
    args = ["export", str(run), "--assignment", str(assignment), "--out", str(tmp_path / "d")]
    # the library and assignment are read before the split is checked: this error means
    # both resolved, and stops before the (slow) RTL work
    result = CliRunner().invoke(cli, [*args, "--images", "100000", "--no-network"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: --images 100000: the test split has only ")


MLP = """
from torch import nn


def mlp(num_classes=10, hidden=12):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
    )
"""


@pytest.mark.slow
def test_network_with_one_position_maps_verifies_and_lints_clean(run_and_library, tmp_path):
    """An MLP: the hidden layer's output is a map of one position, held in a register
    rather than a depth-1 Memory (whose zero-bit address Verilog writes as [-1:0])."""
    root, _, lib = run_and_library
    (tmp_path / "mlp.py").write_text(MLP)
    cfg = TrainConfig()
    cfg = replace(
        cfg,
        model=replace(cfg.model, factory=f"{tmp_path / 'mlp.py'}:mlp"),
        data=replace(cfg.data, max_samples=200, augment=False),
        float=replace(cfg.float, epochs=1, max_steps=3),
        qat=replace(cfg.qat, epochs=1, max_steps=2, calibration_batches=2),
        agn=replace(cfg.agn, epochs=1, max_steps=2),
    )
    with trusting(cfg.model.factory):
        train(cfg, tmp_path / "run", quiet=True)
        _mlp_checked(tmp_path, lib)


def _mlp_checked(tmp_path: Path, lib: Library) -> None:
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    names = [layer["name"] for layer in summary["layers"]]
    assert names == ["1", "3"]
    assignment = _assignment(tmp_path, lib, {"1": "u_trunc_k5_c"}, tmp_path / "run")
    out = tmp_path / "design"
    args = ["--trust-factory", "export", str(tmp_path / "run"), "--assignment", str(assignment)]
    result = CliRunner().invoke(cli, [*args, "--out", str(out), "--lanes", "4", "--images", "2"])
    assert result.exit_code == 0, result.output
    net = json.loads((out / "manifest.json").read_text())["net"]
    assert [(b["channels"], b["height"], b["width"]) for b in net["buffers"]] == [
        (1, 8, 8), (12, 1, 1),
    ]  # fmt: skip
    assert "[-1:0]" not in (out / "rtl" / "hwflow_net.v").read_text()
    report = verify(out, record=False)
    assert report["ok"] and report["net"]["ok"] and report["net"]["mismatches"] == 0, report
    assert len(report["net"]["classes"]) == 2 and report["net"]["class_mismatches"] == 0
    assert report["lint"]["ok"] is True, report["lint"]
