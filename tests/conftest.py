"""Shared test fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _session_sim_cache(tmp_path_factory):
    """Compiled simulations (`hwflow.sim_cache`) kept for this test session only: tests
    reuse each other's builds but never read or fill the user's cache."""
    from hwflow.sim_cache import CACHE_ENV

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("sim-cache")))
        yield


@pytest.fixture
def make_without_hwflow(tmp_path_factory) -> Callable[[Path], subprocess.CompletedProcess]:
    """Run plain `make` (with optional arguments such as `SIM=verilator`) in an exported
    directory with `import hwflow` poisoned, so the export is shown to need only cocotb
    and a simulator."""
    poison = tmp_path_factory.mktemp("poison") / "hwflow"
    poison.mkdir()
    (poison / "__init__.py").write_text("raise ImportError('the export must not need hwflow')\n")
    env = {**os.environ, "PYTHONPATH": str(poison.parent)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"

    def run(directory: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", *args], cwd=directory, env=env, capture_output=True, text=True
        )

    return run
