"""Compiled (just-in-time built) C++ extensions: what names their cache entry, and the one
build with its fallback rule."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def build_tag(source: Path) -> str:
    """Short hash of the CPU's feature flags, the torch version and the extension's
    `source`: a -march=native build cached in a shared home directory must never be loaded
    on a machine lacking its instructions, nor against another torch's ABI, nor for
    another source."""
    import torch

    try:
        flags = next(
            (ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")),
            "",
        )
    except OSError:
        flags = ""
    data = f"{flags}|{torch.__version__}|".encode() + source.read_bytes()
    return hashlib.sha256(data).hexdigest()[:10]


def build_extension(
    source: Path,
    name: str,
    what: str,
    log: logging.Logger,
    *,
    flags: Sequence[str] = (),
    ops: str | None = None,
) -> Any | None:
    """Build (or load from torch's cache) the C++ extension `source` as `name` + build tag:
    the Python module, or with `ops` the `torch.ops` namespace it registers. None where
    HWFLOW_KERNEL=torch asks for no compiled code or the build fails (one warning on `log`
    naming the reason): every caller has an exact fallback. Callers keep the result."""
    if os.environ.get("HWFLOW_KERNEL", "").lower() == "torch":
        log.info("%s: HWFLOW_KERNEL=torch, no compiled code", what)
        return None
    try:
        import torch
        from torch.utils import cpp_extension

        log.info("%s: building/loading the compiled code (first build ~30-40 s)", what)
        module = cpp_extension.load(
            name=f"{name}_{build_tag(source)}",
            sources=[str(source)],
            extra_cflags=["-O3", "-march=native", *flags],
            extra_ldflags=list(flags),
            is_python_module=ops is None,
            verbose=False,
        )
        return module if ops is None else getattr(torch.ops, ops)
    except Exception as exc:  # any build/load failure: the caller's fallback is exact too
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        log.warning(
            "%s: compiled code unavailable (%s: %s); using the slower exact fallback "
            "(same results)",
            what,
            type(exc).__name__,
            last,
        )
        return None
