"""The on-disk multiplier library (docs/reference/file-formats.md).

```
DIR/library.yaml         index: one entry per multiplier (name, signed, source, metrics,
                         cost, tools, table_sha256)
DIR/tables/<name>.npy    int32[256, 256] table[a & 0xFF, b & 0xFF]
DIR/netlists/<name>.v    the simulated Verilog (user netlist copy or generated)
DIR/gates/<name>.json    the yosys gate netlist (characterize.synth.load_gates reads it)
DIR/.library.lock        the lock writers hold while they update the library
```

Updates are atomic: an entry's files are written first (each atomically), the index
last, so the index only ever names complete entries; an interrupted update leaves at
most unreferenced files that the next run overwrites.

Several processes may write one library at once (two `hwflow characterize` runs): every
update takes the library lock, re-reads the index, merges its entries into what is on
disk and writes the index, all under the lock, so no writer's entry is lost and no
writer's files replace another's.

An entry is identified by its content: the sha256 of its netlist (plus top and ports),
or, for built-in generators, family and parameters. An unchanged design is a cache hit;
a different design under a name the library already holds is refused, never
overwritten. The index records each table's sha256 (`table_sha256`), so a table changed
on disk is an error on load instead of a silently different multiplier.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.errors import LibraryError, listing
from hwflow.io import read_yaml, sha256_bytes, sha256_file, write_npy, write_text, write_yaml
from hwflow.multipliers.table import check_table

INDEX = "library.yaml"
LOCK = ".library.lock"
LOCK_TIMEOUT_S = 300.0  # a commit holds the lock for well under a second
FORMAT_VERSION = 1
DEFAULT_LIBRARY = "hwflow-lib"
SUBDIRS = ("tables", "netlists", "gates")
# An entry's name names its files (tables/<name>.npy, ...): plain characters only (what
# characterize makes of a file name), never a path.
_ENTRY_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,200}\Z")


def check_entry_name(name: Any, where: str) -> str:
    """`name` if it is a valid entry name (LibraryError naming `where` otherwise)."""
    if not isinstance(name, str) or not _ENTRY_NAME.match(name) or name in (".", ".."):
        raise LibraryError(
            f"{where}: entry name {str(name)[:80]!r} is not a plain name (letters, digits, "
            "_ . + - only); fix the library index or characterize the design again"
        )
    return name


@dataclass
class LibraryEntry:
    """One characterized multiplier (see docs/reference/interfaces.md for the field contents)."""

    name: str
    signed: bool
    source: dict[str, Any]
    metrics: dict[str, float]
    cost: dict[str, Any]
    tools: dict[str, str] = field(default_factory=dict)
    table_sha256: str | None = None  # of tables/<name>.npy; set by Library.commit

    def to_dict(self) -> dict[str, Any]:
        d = {
            "name": self.name,
            "signed": self.signed,
            "source": self.source,
            "metrics": self.metrics,
            "cost": self.cost,
            "tools": self.tools,
        }
        if self.table_sha256 is not None:
            d["table_sha256"] = self.table_sha256
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> LibraryEntry:
        try:
            table_sha256 = d.get("table_sha256")
            if table_sha256 is not None and not isinstance(table_sha256, str):
                raise ValueError("table_sha256 must be a hex string")
            if not isinstance(d["signed"], bool):
                raise ValueError(f"signed must be true or false, got {d['signed']!r}")
            return cls(
                name=check_entry_name(d["name"], where),
                signed=d["signed"],
                source=dict(d["source"]),
                metrics=dict(d["metrics"]),
                cost=dict(d["cost"]),
                tools=dict(d.get("tools") or {}),
                table_sha256=table_sha256,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LibraryError(f"{where}: malformed entry ({exc!s})") from None


@dataclass
class NewEntry:
    """An entry with the file contents `Library.commit` writes for it."""

    entry: LibraryEntry
    table: np.ndarray
    netlist: str
    gates_json: str


class Library:
    """A multiplier library directory. `open` needs an existing one; `load` does not."""

    def __init__(self, path: str | os.PathLike[str], entries: list[LibraryEntry]) -> None:
        self.path = Path(path)
        self._entries = {e.name: e for e in entries}

    # ---- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Library:
        path = Path(path)
        _refuse_non_directory(path)
        if not (path / INDEX).is_file():
            raise LibraryError(
                f"{path}: no multiplier library here ({INDEX} missing); "
                "build one with `hwflow characterize --builtin`"
            )
        return cls(path, list(_read_index(path).values()))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Library:
        """Open a library to write into: an existing one, or an empty one in memory
        (nothing is written until `commit`). Refuses, before any work is done, a path
        that is a file or a directory this process cannot write."""
        path = Path(path)
        _check_writable(path)
        return cls.open(path) if (path / INDEX).is_file() else cls(path, [])

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> Library:
        """Open an existing library, or create an empty one on disk."""
        lib = cls.load(path)
        lib.commit([])
        return lib

    # ---- reading -----------------------------------------------------------------------

    @property
    def entries(self) -> list[LibraryEntry]:
        return list(self._entries.values())

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> LibraryEntry:
        if name not in self._entries:
            known = listing(sorted(self._entries)) or "none"
            raise LibraryError(f"{self.path}: no multiplier named {name!r} (known: {known})")
        return self._entries[name]

    def table(self, name: str) -> np.ndarray:
        """The entry's table, checked against the index (sha256), shape and dtype."""
        entry = self.get(name)
        path = self.table_path(name)
        fix = self._recharacterize_hint(entry)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise LibraryError(f"{path}: table file missing; {fix}") from None
        except OSError as exc:
            raise LibraryError(f"{path}: cannot read the table ({exc.strerror})") from None
        if entry.table_sha256 is not None and sha256_bytes(data) != entry.table_sha256:
            raise LibraryError(
                f"{path}: table changed since it was characterized (its sha256 differs "
                f"from the one {INDEX} records); {fix}"
            )
        try:
            table = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise LibraryError(f"{path}: not a .npy table ({exc!s}); {fix}") from None
        try:
            return check_table(table, str(path))
        except ValueError as exc:
            raise LibraryError(f"{exc}; {fix}") from None

    def table_path(self, name: str) -> Path:
        return self._file("tables", self.get(name).name, ".npy")

    def netlist_path(self, name: str) -> Path:
        return self._file("netlists", self.get(name).name, ".v")

    def gate_netlist_path(self, name: str) -> Path:
        return self._file("gates", self.get(name).name, ".json")

    def _file(self, sub: str, name: str, ext: str) -> Path:
        """An entry's file, which must lie inside the library (a linked folder that leads
        elsewhere is refused: the library's commands write and delete these files)."""
        path = self.path / sub / f"{check_entry_name(name, str(self.path / INDEX))}{ext}"
        if not path.resolve().is_relative_to(self.path.resolve()):
            raise LibraryError(f"{path}: leads outside the library {self.path}; fix the library")
        return path

    def exact_name(self, signed: bool) -> str:
        """Name of the exact multiplier of this signedness (the energy reference)."""
        for e in self._entries.values():
            if e.signed == signed and _is_exact(e):
                return e.name
        kind = "signed" if signed else "unsigned"
        raise LibraryError(
            f"{self.path}: no exact {kind} multiplier in the library; "
            "run `hwflow characterize --builtin`"
        )

    def find_cached(self, name: str, key: dict[str, Any]) -> LibraryEntry | None:
        """The entry `name` if its source matches every item of `key` (sha256, top, ...)
        and its files are intact (a changed or broken table is a miss, so re-characterizing
        repairs it)."""
        entry = self._entries.get(name)
        if entry is None or any(entry.source.get(k) != v for k, v in key.items()):
            return None
        try:
            self.table(name)
            json.loads(self.gate_netlist_path(name).read_bytes())  # truncated: damaged
        except (LibraryError, OSError, ValueError):
            return None
        return entry

    def check_name(self, name: str, source: dict[str, Any]) -> None:
        """Refuse (LibraryError saying how to rename) a design whose name the library
        already gives to different content. `commit` checks again under the lock; call
        this first to fail before the work."""
        old = self._entries.get(name)
        if old is not None and not _same_design(old.source, source):
            raise LibraryError(_clash_message(self.path, old, name, source))

    # ---- writing -----------------------------------------------------------------------

    def commit(self, new: list[NewEntry]) -> None:
        """Add or replace entries: under the library lock, re-read the index, refuse any
        entry whose name is held by a different design, write the entries' files, then
        the merged index.

        `energy_rel` of every entry is recomputed against the exact multiplier of its
        signedness, so replacing the reference keeps the whole library consistent.
        """
        tables = [check_table(item.table, item.entry.name) for item in new]
        with self._locked():
            entries = _read_index(self.path)
            for item in new:
                old = entries.get(item.entry.name)
                if old is not None and not _same_design(old.source, item.entry.source):
                    raise LibraryError(
                        _clash_message(self.path, old, item.entry.name, item.entry.source)
                    )
            for item, table in zip(new, tables, strict=True):
                name = item.entry.name
                write_npy(self._file("tables", name, ".npy"), table)
                write_text(self._file("netlists", name, ".v"), item.netlist)
                write_text(self._file("gates", name, ".json"), item.gates_json)
                item.entry.table_sha256 = sha256_file(self._file("tables", name, ".npy"))
            for item in new:
                entries[item.entry.name] = item.entry
            self._entries = entries
            self._write_index()

    def update(self, entries: list[LibraryEntry]) -> None:
        """Rewrite the index with changed fields of existing entries (no file changes)."""
        if not entries:
            return
        with self._locked():
            self._entries = _read_index(self.path)
            for e in entries:
                old = self.get(e.name)
                if not _same_design(old.source, e.source):
                    raise LibraryError(_clash_message(self.path, old, e.name, e.source))
                # the table on disk is the one the index records, whatever `e` last saw
                self._entries[e.name] = replace(e, table_sha256=old.table_sha256)
            self._write_index()

    def remove(self, name: str) -> None:
        """Drop an entry (index first, then its files). An exact multiplier that other
        entries' relative energy refers to is refused."""
        with self._locked():
            self._entries = _read_index(self.path)
            entry = self.get(name)
            if _is_exact(entry):
                others = [
                    e.name
                    for e in self._entries.values()
                    if e.signed == entry.signed and e.name != name
                ]
                if others:
                    raise LibraryError(
                        f"{self.path}: {name!r} is the energy reference of {len(others)} other "
                        "entries; it cannot be removed"
                    )
            files = [self.table_path(name), self.netlist_path(name), self.gate_netlist_path(name)]
            del self._entries[name]
            self._write_index()
            for f in files:
                f.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the library lock; write failures become one-line LibraryErrors."""
        from filelock import FileLock, Timeout

        _check_writable(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = FileLock(self.path / LOCK, timeout=LOCK_TIMEOUT_S)
            lock.acquire()
        except Timeout:
            raise LibraryError(
                f"{self.path}: another process has held the library lock ({LOCK}) for "
                f"{LOCK_TIMEOUT_S:.0f} s; retry when it has finished"
            ) from None
        except OSError as exc:
            raise LibraryError(_write_failure(self.path, exc)) from None
        try:
            yield
        except OSError as exc:
            raise LibraryError(_write_failure(self.path, exc)) from None
        finally:
            lock.release()

    def _write_index(self) -> None:
        for e in self._entries.values():
            if e.table_sha256 is None:  # libraries from before table hashes: fill them in
                path = self._file("tables", e.name, ".npy")
                if path.is_file():
                    e.table_sha256 = sha256_file(path)
        self._refresh_relative_energy()
        data = {
            "format": FORMAT_VERSION,
            "entries": [e.to_dict() for e in sorted(self._entries.values(), key=_order)],
        }
        write_yaml(self.path / INDEX, data)

    def _refresh_relative_energy(self) -> None:
        for signed in (False, True):
            try:
                ref = self._entries[self.exact_name(signed)].cost.get("energy")
            except LibraryError:
                ref = None
            for e in self._entries.values():
                if e.signed == signed and "energy" in e.cost:
                    e.cost["energy_rel"] = float(e.cost["energy"] / ref) if ref else None

    def _recharacterize_hint(self, entry: LibraryEntry) -> str:
        if entry.source.get("kind") == "netlist":
            netlist = entry.source.get("path", "NETLIST.v")
            how = f"hwflow characterize {netlist} --library {self.path}"
        else:
            how = f"hwflow characterize --builtin --library {self.path}"
        return f"re-characterize it to rebuild it (`{how}`)"


def _read_index(path: Path) -> dict[str, LibraryEntry]:
    """The entries library.yaml names (none when there is no index yet)."""
    index = path / INDEX
    if not index.is_file():
        return {}
    data = read_yaml(index)
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise LibraryError(f"{index}: expected a mapping with an 'entries' list")
    if data.get("format", FORMAT_VERSION) != FORMAT_VERSION:
        raise LibraryError(
            f"{index}: format: {data['format']!r} is not a library format this hwflow reads "
            f"({FORMAT_VERSION}); use the hwflow that wrote it, or characterize again"
        )
    entries: dict[str, LibraryEntry] = {}
    for i, d in enumerate(data["entries"]):
        entry = LibraryEntry.from_dict(d, f"{index}: entry {i}")
        if entry.name in entries:
            raise LibraryError(
                f"{index}: entry {i}: name {entry.name!r} appears twice; remove one of them"
            )
        entries[entry.name] = entry
    return entries


def _same_design(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two entry sources describe the same multiplier (replacing is then an
    update, e.g. new generator code, another signedness, published costs).

    Netlists: same file bytes and cell library; top and ports compare where both name
    them (before inspection a source names them only when the user gave them)."""
    if old.get("kind") == new.get("kind") == "generator":
        return old.get("family") == new.get("family") and old.get("params") == new.get("params")
    if any(old.get(k) != new.get(k) for k in ("kind", "sha256", "cells_sha256")):
        return False
    named = [k for k in ("top", "ports") if old.get(k) is not None and new.get(k) is not None]
    return all(old[k] == new[k] for k in named)


