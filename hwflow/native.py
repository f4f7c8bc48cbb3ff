"""What names a compiled (just-in-time built) extension's cache entry."""

from __future__ import annotations

import hashlib
from pathlib import Path


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
