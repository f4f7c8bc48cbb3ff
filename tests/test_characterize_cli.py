"""`hwflow characterize` / `hwflow library` end to end through the CLI (click's CliRunner)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hwflow.characterize.simulate import SimDesign, plain_testbench_table
from hwflow.cli import cli
from hwflow.io import sha256_file
from hwflow.multipliers.library import Library, LibraryEntry, NewEntry
from hwflow.multipliers.table import compute_metrics, exact_table, output_to_int

NL = Path(__file__).parent / "fixtures" / "netlists"


def evo_reference_model() -> np.ndarray:
    """Independent numpy model of tests/fixtures/netlists/evo_style_u.v (see its comment)."""
    a = np.arange(256)[:, None]
    b = np.arange(256)[None, :]
    rows = [(a * ((b >> j) & 1)) << j for j in range(8)]
    hi = sum(r & ~0xF for r in rows[:4]) + sum(rows[4:])
    col = [0] * 4
    for j in range(4):
        for c in range(j, 4):  # row j contributes bit (c - j) of a to column c
            col[c] = col[c] | ((a >> (c - j)) & ((b >> j) & 1))
    low = sum(col[c] << c for c in range(4))
    return ((hi & 0xFFF0) | low).astype(np.int32)


def snapshot(path: Path) -> dict[str, bytes]:
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def evo_lib(tmp_path_factory):
    lib = tmp_path_factory.mktemp("lib") / "hwflow-lib"
    result = invoke("characterize", str(NL / "evo_style_u.v"), "--library", str(lib), "--json")
    assert result.exit_code == 0, result.output
    return lib, json.loads(result.output)


def test_evoapprox_netlist_table_equals_plain_verilog_testbench(evo_lib, tmp_path):
    lib_dir, listing = evo_lib
    assert [e["name"] for e in listing] == ["evo_style_u"]
    entry = listing[0]
    assert entry["signed"] is False  # auto-detected: unsigned reads closer to a * b
    table = np.load(entry["table"])
    design = SimDesign("evo", NL / "evo_style_u.v", "mul8u_evo_hw", ("A", "B", "O"))
    plain = output_to_int(plain_testbench_table(design, tmp_path), signed=False)
    assert np.array_equal(table, plain)
    assert np.array_equal(table, evo_reference_model())
    assert entry["metrics"] == compute_metrics(plain, signed=False)
    assert entry["metrics"]["mae"] > 0  # really approximate
    # OR-ing column bits and dropping their carries never overshoots: every error <= 0
    assert entry["metrics"]["bias"] == -entry["metrics"]["mae"]
    assert entry["metrics"]["wce"] == np.abs(evo_reference_model() - exact_table(False)).max()
    lib = Library.open(lib_dir)
    assert lib.exact_name(False) == "u_exact"  # the reference was added first
    assert np.array_equal(lib.table("u_exact"), exact_table(False))
    assert lib.get("u_exact").cost["energy_rel"] == 1.0
    assert 0.5 < entry["cost"]["energy_rel"] < 1.0
    assert lib.gate_netlist_path("evo_style_u").is_file()
    # the library keeps what was simulated: yosys' flattened view, one module, same top
    stored = lib.netlist_path("evo_style_u")
    assert re.findall(r"^module (\S+?)\(", stored.read_text(), flags=re.M) == ["mul8u_evo_hw"]
    flat = SimDesign("flat", stored, "mul8u_evo_hw", ("A", "B", "O"))
    assert np.array_equal(plain_testbench_table(flat, tmp_path / "flat"), table)
    src = lib.get("evo_style_u").source
    assert (src["kind"], src["top"], src["ports"]) == ("netlist", "mul8u_evo_hw", ["A", "B", "O"])
    assert src["sha256"] == sha256_file(NL / "evo_style_u.v")  # the key: the file as given
    assert src["netlist_sha256"] == sha256_file(stored)


def test_unchanged_netlist_is_a_cache_hit(evo_lib, monkeypatch):
    lib_dir, _ = evo_lib
    import hwflow.characterize.pipeline as pipeline

    def no_work(*_a, **_k):
        raise AssertionError("cache hit expected: nothing may be resimulated")

    monkeypatch.setattr(pipeline, "_run_group", no_work)
    before = snapshot(lib_dir)
    result = invoke("characterize", str(NL / "evo_style_u.v"), "--library", str(lib_dir))
    assert result.exit_code == 0, result.output
    assert "(cached)" in result.output
    assert snapshot(lib_dir) == before  # nothing rewritten


def test_library_list_show_and_heatmap(evo_lib, tmp_path):
    lib_dir, _ = evo_lib
    out = invoke("library", "list", "--library", str(lib_dir), "--sort", "mae", "--json")
    assert out.exit_code == 0
    assert [e["name"] for e in json.loads(out.output)] == ["u_exact", "evo_style_u"]
    out = invoke("library", "list", "--library", str(lib_dir), "--sort", "energy")
    assert out.output.splitlines()[0].startswith("evo_style_u")
    png = tmp_path / "heat.png"
    out = invoke("library", "show", "evo_style_u", "--library", str(lib_dir), "--heatmap", str(png))
    assert out.exit_code == 0
    assert "mae=3.34375" in out.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    bad = invoke("library", "list", "--library", str(lib_dir), "--sort", "colour")
    assert bad.exit_code == 2 and "unknown sort key 'colour'" in bad.output
    bad = invoke("library", "show", "nosuch", "--library", str(lib_dir))
    assert bad.exit_code == 2 and "no multiplier named 'nosuch'" in bad.output
    bad = invoke("library", "list", "--library", str(tmp_path / "none"))
    assert bad.exit_code == 2 and "no multiplier library here" in bad.output


@pytest.fixture
def small_lib(tmp_path):
    """A library with one entry, made without simulation (for bad-input tests)."""
    lib = Library.load(tmp_path / "lib")
    source = {"kind": "generator", "family": "exact"}
    cost = {"cells": 1, "gates": {}, "area": 1.0, "depth": 1, "energy": 2.0}
    metrics = compute_metrics(exact_table(False), False)
    entry = LibraryEntry("u_exact", False, source, metrics, cost)
    lib.commit([NewEntry(entry, exact_table(False), "// stub\n", "{}")])
    return tmp_path / "lib"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["syntax_error.v"], r"syntax_error\.v:2: syntax error"),
        (["missing.v"], r"missing\.v: file not found"),
        (["two_tops.v"], r"several top-level modules .* --top"),
        (["two_tops.v", "--top", "nosuch"], r"no module named 'nosuch'"),
        (["odd_ports.v"], r"cannot tell the multiplier ports .* --ports"),
        (["odd_ports.v", "--ports", "x,y,q"], r"has no port 'q'"),
        (["narrow.v"], r"port a of mul_narrow is input \[4\], expected input \[8\]"),
        (["clocked.v"], r"clocked\.v: a sequential design"),
        (["latch.v"], r"latch\.v: a sequential design"),
        (["xz_out.v"], r"xz_out\.v: output o of mul_xz is X or Z for a=0, b=77"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_leaves_library_unchanged(small_lib, args, message):
    import re

    files = [str(NL / a) if a.endswith(".v") else a for a in args]
    before = snapshot(small_lib)
    result = CliRunner().invoke(cli, ["characterize", *files, "--library", str(small_lib)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert re.search(message, lines[0]), lines[0]
    assert snapshot(small_lib) == before


def test_failure_does_not_create_a_library(tmp_path):
    lib = tmp_path / "new-lib"
    result = CliRunner().invoke(cli, ["characterize", str(NL / "xz_out.v"), "--library", str(lib)])
    assert result.exit_code == 2
    assert not lib.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give netlist files, or --builtin and/or --generator"),
        (["--builtin", "x.v"], "give netlist files, or --builtin and/or --generator"),
        (["--generator", "u_trunc_k6", "x.v"], "--builtin and/or --generator (not both)"),
        (["--builtin", "--top", "t"], "apply to netlists"),
        (["--generator", "u_trunc_k99"], "generator 'u_trunc_k99': multiplier spec trunc"),
        (["--generator", "u_vct_k13"], "write it as 'u_vct_k13_n8'"),
        (["--generator", "u_trunc_k6,q_exact"], "expected u_ or s_, a family"),
        (["x.v", "--ports", "A,B"], "--ports needs three names"),
        (["x.v", "--jobs", "0"], "0 is not in the range x>=1"),
        (["x.v", "--timeout", "nan"], "'nan' is not a finite number"),
    ],
)
def test_bad_options(args, message, tmp_path):
    result = CliRunner().invoke(cli, ["characterize", *args, "--library", str(tmp_path / "l")])
    assert result.exit_code == 2 and message in result.output


def test_costs_csv_attaches_published_figures(evo_lib, tmp_path):
    lib_dir, _ = evo_lib
    csv_file = tmp_path / "costs.csv"
    csv_file.write_text("name,power,area,delay\nevo_style_u,0.31,600.5,1.2\n")
    args = ["characterize", str(NL / "evo_style_u.v"), "--library", str(lib_dir)]
    result = invoke(*args, "--costs", str(csv_file), "--json")
    assert result.exit_code == 0, result.output
    published = json.loads(result.output)[0]["cost"]["published"]
    assert published == {"power": 0.31, "area": 600.5, "delay": 1.2}
    assert Library.open(lib_dir).get("evo_style_u").cost["published"] == published
    csv_file.write_text("name,power,area\nevo_style_u,0.31,600.5\n")
    bad = CliRunner().invoke(cli, [*args, "--costs", str(csv_file)])
    assert bad.exit_code == 2 and "costs.csv:1: costs CSV lacks column(s) delay" in bad.output
    csv_file.write_text("name,power,area,delay\nevo_style_u,lots,600.5,1\n")
    bad = CliRunner().invoke(cli, [*args, "--costs", str(csv_file)])
    assert bad.exit_code == 2 and "costs.csv:2:" in bad.output


def test_signedness_is_detected_or_forced(tmp_path):
    lib_dir = tmp_path / "lib"
    out = invoke("characterize", str(NL / "exact_s.v"), "--library", str(lib_dir), "--json")
    assert out.exit_code == 0, out.output
    entry = json.loads(out.output)[0]
    assert entry["signed"] is True and entry["metrics"]["wce"] == 0
    lib = Library.open(lib_dir)
    assert lib.exact_name(True) == "s_exact"  # the signed reference was added
    assert "u_exact" not in lib  # no unsigned design, so no unsigned reference
    forced = invoke(
        "characterize", str(NL / "exact_s.v"), "--unsigned", "--library", str(lib_dir), "--json"
    )
    entry = json.loads(forced.output)[0]
    assert entry["signed"] is False and entry["metrics"]["wce"] > 0  # read the wrong way
    assert Library.open(lib_dir).exact_name(False) == "u_exact"


def test_builtin_reference_names_are_reserved(tmp_path):
    clash = tmp_path / "u_exact.v"
    clash.write_bytes((NL / "exact_u.v").read_bytes())
    result = CliRunner().invoke(cli, ["characterize", str(clash), "--library", str(tmp_path / "l")])
    assert result.exit_code == 2 and "name 'u_exact' is taken by a built-in" in result.output


def test_export_takes_the_stored_simulation_view_of_a_netlist_entry(evo_lib, tmp_path):
    """`export` reads netlists/<name>.v, checked against `netlist_sha256`; its wrapper
    around the flattened module computes the characterized table."""
    from hwflow.rtl.export import library_rtl

    lib_dir, listing = evo_lib
    lib = Library.open(lib_dir)
    rtl = library_rtl(lib, "evo_style_u")
    path = tmp_path / "mul.v"
    path.write_text(rtl.verilog)
    design = SimDesign("wrapped", path, rtl.module, ("a", "b", "o"))
    raw = plain_testbench_table(design, tmp_path / "sim")
    assert np.array_equal(output_to_int(raw, False), lib.table("evo_style_u"))


@pytest.mark.slow
def test_generator_designs_by_name_outside_the_builtin_list(tmp_path):
    """--generator characterizes any design of a family's range (here past the built-in
    list's cheapest vct), with both exact multipliers, its table the reference model's."""
    from hwflow.multipliers.generators import MultiplierSpec, builtin_specs, reference_table

    names = ["u_vct_k13_n3", "s_trunc_k12_c"]
    assert not set(names) & {s.name for s in builtin_specs()}
    lib = tmp_path / "lib"
    twice = f"{names[0]},{names[1]}"  # a design named twice is characterized once
    args = ["characterize", "--generator", names[0], "--generator", twice, "--library", str(lib)]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    entries = {e["name"]: e for e in listed}
    assert len(listed) == len(entries) == 4
    assert set(entries) == {*names, "u_exact", "s_exact"}
    library = Library.open(lib)
    for name in names:
        spec = MultiplierSpec.from_name(name)
        assert library.get(name).source["params"] == spec.params
        assert entries[name]["signed"] == spec.signed
        assert np.array_equal(library.table(name), reference_table(spec))
    assert entries["u_vct_k13_n3"]["cost"]["energy_rel"] < 0.1
