"""The library under concurrent writers, clashing names and wrong paths:
every entry kept, nothing overwritten, one `error:` line and exit 2, nothing written.

Concurrency: each repetition makes the race as wide as it gets: both writers load the library before
either commits (as two `hwflow characterize` runs do: load at the start, commit at the
end). Most repetitions commit directly from two processes (cheap); a few run the real CLI
twice in parallel.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hwflow.cli import cli
from hwflow.errors import LibraryError
from hwflow.io import sha256_file
from hwflow.multipliers.library import LOCK, Library, LibraryEntry, NewEntry
from hwflow.multipliers.table import compute_metrics, exact_table

REPO = Path(__file__).resolve().parents[1]
NL = Path(__file__).parent / "fixtures" / "netlists"
SEPARATE_REPS = 20  # two different entries from two processes
CLASH_REPS = 10  # the same name with different content from two processes
CLI_REPS = 3  # two real `hwflow characterize` runs


def _entry(name: str, content: str, shift: int) -> NewEntry:
    source = {"kind": "netlist", "path": f"/w/{content}/{name}.v", "sha256": content}
    cost = {"cells": 1, "gates": {}, "area": 1.0, "depth": 1, "energy": 1.0}
    entry = LibraryEntry(name, False, source, {"mae": float(abs(shift))}, cost)
    return NewEntry(entry, exact_table(False) + shift, f"// {content}\n", f'{{"w": "{content}"}}')


def _writer(which: int, root: str, barrier) -> None:
    """Process `which` of two: per repetition load, wait for the other, commit."""
    for rep in range(SEPARATE_REPS + CLASH_REPS):
        lib = Library.load(Path(root) / f"rep{rep}")
        barrier.wait()
        if rep < SEPARATE_REPS:
            lib.commit([_entry(f"mul{which}", f"c{which}", which + 1)])
            continue
        outcome = Path(root) / f"rep{rep}.{which}"
        try:
            lib.commit([_entry("clash", f"c{which}", which + 1)])
            outcome.write_text("committed")
        except LibraryError as exc:
            outcome.write_text(f"refused: {exc}")


def _check_files(lib: Library, name: str, content: str, shift: int) -> None:
    """The entry's files are exactly what its own writer wrote, none from the other."""
    assert lib.get(name).source["sha256"] == content
    assert np.array_equal(lib.table(name), exact_table(False) + shift)
    assert lib.get(name).table_sha256 == sha256_file(lib.table_path(name))
    assert lib.netlist_path(name).read_text() == f"// {content}\n"
    assert lib.gate_netlist_path(name).read_text() == f'{{"w": "{content}"}}'


