"""Compiled Verilator simulations kept by their content, so that verifying a design again
(new vectors, another image, a rerun) skips the compile.

Why our own: ccache (which `verilator_kit` enables) caches only the C++ object files;
Verilator's own translation, its two precompiled headers (~100 MB each) and the link
still run every time: 11-14 s of CPU per harness of the digits network, measured, against
0.6-2.8 s for the simulation itself. A verified design is rebuilt far more often than it
changes, so the linked executable is what is worth keeping.

An entry is the executable alone, under the sha256 of everything that goes into it: the
tools (Verilator, its make overrides, cocotb's Verilator main and libraries), the build
arguments, the top, parameters and timescale, and each source's file name and text. A
source that `include`s another file would be keyed by its own text only; the designs and
harnesses hwflow simulates include none. Only hwflow writes entries (after a build of
its own), and an entry whose executable does not start is removed and built again; the
folder is the user's (`HWFLOW_CACHE_DIR`, else `$XDG_CACHE_HOME/hwflow`, else
`~/.cache/hwflow`), and the least recently used entries past `MAX_ENTRIES` are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

CACHE_ENV = "HWFLOW_CACHE_DIR"
MAX_ENTRIES = 32  # an entry is one executable: ~1 MB for the digits network
_FORMAT = "hwflow verilator build 1"


def cache_root() -> Path | None:
    """Where compiled simulations are kept; None when `HWFLOW_CACHE_DIR` is set empty
    (keeping is off)."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return Path(chosen) / "verilator" if chosen.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hwflow" / "verilator"


def build_key(
    sources: Sequence[Path],
    top: str,
    build_args: Sequence[str],
    parameters: Mapping[str, object],
    timescale: tuple[str, str] | None,
) -> str:
    """sha256 naming the executable that Verilator would build from these inputs here."""
    import cocotb_tools.config

    from hwflow import verilator_kit

    kit = verilator_kit.find()
    tool = [str(kit.exe), kit.version_text, kit.origin, list(kit.make_args)] if kit else None
    main = cocotb_tools.config.share_dir / "lib" / "verilator" / "verilator.cpp"
    head = {
        "format": _FORMAT,
        "verilator": tool,
        "cocotb": [
            str(cocotb_tools.config.libs_dir),
            hashlib.sha256(main.read_bytes()).hexdigest(),
        ],
        "machine": [platform.machine(), *platform.libc_ver()],
        "args": list(build_args),
        "top": top,
        "parameters": {k: str(v) for k, v in parameters.items()},
        "timescale": list(timescale) if timescale else None,
    }
    digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    for src in sources:
        text = src.read_bytes()
        digest.update(f"\0{src.name}\0{len(text)}\0".encode())
        digest.update(text)
    return digest.hexdigest()


def fetch(root: Path, key: str, build_dir: Path, executable: str) -> bool:
    """Copy the kept executable into `build_dir`; False when there is none (or it went
    while being read: another process may prune at any time)."""
    entry = root / key
    try:
        shutil.copy2(entry / executable, build_dir / executable)
        os.utime(entry)  # recently used: pruned last
    except OSError:
        return False
    return True


def store(root: Path, key: str, build_dir: Path, executable: str) -> None:
    """Keep `build_dir/executable` under `key` (atomically: a reader sees a whole entry or
    none), then remove the least recently used entries past `MAX_ENTRIES`. A cache that
    cannot be written is no error: the next verify compiles again."""
    built = build_dir / executable
    if not built.is_file():
        return
    with contextlib.suppress(OSError):
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
        try:
            shutil.copy2(built, staging / executable)
            os.rename(staging, root / key)  # fails when another process kept it first
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        _prune(root)


def discard(root: Path, key: str) -> None:
    """Remove an entry (one whose executable did not run)."""
    shutil.rmtree(root / key, ignore_errors=True)


def _prune(root: Path) -> None:
    entries = []
    now = time.time()
    for path in root.iterdir():
        with contextlib.suppress(OSError):
            mtime = path.stat().st_mtime
            if not path.name.startswith("."):
                entries.append((mtime, path))
            elif now - mtime > 3600:  # a staging folder of a process that was killed
                shutil.rmtree(path, ignore_errors=True)
    entries.sort(reverse=True)
    for _, path in entries[MAX_ENTRIES:]:
        shutil.rmtree(path, ignore_errors=True)
