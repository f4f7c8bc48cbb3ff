"""Atomic file writes, owned output directories, hashing and small YAML/JSON/npz helpers.

Every file hwflow writes goes through here: a temp file in the same directory, then
`os.replace`, so an interrupted run never leaves a half-written file behind. Files get
the mode an ordinary `open` would give them (0666 less the umask), not mkstemp's 0600.

A directory a command writes (a train run, an export, a sweep, a flow, a report) carries
a marker file naming its kind (`DIR_MARK`); a command writes into, or replaces, only a
directory that is absent, empty, or marked as its own kind, so it never destroys
something the user made. While it writes, it holds that directory's one-writer lock
(`exclusive`): a second command writing the same directory is refused, naming the first.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import inspect
import io
import json
import os
import re
import shlex
import shutil
import socket
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from hwflow.errors import ConfigError, HwflowError, RunError

DIR_MARK = ".hwflow"  # in every directory a command writes: the kind of directory it is
F = TypeVar("F", bound=Callable[..., Any])


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent
        )
        os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from None
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~umask())  # mkstemp makes 0600: colleagues could not read it
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:  # a full disk, a folder made read-only meanwhile
        raise write_error(path, exc) from None
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()


def write_error(path: str | os.PathLike[str], exc: OSError) -> HwflowError:
    """A failed write as one line: the file, the system's reason, what to do."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return HwflowError(
        f"{exc.filename or path}: cannot write ({reason}); free disk space or choose a "
        "writable folder, then rerun (completed work is kept)"
    )


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
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from None
    if _dir_kind(path) != kind:
        write_text(path / DIR_MARK, kind + "\n")
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], kind: str) -> Iterator[Path]:
    """Build a directory in a temp sibling; it replaces `path` only if the block succeeds.

    Only a directory of the same `kind` (or an empty one) is replaced (`check_dir`). The
    siblings' names carry the pid, so those of a process killed with -9 are removed by
    the next build of `path`. A symlink to a directory has its target replaced."""
    path = Path(path)
    if path.is_symlink() and path.is_dir():
        path = path.resolve()  # rename would move the link, not what it points to
    check_dir(path, kind)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stage in ("tmp", "old"):
            remove_stale(path.parent, f".{path.name}.{stage}-")
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700
        write_text(tmp / DIR_MARK, kind + "\n")
        yield tmp
        check_dir(path, kind)  # still ours after the (long) build
        if path.exists():
            # a fresh empty name to move the old one to (rename may replace an empty dir)
            old_prefix = f".{path.name}.old-{os.getpid()}-"
            old = Path(tempfile.mkdtemp(prefix=old_prefix, dir=path.parent))
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except OSError:
                os.replace(old, path)  # the earlier one stays whole
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def remove_stale(folder: str | os.PathLike[str], prefix: str) -> None:
    """Remove the entries of `folder` named `prefix` + PID + "-..." whose process no
    longer runs (kill -9 skips every cleanup); a live process's, or another name, stays."""
    shape = re.compile(re.escape(prefix) + r"(\d+)-")
    with contextlib.suppress(OSError):
        for entry in Path(folder).iterdir():
            found = shape.match(entry.name)
            if found is None or _pid_alive(int(found.group(1))):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory named `prefix` + PID + "-..." in the system's temp folder,
    removed after the block; those of killed processes with this prefix go first."""
    root = tempfile.gettempdir()
    remove_stale(root, prefix)
    try:
        made = tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-", dir=root)
    except OSError as exc:
        raise write_error(root, exc) from None
    with made as tmp:
        yield Path(tmp)


def _holder() -> str:
    """Who holds a lock, as the refused command shows it: pid, host, command line."""
    command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "?"
    if len(command) > 200:
        command = command[:197] + "..."
    return f"pid {os.getpid()} on {socket.gethostname()} ({command})"


@contextlib.contextmanager
def exclusive(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold the one-writer lock of directory `path` (a run, a sweep, a study, an export).

    A second writer is refused at once with one line naming the holder. The lock is a
    file `.NAME.lock` beside `path` (an export's directory is replaced whole, so the lock
    cannot live inside it) holding the holder's line, and it is removed on release.
    flock rather than filelock: filelock leaves the file behind, and its 3.x truncates
    the holder's line on every attempt. A holder killed with -9 loses its flock with
    the process, so its leftover file locks nothing."""
    target = Path(path).resolve()
    lock = target.parent / f".{target.name}.lock"
    made = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = _take_lock(lock, f"{path}: this {what}")
    except OSError as exc:
        raise write_error(lock, exc) from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)
        for folder in made:  # the folders made for the lock, where nothing else came
            with contextlib.suppress(OSError):
                folder.rmdir()


