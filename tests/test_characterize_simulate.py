"""Batched exhaustive simulation: several designs per launch, X/Z per design, batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwflow.characterize.simulate import (
    SimDesign,
    plain_testbench_table,
    plan_batches,
    simulate_batch,
    wrapper_verilog,
)
from hwflow.errors import SimulationError
from hwflow.multipliers.table import exact_table, output_to_int

NL = Path(__file__).parent / "fixtures" / "netlists"
EXACT_U = SimDesign("eu", NL / "exact_u.v", "mul8u_exact", modules=frozenset({"mul8u_exact"}))
EXACT_S = SimDesign("es", NL / "exact_s.v", "mul8s_exact", modules=frozenset({"mul8s_exact"}))
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


def test_batches_keep_module_names_disjoint_and_bounded():
    a = SimDesign("a", Path("a.v"), "t1", modules=frozenset({"t1", "cell"}))
    b = SimDesign("b", Path("b.v"), "t2", modules=frozenset({"t2", "cell"}))
    c = SimDesign("c", Path("c.v"), "t3", modules=frozenset({"t3"}))
    assert plan_batches([a, b, c]) == [[0, 2], [1]]
    assert plan_batches([c, a, b], max_batch=1) == [[0], [1], [2]]


def test_wrapper_connects_each_design_by_its_port_names():
    text = wrapper_verilog([EVO, EXACT_U])
    assert "mul8u_evo_hw u0 (.A(a), .B(b), .O(y0));" in text
    assert "mul8u_exact u1 (.a(a), .b(b), .o(y1));" in text
    assert "row1[k * 16 +: 16] = y1;" in text


def test_plain_testbench_reports_xz_too(tmp_path):
    with pytest.raises(SimulationError, match=r"plain testbench output is X or Z for a=0, b=77"):
        plain_testbench_table(XZ, tmp_path)


def test_a_relative_work_folder_still_simulates_the_batch_in_one_launch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = simulate_batch([EXACT_U, EXACT_S], "work")
    assert np.array_equal(output_to_int(raw[1], True), exact_table(True))
    assert not list((tmp_path / "work").glob("alone*"))  # no per-design fallback launches
