"""Bench: `hwflow verify` throughput vs the same checks in the PyTorch emulation.

Runs the exported design's Icarus/cocotb check (what `hwflow verify` does) and, for the
same operands, recomputes every accumulator with the emulation's table kernel
(`hwflow.nn.kernels.table_matmul`) and compares it with the recorded expectation.
Prints accumulations and MACs per second for both and their ratio.

    .venv/bin/python -m bench.verify EXPORT_DIR
    (EXPORT_DIR from `hwflow export RUN --assignment A --out EXPORT_DIR --images 16`)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench._common import Row
from hwflow.flow import FlowConfig, run_flow
from hwflow.multipliers.library import Library
from hwflow.nn.kernels import table_matmul
from hwflow.rtl.vectors import job_slots
from hwflow.rtl.verify import verify


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


def measure(export_dir: Path) -> dict:
    """Run the RTL check and the emulation's check on the same operands; print both."""
    manifest = json.loads((export_dir / "manifest.json").read_text())
    accs, macs = manifest["accumulations"], manifest["macs"]
    print(
        f"design: {len(manifest['layers'])} layers, {manifest['images']} images, "
        f"{manifest['lanes']} lanes, {accs:,} accumulations, {macs:,} MACs, "
        f"{manifest['cycles']:,} cycles; {os.cpu_count()} CPUs"
    )
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = verify(export_dir)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sim_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    rtl_s = report["seconds"]
    sims = ", ".join(
        f"{s['name']} {s['cycles']:,} cycles {s['seconds']:.1f} s" for s in report["simulations"]
    )
    print(
        f"rtl (Icarus via cocotb, {report['jobs']} simulations at a time: {sims}): "
        f"{rtl_s:.1f} s wall ({sim_cpu:.1f} s CPU in iverilog+vvp), "
        f"{accs / rtl_s:,.0f} accumulations/s, {macs / rtl_s:,.0f} MACs/s, ok={report['ok']}"
    )
    if report.get("net"):
        net = report["net"]
        print(
            f"  network: {net['images']} images, {net['checked']:,} integers "
            f"({net['accumulations']:,} sums), {net['mismatches']} mismatches"
        )
    emu_s, bad = emulation_check(export_dir, manifest)
    print(
        f"emulation (table_matmul): {emu_s:.3f} s, {accs / emu_s:,.0f} accumulations/s, "
        f"{macs / emu_s:,.0f} MACs/s, mismatches vs expected {bad}"
    )
    print(
        f"ratio: the RTL check is {rtl_s / emu_s:,.0f}x slower than the emulation's "
        f"({sim_cpu / emu_s:,.0f}x in CPU time); load average {os.getloadavg()[0]:.1f}"
    )
    return {"manifest": manifest, "rtl_s": rtl_s, "emu_s": emu_s, "ok": report["ok"]}


def rows(quick: bool = False) -> list[Row]:
    """The `make bench` lines, on `make demo`'s export (or a quick flow's, made here)."""
    export = Path("runs/demo/rtl")
    work = None
    if not (export / "manifest.json").is_file():
        work = Path(tempfile.mkdtemp(prefix="hwflow-bench-verify-"))
        run_flow(FlowConfig(out=work, library=work / "lib", quick=True), log=print)
        export = work / "rtl"
    try:
        m = measure(export)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    images, accs = m["manifest"]["images"], m["manifest"]["accumulations"]
    return [
        Row("verify", f"RTL check, {images} images: engines' accumulations per second",
            accs / m["rtl_s"], "/s", ""),
        Row("verify", f"RTL check (engines + network) vs emulation check, {accs:,} "
            "accumulations", m["rtl_s"] / m["emu_s"], "x", ""),
        Row("verify", f"RTL check wall time (engines + network), {images} images",
            m["rtl_s"], "s",
            "< 60 s" if images == 16 else "", m["rtl_s"] < 60 if images == 16 else None),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    measure(parser.parse_args().export_dir)


if __name__ == "__main__":
    main()