def _take_lock(lock: Path, what: str) -> int:
    """flock `lock` (made if missing) and write the holder's line into it; its fd."""
    import fcntl  # POSIX only, like the simulators hwflow drives

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip()
            os.close(fd)
            raise HwflowError(
                f"{what} is being written by {holder or 'another process'}; "
                "wait for it to finish or choose another folder"
            ) from None
        except OSError as exc:  # a file system without locks: write unguarded, as before
            if exc.errno not in (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK):
                os.close(fd)
                raise
        try:
            # a releasing holder removes the file: a lock won on its old inode is void
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                os.ftruncate(fd, 0)
                os.write(fd, (_holder() + "\n").encode())
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def exclusive_writer(what: str, path_of: Callable[[dict[str, Any]], Any]) -> Callable[[F], F]:
    """Decorate a stage function to run under `exclusive(path_of(arguments), what)`;
    `path_of` gets the call's arguments by name (defaults applied)."""

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with exclusive(path_of(bound.arguments), what):
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate


# ---- files an output option names (`--out FILE`, `--heatmap FILE`) ------------------
LIBRARY_INDEX = "library.yaml"  # a directory holding it is a multiplier library
RUN_KIND = "train run"  # a training run directory's marker
PNG_SOFTWARE = "hwflow {kind}"  # the PNG text chunk that says which hwflow figure it is


def _has_keys(path: Path, keys: set[str]) -> bool:
    with contextlib.suppress(Exception):  # unreadable, not YAML/JSON, not a mapping: not ours
        doc = yaml.load(path.read_text(), Loader=_YAML_LOADER)
        return isinstance(doc, dict) and keys <= set(doc)
    return False


def _png_software(path: Path) -> str | None:
    """The `Software` text chunk of a PNG (matplotlib writes its text before the image)."""
    with contextlib.suppress(OSError):
        with path.open("rb") as f:
            data = f.read(1 << 16)
        pos = 8 if data.startswith(b"\x89PNG\r\n\x1a\n") else len(data)
        while pos + 8 <= len(data) and data[pos + 4 : pos + 8] != b"IDAT":
            size = int.from_bytes(data[pos : pos + 4], "big")
            if data[pos + 4 : pos + 8] == b"tEXt":
                key, _, text = data[pos + 8 : pos + 8 + size].partition(b"\x00")
                if key == b"Software":
                    return text.decode("latin-1")
            pos += 12 + size
    return None


# what each output file of an option looks like when hwflow wrote it
OUTPUT_KINDS: dict[str, Callable[[Path], bool]] = {
    "assignment": lambda p: _has_keys(p, {"library", "layers", "energy"}),
    "retrain result": lambda p: _has_keys(p, {"assignment", "checkpoint", "accuracy", "layers"}),
    "error heatmap": lambda p: _png_software(p) == PNG_SOFTWARE.format(kind="error heatmap"),
}


def _managed_by(path: Path) -> tuple[Path, str] | None:
    """The nearest folder above `path` that hwflow manages, and its kind."""
    for folder in path.parents:
        if (folder / LIBRARY_INDEX).is_file():
            return folder, "multiplier library"
        kind = _dir_kind(folder)
        if kind is not None:
            return folder, kind
    return None


def check_output_file(
    path: str | os.PathLike[str], kind: str, slot: tuple[str, str] | None = None
) -> None:
    """Refuse an output file `path` whose writing could destroy something.

    Allowed: a new file, or one hwflow wrote as this `kind` (`OUTPUT_KINDS` recognizes
    it), outside every folder hwflow manages (a library, a run, an export, a sweep...);
    inside one only the slot the command's default uses (`slot`: the folder kind and the
    file name, e.g. a run's `assignment.yaml`)."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise HwflowError(f"{path}: not a plain file; give a new file name for the {kind}")
    where = path.parent.resolve() / path.name
    owner = _managed_by(where)
    if owner is not None:
        folder, folder_kind = owner
        if slot != (folder_kind, path.name) or where.parent != folder:
            raise HwflowError(
                f"{path}: inside the hwflow {folder_kind} {folder}, whose files only hwflow "
                f"writes; write the {kind} elsewhere"
            )
    if path.exists() and not OUTPUT_KINDS[kind](path):
        raise HwflowError(
            f"{path} exists and is not an hwflow {kind}: it stays untouched; "
            "give a new file name (or remove it yourself)"
        )


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    return sha256_bytes(Path(path).read_bytes())


def read_text(path: str | os.PathLike[str], error: type[HwflowError] = HwflowError) -> str:
    """A UTF-8 text file; unreadable or not UTF-8 is one `error` naming file and line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
            "hwflow reads and writes UTF-8: fix or restore the file"
        ) from None


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """safe_load a YAML file; a syntax error becomes a ConfigError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    text = read_text(path, ConfigError)
    try:
        return yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: file not found")
    text = read_text(path, RunError)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
