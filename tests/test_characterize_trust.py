"""Characterization a user can trust: the table is what yosys builds,
user files run no code, every tool call ends, and files as published simply work."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from netlist_forms import cells_verilog, gate_netlist_forms

from hwflow.characterize import pipeline
from hwflow.characterize.netlist import (
    Netlist,
    YosysItem,
    check_system_tasks,
    run_yosys_items,
)
from hwflow.characterize.synth import synthesize
from hwflow.cli import cli
from hwflow.errors import NetlistError
from hwflow.io import sha256_bytes
from hwflow.multipliers.library import Library
from hwflow.multipliers.table import exact_table

NL = Path(__file__).parent / "fixtures" / "netlists"
EXACT_U = (NL / "exact_u.v").read_bytes()
MUL = "module {name}(input [7:0] a, input [7:0] b, output [15:0] o);\n{body}\nendmodule\n"


def run(*args: str):
    return CliRunner().invoke(cli, ["characterize", *args])


def error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error: ")]


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# ---- simulation = synthesis ---------------------------------------------------------------


def test_a_netlist_that_synthesizes_to_other_logic_than_it_simulates_is_refused(tmp_path):
    cheat = write(
        tmp_path / "cheat.v",
        MUL.format(
            name="mul_cheat",
            body="`ifdef SYNTHESIS\n  assign o = 0;\n`else\n  assign o = a * b;\n`endif",
        ),
    )
    result = run(str(cheat), "--library", str(tmp_path / "lib"))
    assert result.exit_code == 2, result.output
    assert error_lines(result.output) == result.output.strip().splitlines()
    assert re.match(
        r"error: .*cheat\.v: simulation and synthesis disagree at a=1, b=1 \(sim 1, gates 0",
        result.output,
    ), result.output
    assert not (tmp_path / "lib").exists()


def test_the_gate_level_check_runs_for_built_ins_too(tmp_path, monkeypatch):
    from hwflow.multipliers.generators import MultiplierSpec

    checked = []
    real = pipeline.check_gates_match

    def spy(raw, gates, signed, what):
        checked.append(what)
        real(raw, gates, signed, what)

    monkeypatch.setattr(pipeline, "check_gates_match", spy)
    specs = [MultiplierSpec("exact", s, {}) for s in (False, True)]
    pipeline.characterize_builtin(tmp_path / "lib", specs=specs)
    assert sorted(checked) == ["s_exact", "u_exact"]


def test_gate_check_names_the_first_differing_pair(tmp_path):
    gates = synthesize(Netlist(NL / "exact_s.v", "mul8s_exact", ("a", "b", "o"))).gates
    raw = (exact_table(True) & 0xFFFF).astype(np.uint16)
    pipeline.check_gates_match(raw, gates, True, "exact_s.v")  # equal: no error
    raw[255, 3] ^= 4  # a = -1, b = 3: -3 becomes -7
    with pytest.raises(NetlistError, match=r"disagree at a=-1, b=3 \(sim -7, gates -3; 1 of"):
        pipeline.check_gates_match(raw, gates, True, "exact_s.v")


# ---- no code from data files ---------------------------------------------------------------


def test_system_tasks_are_refused_with_file_and_line(tmp_path):
    pwned = tmp_path / "pwned.txt"
    body = (
        "  integer f;\n`ifndef SYNTHESIS\n  initial begin\n"
        f'    f = $fopen("{pwned}", "w"); $fdisplay(f, "pwned"); $fclose(f);\n'
        "  end\n`endif\n  assign o = a * b;"
    )
    bad = write(tmp_path / "spy.v", MUL.format(name="mul_spy", body=body))
    result = run(str(bad), "--library", str(tmp_path / "lib"))
    assert result.exit_code == 2
    assert re.fullmatch(
        r"error: \S*spy\.v:5: system task \$fopen is not allowed .*", result.output.strip()
    ), result.output
    assert not pwned.exists()
    assert not (tmp_path / "lib").exists()


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("assign o = $signed(a) * $signed(b); // $fopen in a comment", None),
        ('/* $finish */ wire \\$1 ; wire n$2; (* src = "$stop" *) assign o = 0;', None),
        ('localparam W = $clog2(256);\ninitial $display("hi");', "2: system task $display"),
        ('\n\ninitial $system("rm -rf /");', "3: system task $system"),
        ('initial $readmemh("x.hex", m);', "1: system task $readmemh"),
        ("`define F $fwrite\ninitial `F(1);", "1: system task $fwrite"),
    ],
)
def test_system_task_scan(text, refused):
    if refused is None:
        check_system_tasks(text, "m.v")
    else:
        with pytest.raises(NetlistError, match=re.escape(f"m.v:{refused}")):
            check_system_tasks(text, "m.v")


# ---- bounded time --------------------------------------------------------------------------

# settles at once under synthesis; in simulation, a[0] = 1 starts a zero-delay oscillation
NEVER_SETTLES = MUL.format(
    name="mul_loop",
    body="`ifndef SYNTHESIS\n  wire x;\n  assign x = ~x & a[0];\n"
    "  assign o = x ? a * b : a * b;\n`else\n  assign o = a * b;\n`endif",
)


def test_a_simulation_that_would_never_settle_is_refused_at_once(tmp_path):
    # the bit-parallel view is evaluated in topological order: a loop has none
    loop = write(tmp_path / "loop.v", NEVER_SETTLES)
    # (the bound is wall time for yosys too, whose start alone took over 4 s on a loaded
    # CI machine; a simulation that hung would still end in the timeout's message)
    result = run(str(loop), "--library", str(tmp_path / "lib"), "--timeout", "60")
    assert result.exit_code == 2, result.output
    assert re.fullmatch(
        r"error: \S*loop\.v: mul_loop has a combinational loop in simulation: net x feeds "
        r"back into itself without a register",
        result.output.strip(),
    ), result.output


def test_yosys_steps_are_bounded_and_errors_name_the_users_file(tmp_path):
    (tmp_path / "n0").mkdir()
    (tmp_path / "n0" / "m.v").write_text(MUL.format(name="m", body="  assign o = a * ;"))
    (tmp_path / "n1").mkdir()
    (tmp_path / "n1" / "m.v").write_bytes(EXACT_U)
    items = [
        YosysItem(
            ("read_verilog n0/m.v",), "", "/home/u/my_mult.v", {"n0/m.v": "/home/u/my_mult.v"}
        ),
        YosysItem(("read_verilog n1/m.v", "write_json n1/m.json"), "n1/m.json", "ok.v"),
    ]
    errors = run_yosys_items(items, tmp_path, timeout=60)
    assert errors[1] is None and (tmp_path / "n1" / "m.json").is_file()  # the batch went on
    assert re.fullmatch(
        r"/home/u/my_mult\.v:2: syntax error, unexpected .* \(yosys\)",
        str(errors[0]),
    ), errors[0]
    # many seconds of work, so that even a parent starved of CPU on a loaded machine sees it
    # unfinished (one synthesis once completed between two of the parent's checks)
    repeat = ("design -reset", "read_verilog n1/m.v", "synth -flatten")
    synth = (*repeat * 100, "write_json n1/s.json")
    slow = run_yosys_items([YosysItem(synth, "n1/s.json", "big.v")], tmp_path, timeout=0.01)
    assert str(slow[0]) == (
        "big.v: synthesis (yosys) did not finish in 0.01 s; raise --timeout for very large netlists"
    )


# yosys needs minutes for these wide products (a long-running tool to interrupt)
SLOW_TO_SYNTHESIZE = MUL.format(
    name="mul_slow",
    body="  wire [95:0] x = {6{a, b}};\n  wire [95:0] p = x * {6{b, a}} * x;\n"
    "  assign o = a * b + p[95:80];",
)


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_sigterm_removes_temporary_folders_and_stops_the_tools(tmp_path, jobs):
    """With --jobs 2 the signal reaches only the driver: its pool passes it on."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    slow = [write(tmp_path / "slow.v", SLOW_TO_SYNTHESIZE)]
    if jobs > 1:  # two designs, so two worker processes each run yosys
        twin = SLOW_TO_SYNTHESIZE.replace("mul_slow", "mul_slow2")
        slow.append(write(tmp_path / "slow2.v", twin))
    env = {**os.environ, "TMPDIR": str(tmp)}
    cmd = [sys.executable, "-m", "hwflow.cli", "characterize", *map(str, slow), "--quiet"]
    proc = subprocess.Popen(
        [*cmd, "--library", str(tmp_path / "lib"), "--timeout", "300", "--jobs", str(jobs)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        # the simulation view is written first; then yosys synthesizes for minutes
        while len(list(tmp.glob("hwflow-char-*/n0/netlist.v"))) < jobs:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the synthesis never started"
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "error: interrupted" in err
    assert list(tmp.iterdir()) == []
    still = [p for p in Path("/proc").glob("[0-9]*") if str(tmp) in _cmdline(p)]
    assert still == [], "a tool of the interrupted run is still running"


def _cmdline(proc: Path) -> str:
    """A process's command line and working folder (yosys runs on relative paths)."""
    try:
        cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return f"{cmd} {os.readlink(proc / 'cwd')}"
    except OSError:
        return ""


# ---- files as published --------------------------------------------------------------------


def test_crlf_bom_duplicates_and_constant_circuits(tmp_path):
    crlf = write(tmp_path / "crlf.v", EXACT_U.replace(b"\n", b"\r\n"))
    bom = write(tmp_path / "bom.v", b"\xef\xbb\xbf" + EXACT_U.replace(b"\n", b"\r\n"))
    twin = write(tmp_path / "twin.v", crlf.read_bytes())
    const = write(tmp_path / "zero.v", MUL.format(name="mul_zero", body="  assign o = 16'd0;"))
    lib_dir = tmp_path / "lib"
    result = run(str(crlf), str(bom), str(twin), str(const), "--library", str(lib_dir))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "same content as crlf: table reused" in lines[2]
    assert "auto: unsigned (constant or degenerate circuit" in lines[3]
    assert lines[-1] == f"added 4; library has 5 ({lib_dir})"  # and the exact reference
    lib = Library.open(lib_dir)
    for name, path in (("crlf", crlf), ("bom", bom), ("twin", twin)):
        entry = lib.get(name)
        assert entry.signed is False and entry.metrics["wce"] == 0
        assert entry.source["sha256"] == sha256_bytes(path.read_bytes())  # bytes as given
        assert np.array_equal(lib.table(name), exact_table(False))
    assert lib.get("twin").source["copy_of"] == "crlf"
    assert lib.get("zero").signed is False and not lib.table("zero").any()
    # a rerun is all cache hits; another copy reuses the library's table, no simulation
    again = run(str(crlf), str(bom), "--library", str(lib_dir))
    assert again.output.count("(cached)") == 2
    third = write(tmp_path / "third.v", bom.read_bytes())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "_run_group", _no_work)
        copy = run(str(third), "--library", str(lib_dir), "--json")
    assert copy.exit_code == 0, copy.output
    assert json.loads(copy.output)[0]["name"] == "third"
    assert Library.open(lib_dir).get("third").source["copy_of"] == "bom"


def _no_work(*_a, **_k):
    raise AssertionError("nothing may be simulated here")


@pytest.mark.slow
def test_folder_of_vector_wired_gate_netlists_with_a_separate_cell_file(tmp_path):
    gates = synthesize(Netlist(NL / "trunc_u.v", "mul8u_trunc4", ("a", "b", "o"))).gates
    folder = tmp_path / "evo"
    (folder / "sub").mkdir(parents=True)
    cells = write(folder / "cells.v", cells_verilog())
    write(folder / "vec.v", gate_netlist_forms(gates, "mul8u_vec", vector=True))
    write(folder / "sub" / "scalar.v", gate_netlist_forms(gates, "mul8u_scalar", vector=False))
    write(folder / "notes.txt", "not a netlist")
    lib_dir = tmp_path / "lib"
    result = run(str(folder), "--cells", str(cells), "--library", str(lib_dir), "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    assert [e["name"] for e in listing] == ["scalar", "vec"]  # cells.v is never a netlist
    lib = Library.open(lib_dir)
    trunc = (np.arange(256)[:, None] & 0xF0) * (np.arange(256)[None, :] & 0xF0)
    for e in listing:
        assert np.array_equal(lib.table(e["name"]), trunc)
        assert e["cost"]["cells"] == len(gates.gates)
        assert lib.get(e["name"]).source["cells"] == str(cells.resolve())
    # without the cell file the cells are unknown, named with file and line
    alone = run(str(folder / "vec.v"), "--library", str(tmp_path / "lib2"))
    assert alone.exit_code == 2
    assert re.search(
        r"vec\.v:\d+: module mul8u_vec instantiates 'PDK_\w+', which is not defined; "
        "give its file with --cells",
        alone.output,
    )


def test_one_bad_file_does_not_throw_away_the_batch(tmp_path):
    good = write(tmp_path / "good.v", EXACT_U)
    bad = write(tmp_path / "bad.v", MUL.format(name="mul_bad", body="  assign o = a * ;"))
    lib_dir = tmp_path / "lib"
    args = [str(good), str(bad), str(tmp_path / "gone.v"), str(tmp_path / "." / "good.v")]
    result = run(*args, "--library", str(lib_dir), "-j", "2")  # good.v named twice: once
    assert result.exit_code == 2
    assert [ln.split(": ")[1] for ln in error_lines(result.output)] == [
        str(tmp_path / "gone.v"),
        f"{bad}:2",
    ]
    assert "good " in result.output and "added 1; library has 2" in result.output
    assert "good" in Library.open(lib_dir)
    write(bad, EXACT_U.replace(b"mul8u_exact", b"mul_bad"))
    rerun = run(str(good), str(bad), "--library", str(lib_dir))
    assert rerun.exit_code == 0, rerun.output
    assert rerun.output.count("(cached)") == 1 and "added 1; library has 3" in rerun.output


def test_signedness_of_degenerate_circuits(tmp_path):
    raw_zero = np.zeros((256, 256), dtype=np.uint16)
    assert pipeline.choose_signedness(raw_zero)[0] is False
    only_a = np.repeat(np.arange(256, dtype=np.uint16)[:, None], 256, axis=1)
    assert pipeline.choose_signedness(only_a)[0] is False
    signed = (exact_table(True) & 0xFFFF).astype(np.uint16)
    assert pipeline.choose_signedness(signed) == (
        True,
        "auto: signed (closer to the exact product)",
    )


def test_reserved_names_are_the_exact_generators_names():
    from hwflow.multipliers.generators import MultiplierSpec

    for signed in (False, True):
        assert pipeline.EXACT_NAMES[signed] == MultiplierSpec("exact", signed, {}).name


def test_an_empty_folder_is_an_error(tmp_path):
    result = run(str(tmp_path), "--library", str(tmp_path / "lib"))
    assert result.exit_code == 2 and "no .v files in this folder" in result.output


def test_a_yosys_crash_without_an_error_line_reports_the_runtime_s_last_words():
    from hwflow.characterize.netlist import _yosys_error

    item = YosysItem((), "", "/data/huge.v", {"n0/huge.v": "/data/huge.v"})
    log = "1. Executing Verilog-2005 frontend: n0/huge.v\n"
    trap = "Traceback (most recent call last):\n  ...\n"
    trap += "wasmtime._trap.Trap: out of bounds memory access\n"
    assert _yosys_error(log, trap, 1, item) == (
        "yosys failed: wasmtime._trap.Trap: out of bounds memory access"
    )
    assert "out of memory?" in _yosys_error(log, "", -9, item)
    assert "n0/" not in _yosys_error("n0/huge.v:7: ERROR: bad\n", "", 1, item)


def test_an_interrupted_run_keeps_finished_groups_and_the_rerun_does_the_rest(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(pipeline, "MAX_BATCH", 1)  # one design per group
    monkeypatch.setattr(pipeline, "COMMIT_EVERY_S", 0.0)  # commit after every group
    bodies = ("a * b", "(a * b) & 16'hfff0", "(a * b) | 16'h0001")
    files = [
        write(tmp_path / f"m{i}.v", MUL.format(name=f"m{i}", body=f"  assign o = {body};"))
        for i, body in enumerate(bodies)
    ]
    lib_dir = tmp_path / "lib"
    groups = []

    def ctrl_c_after_the_second_group(n: int) -> None:
        groups.append(n)
        if len(groups) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.characterize_netlists(files, lib_dir, progress=ctrl_c_after_the_second_group)
    assert sorted(e.name for e in Library.open(lib_dir).entries) == ["m0", "m1"]
    done = pipeline.characterize_netlists(files, lib_dir)
    assert [(o.entry.name, o.cached) for o in done] == [
        ("m0", True), ("m1", True), ("m2", False)
    ]  # fmt: skip
    lib = Library.open(lib_dir)
    assert "u_exact" in lib and lib.get("m2").cost["energy_rel"] is not None
