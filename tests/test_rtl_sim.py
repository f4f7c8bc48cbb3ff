"""The exported MAC array in Icarus and Verilator: verify passes and both simulators agree
bit for bit, mutations fail under both naming the layer, changed files are refused unless
allowed, the Makefile runs without hwflow, Verilog elaborates as Verilog-2005, yosys
synthesizes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hwflow.cli import cli
from hwflow.errors import HwflowError, VerificationError
from hwflow.multipliers.generators import MultiplierSpec, reference_table
from hwflow.rtl import export, vectors
from hwflow.rtl.check import simulation_outputs
from hwflow.rtl.design import LayerPlan, write_design
from hwflow.rtl.mac import Argmax, Requant
from hwflow.rtl.verify import verify

FIXTURES = Path(__file__).parent / "fixtures" / "netlists"
VENV_BIN = Path(sys.executable).parent


def evo_style_table() -> np.ndarray:
    """Independent numpy model of fixtures/netlists/evo_style_u.v (see its comments)."""
    a = np.arange(256, dtype=np.int64)[:, None]
    b = np.arange(256, dtype=np.int64)[None, :]
    rows = [(a * ((b >> i) & 1)) for i in range(8)]  # partial-product row i: A & B[i]
    hi = sum(((rows[i] << i) & 0xFFF0) for i in range(4))
    hi = (hi + sum(rows[i] << i for i in range(4, 8))) & 0xFFFF
    low = 0
    for col in range(4):
        bit = 0
        for i in range(col + 1):
            bit |= (rows[i] >> (col - i)) & 1
        low |= bit << col
    return ((hi & 0xFFF0) | low).astype(np.int32)


def _operands(rng, signed, g, m, k, n):
    x = rng.integers(-128, 128, (g, m, k)) if signed else rng.integers(0, 256, (g, m, k))
    w = rng.integers(-127, 128, (g, k, n))
    # extremes: worst-case sums must not overflow, zero weights must add nothing
    x[0, 0] = -128 if signed else 255
    w[0, :, 0] = -128 if signed else -127
    x[0, 1] = 127 if signed else 255
    w[0, :, 1] = -128 if signed else 127
    w[-1, :2, -1] = 0
    return x, w


def _plans(rng) -> list[LayerPlan]:
    trunc = MultiplierSpec("trunc", False, {"k": 6, "comp": True})
    bam = MultiplierSpec("bam", True, {"hbl": 2, "vbl": 5})
    evo = export.netlist_rtl(
        "evo_u",
        (FIXTURES / "evo_style_u.v").read_text(),
        "mul8u_evo_hw",
        ["A", "B", "O"],
        False,
        {"kind": "netlist"},
    )
    layers = [
        ("features.0", export.generator_rtl(trunc.name, trunc), reference_table(trunc), False,
         (1, 24, 9, 6)),
        ("features.3", export.generator_rtl(bam.name, bam), reference_table(bam), True,
         (2, 10, 12, 3)),
        ("classifier", evo, evo_style_table(), False, (1, 4, 40, 4)),
    ]  # fmt: skip
    plans = []
    for name, rtl, table, signed, shape in layers:
        x, w = _operands(rng, signed, *shape)
        acc = vectors.reference_acc(x, w, table, signed)
        plans.append(LayerPlan(name, rtl, table, signed, x, w, acc))
    # integer output stages: unsigned codes with ReLU, and signed codes with a negative
    # zero point and no ReLU (both clamp ends are reached)
    offsets0 = rng.integers(-3000, 3000, (1, 6))
    plans[0] = replace(
        plans[0],
        requant=Requant(30000, 22, 0, False, True, int(offsets0.min()), int(offsets0.max())),
        offsets=offsets0,
    )
    offsets1 = rng.integers(-70000, 70000, (2, 3))
    plans[1] = replace(
        plans[1],
        requant=Requant(16777, 24, -5, True, False, int(offsets1.min()), int(offsets1.max())),
        offsets=offsets1,
    )
    offsets2 = rng.integers(-100000, 100000, (1, 4))
    plans[2] = replace(
        plans[2],
        argmax=Argmax(4, int(offsets2.min()), int(offsets2.max())),
        offsets=offsets2,
    )
    return plans


def rtl_library(path: Path, evo_top: str = "mul8u_evo_hw") -> dict:
    """A library holding `_plans`' three multipliers (committed through the Library API,
    tables from the numpy models), which verify checks the export against; returns the
    `meta` that names it. `evo_top`: the netlist's module name."""
    from hwflow.io import sha256_bytes
    from hwflow.multipliers.library import Library, LibraryEntry, NewEntry

    evo = (FIXTURES / "evo_style_u.v").read_text().replace("mul8u_evo_hw", evo_top)
    evo_source = {"kind": "netlist", "top": evo_top, "ports": ["A", "B", "O"],
                  "netlist_sha256": sha256_bytes(evo.encode())}  # fmt: skip
    items = [
        (MultiplierSpec("trunc", False, {"k": 6, "comp": True}), None, None),
        (MultiplierSpec("bam", True, {"hbl": 2, "vbl": 5}), None, None),
        ("evo_u", evo_source, evo),
    ]
    new = []
    for spec, source, netlist in items:
        if isinstance(spec, MultiplierSpec):
            name, signed, table = spec.name, spec.signed, reference_table(spec)
            source = {"kind": "generator", "family": spec.family, "params": dict(spec.params)}
            netlist = export.generator_rtl(name, spec).verilog
        else:
            name, signed, table = spec, False, evo_style_table()
        entry = LibraryEntry(name, signed, source, metrics={}, cost={"energy": 1.0})
        new.append(NewEntry(entry, table, netlist, "{}"))
    Library.create(path).commit(new)
    return {"images": 0, "library": str(path)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rtl")
    out = root / "design"
    out.mkdir()
    meta = rtl_library(root / "lib")
    write_design(out, _plans(np.random.default_rng(0)), lanes=4, meta=meta)
    return out


SIMULATORS = ["icarus", "verilator"]


@pytest.fixture(scope="module")
def verified(exported, tmp_path_factory) -> dict[str, tuple[dict, Path]]:
    """{simulator: (report, kept build and output directory)} for the export, once."""
    out = {}
    for simulator in SIMULATORS:
        keep = tmp_path_factory.mktemp(f"verify-{simulator}")
        out[simulator] = (verify(exported, record=False, simulator=simulator, keep_dir=keep), keep)
    return out


def _copy(src: Path, tmp_path: Path, name: str = "mutant") -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def test_simulators_agree_bit_for_bit(exported, verified):
    manifest = json.loads((exported / "manifest.json").read_text())
    icarus, verilator = (simulation_outputs(verified[s][1], manifest) for s in SIMULATORS)
    assert set(icarus) == {f"layers/{lay['port']}_acc.hex" for lay in manifest["layers"]} | {
        "layers/features_0_code.hex", "layers/features_3_code.hex", "layers/classifier_code.hex",
    }  # fmt: skip
    assert icarus == verilator
    reports = [verified[s][0] for s in SIMULATORS]
    assert [r["simulator"]["name"] for r in reports] == SIMULATORS
    assert reports[1]["simulator"]["version"].startswith("Verilator 5.")
    assert [lay["classes"] for lay in reports[0]["layers"][2:]] == [
        lay["classes"] for lay in reports[1]["layers"][2:]
    ]


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_verify_passes_and_counts_every_accumulator(exported, verified, simulator):
    report = verified[simulator][0]
    manifest = json.loads((exported / "manifest.json").read_text())
    assert report["ok"], report
    assert report["mismatches"] == 0 and report["modified_files"] == []
    assert report["checked"] == manifest["accumulations"] == 24 * 6 + 2 * 10 * 3 + 4 * 4
    assert [lay["checked"] for lay in report["layers"]] == [144, 60, 16]
    # the classifier stage: one class per row, the first largest acc + offset
    cls = report["layers"][2]
    assert cls["classes_checked"] == 4 and cls["class_mismatches"] == 0
    plan = _plans(np.random.default_rng(0))[2]
    t = plan.acc[0] + plan.offsets[0]
    assert cls["classes"] == [int(np.argmax(row)) for row in t]
    assert report["codes_checked"] == 144 + 60 and report["code_mismatches"] == 0
    codes = [
        np.loadtxt(exported / "vectors" / f"{port}_expected_code.txt", dtype=np.int64)
        for port in ("features_0", "features_3")
    ]
    assert {0, 255} <= set(codes[0]) and len(set(codes[0])) > 10
    assert {-128, 127} <= set(codes[1]) and len(set(codes[1])) > 10


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_swapped_multiplier_fails_and_names_the_layer(exported, tmp_path, simulator):
    """The classifier engine's lanes instantiate the trunc design instead of the netlist."""
    mutant = _copy(exported, tmp_path)
    top = mutant / "rtl" / "hwflow_top.v"
    text = top.read_text()
    assert text.count("mul_evo_u ") == 4  # one instance per lane
    top.write_text(text.replace("mul_evo_u ", "mul_u_trunc_k6_c "))
    report = verify(mutant, simulator=simulator, allow_changed=True)
    assert not report["ok"] and report["simulator"]["name"] == simulator
    bad = {lay["layer"]: lay["mismatches"] for lay in report["layers"]}
    assert bad["features.0"] == bad["features.3"] == 0 and bad["classifier"] > 0
    first = report["first_mismatch"]
    assert first["layer"] == "classifier" and len(first["x"]) == len(first["w"]) == 40
    assert report["modified_files"] == ["rtl/hwflow_top.v"]

    if simulator == "icarus":  # (the CLI's wording, once)
        args = ["verify", str(mutant), "--simulator", simulator, "--allow-changed"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2
        assert "first: layer classifier" in result.output.splitlines()[-1]
        assert "first mismatch: layer classifier" in result.output
        assert "files changed since export: rtl/hwflow_top.v" in result.output


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_corrupted_expected_value_is_reported_exactly(exported, tmp_path, simulator):
    mutant = _copy(exported, tmp_path)
    path = mutant / "vectors" / "features_3_expected.txt"
    values = path.read_text().split()
    job = 37
    values[job] = str(int(values[job]) + 1)
    path.write_text("\n".join(values) + "\n")
    report = verify(mutant, simulator=simulator, allow_changed=True)
    assert not report["ok"] and report["mismatches"] == 1
    first = report["first_mismatch"]
    assert first["layer"] == "features.3"
    assert (first["lane"], first["pass"], first["job"]) == (37 % 4, 37 // 4, 37)
    assert first["index"] == [1, 2, 1]  # job 37 of (G=2, M=10, Ng=3)
    assert first["expected"] == first["actual"] + 1
    assert first["cycle"] == (37 // 4 + 1) * 12 - 1 + 2
    if simulator == "icarus":
        args = ["verify", str(mutant), "--json", "--allow-changed", "--simulator", simulator]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2
        assert json.loads(result.output[: result.output.rindex("}") + 1])["mismatches"] == 1


def test_changed_files_fail_unless_allowed(exported, tmp_path):
    """A changed vector (or design, or testbench) file is a failure before any simulation;
    --allow-changed verifies the changed files; a changed Makefile is only reported.
    (The export sits in a folder whose name has a space and a non-ASCII letter, which
    Icarus reads through hwflow's testbench.)"""
    mutant = _copy(exported, tmp_path, "exp ü")
    path = mutant / "vectors" / "features_0_x.hex"
    path.write_text(path.read_text() + "\n")  # a blank line: same operands, other bytes
    (mutant / "tb" / "hwflow_feeder.v").write_text(
        (mutant / "tb" / "hwflow_feeder.v").read_text() + "// edited\n"
    )
    marker = tmp_path / "imported"
    _plant_python(mutant, marker)  # changed testbench Python: verify runs its own
    result = CliRunner().invoke(cli, ["verify", str(mutant)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("error: ") and "5 files changed since export (" in result.output
    assert "tb/test_hwflow.py, vectors/features_0_x.hex)" in result.output
    assert "--allow-changed" in result.output and not (mutant / "verify.json").exists()
    with pytest.raises(VerificationError, match="files changed since export"):
        verify(mutant, simulator="icarus")
    args = ["verify", str(mutant), "--allow-changed", "--simulator", "icarus"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "files changed since export: tb/hwflow_check.py, tb/hwflow_feeder.v" in result.output
    assert "vectors/features_0_x.hex" in result.output and not marker.exists()
    # only the Makefile changed: verify does not read it, so it passes and says so
    mutant = _copy(exported, tmp_path / "make")
    (mutant / "Makefile").write_text((mutant / "Makefile").read_text() + "# edited\n")
    report = verify(mutant, simulator="icarus", record=False)
    assert report["ok"] and report["modified_files"] == ["Makefile"]


def test_default_simulator_is_verilator_when_it_works(monkeypatch):
    from hwflow import simulator as sim_mod
    from hwflow.rtl.verify import choose_simulator

    assert choose_simulator(None) == ("verilator", "default")
    assert choose_simulator("icarus") == ("icarus", "asked for")
    assert choose_simulator("verilator") == ("verilator", "asked for")
    monkeypatch.setattr(sim_mod, "verilator_problem", lambda: "verilator not found (test)")
    assert choose_simulator(None) == (
        "icarus", "default; Verilator not usable: verilator not found (test)",
    )  # fmt: skip
    with pytest.raises(VerificationError, match="--simulator verilator: verilator not found"):
        choose_simulator("verilator")


def test_verify_rejects_a_directory_that_is_not_an_export(tmp_path):
    result = CliRunner().invoke(cli, ["verify", str(tmp_path)])
    assert result.exit_code == 2
    assert "manifest.json: not found" in result.output


def elaborates_as_verilog_2005(export_dir: Path, tmp_path: Path) -> list[str]:
    """Every design top alone, and every simulation's harness with its sources, through
    `iverilog -g2005 -Wall`; returns the tops checked."""
    manifest = json.loads((export_dir / "manifest.json").read_text())
    rtl = [s for s in manifest["sources"] if s.startswith("rtl/")]
    tops = [(manifest["top"], rtl)]
    if manifest["net"]:
        tops.append((manifest["net"]["module"], rtl))
    tops += [(sim["harness"], sim["sources"]) for sim in manifest["simulations"]]
    for top, files in tops:
        proc = subprocess.run(
            ["iverilog", "-g2005", "-Wall", "-s", top, "-o", str(tmp_path / "a.vvp"), *files],
            cwd=export_dir,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, f"{top}: {proc.stderr}"
    return [top for top, _ in tops]


def test_rtl_elaborates_as_verilog_2005(exported, tmp_path):
    assert elaborates_as_verilog_2005(exported, tmp_path) == ["hwflow_top", "hwflow_harness"]


def test_yosys_synthesizes_top_with_each_engines_multiplier(exported):
    from hwflow.rtl.synth import synth_top

    stats = synth_top(exported)
    assert stats["engines"] == {
        "features.0": {"multiplier": "mul_u_trunc_k6_c", "instances": 4},
        "features.3": {"multiplier": "mul_s_bam_h2_v5", "instances": 4},
        "classifier": {"multiplier": "mul_evo_u", "instances": 4},
    }
    cells = stats["multiplier_cells"]
    # whole gate-level circuits (the netlist's submodules flattened into its wrapper)
    assert min(cells.values()) > 100
    assert stats["top_cells"] > sum(cells.values())
    # this export has no whole-network design: asking for it names what there is
    with pytest.raises(HwflowError, match="no top 'hwflow_net'.*has hwflow_top"):
        synth_top(exported, top="hwflow_net")


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_exported_makefile_runs_without_hwflow(
    exported, verified, tmp_path, make_without_hwflow, simulator
):
    """Plain `make SIM=...` in a copy, with `import hwflow` poisoned: cocotb and the
    simulator only; its outputs are those of `hwflow verify` bit for bit."""
    mutant = _copy(exported, tmp_path)
    proc = make_without_hwflow(mutant, f"SIM={simulator}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((mutant / "sim_build" / "hwflow_verify.json").read_text())
    assert report["ok"] and report["checked"] == 220
    manifest = json.loads((exported / "manifest.json").read_text())
    made = simulation_outputs(mutant / "sim_build", manifest)
    assert made and made == simulation_outputs(verified[simulator][1], manifest)
    # and the same Makefile fails on a corrupted expectation
    exp = mutant / "vectors" / "classifier_expected.txt"
    values = exp.read_text().split()
    exp.write_text("\n".join([str(int(values[0]) - 5), *values[1:]]) + "\n")
    proc = make_without_hwflow(mutant, f"SIM={simulator}")
    assert proc.returncode != 0
    assert "layer classifier lane 0" in proc.stdout + proc.stderr


def test_verify_rejects_an_export_of_another_format(exported, tmp_path):
    """A design exported before the simulations were split names the fix."""
    old = _copy(exported, tmp_path)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "format": 1}))
    result = CliRunner().invoke(cli, ["verify", str(old)])
    assert result.exit_code == 2
    assert "export format 1" in result.output and "export the design again" in result.output


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_sampled_rows_check_a_subset_and_name_the_traces_row(tmp_path, simulator):
    """`rows`: at most N operand rows per layer, every channel of each; expectations are
    the kept rows' sums and a mismatch names the row of the original trace."""
    out = tmp_path / "design"
    out.mkdir()
    plans = _plans(np.random.default_rng(0))
    manifest = write_design(out, plans, lanes=4, meta=rtl_library(tmp_path / "lib"), rows=5)
    ids = [lay["row_ids"] for lay in manifest["layers"]]
    assert len(ids[0]) == len(ids[1]) == 5 and ids[2] is None  # 24 and 10 rows; 4 fit
    assert ids[0] == sorted(set(ids[0])) and max(ids[0]) < 24
    assert [lay["jobs"] for lay in manifest["layers"]] == [5 * 6, 2 * 5 * 3, 4 * 4]
    expected = out / "vectors" / "features_0_expected.txt"
    sums = np.loadtxt(expected, dtype=np.int64)
    assert np.array_equal(sums.reshape(5, 6), plans[0].acc[0, ids[0]])
    sums[2 * 6] += 1  # kept row 2, channel 0
    expected.write_text("\n".join(map(str, sums)) + "\n")
    report = verify(out, simulator=simulator, allow_changed=True)
    assert not report["ok"] and report["mismatches"] == 1
    assert report["first_mismatch"]["index"] == [0, ids[0][2], 0]
    with pytest.raises(VerificationError, match="--rows must be >= 1"):
        write_design(tmp_path / "other", plans, lanes=4, meta={}, rows=0)


def _plant_python(export_dir: Path, marker: Path) -> None:
    """Replace the export's Python (and add some beside it) with modules that leave
    `marker` when imported and claim a pass when run: none of it may run in verify."""
    code = (
        f"from pathlib import Path\nPath({str(marker)!r}).write_text(__name__)\n"
        "REPORT = 'hwflow_verify.json'\n"
        "def check_part(*a, **k):\n"
        "    return {'ok': True, 'layers': [], 'errors': [], 'checked': 0, 'mismatches': 0}\n"
    )
    for rel in ("tb/hwflow_check.py", "tb/test_hwflow.py", "tb/hwflow_verilator.py",
                "hwflow_check.py", "top_tb.py", "cocotb_tools.py"):  # fmt: skip
        (export_dir / rel).write_text(code)


def _rehash(export_dir: Path, multiplier: str | None = None) -> None:
    """Update the manifest's hashes to the files as they are now (what a forger does)."""
    from hwflow.io import sha256_file

    path = export_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"] = {rel: sha256_file(export_dir / rel) for rel in manifest["files"]}
    for m in manifest["multipliers"]:
        m["sha256"] = sha256_file(export_dir / m["file"])
    path.write_text(json.dumps(manifest))


def test_forged_export_fails_and_runs_none_of_its_python(exported, tmp_path, monkeypatch):
    """A broken multiplier netlist, a checker edited to report a pass and the manifest's
    hashes updated: verify refuses it from the library's record, imports nothing."""
    forged = _copy(exported, tmp_path)
    mult = forged / "rtl" / "mul_evo_u.v"
    text = mult.read_text()
    assert text.count("assign O = {hi[15:4], c3, c2, c1, c0};") == 1
    mult.write_text(text.replace("c3, c2, c1, c0}", "c3, c2, c1, 1'b1}"))
    marker = tmp_path / "imported"
    _plant_python(forged, marker)
    _rehash(forged)
    monkeypatch.chdir(forged)
    monkeypatch.syspath_prepend(str(forged))
    result = CliRunner().invoke(cli, ["verify", str(forged), "--simulator", "icarus"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "mul_evo_u.v: is not the RTL of library entry evo_u" in result.output
    assert not marker.exists() and not (forged / "verify.json").exists()


def test_forged_expected_sums_are_not_the_emulation(exported, tmp_path):
    """Expected sums edited to what a broken design computes (hashes updated) differ from
    hwflow's own emulation of the operand vectors with the library's table."""
    from hwflow.multipliers.library import Library
    from hwflow.rtl.verify import check_expected, load_manifest

    forged = _copy(exported, tmp_path)
    manifest = load_manifest(forged)
    lib = Library.open(manifest["library"])
    assert check_expected(forged, manifest, lib) == []
    path = forged / "vectors" / "classifier_expected.txt"
    values = [int(v) for v in path.read_text().split()]
    path.write_text("".join(f"{v | 1}\n" for v in values))  # the LSB stuck at 1
    _rehash(forged)
    bad = sum(v % 2 == 0 for v in values)
    assert bad > 0
    assert check_expected(forged, load_manifest(forged), lib) == [
        f"classifier_expected.txt: {bad} expected sums are not hwflow's emulation of the "
        f"layer's operands with library entry evo_u (first: job "
        f"{next(i for i, v in enumerate(values) if v % 2 == 0)})"
    ]


def test_verify_needs_a_library_outside_the_export(exported, tmp_path):
    moved = _copy(exported, tmp_path)
    manifest = json.loads((moved / "manifest.json").read_text())
    shutil.copytree(manifest["library"], moved / "lib")
    result = CliRunner().invoke(cli, ["verify", str(moved), "--library", str(moved / "lib")])
    assert result.exit_code == 2 and "the library is inside the export" in result.output
    del manifest["library"]
    (moved / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(cli, ["verify", str(moved)])
    assert result.exit_code == 2 and "names no library" in result.output
    assert "pass --library LIB" in result.output


def test_module_names_in_an_export_are_unique_by_construction(tmp_path):
    """A user netlist whose module has the name of a built-in's module
    (`mul_u_trunc_k6_c`): hwflow's module for the built-in takes another name, every
    module is defined once and the design elaborates."""
    from hwflow.multipliers.library import Library

    meta = rtl_library(tmp_path / "lib", evo_top="mul_u_trunc_k6_c")
    lib = Library.open(tmp_path / "lib")
    names = ["u_trunc_k6_c", "s_bam_h2_v5", "evo_u"]
    modules = export.multiplier_modules(lib, names)
    assert modules == {
        "u_trunc_k6_c": "mul_u_trunc_k6_c_2", "s_bam_h2_v5": "mul_s_bam_h2_v5",
        "evo_u": "mul_evo_u",
    }  # fmt: skip
    plans = [
        replace(p, multiplier=export.library_rtl(lib, name, modules[name]))
        for p, name in zip(_plans(np.random.default_rng(0)), names, strict=True)
    ]
    out = tmp_path / "design"
    out.mkdir()
    write_design(out, plans, lanes=4, meta=meta)
    text = "".join(f.read_text() for f in (out / "rtl").glob("*.v"))
    assert text.count("module mul_u_trunc_k6_c(") + text.count("module mul_u_trunc_k6_c ") == 1
    assert elaborates_as_verilog_2005(out, tmp_path) == ["hwflow_top", "hwflow_harness"]
    from hwflow.rtl.verify import check_multipliers, load_manifest

    assert len(check_multipliers(out, load_manifest(out), lib)) == 3


def test_exported_makefile_refuses_a_folder_with_a_space(exported, tmp_path, make_without_hwflow):
    spaced = _copy(exported, tmp_path, "my design")
    proc = make_without_hwflow(spaced)
    assert proc.returncode != 0 and not (spaced / "sim_build").exists()
    assert "holds a space, which make cannot handle" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
