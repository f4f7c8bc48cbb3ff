"""Atomic file writes, owned output directories, hashing and small YAML/JSON/npz helpers.

Every file hwflow writes goes through here: a temp file in the same directory, then
`os.replace`, so an interrupted run never leaves a half-written file behind. Files get
the mode an ordinary `open` would give them (0666 less the umask), not mkstemp's 0600.

A directory a command writes (a train run, an export, a sweep, a flow, a report) carries
a marker file naming its kind (`DIR_MARK`); a command writes into, or replaces, only a
directory that is absent, empty, or marked as its own kind, so it never destroys
something the user made.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hwflow.errors import ConfigError, HwflowError, RunError

DIR_MARK = ".hwflow"  # in every directory a command writes: the kind of directory it is


def umask() -> int:
    """The process umask (Linux reads it without changing it; elsewhere set and restore)."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        status = Path("/proc/self/status").read_text()
        return int(next(ln for ln in status.splitlines() if ln.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path`, on error it vanishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~umask())  # mkstemp makes 0600: colleagues could not read it
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# libyaml's C loader/dumper where PyYAML was built with it: ~10x faster on a large
# library.yaml (read on every command), same documents as the pure-Python safe ones
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def write_yaml(path: str | os.PathLike[str], obj: Any) -> None:
    text = yaml.dump(obj, Dumper=_YAML_DUMPER, sort_keys=False, default_flow_style=None)
    write_text(path, text)


def write_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    write_bytes(path, buf.getvalue())


def write_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue())


def save_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """torch.save, atomically (checkpoints survive a kill mid-write).

    `obj` holds only tensors and plain containers, so `load_torch` can read it back."""
    import torch  # local: keep this leaf module importable without torch loaded

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike[str]) -> Any:
    """torch.load a checkpoint that may hold only tensors and plain containers.

    `weights_only=True`: a crafted file whose pickle would call a function (`os.system`)
    is refused before anything runs. Every failure is one RunError line."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # pickle-protocol notes of the restricted unpickler
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:
            raise RunError(
                f"{path}: refused: the checkpoint needs {found.group(1)}, but a checkpoint may "
                "hold only tensors and plain containers (loading it could run code)"
            ) from None
        raise RunError(f"{path}: not a PyTorch checkpoint hwflow can read") from None
    except (OSError, EOFError, RuntimeError, ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None


def _dir_kind(path: Path) -> str | None:
    """The kind recorded in `path`'s marker, or None where there is none."""
    try:
        return (path / DIR_MARK).read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def check_dir(path: str | os.PathLike[str], kind: str) -> None:
    """Refuse a `path` a command of `kind` must not write into or replace.

    Allowed: no such path, an empty directory, or a directory an earlier command of the
    same kind made (its marker says so). Anything else is the user's and stays untouched.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and (_dir_kind(path) == kind or not any(path.iterdir())):
        return
    raise HwflowError(f"{path} exists and is not an hwflow {kind}")


def claim_dir(path: str | os.PathLike[str], kind: str) -> Path:
    """Make (or reuse) directory `path` for a command of `kind`, marking it as such."""
    path = Path(path)
    check_dir(path, kind)
    path.mkdir(parents=True, exist_ok=True)
    if _dir_kind(path) != kind:
        write_text(path / DIR_MARK, kind + "\n")
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], kind: str) -> Iterator[Path]:
    """Build a directory in a temp sibling; it replaces `path` only if the block succeeds.

    Only a directory of the same `kind` (or an empty one) is replaced (`check_dir`)."""
    path = Path(path)
    check_dir(path, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700
        write_text(tmp / DIR_MARK, kind + "\n")
        yield tmp
        check_dir(path, kind)  # still ours after the (long) build
        if path.exists():
            # a fresh empty name to move the old one to (rename may replace an empty dir)
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    return sha256_bytes(Path(path).read_bytes())


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """safe_load a YAML file; a syntax error becomes a ConfigError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        return yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
