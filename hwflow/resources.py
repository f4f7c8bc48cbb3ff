"""Where hwflow's non-Python files are: `sim/` (cocotb testbenches), `rtl_templates/` and
`examples/` (training configs; `hwflow demo` runs examples/digits.yaml by default).

In a checkout (and an editable install) they sit beside the package, as the repository
lays them out; a wheel carries them inside the package as `hwflow/_files/<name>/`
(pyproject.toml maps them there), so a plain `pip install .` works as well.
"""

from __future__ import annotations

from pathlib import Path

from hwflow.errors import HwflowError

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str, package: Path = _PACKAGE) -> Path:
    """The folder `name` ("sim", "rtl_templates" or "examples") of this installation."""
    for candidate in (package.parent / name, package / "_files" / name):
        if candidate.is_dir():
            return candidate
    raise HwflowError(f"hwflow's {name}/ folder is missing from {package}; reinstall hwflow")
