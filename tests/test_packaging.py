"""A wheel carries everything hwflow reads at run time, and hwflow finds it there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hwflow.errors import HwflowError
from hwflow.flow import FlowConfig, default_train_config
from hwflow.resources import resource_dir

ROOT = Path(__file__).resolve().parents[1]


def test_resources_come_from_the_checkout_else_from_inside_the_package(tmp_path):
    package = tmp_path / "site" / "hwflow"
    (package / "_files" / "sim").mkdir(parents=True)
    assert resource_dir("sim", package) == package / "_files" / "sim"  # as a wheel installs
    (tmp_path / "site" / "sim").mkdir()
    assert resource_dir("sim", package) == tmp_path / "site" / "sim"  # a checkout
    with pytest.raises(HwflowError, match=r"rtl_templates/ folder is missing .*reinstall"):
        resource_dir("rtl_templates", package)
    assert resource_dir("sim") == ROOT / "sim"


def test_the_demo_config_comes_from_the_checkout_else_from_inside_the_package(tmp_path):
    package = tmp_path / "site" / "hwflow"
    (package / "_files" / "examples").mkdir(parents=True)
    assert resource_dir("examples", package) == package / "_files" / "examples"
    assert default_train_config() == ROOT / "examples" / "digits.yaml"
    assert FlowConfig().train_config.is_file()


@pytest.mark.slow
def test_the_wheel_holds_every_package_testbench_template_and_kernel_source(tmp_path):
    src = tmp_path / "src"  # setuptools builds in the source tree: keep the checkout clean
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("hwflow", "sim", "rtl_templates", "examples"):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(src)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("hwflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(ROOT) for p in (ROOT / "hwflow").rglob("__init__.py")}
    missing = [str(p) for p in packages if (p / "__init__.py").as_posix() not in names]
    assert not missing, f"pyproject.toml's package list lacks {missing}"
    expected = {f"hwflow/_files/{f.relative_to(ROOT).as_posix()}" for f in _files("sim", "*.py")}
    expected |= {f"hwflow/_files/{f.relative_to(ROOT).as_posix()}" for f in _files("rtl_templates")}
    expected |= {f"hwflow/_files/{f.relative_to(ROOT).as_posix()}" for f in _files("examples")}
    # every file of the package itself: modules, kernel sources, templates, py.typed
    expected |= {
        f.relative_to(ROOT).as_posix()
        for f in (ROOT / "hwflow").rglob("*")
        if f.is_file() and "__pycache__" not in f.parts and f.suffix not in {".pyc", ".so", ".o"}
    }
    assert expected <= names, sorted(expected - names)
    _demo_config_resolves_inside(wheel, tmp_path)


def _demo_config_resolves_inside(wheel: Path, tmp_path: Path) -> None:
    """Installed from the wheel alone (no checkout on the path), `hwflow demo`'s default
    config is found inside the package from any working directory, and loads."""
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere.mkdir()
    probe = (
        "import hwflow\n"
        "from hwflow.flow import FlowConfig\n"
        "from hwflow.nn.train import load_train_config\n"
        "config = FlowConfig().train_config\n"
        "load_train_config(config)\n"
        "print(hwflow.__file__, config, sep='\\n')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    module, config = (Path(line) for line in done.stdout.split())
    assert module == site / "hwflow" / "__init__.py"
    assert config == site / "hwflow" / "_files" / "examples" / "digits.yaml"


def _files(folder: str, pattern: str = "*") -> list[Path]:
    return [p for p in (ROOT / folder).glob(pattern) if p.is_file()]
