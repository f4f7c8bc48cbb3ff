"""Batched exhaustive simulation: several designs per launch, X/Z per design, batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwflow.characterize.bitparallel import PAIRS
from hwflow.characterize.netlist import stage_netlist
from hwflow.characterize.simulate import (
    SimDesign,
    SimView,
    plain_testbench_table,
    planes_to_table,
    simulate_batch,
    simulate_views,
    wrapper_verilog,
)
from hwflow.characterize.synth import ElabJob, elaborate_batch
from hwflow.errors import SimulationError
from hwflow.multipliers.table import exact_table, output_to_int

NL = Path(__file__).parent / "fixtures" / "netlists"
EXACT_U = SimDesign("eu", NL / "exact_u.v", "mul8u_exact")
EXACT_S = SimDesign("es", NL / "exact_s.v", "mul8s_exact")
EVO = SimDesign("evo", NL / "evo_style_u.v", "mul8u_evo_hw", ("A", "B", "O"))
ZPORT = SimDesign("z", NL / "evo_style_z.v", "mul8u_z", ("A", "B", "Z"))
XZ = SimDesign("xz", NL / "xz_out.v", "mul_xz")


def test_one_launch_simulates_several_designs_exactly(tmp_path):
    raw = simulate_batch([EXACT_U, EXACT_S, EVO, ZPORT])
    assert raw[0].dtype == np.uint16 and raw[0].shape == (256, 256)
    assert np.array_equal(output_to_int(raw[0], False), exact_table(False))
    assert np.array_equal(output_to_int(raw[1], True), exact_table(True))
    assert np.array_equal(raw[2], plain_testbench_table(EVO, tmp_path / "evo"))
    assert np.array_equal(raw[3], exact_table(False))


def test_xz_names_the_failing_design_and_its_first_pair():
    with pytest.raises(
        SimulationError, match=r"xz_out\.v: output o of mul_xz is X or Z for a=0, b=77"
    ):
        simulate_batch([EXACT_U, XZ])


def test_plain_testbench_matches_the_exact_product(tmp_path):
    assert np.array_equal(plain_testbench_table(EXACT_U, tmp_path), exact_table(False))


def test_wrapper_sets_operand_planes_once_and_wires_every_product_bit():
    views = [SimView(n, Path(f"{n}.v"), f"hwflow_sim_{n}", f"{n}.v", n) for n in ("n0", "n1")]
    text = wrapper_verilog(views)
    assert "hwflow_sim_n1 u1 (.a0(a0)," in text and ".o15(y1_15));" in text
    # b0 = bit 0 of the pair index (0, 1, 0, 1, ... from pair 0); a7 = bit 15
    assert "b0 = {32768{{1{1'b1}}, {1{1'b0}}}};" in text
    assert "a7 = {1{{32768{1'b1}}, {32768{1'b0}}}};" in text


def test_planes_unpack_to_the_table_of_pair_outputs():
    rng = np.random.default_rng(0)
    table = rng.integers(0, 1 << 16, size=PAIRS, dtype=np.uint16)
    bits = (table[None, :] >> np.arange(16, dtype=np.uint16)[:, None]) & 1
    planes = np.packbits(bits.astype(np.uint8), axis=1, bitorder="little")
    assert np.array_equal(planes_to_table(planes), table.reshape(256, 256))


def test_a_launch_past_its_timeout_names_the_users_file(tmp_path):
    # a view that never settles (views come from yosys; this one is written by hand)
    spin = tmp_path / "spin.v"
    planes = ", ".join([*(f"a{i}" for i in range(8)), *(f"b{i}" for i in range(8))])
    outs = ", ".join(f"o{k}" for k in range(16))
    spin.write_text(
        f"module spin(input [{PAIRS - 1}:0] {planes}, output reg [{PAIRS - 1}:0] {outs});\n"
        "  always @(a0) forever o0 = ~o0;\nendmodule\n"
    )
    view = SimView("s", spin, "spin", "my_mul.v", "mul")
    (out,) = simulate_views([view], tmp_path / "sim", timeout=1)
    assert str(out) == "my_mul.v: simulation did not finish in 1 s"


def test_views_simulate_what_yosys_elaborated(tmp_path):
    staged = stage_netlist(EXACT_S.source, tmp_path / "n0")
    job = ElabJob("n0", (staged.copy,), EXACT_S.top, EXACT_S.ports, "es.v")
    (e,) = elaborate_batch([job], tmp_path, synthesize=False)
    assert e.synth is None and "module mul8s_exact" in e.netlist
    (raw,) = simulate_views([SimView("es", e.sim_path, e.sim_top, "es.v", EXACT_S.top)])
    assert np.array_equal(output_to_int(raw, True), exact_table(True))


def test_plain_testbench_reports_xz_too(tmp_path):
    with pytest.raises(SimulationError, match=r"plain testbench output is X or Z for a=0, b=77"):
        plain_testbench_table(XZ, tmp_path)


def test_a_relative_work_folder_still_simulates_the_batch_in_one_launch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = simulate_batch([EXACT_U, EXACT_S], "work")
    assert np.array_equal(output_to_int(raw[1], True), exact_table(True))
    assert not list((tmp_path / "work").glob("alone*"))  # no per-design fallback launches
