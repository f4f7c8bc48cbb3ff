"""The bit-parallel simulation view: gates in topological order on 65,536-bit nets, wire
semantics (undriven = Z, several drivers resolve), loops and non-gate cells refused, and
the simulated tables against Icarus on the user's own text."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hwflow.characterize.bitparallel import view_verilog
from hwflow.characterize.simulate import SimDesign, plain_testbench_table, simulate_batch
from hwflow.errors import NetlistError, SimulationError

PORTS = ("a", "b", "o")
A = list(range(2, 10))  # yosys bit ids of the operand and product ports
B = list(range(10, 18))
O = list(range(18, 34))


def module(cells: dict, o: list | None = None, netnames: dict | None = None) -> dict:
    ports = {"a": {"bits": A}, "b": {"bits": B}, "o": {"bits": o or O}}
    return {"modules": {"m": {"ports": ports, "cells": cells, "netnames": netnames or {}}}}


def gate(kind: str, y: int, **ins: int | str) -> dict:
    return {"type": kind, "connections": {**{p: [v] for p, v in ins.items()}, "Y": [y]}}


def body(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.startswith("    ")]


def test_gates_run_in_topological_order_and_outputs_copy_last():
    # o0 = ~(a0 & b0), listed before the AND it reads; the other product bits constant 0
    cells = {"n": gate("$_NOT_", 35, A=34), "g": gate("$_AND_", 34, A=2, B=10)}
    text = view_verilog(module(cells, [35, *["0"] * 15]), "m", PORTS, "v", "m.v")
    lines = body(text)
    assert lines[0] == "t0 = a0 & b0;" and lines[1] == "t0 = ~t0;"  # t0 reused at once
    assert lines[2] == "o0 = t0;" and lines[3] == "o1 = {65536{1'b0}};"
    assert "always @(a0 or a1" in text and "reg [65535:0] t0;" in text


def test_working_registers_are_reused_after_the_last_reader():
    # a chain of 50 XORs keeps at most two nets alive
    cells = {f"g{i}": gate("$_XOR_", 100 + i, A=99 + i if i else 2, B=10) for i in range(50)}
    text = view_verilog(module(cells, [149, *["0"] * 15]), "m", PORTS, "v", "m.v")
    assert re.search(r"reg \[65535:0\] t0;", text)  # one register for 50 gates


def test_undriven_nets_read_z_and_constants_keep_x_and_z():
    cells = {"g": gate("$_AND_", 40, A=77, B="x"), "h": gate("$_OR_", 41, A=2, B="z")}
    text = view_verilog(module(cells, [40, 41, *["1"] * 14]), "m", PORTS, "v", "m.v")
    assert "t0 = {65536{1'bz}} & {65536{1'bx}};" in body(text)
    assert "t1 = a0 | {65536{1'bz}};" in body(text)
    assert "o15 = {65536{1'b1}};" in body(text)


def test_two_drivers_resolve_like_a_wire():
    cells = {"g": gate("$_AND_", 18, A=2, B=10), "h": gate("$_OR_", 18, A=2, B=10)}
    lines = body(view_verilog(module(cells), "m", PORTS, "v", "m.v"))
    resolve = [ln for ln in lines if "{65536{1'bx}}" in ln]
    assert len(resolve) == 1 and "^" in resolve[0]


def test_a_loop_and_a_tristate_are_refused_with_names():
    cells = {"g": gate("$_AND_", 40, A=41, B=2), "h": gate("$_NOT_", 41, A=40)}
    names = {"fb": {"bits": [41]}, "$auto$1": {"bits": [40]}}
    with pytest.raises(NetlistError, match=r"m\.v: m has a combinational loop .*net fb feeds"):
        view_verilog(module(cells, [40] * 16, names), "m", PORTS, "v", "m.v")
    tri = {"t": {"type": "$_TBUF_", "connections": {"A": [2], "E": [10], "Y": [18]}}}
    with pytest.raises(NetlistError, match=r"cannot simulate tri-state buffer \$_TBUF_ \(t\)"):
        view_verilog(module(tri), "m", PORTS, "v", "m.v")
    with pytest.raises(NetlistError, match="no module top"):
        view_verilog(module({}), "top", PORTS, "v", "m.v")


MULTI_DRIVEN = """module {name}(input [7:0] a, input [7:0] b, output [15:0] o);
  wire [15:0] p = a * b;
  assign o[15:1] = p[15:1];
  assign o[0] = {first};
  assign o[0] = {second};
endmodule
"""


@pytest.mark.parametrize(
    ("first", "second", "xz_at"),
    [("a[0] & b[0]", "b[0] & a[0]", None), ("a[0]", "b[0]", "a=0, b=1")],
)
def test_multiply_driven_bits_read_as_icarus_reads_the_users_text(tmp_path, first, second, xz_at):
    path = tmp_path / "md.v"
    path.write_text(MULTI_DRIVEN.format(name="mul_md", first=first, second=second))
    design = SimDesign("md", path, "mul_md")
    if xz_at is None:  # agreeing drivers: a clean table, as Icarus reads the text
        (raw,) = simulate_batch([design], tmp_path / "sim")
        assert np.array_equal(raw, plain_testbench_table(design, tmp_path / "plain"))
        return
    with pytest.raises(SimulationError, match=f"is X or Z for {xz_at} "):
        simulate_batch([design], tmp_path / "sim")
    with pytest.raises(SimulationError, match=f"X or Z for {xz_at}$"):
        plain_testbench_table(design, tmp_path / "plain")


def test_the_view_of_a_behavioural_design_matches_icarus_on_its_text(tmp_path):
    # case statements, comparisons, shifts and signed arithmetic, all as one-bit gates
    path = tmp_path / "beh.v"
    path.write_text(
        "module mul_beh(input signed [7:0] a, input signed [7:0] b, output reg [15:0] o);\n"
        "  always @* case (a[1:0])\n"
        "    2'd0: o = a * b;\n"
        "    2'd1: o = (a > b) ? a - b : {8'd0, b} << a[4:2];\n"
        "    2'd2: o = {a ^ b, a | b} >>> 3;\n"
        "    default: o = $signed(a) * $signed(b) + 16'sd7;\n"
        "  endcase\nendmodule\n"
    )
    design = SimDesign("beh", path, "mul_beh")
    (raw,) = simulate_batch([design], tmp_path / "sim")
    assert np.array_equal(raw, plain_testbench_table(design, tmp_path / "plain"))


def test_operand_planes_reach_the_view_unchanged(tmp_path: Path):
    # o = {a, b}: the table is the pair index itself
    path = tmp_path / "cat.v"
    path.write_text(
        "module mul_cat(input [7:0] a, input [7:0] b, output [15:0] o);\n"
        "  assign o = {a, b};\nendmodule\n"
    )
    (raw,) = simulate_batch([SimDesign("cat", path, "mul_cat")], tmp_path / "sim")
    assert np.array_equal(raw.reshape(-1), np.arange(65536, dtype=np.uint16))