def _clash_message(lib: Path, old: LibraryEntry, name: str, source: dict[str, Any]) -> str:
    remove = f"`hwflow library remove {name} --library {lib}`"
    if old.source.get("kind") == "netlist":
        sha = str(old.source.get("sha256", ""))[:12]
        held = f"netlist {old.source.get('path')} (sha256 {sha}...)"
    else:
        held = "a built-in generator"
    if source.get("kind") != "netlist":
        return (
            f"{lib}: entry {name!r} is {held}, not the built-in multiplier of that name; "
            f"remove it with {remove} and characterize that netlist under another file name"
        )
    path = source.get("path")
    if old.source.get("path") == path:
        return (
            f"{path}: changed since it was characterized into {lib} as {name!r}; an entry is "
            f"never overwritten by different content: copy the file to a new name (entries "
            f"are named after their file) or remove the old entry first with {remove}"
        )
    return (
        f"{path}: {lib} already holds a different multiplier named {name!r} (from {held}); "
        f"entries are named after their file: copy or rename this file (e.g. to {name}_2.v) "
        f"and characterize that, or remove the old entry first with {remove}"
    )


def _refuse_non_directory(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise LibraryError(f"{path}: is a file, not a library directory; choose a directory")


def _check_writable(path: Path) -> None:
    """Fail early, before any work, when the library cannot be written: the path (or an
    ancestor) is a file, a directory of something else (neither empty nor holding the
    index or the lock a first commit makes before its files), or not writable."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # a new library: its nearest existing ancestor must take it
    _refuse_non_directory(probe)
    # one listing, not an existence check per name: another process's first commit can
    # make the lock between two checks, and its files then read as a stranger's
    names = {p.name for p in path.iterdir()} if probe == path else set()
    if names and not names & {INDEX, LOCK}:
        raise LibraryError(
            f"{path} exists and is not an hwflow library (no {INDEX}); "
            "choose a new or empty directory for the library"
        )
    dirs = [probe]
    if probe == path:
        dirs += [path / sub for sub in SUBDIRS if (path / sub).is_dir()]
    for d in dirs:
        if not os.access(d, os.W_OK | os.X_OK):
            raise LibraryError(
                f"{d}: permission denied: the library directory is not writable; "
                "use a library directory you can write (--library DIR)"
            )


def _write_failure(path: Path, exc: OSError) -> str:
    where = exc.filename or path
    return f"{where}: cannot write the library ({exc.strerror or exc})"


SORT_KEYS = ("name", "energy", "area", "cells", "depth")


def sort_entries(entries: list[LibraryEntry], key: str) -> list[LibraryEntry]:
    """Sort by a metric name (mae, wce, ...), or name/energy (relative)/area/cells/depth."""
    from hwflow.multipliers.table import METRIC_NAMES

    if key == "name":
        return sorted(entries, key=lambda e: e.name)
    if key == "energy":
        return sorted(entries, key=lambda e: (_num(e.cost.get("energy_rel")), e.name))
    if key in ("area", "cells", "depth"):
        return sorted(entries, key=lambda e: (_num(e.cost.get(key)), e.name))
    if key in METRIC_NAMES:
        return sorted(entries, key=lambda e: (_num(e.metrics.get(key)), e.name))
    raise LibraryError(
        f"unknown sort key {key!r}; use one of {', '.join((*SORT_KEYS, *METRIC_NAMES))}"
    )


def _num(x: Any) -> float:
    return float("inf") if x is None else float(x)


def _is_exact(e: LibraryEntry) -> bool:
    return e.source.get("kind") == "generator" and e.source.get("family") == "exact"


def _order(e: LibraryEntry) -> tuple[bool, bool, str]:
    return (e.signed, not _is_exact(e), e.name)
