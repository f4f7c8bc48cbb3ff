"""Bench: `hwflow verify` on Verilator vs Icarus (and vs the PyTorch emulation's check).

For each export, every simulation (the per-layer engines, the whole network) runs on
each simulator one after the other (`--jobs 1`), so the compile (build) and the
simulation (run) are timed apart, in wall and in CPU seconds (the compiler's and
simulator's processes: the load-independent figure on a shared machine). Prints
accumulations per second with the compile included and without, the Verilator/Icarus
ratios, and whether both simulators wrote the same values bit for bit. The same
operands' accumulators are also recomputed with the emulation's table kernel
(`hwflow.nn.kernels.table_matmul`) for scale.

    .venv/bin/python -m bench.verify EXPORT_DIR [--simulators verilator icarus]
    .venv/bin/python -m bench.verify --resnet WORK_DIR   # a Fashion-MNIST ResNet-20 export
    (EXPORT_DIR from `hwflow export RUN --assignment A --out EXPORT_DIR --images 16`)

Targets: Verilator >= 10x Icarus on the simulation of the whole network;
every accumulation of one ResNet-20 image (no `--rows` sampling) verified in < 2 min.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench._common import Row
from hwflow.artifacts import (
    ASSIGNMENT_FILE,
    SUMMARY_FILE,
    Assignment,
    LayerChoice,
    Manifest,
    RunSummary,
)
from hwflow.flow import FlowConfig, run_flow
from hwflow.multipliers.library import Library
from hwflow.nn.kernels import table_matmul
from hwflow.rtl.check import simulation_outputs
from hwflow.rtl.vectors import job_slots
from hwflow.rtl.verify import verify

SIMULATORS = ("verilator", "icarus")
FASHION_MNIST = Path(os.environ.get("HWFLOW_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def _mem(path: Path, lanes: int) -> np.ndarray:
    rows = path.read_text().split()
    data = np.frombuffer(bytes.fromhex("".join(rows)), dtype=np.uint8)
    return data.reshape(len(rows), lanes)[:, ::-1]


def layer_operands(export_dir: Path, layer: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_int (G,M,K), w_int (G,K,Ng), expected (G,M,Ng)) back from the exported files."""
    lanes, k = layer["lanes"], layer["fan_in"]
    g, m, ng = layer["shape"]
    jobs = g * m * ng

    slots = job_slots(jobs, lanes, ng if layer.get("row_aligned") else None)

    def per_job(name: str) -> np.ndarray:
        mem = _mem(export_dir / "vectors" / f"{layer['port']}_{name}.hex", lanes)
        return mem.reshape(-1, k, lanes).transpose(0, 2, 1).reshape(-1, k)[slots]

    x_jobs, w_jobs = per_job("x"), per_job("w")
    x = x_jobs.reshape(g, m, ng, k)[:, :, 0, :].astype(np.int64)
    if layer["signed"]:
        x = np.where(x >= 128, x - 256, x)
    w_codes = w_jobs.reshape(g, m, ng, k)[:, 0].astype(np.int64)
    w = np.where(w_codes >= 128, w_codes - 256, w_codes).transpose(0, 2, 1)
    expected = np.loadtxt(export_dir / "vectors" / f"{layer['port']}_expected.txt", np.int64)
    return x, w, expected.reshape(g, m, ng)


def emulation_check(export_dir: Path, manifest: dict) -> tuple[float, int]:
    lib = Library.open(manifest["library"])
    data = []
    for layer in manifest["layers"]:
        x, w, expected = layer_operands(export_dir, layer)
        table = lib.table(layer["multiplier"])
        data.append((torch.from_numpy(x), torch.from_numpy(w), expected, table, layer["signed"]))
    start = time.perf_counter()
    mismatches = 0
    for x, w, expected, table, signed in data:
        for g in range(x.shape[0]):
            acc = table_matmul(x[g], w[g], table, sign_magnitude=not signed)
            mismatches += int((acc.numpy().astype(np.int64) != expected[g]).sum())
    return time.perf_counter() - start, mismatches


