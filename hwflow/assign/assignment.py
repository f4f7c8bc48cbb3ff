"""An assignment's multipliers resolved against a library: their tables, checked.

The file itself (format, validation, the one reader and writer) is
`hwflow.artifacts.Assignment`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from hwflow.artifacts import Assignment
from hwflow.errors import AssignmentError, HwflowError, LibraryError


def open_library(library: Any) -> Any:
    """A Library instance, or open one from a path."""
    if isinstance(library, str | os.PathLike):
        from hwflow.multipliers.library import Library

        return Library.open(library)
    return library


def library_table(library: Any, name: str) -> np.ndarray:
    """The table of `name`, with a LibraryError that says what to do when it is missing."""
    try:
        return np.asarray(library.table(name))
    except LibraryError:
        raise
    except (OSError, ValueError) as exc:
        raise LibraryError(
            f"library {getattr(library, 'path', '')}: table of {name} unreadable ({exc}); "
            "rerun `hwflow characterize`"
        ) from None


def assignment_tables(
    assignment: Assignment | str | os.PathLike[str],
    library: Any,
    layers: Mapping[str, bool] | None = None,
) -> dict[str, tuple[str, np.ndarray, bool]]:
    """{layer: (multiplier, table, signed)} of an assignment (or its file), checked
    against the library.

    `library` is a Library or its path. With `layers` ({name: signed} of the network the
    assignment is for) unknown layers and signedness mismatches are caught here too.
    Every problem is one AssignmentError/LibraryError naming the file and entry.
    """
    if not isinstance(assignment, Assignment):
        assignment = Assignment.load(assignment)
    source = assignment.path or "assignment"
    lib = open_library(library)
    out: dict[str, tuple[str, np.ndarray, bool]] = {}
    for i, item in enumerate(assignment.layers):
        where = f"{source}: layers[{i}]"
        name, mult = item.name, item.multiplier
        if layers is not None and name not in layers:
            raise AssignmentError(
                f"{where}: unknown layer {name} (the run has: {', '.join(layers)})"
            )
        try:
            entry = lib.get(mult)
        except HwflowError:
            raise AssignmentError(
                f"{where}: unknown multiplier {mult} in library {getattr(lib, 'path', library)}"
            ) from None
        signed = bool(entry.signed)
        want = layers.get(name) if layers is not None else item.signed
        if want is not None and bool(want) != signed:
            kinds = ("unsigned", "signed")
            raise AssignmentError(
                f"{where}: layer {name} has {kinds[bool(want)]} operands but {mult} is a "
                f"{kinds[signed]} multiplier"
            )
        out[name] = (mult, library_table(lib, mult), signed)
    return out
