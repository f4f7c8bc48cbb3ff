"""hwflow.simulator: the shared cocotb build-and-run wrapper."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwflow.errors import SimulationError
from hwflow.simulator import build_dir_for, read_args, run_cocotb

FIX = Path(__file__).parent / "fixtures" / "sim"
TB = FIX / "and_gate_tb.py"


def test_runs_a_passing_test_and_passes_args(tmp_path):
    out = tmp_path / "o.txt"
    args = {"out": str(out)}
    results = run_cocotb([FIX / "and_gate.v"], "and_gate", TB, tmp_path / "b", args=args)
    assert results.is_file()
    assert out.read_text() == "ok"


def test_failing_test_raises_with_its_message(tmp_path):
    args = {"out": str(tmp_path / "o.txt"), "flip": 1}
    with pytest.raises(SimulationError, match=r"check_and: x=0 y=0: got 0$"):
        run_cocotb([FIX / "and_gate.v"], "and_gate", TB, tmp_path / "b", args=args)
    assert not (tmp_path / "o.txt").exists()


def test_syntax_error_names_file_and_line(tmp_path):
    with pytest.raises(SimulationError, match=r"bad_syntax\.v:2: syntax error"):
        run_cocotb([FIX / "bad_syntax.v"], "bad", TB, tmp_path / "b")


def test_unknown_top_and_missing_files(tmp_path):
    with pytest.raises(SimulationError, match="nosuch"):
        run_cocotb([FIX / "and_gate.v"], "nosuch", TB, tmp_path / "b")
    with pytest.raises(SimulationError, match="missing.v: file not found"):
        run_cocotb([FIX / "missing.v"], "x", TB, tmp_path / "b")
    with pytest.raises(SimulationError, match="test module not found"):
        run_cocotb([FIX / "and_gate.v"], "and_gate", FIX / "nope.py", tmp_path / "b")


def test_test_module_that_fails_to_import_is_an_error(tmp_path):
    broken = tmp_path / "broken_tb.py"
    broken.write_text("import no_such_module_anywhere\n")
    with pytest.raises(SimulationError, match="broken_tb|no_such_module|without results|no tests"):
        run_cocotb([FIX / "and_gate.v"], "and_gate", broken, tmp_path / "b")


def test_build_dir_is_unique_per_top_and_parameters(tmp_path):
    a = build_dir_for(tmp_path, "top", {"W": 8})
    assert a == build_dir_for(tmp_path, "top", {"W": 8})
    assert a != build_dir_for(tmp_path, "top", {"W": 4})
    assert a != build_dir_for(tmp_path, "other", {"W": 8})


def test_read_args_without_env_is_empty(monkeypatch):
    monkeypatch.delenv("HWFLOW_SIM_ARGS", raising=False)
    assert read_args() == {}
