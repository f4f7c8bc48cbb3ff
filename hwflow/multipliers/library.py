"""The on-disk multiplier library (DESIGN.md "Library on disk").

```
DIR/library.yaml         index: one entry per multiplier (name, signed, source, metrics,
                         cost, tools)
DIR/tables/<name>.npy    int32[256, 256] table[a & 0xFF, b & 0xFF]
DIR/netlists/<name>.v    the simulated Verilog (user netlist copy or generated)
DIR/gates/<name>.json    the yosys gate netlist (characterize.synth.load_gates reads it)
```

Updates are atomic: an entry's files are written first (each atomically), the index
last, so the index only ever names complete entries; an interrupted update leaves at
most unreferenced files that the next run overwrites. Entries are keyed by the sha256 of
their netlist (and, for built-in generators, a fingerprint of the generator code), so an
unchanged design is a cache hit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.errors import LibraryError
from hwflow.io import read_yaml, write_npy, write_text, write_yaml
from hwflow.multipliers.table import check_table

INDEX = "library.yaml"
FORMAT_VERSION = 1
DEFAULT_LIBRARY = "hwflow-lib"


@dataclass
class LibraryEntry:
    """One characterized multiplier (see docs/INTERFACES.md for the field contents)."""

    name: str
    signed: bool
    source: dict[str, Any]
    metrics: dict[str, float]
    cost: dict[str, Any]
    tools: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "signed": self.signed,
            "source": self.source,
            "metrics": self.metrics,
            "cost": self.cost,
            "tools": self.tools,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> LibraryEntry:
        try:
            return cls(
                name=str(d["name"]),
                signed=bool(d["signed"]),
                source=dict(d["source"]),
                metrics=dict(d["metrics"]),
                cost=dict(d["cost"]),
                tools=dict(d.get("tools") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
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
        index = path / INDEX
        if not index.is_file():
            raise LibraryError(
                f"{path}: no multiplier library here ({INDEX} missing); "
                "build one with `hwflow characterize --builtin`"
            )
        data = read_yaml(index)
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
            raise LibraryError(f"{index}: expected a mapping with an 'entries' list")
        where = str(index)
        entries = [
            LibraryEntry.from_dict(d, f"{where}: entry {i}") for i, d in enumerate(data["entries"])
        ]
        return cls(path, entries)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Library:
        """Open an existing library, or an empty one in memory (nothing is written yet)."""
        path = Path(path)
        return cls.open(path) if (path / INDEX).is_file() else cls(path, [])

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> Library:
        """Open an existing library, or create an empty one on disk."""
        lib = cls.load(path)
        if not (lib.path / INDEX).is_file():
            lib._write_index()
        return lib

    # ---- reading -----------------------------------------------------------------------

    @property
    def entries(self) -> list[LibraryEntry]:
        return list(self._entries.values())

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> LibraryEntry:
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise LibraryError(f"{self.path}: no multiplier named {name!r} (known: {known})")
        return self._entries[name]

    def table(self, name: str) -> np.ndarray:
        path = self.path / "tables" / f"{self.get(name).name}.npy"
        if not path.is_file():
            raise LibraryError(f"{path}: table file missing; rerun `hwflow characterize`")
        try:
            return check_table(np.load(path, allow_pickle=False), str(path))
        except ValueError as exc:
            raise LibraryError(f"{path}: {exc}") from None

    def table_path(self, name: str) -> Path:
        return self.path / "tables" / f"{self.get(name).name}.npy"

    def netlist_path(self, name: str) -> Path:
        return self.path / "netlists" / f"{self.get(name).name}.v"

    def gate_netlist_path(self, name: str) -> Path:
        return self.path / "gates" / f"{self.get(name).name}.json"

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
        """The entry `name` if its source matches every item of `key` (sha256, top, ...)."""
        entry = self._entries.get(name)
        if entry is None or any(entry.source.get(k) != v for k, v in key.items()):
            return None
        if not (self.table_path(name).is_file() and self.gate_netlist_path(name).is_file()):
            return None
        return entry

    # ---- writing -----------------------------------------------------------------------

    def commit(self, new: list[NewEntry]) -> None:
        """Write the entries' files, then the index (adding or replacing by name).

        `energy_rel` of every entry is recomputed against the exact multiplier of its
        signedness, so replacing the reference keeps the whole library consistent.
        """
        for item in new:
            name = item.entry.name
            write_npy(self.path / "tables" / f"{name}.npy", check_table(item.table, name))
            write_text(self.path / "netlists" / f"{name}.v", item.netlist)
            write_text(self.path / "gates" / f"{name}.json", item.gates_json)
        for item in new:
            self._entries[item.entry.name] = item.entry
        self._refresh_relative_energy()
        self._write_index()

    def update(self, entries: list[LibraryEntry]) -> None:
        """Rewrite the index with changed fields of existing entries (no file changes)."""
        for e in entries:
            self.get(e.name)
            self._entries[e.name] = e
        if entries:
            self._refresh_relative_energy()
            self._write_index()

    def _refresh_relative_energy(self) -> None:
        for signed in (False, True):
            try:
                ref = self._entries[self.exact_name(signed)].cost.get("energy")
            except LibraryError:
                ref = None
            for e in self._entries.values():
                if e.signed == signed and "energy" in e.cost:
                    e.cost["energy_rel"] = float(e.cost["energy"] / ref) if ref else None

    def _write_index(self) -> None:
        data = {
            "format": FORMAT_VERSION,
            "entries": [e.to_dict() for e in sorted(self._entries.values(), key=_order)],
        }
        write_yaml(self.path / INDEX, data)


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


def save_error_heatmap(lib: Library, name: str, path: str | os.PathLike[str]) -> None:
    """PNG of the error table E = table - exact, axes in operand values (first operand a
    down, second operand b across), diverging colours centred on zero, with a colorbar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hwflow.io import atomic_path
    from hwflow.multipliers.table import error_table, operand_values

    entry = lib.get(name)
    values = operand_values(entry.signed)
    order = np.argsort(values, kind="stable")  # signed: -128..127 instead of code order
    err = error_table(lib.table(name), entry.signed)[np.ix_(order, order)]
    lim = max(1, int(np.abs(err).max()))
    lo, hi = int(values[order[0]]), int(values[order[-1]])
    fig, ax = plt.subplots(figsize=(6.4, 5.4), dpi=100)
    im = ax.imshow(
        err,
        cmap="RdBu_r",
        vmin=-lim,
        vmax=lim,
        origin="lower",
        extent=(lo - 0.5, hi + 0.5, lo - 0.5, hi + 0.5),
        interpolation="nearest",
    )
    ax.set_xlabel("b (second operand, weight)")
    ax.set_ylabel("a (first operand, activation)")
    kind = "signed" if entry.signed else "unsigned"
    ax.set_title(
        f"{name} ({kind}): error approx - exact\n"
        f"MAE {entry.metrics['mae']:.3g}, WCE {entry.metrics['wce']:.0f}"
    )
    fig.colorbar(im, ax=ax, label="error (approx - exact)")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
