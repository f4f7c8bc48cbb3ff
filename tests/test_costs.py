"""Published figures: CSV and EvoApprox meta.json, matching by module name,
`library list` / `library compare`, and rank correlation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hwflow.characterize.costs import (
    attach_published,
    compare_library,
    correlations,
    lookup,
    read_costs,
    spearman,
)
from hwflow.cli import cli
from hwflow.errors import ConfigError, LibraryError
from hwflow.multipliers.library import Library, LibraryEntry, NewEntry
from hwflow.multipliers.table import exact_table

NL = Path(__file__).parent / "fixtures" / "netlists"


def meta_doc(instances: list[tuple[str, dict]]) -> list:
    """A tiny EvoApprox-shaped meta.json: instances nested in datasets, params as strings."""
    return [
        {
            "datasets": [
                {
                    "bitwidth": 8,
                    "datasets": [
                        {
                            "folder": "multiplers/8x8_unsigned/pareto_pwr_mae",
                            "instances": [
                                {
                                    "files": [{"file": f"{n}_pdk45.v", "type": "Verilog PDK45"}],
                                    "name": n,
                                    "params": p,
                                    "references": [0],
                                }
                                for n, p in instances
                            ],
                        }
                    ],
                }
            ],
            "name": "multipliers",  # a named object without params: not an instance
        }
    ]


def entry(name: str, signed: bool = False, top: str | None = None, **cost) -> LibraryEntry:
    source = {"kind": "netlist", "top": top or name}
    return LibraryEntry(name, signed, source, {}, dict(cost))


# ---- reading --------------------------------------------------------------------------------


def test_meta_json_and_csv_read_the_same_figures(tmp_path):
    meta = tmp_path / "meta.json"
    params = {"pwr": "0.391", "area": "709.6", "delay": "1.43", "mae%": "0.00"}
    doc = meta_doc([("mul8u_1JFF", params), ("mul8u_2NDH", {"pwr": "0.05", "area": "x"})])
    # the same circuit listed again in another Pareto subset: read once
    doc[0]["datasets"][0]["datasets"].append(dict(doc[0]["datasets"][0]["datasets"][0]))
    meta.write_text(json.dumps(doc, indent=1))
    got = read_costs(meta)
    assert got == {
        "mul8u_1JFF": {"power": 0.391, "area": 709.6, "delay": 1.43},
        "mul8u_2NDH": {"power": 0.05},  # non-numeric area, no delay: left out
    }
    csv_file = tmp_path / "costs.csv"
    # a UTF-8 BOM and CRLF line ends, as spreadsheet exports write them
    csv_file.write_bytes(b"\xef\xbb\xbfname,power,area,delay\r\nmul8u_1JFF,0.391,709.6,1.43\r\n")
    assert read_costs(csv_file) == {"mul8u_1JFF": got["mul8u_1JFF"]}


@pytest.mark.parametrize(
    "text, message",
    [
        ("[{", "meta.json:1: not valid JSON"),
        (json.dumps({"instances": []}), "no circuits found"),
        (json.dumps(meta_doc([("m", {"pwr": "n/a"})])), "instance 'm' has no numeric params.pwr"),
    ],
)
def test_bad_meta_json_is_one_clear_error(tmp_path, text, message):
    meta = tmp_path / "meta.json"
    meta.write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        read_costs(meta)
    with pytest.raises(ConfigError, match="file not found"):
        read_costs(tmp_path / "absent.json")


def test_entries_match_by_module_name_then_entry_name():
    published = {"mul8u_A": {"power": 0.3}, "plain_name": {"power": 0.1}}
    renamed = entry("mul8u_A_pdk45", top="mul8u_A")  # file stem differs from the module
    by_name = entry("plain_name", top="other_module")
    none = entry("mul8u_B")
    assert lookup(renamed, published) == {"power": 0.3}
    assert lookup(by_name, published) == {"power": 0.1}
    assert lookup(none, published) is None
    assert attach_published([renamed, by_name, none], published) == ["mul8u_B"]
    assert renamed.cost["published"] == {"power": 0.3} and "published" not in none.cost


# ---- correlation ----------------------------------------------------------------------------


def test_spearman_matches_the_definition():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert spearman(x, [10, 20, 30, 40, 50]) == pytest.approx(1.0)
    assert spearman(x, [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = rank differences (0, 0, 1, -1, 0): rho = 1 - 6 * 2 / (5 * 24) = 0.9
    assert spearman(x, [1, 2, 4, 3, 5]) == pytest.approx(0.9)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_correlations_split_by_signedness_and_power():
    # unsigned: energy ranks power perfectly, cells reversed among the large ones
    unsigned = [
        entry(f"u{i}", energy=e, cells=c, area=10.0 * c)
        for i, (e, c) in enumerate([(1, 10), (2, 20), (3, 50), (4, 40), (5, 30)])
    ]
    signed = [entry(f"s{i}", signed=True, energy=i, cells=i, area=i) for i in range(3)]
    power = {f"u{i}": {"power": p} for i, p in enumerate([0.1, 0.2, 0.3, 0.4, 0.5])}
    power |= {f"s{i}": {"power": 0.1 * (i + 1)} for i in range(3)}
    rows = {(r.signed, r.subset): r for r in correlations([*unsigned, *signed], power)}
    assert set(rows) == {(False, "all"), (False, "power>=0.3"), (True, "all"), (True, "power>=0.3")}
    big = rows[(False, "power>=0.3")]
    assert big.n == 3 and big.rho["energy"] == pytest.approx(1.0)
    assert big.rho["cells"] == pytest.approx(-1.0) and big.rho["area"] == pytest.approx(-1.0)
    # cell ranks 1, 2, 5, 4, 3: d^2 sums to 8, rho = 1 - 6 * 8 / (5 * 24) = 0.6
    assert rows[(False, "all")].n == 5 and rows[(False, "all")].rho["cells"] == pytest.approx(0.6)
    assert rows[(True, "all")].rho["energy"] == pytest.approx(1.0)
    assert rows[(True, "power>=0.3")].n == 1 and rows[(True, "power>=0.3")].rho["energy"] is None
    # stored figures are used when no costs file is given
    for e in unsigned:
        e.cost["published"] = power[e.name]
    stored = correlations(unsigned)
    assert [r.rho for r in stored] == [rows[(False, "all")].rho, big.rho]


# ---- CLI on a hand-made library -------------------------------------------------------------


def small_library(path: Path) -> Library:
    """Exact reference plus three 'netlist' entries with hand-set costs (no simulation)."""
    lib = Library.create(path)
    table = exact_table(False)
    rows = [
        ("u_exact", {"kind": "generator", "family": "exact", "params": {}}, 1000.0, 300),
        ("evo_a_pdk45", {"kind": "netlist", "top": "mul8u_A"}, 400.0, 120),
        ("evo_b", {"kind": "netlist", "top": "mul8u_B"}, 700.0, 200),
        ("evo_c", {"kind": "netlist", "top": "mul8u_C"}, 900.0, 260),
    ]
    new = []
    for name, source, energy, cells in rows:
        cost = {"energy": energy, "cells": cells, "area": 6.0 * cells, "depth": 9, "gates": {}}
        metrics = {"mae": 0.0, "wce": 0.0, "ep_pct": 0.0}
        e = LibraryEntry(name, False, source, metrics, cost)
        new.append(NewEntry(e, table, "// none\n", "{}"))
    lib.commit(new)
    return Library.open(path)


def test_library_list_and_compare_show_published_figures(tmp_path):
    lib_dir = tmp_path / "lib"
    small_library(lib_dir)
    meta = tmp_path / "meta.json"
    figures = [("mul8u_A", "0.11", "150.5"), ("mul8u_B", "0.32", "400"), ("mul8u_C", "0.35", "500")]
    meta.write_text(json.dumps(meta_doc([(n, {"pwr": p, "area": a}) for n, p, a in figures])))
    runner = CliRunner()
    out = runner.invoke(cli, ["library", "compare", "--library", str(lib_dir)])
    assert out.exit_code == 2 and "no multiplier has a published power figure" in out.output
    compare = ["library", "compare", "--library", str(lib_dir), "--costs", str(meta)]
    out = runner.invoke(cli, compare)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert "3 multipliers with figures" in lines[0]
    assert lines[2].split() == ["unsigned", "all", "3", "1.000", "1.000", "1.000"]
    assert lines[3].split()[:3] == ["unsigned", "power>=0.3", "2"]
    assert lines[-1] == "no published figures: u_exact"
    as_json = json.loads(runner.invoke(cli, [*compare, "--json"]).output)
    assert as_json["unmatched"] == ["u_exact"] and as_json["matched"] == 3
    # list shows the published figures beside the estimate once they are stored
    lib = Library.open(lib_dir)
    entries = lib.entries
    attach_published(entries, read_costs(meta))
    lib.update(entries)
    listing = runner.invoke(cli, ["library", "list", "--library", str(lib_dir)]).output
    line_a = next(ln for ln in listing.splitlines() if ln.startswith("evo_a_pdk45"))
    assert line_a.endswith("published power 0.11, area 150.5")
    line_exact = next(ln for ln in listing.splitlines() if ln.startswith("u_exact"))
    assert "published" not in line_exact
    report = compare_library(lib_dir)  # the stored figures, no costs file
    assert report.source == "library" and report.matched == 3
    with pytest.raises(LibraryError, match="no multiplier library"):
        compare_library(tmp_path / "nowhere")


@pytest.mark.slow
def test_characterize_matches_meta_json_by_module_name_and_names_the_rest(tmp_path):
    """A renamed copy (`*_pdk45.v`) of an EvoApprox-style netlist gets its module's figures;
    a netlist the meta.json does not list is named on stderr."""
    renamed = tmp_path / "mul8u_evo_hw_pdk45.v"
    shutil.copyfile(NL / "evo_style_u.v", renamed)
    other = tmp_path / "other_u.v"
    shutil.copyfile(NL / "exact_u.v", other)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps(meta_doc([("mul8u_evo_hw", {"pwr": "0.2", "area": "300"})])))
    lib_dir = tmp_path / "lib"
    args = ["characterize", str(renamed), str(other), "--library", str(lib_dir)]
    result = CliRunner().invoke(cli, [*args, "--costs", str(meta)])
    assert result.exit_code == 0, result.output
    lib = Library.open(lib_dir)
    assert lib.get("mul8u_evo_hw_pdk45").cost["published"] == {"power": 0.2, "area": 300.0}
    assert "published" not in lib.get("other_u").cost
    note = [ln for ln in result.output.splitlines() if ln.startswith("note:")]
    assert note and note[0].endswith(": other_u") and "for 1 " in note[0]
    assert "published power 0.2, area 300" in result.output
    assert "Spearman rho of each estimate vs published power (1 multipliers" in result.output
    # a rerun with a CSV keyed by the module name updates the cached entry's figures
    csv_file = tmp_path / "costs.csv"
    csv_file.write_text("name,power,area,delay\nmul8u_evo_hw,0.25,310,1.1\n")
    result = CliRunner().invoke(cli, [*args, "--costs", str(csv_file)])
    assert result.exit_code == 0, result.output
    got = Library.open(lib_dir).get("mul8u_evo_hw_pdk45").cost["published"]
    assert got == {"power": 0.25, "area": 310.0, "delay": 1.1}
    assert np.isfinite(Library.open(lib_dir).get("other_u").cost["energy"])