def _part_accumulations(report: dict, name: str) -> int:
    """The sums a simulation checks: the engines' (`layers`) or the network's (`net`)."""
    return report["checked"] if name == "layers" else (report["net"] or {})["accumulations"]


def run_simulator(export_dir: Path, simulator: str, keep: Path) -> dict:
    """One `verify` on `simulator`, parts one after the other; per part: accumulations,
    build/run wall and CPU seconds."""
    report = verify(
        export_dir, simulator=simulator, jobs=1, keep_dir=keep, record=False, rebuild=True
    )  # (a cold compile: what a new design costs)
    parts = {}
    for s in report["simulations"]:
        accs = _part_accumulations(report, s["name"])
        parts[s["name"]] = {**s, "accumulations": accs}
        print(
            f"  {simulator:<9} {s['name']:<6} {accs:>10,} accumulations, {s['cycles']:>10,} "
            f"cycles: compile {s['build_seconds']:6.1f} s wall / {s['build_cpu_seconds']:6.1f} "
            f"s CPU, run {s['test_seconds']:7.1f} s wall / {s['test_cpu_seconds']:7.1f} s CPU; "
            f"{accs / s['test_cpu_seconds']:>10,.0f} acc/s (run CPU), "
            f"{accs / (s['build_cpu_seconds'] + s['test_cpu_seconds']):>10,.0f} acc/s "
            "(compile + run CPU)",
            flush=True,
        )
    return {"report": report, "parts": parts, "ok": report["ok"]}


