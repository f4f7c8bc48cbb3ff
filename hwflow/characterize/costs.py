"""Published figures of multipliers (e.g. EvoApproxLib's 45 nm power, area, delay).

Sources: a CSV with columns `name, power, area, delay`, or EvoApprox's `meta.json` (every
object with a `name` and `params` holding `pwr` [mW], `area` [um^2], `delay` [ns]).
An entry is matched by the module name of its netlist (its `top`), so `mul8u_XYZ_pdk45.v`
or a renamed copy still finds `mul8u_XYZ`; failing that, by the entry's own name.

`correlations` ranks hwflow's estimates (switching energy, cell count, transistor area)
against the published power: Spearman's rho per signedness, over all entries with
figures and over the larger circuits (power >= `LARGE_POWER`, the near-exact designs
that heterogeneous assignment chooses between).
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwflow.errors import ConfigError, LibraryError

Published = dict[str, dict[str, float]]  # name -> {"power": ..., "area": ..., "delay": ...}

FIELDS = ("power", "area", "delay")
META_PARAMS = {"pwr": "power", "area": "area", "delay": "delay"}  # meta.json -> our names
LARGE_POWER = 0.3  # mW (45 nm): the larger circuits, where ranking them is hardest
ESTIMATES = ("energy", "cells", "area")  # library `cost` keys compared with the power


def read_costs(path: str | os.PathLike[str]) -> Published:
    """Published figures from a CSV (`name, power, area, delay`) or an EvoApprox meta.json."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        return _read_meta_json(path, text)
    return _read_csv(path, text)


def _read_csv(path: Path, text: str) -> Published:
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise ConfigError(f"{path}: empty costs file")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("name", *FIELDS) if c not in header]
    if missing:
        raise ConfigError(
            f"{path}:1: costs CSV lacks column(s) {', '.join(missing)} "
            "(needs name, power, area, delay)"
        )
    out: Published = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        rec = dict(zip(header, (c.strip() for c in row), strict=False))
        try:
            out[rec["name"]] = {k: float(rec[k]) for k in FIELDS}
        except (KeyError, ValueError):
            raise ConfigError(
                f"{path}:{lineno}: expected a name and numbers for power, area, delay"
            ) from None
    return out


def _read_meta_json(path: Path, text: str) -> Published:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    out: Published = {}
    for inst in _instances(doc):
        name, params = inst["name"], inst["params"]
        figures = {ours: _number(params.get(theirs)) for theirs, ours in META_PARAMS.items()}
        if figures["power"] is None:
            raise ConfigError(f"{path}: instance {name!r} has no numeric params.pwr")
        # the same circuit is listed once per Pareto subset it belongs to: keep the first
        out.setdefault(name, {k: v for k, v in figures.items() if v is not None})
    if not out:
        raise ConfigError(
            f"{path}: no circuits found (expected EvoApprox meta.json objects with "
            "'name' and 'params' {pwr, area, delay})"
        )
    return out


def _instances(node: Any) -> Iterable[dict[str, Any]]:
    """Every {"name": str, "params": {...}} object anywhere in the document."""
    stack = [node]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            if isinstance(x.get("name"), str) and isinstance(x.get("params"), dict):
                yield x
            stack.extend(reversed(list(x.values())))
        elif isinstance(x, list):
            stack.extend(reversed(x))