def test_parallel_commits_from_two_processes_keep_every_entry(tmp_path):
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch
    barrier = ctx.Barrier(2, timeout=60)  # one writer failing must not stall the other
    procs = [ctx.Process(target=_writer, args=(i, str(tmp_path), barrier)) for i in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        if p.is_alive():  # a failed test leaves no writer behind
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    for rep in range(SEPARATE_REPS):
        lib = Library.open(tmp_path / f"rep{rep}")
        assert sorted(e.name for e in lib.entries) == ["mul0", "mul1"], f"repetition {rep}"
        for which in (0, 1):
            _check_files(lib, f"mul{which}", f"c{which}", which + 1)
    for rep in range(SEPARATE_REPS, SEPARATE_REPS + CLASH_REPS):
        outcomes = [(tmp_path / f"rep{rep}.{w}").read_text() for w in (0, 1)]
        assert sorted(o.split(":")[0] for o in outcomes) == ["committed", "refused"], outcomes
        winner = outcomes.index("committed")
        assert "already holds a different multiplier named 'clash'" in outcomes[1 - winner]
        lib = Library.open(tmp_path / f"rep{rep}")
        assert [e.name for e in lib.entries] == ["clash"]
        _check_files(lib, "clash", f"c{winner}", winner + 1)


def test_a_first_commit_elsewhere_is_not_read_as_a_stranger(tmp_path, monkeypatch):
    # another process's first commit makes the lock just after this one looked for it
    lib = Library.load(tmp_path / "lib")
    (tmp_path / "lib").mkdir()
    real_exists = Path.exists

    def exists_then_locked(path: Path) -> bool:
        found = real_exists(path)
        if path == tmp_path / "lib" / LOCK and not found:
            path.touch()
        return found

    monkeypatch.setattr(Path, "exists", exists_then_locked)
    lib.commit([_entry("mul0", "c0", 1)])
    monkeypatch.undo()
    assert [e.name for e in Library.open(tmp_path / "lib").entries] == ["mul0"]


def _exact_stubs(path: Path) -> None:
    """Both exact references, committed without simulation (so the CLI runs below only
    characterize their own netlist)."""
    lib = Library.load(path)
    for signed in (False, True):
        source = {"kind": "generator", "family": "exact", "params": {}}
        cost = {"cells": 1, "gates": {}, "area": 1.0, "depth": 1, "energy": 2.0}
        table = exact_table(signed)
        name = "s_exact" if signed else "u_exact"
        entry = LibraryEntry(name, signed, source, compute_metrics(table, signed), cost)
        lib.commit([NewEntry(entry, table, "// stub\n", "{}")])


def _env() -> dict[str, str]:
    """Subprocesses import this checkout's hwflow."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }


def _hwflow(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hwflow.cli", *args],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_two_characterize_processes_in_parallel_keep_both_entries(tmp_path):
    a = np.arange(256)[:, None] & 0xF0
    b = np.arange(256)[None, :] & 0xF0
    trunc = (a * b).astype(np.int32)  # tests/fixtures/netlists/trunc_u.v
    for rep in range(CLI_REPS):
        lib_dir = tmp_path / f"lib{rep}"
        _exact_stubs(lib_dir)
        runs = [
            _hwflow("characterize", str(NL / f), "--library", str(lib_dir), "--quiet")
            for f in ("trunc_u.v", "exact_u.v")
        ]
        for run in runs:
            out, err = run.communicate(timeout=300)
            assert run.returncode == 0, err
        lib = Library.open(lib_dir)
        names = sorted(e.name for e in lib.entries)
        assert names == ["exact_u", "s_exact", "trunc_u", "u_exact"], f"repetition {rep}"
        assert np.array_equal(lib.table("trunc_u"), trunc)
        assert np.array_equal(lib.table("exact_u"), exact_table(False))
        for name in ("trunc_u", "exact_u"):
            assert lib.get(name).source["sha256"] == sha256_file(NL / f"{name}.v")
            assert lib.netlist_path(name).is_file() and lib.gate_netlist_path(name).is_file()


# ---- through the CLI: wrong paths, clashing names ----------------------------------------


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def one_error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def test_library_option_naming_a_regular_file_or_someone_elses_directory(tmp_path):
    plain = tmp_path / "notes.txt"
    plain.write_text("not a library\n")
    commands = (
        ["characterize", str(NL / "trunc_u.v")],
        ["characterize", "--builtin"],
        ["library", "list"],
        ["library", "remove", "x"],
    )
    for args in commands:
        result = CliRunner().invoke(cli, [*args, "--library", str(plain)])
        assert result.exit_code == 2, result.output
        line = one_error_line(result.output)
        assert f"{plain}: is a file, not a library directory" in line
    for args in commands[:2]:  # a directory of other files is never written into
        result = CliRunner().invoke(cli, [*args, "--library", str(tmp_path)])
        assert result.exit_code == 2, result.output
        line = one_error_line(result.output)
        assert f"{tmp_path} exists and is not an hwflow library (no library.yaml)" in line
    assert plain.read_text() == "not a library\n"
    assert sorted(tmp_path.iterdir()) == [plain]  # nothing written beside it either


def _unprivileged() -> list[str]:
    """A command prefix that makes permission bits bind: root ignores them, but not
    inside a user namespace of its own (where it holds no capability over host files)."""
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--user", "true"]).returncode != 0:
        pytest.skip("running as root without user namespaces: read-only dirs stay writable")
    return [unshare, "--user"]


def _chmod_tree(path: Path, writable: bool) -> None:
    for p in [path, *path.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode | stat.S_IWUSR if writable else mode & ~0o222)


def test_read_only_library_directory(tmp_path):
    lib_dir = tmp_path / "shared-lib"
    _exact_stubs(lib_dir)
    before = snapshot(lib_dir)
    prefix = _unprivileged()
    _chmod_tree(lib_dir, writable=False)
    try:
        for library, args in (
            (lib_dir, [str(NL / "trunc_u.v")]),
            (lib_dir, ["--builtin"]),
            (lib_dir / "nested", [str(NL / "trunc_u.v")]),  # a new library inside it
        ):
            result = subprocess.run(
                [*prefix, sys.executable, "-m", "hwflow.cli", "characterize", *args]
                + ["--library", str(library)],
                env=_env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 2, result.stderr
            assert result.stdout == ""
            line = one_error_line(result.stderr)
            assert f"{lib_dir}: permission denied: the library directory is not writable" in line
        # reading a shared read-only library still works
        listing = subprocess.run(
            [*prefix, sys.executable, "-m", "hwflow.cli", "library", "list"]
            + ["--library", str(lib_dir), "--sort", "name"],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert listing.returncode == 0, listing.stderr
        assert [ln.split()[0] for ln in listing.stdout.splitlines()] == ["s_exact", "u_exact"]
    finally:
        _chmod_tree(lib_dir, writable=True)
    assert snapshot(lib_dir) == before


@pytest.mark.slow
def test_a_same_named_different_netlist_is_refused_and_never_flips_the_entry(tmp_path):
    lib_dir = tmp_path / "lib"
    _exact_stubs(lib_dir)
    first = tmp_path / "mine" / "mul.v"
    other = tmp_path / "downloaded" / "mul.v"
    for path, source in ((first, "trunc_u.v"), (other, "exact_u.v")):
        path.parent.mkdir()
        path.write_bytes((NL / source).read_bytes())

    def characterize(path: Path):
        return CliRunner().invoke(cli, ["characterize", str(path), "--library", str(lib_dir)])

    assert characterize(first).exit_code == 0
    table = Library.open(lib_dir).table("mul")
    before = snapshot(lib_dir)
    refused = characterize(other)
    assert refused.exit_code == 2
    line = one_error_line(refused.output)
    assert line.startswith(f"error: {other}: {lib_dir} already holds a different multiplier")
    assert f"from netlist {first}" in line and "(e.g. to mul_2.v)" in line
    assert f"`hwflow library remove mul --library {lib_dir}`" in line
    assert snapshot(lib_dir) == before
    again = characterize(first)
    assert again.exit_code == 0 and "(cached)" in again.output  # not flipped back and forth
    assert snapshot(lib_dir) == before
    # the documented ways out: a new file name, or removing the old entry
    renamed = other.with_name("mul_2.v")
    other.rename(renamed)
    assert characterize(renamed).exit_code == 0
    lib = Library.open(lib_dir)
    assert np.array_equal(lib.table("mul"), table)
    assert lib.get("mul_2").source["sha256"] != lib.get("mul").source["sha256"]
    removed = CliRunner().invoke(cli, ["library", "remove", "mul", "--library", str(lib_dir)])
    assert removed.exit_code == 0 and "removed mul" in removed.output
    assert "mul" not in Library.open(lib_dir)


def _index_with(tmp_path: Path, edit) -> Path:
    """A two-entry library whose library.yaml `edit(doc)` changes (as a hand edit would)."""
    import yaml

    lib = Library.create(tmp_path / "lib")
    lib.commit([_entry("mul0", "c0", 0), _entry("mul1", "c1", 1)])
    doc = yaml.safe_load((lib.path / "library.yaml").read_text())
    edit(doc)
    (lib.path / "library.yaml").write_text(yaml.safe_dump(doc))
    return lib.path


def test_entry_names_that_are_paths_are_refused_on_every_read(tmp_path):
    """A hand-edited index naming `../../../x/data` deletes or reads nothing outside."""
    outside = tmp_path / "x"
    outside.mkdir()
    victims = [outside / f"data{ext}" for ext in (".npy", ".v", ".json")]
    for v in victims:
        v.write_text("keep me")
    evil = "../../../x/data"

    def rename(doc):
        doc["entries"][1]["name"] = evil

    lib = _index_with(tmp_path, rename)
    for args in (["library", "remove", evil], ["library", "show", evil], ["library", "list"]):
        result = CliRunner().invoke(cli, [*args, "--library", str(lib)])
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert "entry 1: entry name '../../../x/data' is not a plain name" in result.output
    assert all(v.read_text() == "keep me" for v in victims)
    with pytest.raises(LibraryError, match="not a plain name"):
        Library.open(lib)


def test_entry_files_outside_the_library_are_refused(tmp_path):
    """A library whose tables/ folder links elsewhere: its files are never touched."""
    lib = Library.create(tmp_path / "lib")
    lib.commit([_entry("mul0", "c0", 0), _entry("mul1", "c1", 1)])
    elsewhere = tmp_path / "elsewhere"
    shutil.move(lib.path / "tables", elsewhere)
    (lib.path / "tables").symlink_to(elsewhere, target_is_directory=True)
    result = CliRunner().invoke(cli, ["library", "remove", "mul1", "--library", str(lib.path)])
    assert result.exit_code == 2 and "leads outside the library" in result.output
    assert (elsewhere / "mul1.npy").is_file()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["entries"][0].update(signed="false"), "signed must be true or false"),
        (lambda d: d["entries"][1].update(name="mul0"), "name 'mul0' appears twice"),
        (lambda d: d.update(format=2), "format: 2 is not a library format"),
        (lambda d: d.update(format="1"), "format: '1' is not a library format"),
    ],
)
def test_index_values_of_the_wrong_kind_are_refused(tmp_path, edit, message):
    lib = _index_with(tmp_path, edit)
    result = CliRunner().invoke(cli, ["library", "list", "--library", str(lib)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert message in result.output and "library.yaml" in result.output
