"""hwflow.sim_cache: a Verilator simulation is compiled once per content, reused after."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hwflow import sim_cache
from hwflow.errors import SimulationError
from hwflow.simulator import run_cocotb

FIX = Path(__file__).parent / "fixtures" / "sim"
TB = FIX / "and_gate_tb.py"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(sim_cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "verilator"


def _run(source: Path, build: Path, out: Path, keep: bool = True, flip: int = 0) -> dict:
    timings: dict[str, float] = {}
    run_cocotb(
        [source], "and_gate", TB, build, args={"out": str(out), "flip": flip},
        simulator="verilator", timings=timings, keep_build=keep,
    )  # fmt: skip
    return timings


def _entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def test_a_second_build_of_the_same_sources_is_taken_from_the_cache(cache, tmp_path):
    first = _run(FIX / "and_gate.v", tmp_path / "b1", tmp_path / "o1")
    assert first["build_cached"] == 0.0 and len(_entries(cache)) == 1
    second = _run(FIX / "and_gate.v", tmp_path / "b2", tmp_path / "o2")
    # the test ran on the kept executable: nothing compiled in the second build folder
    assert second["build_cached"] == 1.0 and (tmp_path / "o2").read_text() == "ok"
    assert not (tmp_path / "b2" / "build.log").exists()
    # a failing test still fails on a kept executable (it is the simulator, not a verdict)
    with pytest.raises(SimulationError, match="check_and: x=0 y=0: got 0"):
        _run(FIX / "and_gate.v", tmp_path / "b3", tmp_path / "o3", flip=1)


def test_changed_text_under_the_same_name_is_compiled_again(cache, tmp_path):
    _run(FIX / "and_gate.v", tmp_path / "b1", tmp_path / "o1")
    other = tmp_path / "src" / "and_gate.v"
    other.parent.mkdir()
    other.write_text((FIX / "and_gate.v").read_text().replace("x & y", "x | y"))
    with pytest.raises(SimulationError, match="got 1"):  # x=0 y=1: the new text's OR
        _run(other, tmp_path / "b2", tmp_path / "o2")
    assert len(_entries(cache)) == 2


def test_off_when_not_asked_or_when_the_variable_is_empty(cache, tmp_path, monkeypatch):
    assert (
        _run(FIX / "and_gate.v", tmp_path / "b1", tmp_path / "o1", keep=False)["build_cached"]
        == 0.0
    )
    assert _entries(cache) == []
    monkeypatch.setenv(sim_cache.CACHE_ENV, "")
    assert sim_cache.cache_root() is None
    assert _run(FIX / "and_gate.v", tmp_path / "b2", tmp_path / "o2")["build_cached"] == 0.0
    assert (tmp_path / "o2").read_text() == "ok"


def test_default_root_follows_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv(sim_cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sim_cache.cache_root() == tmp_path / "xdg" / "hwflow" / "verilator"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert sim_cache.cache_root() == tmp_path / "home" / ".cache" / "hwflow" / "verilator"


def test_an_unwritable_cache_is_no_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(sim_cache.CACHE_ENV, str(blocker))
    assert _run(FIX / "and_gate.v", tmp_path / "b", tmp_path / "o")["build_cached"] == 0.0
    assert (tmp_path / "o").read_text() == "ok"


def test_least_recently_used_entries_and_dead_staging_folders_are_pruned(
    cache, tmp_path, monkeypatch
):
    build = tmp_path / "b"
    build.mkdir()
    (build / "top").write_text("an executable")
    cache.mkdir(parents=True)
    dead = cache / ".new-killed"
    dead.mkdir()
    old = time.time() - 7200
    os.utime(dead, (old, old))
    live = cache / ".new-writing"  # another process's, still being written
    live.mkdir()
    for n, key in enumerate(["a", "b", "c"]):
        sim_cache.store(cache, key, build, "top")
        os.utime(cache / key, (old + n, old + n))
    assert sim_cache.fetch(cache, "a", tmp_path, "top")  # used now: the newest
    monkeypatch.setattr(sim_cache, "MAX_ENTRIES", 2)
    sim_cache.store(cache, "d", build, "top")
    assert _entries(cache) == [".new-writing", "a", "d"]
    assert not sim_cache.fetch(cache, "b", tmp_path, "top")


def test_a_damaged_entry_is_built_again_and_replaced(cache, tmp_path):
    _run(FIX / "and_gate.v", tmp_path / "b1", tmp_path / "o1")
    (entry,) = [cache / name for name in _entries(cache)]
    (entry / "and_gate").write_bytes(b"\x7fELF not really")
    again = _run(FIX / "and_gate.v", tmp_path / "b2", tmp_path / "o2")
    assert again["build_cached"] == 0.0 and (tmp_path / "o2").read_text() == "ok"
    assert (tmp_path / "b2" / "build.log").is_file() and _entries(cache) == [entry.name]
    assert (entry / "and_gate").read_bytes()[:4] == b"\x7fELF"
    assert len((entry / "and_gate").read_bytes()) > 1000  # the fresh executable, kept
    assert _run(FIX / "and_gate.v", tmp_path / "b3", tmp_path / "o3")["build_cached"] == 1.0