def _number(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# ---- matching -----------------------------------------------------------------------------


def lookup(entry: Any, published: Mapping[str, Mapping[str, float]]) -> dict[str, float] | None:
    """The figures for a library entry: by its module name (`source.top`), else its name."""
    for key in (entry.source.get("top"), entry.name):
        if key and key in published:
            return dict(published[key])
    return None


def attach_published(
    entries: Iterable[Any], published: Mapping[str, Mapping[str, float]]
) -> list[str]:
    """Set `cost["published"]` of every entry with figures; returns the names without."""
    missing = []
    for e in entries:
        figures = lookup(e, published)
        if figures is None:
            missing.append(e.name)
        else:
            e.cost["published"] = figures
    return missing


# ---- correlation --------------------------------------------------------------------------


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho (ties get average ranks); None when undefined (n < 3 or constant)."""
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = float(spearmanr(x, y).statistic)
    return rho if math.isfinite(rho) else None


@dataclass(frozen=True)
class Correlation:
    """Spearman rho of each estimate vs published power for one group of entries."""

    signed: bool
    subset: str  # "all" or "power>=X"
    n: int
    rho: dict[str, float | None]  # estimate name (ESTIMATES) -> rho

    def to_dict(self) -> dict[str, Any]:
        return {"signed": self.signed, "subset": self.subset, "n": self.n, "rho": self.rho}


def correlations(
    entries: Iterable[Any],
    published: Mapping[str, Mapping[str, float]] | None = None,
    *,
    large_power: float = LARGE_POWER,
    estimates: Sequence[str] = ESTIMATES,
) -> list[Correlation]:
    """Spearman rho of each estimate (`cost[key]`) vs published power, per signedness,
    overall and among entries with power >= `large_power`.

    Figures come from `published` (matched with `lookup`) or, when None, from each
    entry's stored `cost["published"]`. Entries without a power figure are left out.
    """
    rows: list[tuple[bool, float, dict[str, float]]] = []
    for e in entries:
        figures = lookup(e, published) if published is not None else e.cost.get("published")
        if not figures or figures.get("power") is None:
            continue
        est = {k: float(e.cost[k]) for k in estimates if e.cost.get(k) is not None}
        rows.append((bool(e.signed), float(figures["power"]), est))
    out = []
    for signed in (False, True):
        group = [r for r in rows if r[0] == signed]
        if not group:
            continue
        for subset, keep in (
            ("all", group),
            (f"power>={large_power:g}", [r for r in group if r[1] >= large_power]),
        ):
            rho = {}
            for k in estimates:
                pairs = [(r[2][k], r[1]) for r in keep if k in r[2]]
                rho[k] = spearman([p[0] for p in pairs], [p[1] for p in pairs])
            out.append(Correlation(signed, subset, len(keep), rho))
    return out


@dataclass(frozen=True)
class Comparison:
    """`hwflow library compare`: correlations plus which entries had no figures."""

    source: str  # the costs file, or "library" for the stored figures
    matched: int
    unmatched: list[str]
    rows: list[Correlation]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "correlations": [r.to_dict() for r in self.rows],
        }

    def lines(self, *, list_unmatched: bool = True) -> list[str]:
        names = list(self.rows[0].rho) if self.rows else list(ESTIMATES)
        w = max(9, *(len(k) + 2 for k in names))
        out = [
            f"Spearman rho of each estimate vs published power ({self.matched} multipliers "
            f"with figures from {self.source})",
            f"  {'kind':<9}{'subset':<12}{'n':>5}" + "".join(f"{k:>{w}}" for k in names),
        ]
        for r in self.rows:
            rhos = "".join(f"{'-' if v is None else f'{v:.3f}':>{w}}" for v in r.rho.values())
            kind = "signed" if r.signed else "unsigned"
            out.append(f"  {kind:<9}{r.subset:<12}{r.n:>5}{rhos}")
        if self.unmatched and list_unmatched:
            out.append(f"no published figures: {', '.join(self.unmatched)}")
        return out


def compare_library(
    library: str | os.PathLike[str],
    costs: str | os.PathLike[str] | None = None,
    *,
    large_power: float = LARGE_POWER,
) -> Comparison:
    """Correlate a library's estimates with published power (from `costs`, else stored)."""
    from hwflow.multipliers.library import Library

    lib = Library.open(library)
    published = read_costs(costs) if costs is not None else None
    entries = lib.entries
    figures = {
        e.name: lookup(e, published) if published is not None else e.cost.get("published")
        for e in entries
    }
    unmatched = [n for n, f in figures.items() if not f or f.get("power") is None]
    matched = len(entries) - len(unmatched)
    if matched == 0:
        where = f"{costs}" if costs is not None else "the library (characterize with --costs)"
        raise LibraryError(f"{lib.path}: no multiplier has a published power figure in {where}")
    rows = correlations(entries, published, large_power=large_power)
    return Comparison(str(costs) if costs is not None else "library", matched, unmatched, rows)