def measure(export_dir: Path, simulators: tuple[str, ...] = SIMULATORS) -> dict:
    """Verify the export on each simulator; print per-part figures and the ratios."""
    manifest = Manifest.load(export_dir).to_dict()
    accs, macs = manifest["accumulations"], manifest["macs"]
    print(
        f"design {export_dir}: {len(manifest['layers'])} layers, {manifest['images']} images, "
        f"{manifest['lanes']} lanes, {accs:,} engine accumulations ({macs:,} MACs), "
        f"simulations {[(s['name'], s['cycles']) for s in manifest['simulations']]}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    keep = Path(tempfile.mkdtemp(prefix="hwflow-bench-verify-"))
    try:
        runs = {s: run_simulator(export_dir, s, keep / s) for s in simulators}
        outputs = {s: simulation_outputs(keep / s, manifest) for s in simulators}
    finally:
        shutil.rmtree(keep, ignore_errors=True)
    result = {"manifest": manifest, "runs": runs}
    if len(simulators) == 2:
        a, b = (outputs[s] for s in simulators)
        result["agree"] = bool(a) and a == b
        print(f"  outputs of {' and '.join(simulators)} identical: {result['agree']} "
              f"({sum(len(v) for v in a.values()):,} values)")  # fmt: skip
        fast, slow = (runs[s]["parts"] for s in simulators)
        for name in fast:
            run_x = slow[name]["test_cpu_seconds"] / fast[name]["test_cpu_seconds"]
            total = lambda p: p["build_cpu_seconds"] + p["test_cpu_seconds"]  # noqa: E731
            print(
                f"  {name}: {simulators[0]} {run_x:,.1f}x {simulators[1]} in run CPU, "
                f"{total(slow[name]) / total(fast[name]):,.1f}x with the compile"
            )
            result[f"{name}_run_x"] = run_x
            result[f"{name}_total_x"] = total(slow[name]) / total(fast[name])
    if manifest.get("library") and Path(manifest["library"]).is_dir():
        emu_s, bad = emulation_check(export_dir, manifest)
        print(f"  emulation (table_matmul): {emu_s:.3f} s, {accs / emu_s:,.0f} accumulations/s, "
              f"mismatches vs expected {bad}")  # fmt: skip
        result["emu_s"] = emu_s
    return result


def resnet_export(work: Path, data_dir: Path = FASHION_MNIST) -> Path:
    """A Fashion-MNIST ResNet-20 (a few training steps: the check needs weights, not
    accuracy) exported with one test image and every accumulation: the engines of all
    its layers, each layer on an approximate design of its signedness from WORK/lib (made
    by the quick flow when absent). ResNets have no whole-network design."""
    from hwflow.nn.train import TrainConfig, train
    from hwflow.rtl.export import export_run

    lib_dir = work / "lib"
    if not (lib_dir / "library.yaml").is_file():
        run_flow(FlowConfig(out=work / "flow", library=lib_dir, quick=True), log=print)
    cfg = TrainConfig()
    cfg = replace(
        cfg,
        data=replace(cfg.data, dataset="mnist", data_dir=str(data_dir), max_samples=256,
                     augment=False),
        model=replace(cfg.model, name="resnet20"),
        float=replace(cfg.float, epochs=1, max_steps=2),
        qat=replace(cfg.qat, epochs=1, max_steps=1, calibration_batches=1),
        agn=replace(cfg.agn, epochs=1, max_steps=1),
    )  # fmt: skip
    run = work / "resnet20"
    if not (run / SUMMARY_FILE).is_file():
        train(cfg, run, quiet=True)
    lib = Library.open(lib_dir)
    approx = {  # the first approximate design of each signedness (else the exact one)
        signed: next((e.name for e in lib.entries
                      if e.signed == signed and e.name != lib.exact_name(signed)),
                     lib.exact_name(signed))
        for signed in (False, True)
    }  # fmt: skip
    layers = RunSummary.load(run / SUMMARY_FILE).layers
    assignment = work / ASSIGNMENT_FILE
    Assignment(
        [LayerChoice(lay.name, approx[lay.signed]) for lay in layers], library=str(lib_dir)
    ).save(assignment)
    out = work / "resnet20-rtl"
    if not (out / "manifest.json").is_file():
        export_run(run, assignment, out, lanes=16, images=1)
    return out


def rows(quick: bool = False) -> list[Row]:
    """The `make bench` lines: the demo's digits export (or a quick flow's, made here) on
    both simulators; without --quick also a Fashion-MNIST ResNet-20 export."""
    export = Path("runs/demo/rtl")
    work = Path(tempfile.mkdtemp(prefix="hwflow-bench-verify-"))
    try:
        if not (export / "manifest.json").is_file():
            run_flow(FlowConfig(out=work / "flow", library=work / "lib", quick=True), log=print)
            export = work / "flow" / "rtl"
        m = measure(export)
        resnet = None
        if not quick and FASHION_MNIST.is_dir():
            resnet = measure(resnet_export(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    images = m["manifest"]["images"]
    out = []
    if "net_run_x" in m:
        out.append(Row("verify", f"whole network ({images} images): Verilator vs Icarus, run CPU",
                       m["net_run_x"], "x", ">= 10x", m["net_run_x"] >= 10))  # fmt: skip
        out.append(Row("verify", "whole network: Verilator vs Icarus, compile + run CPU",
                       m["net_total_x"], "x", ""))  # fmt: skip
    out.append(Row("verify", f"engines ({images} images): Verilator vs Icarus, compile + run CPU",
                   m["layers_total_x"], "x", ""))  # fmt: skip
    out.append(Row("verify", "Verilator and Icarus outputs identical (1 = yes)",
                   float(m.get("agree", False)), "x", "1", m.get("agree")))  # fmt: skip
    if resnet is not None:
        part = resnet["runs"]["verilator"]["parts"]["layers"]
        wall = part["build_seconds"] + part["test_seconds"]
        out.append(Row("verify", f"ResNet-20, 1 image, all {part['accumulations']:,} accumulations:"
                       " Verilator wall", wall, "s", "< 120 s", wall < 120))  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path, nargs="?")
    parser.add_argument("--simulators", nargs="+", choices=SIMULATORS, default=list(SIMULATORS))
    parser.add_argument("--resnet", type=Path, metavar="WORK_DIR",
                        help="make (or reuse) a Fashion-MNIST ResNet-20 export there")  # fmt: skip
    args = parser.parse_args()
    if args.resnet:
        args.resnet.mkdir(parents=True, exist_ok=True)
        measure(resnet_export(args.resnet), tuple(args.simulators))
    if args.export_dir:
        measure(args.export_dir, tuple(args.simulators))


if __name__ == "__main__":
    main()
