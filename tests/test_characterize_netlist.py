"""Netlist inspection: syntax check, top detection, port styles, widths, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwflow.characterize.netlist import inspect_netlist
from hwflow.characterize.synth import synthesize
from hwflow.errors import NetlistError
from hwflow.io import sha256_file

NL = Path(__file__).parent / "fixtures" / "netlists"


def test_evoapprox_style_with_cells_below_the_top():
    nl = inspect_netlist(NL / "evo_style_u.v")
    assert nl.top == "mul8u_evo_hw"
    assert nl.ports == ("A", "B", "O")
    assert {"pp_row", "and_cell", "or_cell", "or3_cell", "or4_cell"} <= nl.modules
    assert nl.sha256 == sha256_file(NL / "evo_style_u.v")


@pytest.mark.parametrize(
    ("name", "ports"), [("evo_style_z.v", ("A", "B", "Z")), ("exact_u.v", ("a", "b", "o"))]
)
def test_port_styles_are_detected(name, ports):
    assert inspect_netlist(NL / name).ports == ports


def test_explicit_ports_and_top():
    assert inspect_netlist(NL / "odd_ports.v", ports=["x", "y", "p"]).ports == ("x", "y", "p")
    assert inspect_netlist(NL / "two_tops.v", top="mul_two").top == "mul_two"


@pytest.mark.parametrize(
    ("name", "kwargs", "pattern"),
    [
        ("missing.v", {}, r"missing\.v: file not found"),
        ("syntax_error.v", {}, r"syntax_error\.v:2: syntax error"),
        ("two_tops.v", {}, r"several top-level modules \(mul_one, mul_two\).*--top"),
        ("two_tops.v", {"top": "nosuch"}, r"no module named 'nosuch'"),
        ("odd_ports.v", {}, r"cannot tell the multiplier ports of mul_xy .*--ports"),
        ("odd_ports.v", {"ports": ["x", "y", "q"]}, r"has no port 'q'"),
        ("narrow.v", {}, r"port a of mul_narrow is input \[4\], expected input \[8\]"),
        ("clocked.v", {}, r"clocked\.v: a sequential design \(yosys finds \$dff\)"),
        ("unknown_cell.v", {}, r"unknown_cell\.v:3: .*secret_mult"),
    ],
)
def test_bad_netlists_name_the_problem(name, kwargs, pattern):
    with pytest.raises(NetlistError, match=pattern):
        inspect_netlist(NL / name, **kwargs)


def test_latch_is_rejected_as_sequential(tmp_path):
    with pytest.raises(NetlistError, match=r"latch\.v: a sequential design .*\$dlatch"):
        inspect_netlist(NL / "latch.v")
    # a clock port alone (no flip-flop behind it) is also refused
    clk = tmp_path / "clk_port.v"
    clk.write_text(
        "module m(input clk, input [7:0] a, input [7:0] b, output [15:0] o);\n"
        "  assign o = a * b;\nendmodule\n"
    )
    with pytest.raises(NetlistError, match=r"port 'clk': a sequential design"):
        inspect_netlist(clk)


def test_synthesis_rejects_state_that_survives_to_the_gate_level():
    from hwflow.characterize.netlist import Netlist

    nl = Netlist(NL / "clocked.v", "mul_reg", ("a", "b", "o"))
    with pytest.raises(NetlistError, match=r"mul_reg is a sequential design .*DFF"):
        synthesize(nl)
