"""What hwflow runs: a run folder's model factory is code and runs only when the user
says so (`hwflow --trust-factory`, or the config they run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hwflow.cli import cli
from hwflow.config import dump_dataclass
from hwflow.errors import ConfigError
from hwflow.nn.train import TrainConfig, load_run
from hwflow.trust import TRUST_ENV, factory_trusted, trusting


def _hostile_run(root: Path, marker: Path) -> Path:
    """A received run folder whose config names `subprocess:run` with a shell command."""
    cfg = dump_dataclass(TrainConfig())
    cfg["model"].update(
        factory="subprocess:run", kwargs={"args": ["sh", "-c", f"touch '{marker}'"]}
    )
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "summary.json").write_text("{}")
    (run / "checkpoints" / "agn.pt").write_bytes(b"")
    return run


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    from hwflow.multipliers.generators import MultiplierSpec, reference_table
    from hwflow.multipliers.library import Library, LibraryEntry, NewEntry

    path = tmp_path_factory.mktemp("lib")
    spec = MultiplierSpec("exact", False, {})
    source = {"kind": "generator", "family": "exact", "params": {}}
    entry = LibraryEntry(spec.name, False, source, metrics={}, cost={"energy": 1.0})
    Library.create(path).commit([NewEntry(entry, reference_table(spec), "", "{}")])
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "RUN"],
        ["assign", "RUN", "--library", "LIB"],
        ["export", "RUN", "--assignment", "ASSIGNMENT", "--out", "OUT", "--library", "LIB"],
        ["retrain", "RUN", "--assignment", "ASSIGNMENT"],
    ],
)
def test_a_run_folders_factory_is_refused(tmp_path, library, command):
    marker = tmp_path / "ran"
    run = _hostile_run(tmp_path, marker)
    assignment = tmp_path / "assignment.yaml"
    assignment.write_text(yaml.safe_dump({"library": str(library), "layers": []}))
    names = {"RUN": run, "LIB": library, "ASSIGNMENT": assignment}
    names["OUT"] = tmp_path / "out"
    args = [str(names.get(a, a)) for a in command]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert f"{run / 'config.yaml'}: model.factory: 'subprocess:run'" in result.output
    assert "--trust-factory" in result.output
    assert not marker.exists()


def test_trust_factory_opts_in(tmp_path):
    marker = tmp_path / "ran"
    run = _hostile_run(tmp_path, marker)
    result = CliRunner().invoke(cli, ["--trust-factory", "evaluate", str(run)])
    # the user said to trust it: it runs (and then fails, as it builds no network)
    assert marker.exists() and result.exit_code == 2
    assert "not a torch.nn.Module" in result.output
    marker.unlink()
    with pytest.raises(ConfigError, match="--trust-factory"):  # the opt-in ends with the call
        load_run(run)
    assert not marker.exists()


def test_trusting_names_one_factory_and_restores(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with trusting("a.py:f"):
        assert factory_trusted("a.py:f") and not factory_trusted("subprocess:run")
        with trusting(None):
            assert factory_trusted("a.py:f")
    assert not factory_trusted("a.py:f")


def test_the_manifest_format_is_the_exported_checkers():
    from hwflow.artifacts import _manifest
    from hwflow.rtl import check

    assert _manifest.FORMAT == check.FORMAT


def test_an_interrupted_tool_leaves_no_process_behind(tmp_path):
    """Interrupted while a tool runs (SIGTERM during Verilator's compile): its whole tree
    ends, the grandchildren a killed parent orphaned included."""
    import os
    import subprocess
    import time

    from hwflow.errors import Terminated
    from hwflow.simulator import tools_die_with_the_call

    marker = f"sleep 300.{os.getpid()}"  # the orphans' command line

    def alive() -> list[str]:
        out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if line.strip() == marker]

    with pytest.raises(Terminated), tools_die_with_the_call():
        shell = subprocess.Popen(["sh", "-c", f"{marker} & {marker}"])
        for _ in range(100):
            if len(alive()) == 2:
                break
            time.sleep(0.05)
        shell.kill()  # as the runner kills its direct child: the tool is orphaned
        shell.wait()
        assert alive()
        raise Terminated
    assert not alive()


def test_a_ray_task_trusts_what_the_driver_trusts(monkeypatch):
    from hwflow import executor

    monkeypatch.delenv(TRUST_ENV, raising=False)
    fp = executor.code_fingerprint()
    assert executor._ray_task(factory_trusted, "a.py:f", fp, ".", "a.py:f")
    assert not executor._ray_task(factory_trusted, "a.py:f", fp, ".", None)
    assert not factory_trusted("a.py:f")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: [m], "not a JSON object"),
        (lambda m: {k: v for k, v in m.items() if k != "simulations"}, "`simulations` is missing"),
        (lambda m: {**m, "simulations": []}, "`simulations` is empty"),
        (
            lambda m: {**m, "layers": [{**m["layers"][0], "port": "x; initial $system"}]},
            "`layers[0].port` is not a plain Verilog identifier",
        ),
        (lambda m: {**m, "sources": ["../../etc/passwd"]}, "not a plain path inside the export"),
        (
            lambda m: {**m, "layers": [{**m["layers"][0], "fan_in": True}]},
            "`layers[0].fan_in` has the wrong type (bool)",
        ),
    ],
)
def test_a_malformed_manifest_is_one_line(tmp_path, edit, message):
    """Everything verify takes from a received manifest is checked once, on load."""
    manifest = {
        "format": 2, "top": "hwflow_top", "test_module": "test_hwflow", "latency": 2,
        "sources": ["rtl/hwflow_top.v"], "files": {}, "multipliers": [],
        "simulations": [{"name": "layers", "harness": "hwflow_harness", "cycles": 10,
                         "sources": ["rtl/hwflow_top.v"]}],
        "layers": [{"layer": "fc", "multiplier": "u_exact", "port": "fc", "module": "mul_u",
                    "signed": False, "lanes": 4, "fan_in": 3, "jobs": 4, "passes": 1,
                    "acc_width": 20, "shape": [1, 1, 4]}],
    }  # fmt: skip
    from hwflow.artifacts import Manifest

    assert Manifest.load(_write_manifest(tmp_path / "ok", manifest))["top"] == "hwflow_top"
    bad = _write_manifest(tmp_path / "bad", edit(manifest))
    result = CliRunner().invoke(cli, ["verify", str(bad)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert message in result.output and "manifest.json" in result.output


def _write_manifest(folder: Path, doc) -> Path:
    import json

    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(doc))
    return folder
