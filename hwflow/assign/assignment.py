"""`assignment.yaml`: which multiplier serves which layer, and reading it back safely.

Format (docs/reference/file-formats.md):

    library: /abs/path/to/library
    run: /abs/path/to/run
    model: seed | channel        # error model used for the selection
    scale: 1.0
    layers:
    - {name, multiplier, signed, ops, sigma_learned, sigma_tolerated, sigma_predicted,
       mean_predicted, sigma_measured (with --validate), energy_rel, energy_rel_hist}
    energy: {relative, reduction_pct, model, relative_histogram, reduction_pct_histogram}

`sigma_*` are relative to the std of the layer's exact accumulator, like the learned
AGN sigma: `sigma_tolerated = scale * |sigma_learned|`, `sigma_predicted` = predicted
error std / std(exact accumulator).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.errors import AssignmentError, HwflowError, LibraryError
from hwflow.io import read_yaml


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


def load_assignment(
    path: str | os.PathLike[str],
    library: Any,
    layers: Mapping[str, bool] | None = None,
) -> dict[str, tuple[str, np.ndarray, bool]]:
    """{layer: (multiplier, table, signed)} from an assignment file, validated.

    `library` is a Library or its path. With `layers` ({name: signed} of the network the
    assignment is for) unknown layers and signedness mismatches are caught here too.
    Every problem is one AssignmentError/LibraryError naming the file and entry.
    """
    path = Path(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list):
        raise AssignmentError(f"{path}: expected a mapping with a `layers:` list")
    lib = open_library(library)
    out: dict[str, tuple[str, np.ndarray, bool]] = {}
    for i, item in enumerate(doc["layers"]):
        where = f"{path}: layers[{i}]"
        if not isinstance(item, dict):
            raise AssignmentError(f"{where}: expected a mapping with name and multiplier")
        name, mult = item.get("name"), item.get("multiplier")
        if not isinstance(name, str) or not isinstance(mult, str):
            raise AssignmentError(f"{where}: `name` and `multiplier` must be strings")
        if name in out:
            raise AssignmentError(f"{where}: layer {name} is assigned twice")
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
        want = layers.get(name) if layers is not None else item.get("signed")
        if want is not None and bool(want) != signed:
            kinds = ("unsigned", "signed")
            raise AssignmentError(
                f"{where}: layer {name} has {kinds[bool(want)]} operands but {mult} is a "
                f"{kinds[signed]} multiplier"
            )
        out[name] = (mult, library_table(lib, mult), signed)
    return out
