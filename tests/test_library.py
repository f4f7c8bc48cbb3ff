"""hwflow.multipliers.library: index + files, atomic commits, lookups, relative energy."""

from __future__ import annotations

import numpy as np
import pytest

from hwflow.errors import LibraryError
from hwflow.multipliers.library import Library, LibraryEntry, NewEntry, sort_entries
from hwflow.multipliers.table import compute_metrics, exact_table


def new_entry(name: str, signed: bool, energy: float, family: str | None = None, mae_shift=0):
    table = exact_table(signed) + mae_shift
    source = (
        {"kind": "generator", "family": family} if family else {"kind": "netlist", "sha256": name}
    )
    cost = {"cells": 10, "gates": {"AND": 10}, "area": 60.0, "depth": 3, "energy": energy}
    entry = LibraryEntry(name, signed, source, compute_metrics(table, signed), cost, {"x": "1"})
    return NewEntry(entry, table, f"// {name}\n", '{"n": 1}')


def test_open_requires_an_index_and_load_writes_nothing(tmp_path):
    with pytest.raises(LibraryError, match="no multiplier library here"):
        Library.open(tmp_path / "lib")
    lib = Library.load(tmp_path / "lib")
    assert lib.entries == [] and not (tmp_path / "lib").exists()
    Library.create(tmp_path / "lib")
    assert Library.open(tmp_path / "lib").entries == []


def test_commit_writes_files_then_index_and_round_trips(tmp_path):
    lib = Library.load(tmp_path)
    lib.commit(
        [new_entry("u_exact", False, 10.0, "exact"), new_entry("approx", False, 4.0, None, 3)]
    )
    again = Library.open(tmp_path)
    assert [e.name for e in again.entries] == ["u_exact", "approx"]
    assert np.array_equal(again.table("approx"), exact_table(False) + 3)
    assert again.table("approx").dtype == np.int32
    assert again.netlist_path("approx").read_text() == "// approx\n"
    assert again.gate_netlist_path("approx").read_text() == '{"n": 1}'
    assert again.get("approx").cost["energy_rel"] == pytest.approx(0.4)
    assert again.get("approx").metrics["bias"] == 3.0
    assert again.exact_name(False) == "u_exact"
    with pytest.raises(LibraryError, match="no exact signed multiplier"):
        again.exact_name(True)
    with pytest.raises(LibraryError, match=r"no multiplier named 'zzz' \(known: approx, u_exact\)"):
        again.get("zzz")
    assert not list(tmp_path.rglob(".*.tmp"))  # no temp files left behind


def test_replacing_the_reference_refreshes_relative_energy(tmp_path):
    lib = Library.load(tmp_path)
    lib.commit([new_entry("u_exact", False, 10.0, "exact"), new_entry("approx", False, 4.0)])
    lib.commit([new_entry("u_exact", False, 8.0, "exact")])
    assert Library.open(tmp_path).get("approx").cost["energy_rel"] == pytest.approx(0.5)


def test_find_cached_needs_matching_source_and_files(tmp_path):
    lib = Library.load(tmp_path)
    lib.commit([new_entry("approx", False, 4.0)])
    assert lib.find_cached("approx", {"sha256": "approx"}) is not None
    assert lib.find_cached("approx", {"sha256": "other"}) is None
    lib.table_path("approx").unlink()
    assert lib.find_cached("approx", {"sha256": "approx"}) is None


def test_failed_commit_leaves_the_index_untouched(tmp_path):
    lib = Library.load(tmp_path)
    lib.commit([new_entry("approx", False, 4.0)])
    index = (tmp_path / "library.yaml").read_bytes()
    bad = new_entry("broken", False, 1.0)
    bad.table = np.zeros((3, 3), dtype=np.int32)
    with pytest.raises(ValueError, match="broken: expected shape"):
        lib.commit([bad])
    assert (tmp_path / "library.yaml").read_bytes() == index
    assert [e.name for e in Library.open(tmp_path).entries] == ["approx"]


def test_malformed_index_and_table_are_library_errors(tmp_path):
    (tmp_path / "library.yaml").write_text("entries:\n  - name: x\n")
    with pytest.raises(LibraryError, match=r"library.yaml: entry 0: malformed entry"):
        Library.open(tmp_path)
    (tmp_path / "library.yaml").write_text("just text\n")
    with pytest.raises(LibraryError, match="expected a mapping with an 'entries' list"):
        Library.open(tmp_path)


def test_sort_entries_by_metric_energy_and_name():
    entries = [new_entry(n, False, e, None, s).entry for n, e, s in [("b", 3.0, 2), ("a", 5.0, 1)]]
    for e in entries:
        e.cost["energy_rel"] = e.cost["energy"] / 10
    assert [e.name for e in sort_entries(entries, "mae")] == ["a", "b"]
    assert [e.name for e in sort_entries(entries, "energy")] == ["b", "a"]
    assert [e.name for e in sort_entries(entries, "name")] == ["a", "b"]
    with pytest.raises(LibraryError, match="unknown sort key"):
        sort_entries(entries, "nope")
