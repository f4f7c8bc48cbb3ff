"""The Ray backend on a real local Ray cluster (2 CPUs, shared by this module's tests).

Results through Ray must equal the local executor's: the same library tables and
entries, the same sweep CSV. A worker killed mid-task is retried; with no retries left the
error names the item."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from click.testing import CliRunner
from test_assign import tiny  # noqa: F401  (fixture: a tiny trained digits run + library)

import hwflow
from hwflow import executor
from hwflow.cli import cli
from hwflow.errors import ConfigError, ExecutorError

# One worker process of pytest-xdist gets every test here: one cluster, not one each.
pytestmark = pytest.mark.xdist_group("ray")

# Workers cannot import this test module: ship its helper functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster():
    """A fresh local Ray instance with 2 CPUs, connected the way the CLI connects."""
    assert not ray.is_initialized()
    executor.connect_ray("local", num_cpus=2)
    yield ray
    ray.shutdown()


def _where(_item: object) -> tuple[str, str]:
    import hwflow as worker_hwflow

    return worker_hwflow.__file__, executor.code_fingerprint()


def _die_first_time(marker: str) -> str:
    """Kill this worker process the first time (a crashed or preempted node), succeed on
    the retry: a marker file tells the attempts apart."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(1)
    return path.name


def _refuse(item: int) -> int:
    if item == 2:
        raise ConfigError(f"item {item} is bad")
    return item


def test_workers_import_this_hwflow_and_results_keep_input_order(cluster):
    with executor.using("ray"):
        seen = set(executor.run_parallel(_where, range(4), 2))
        assert list(executor.run_parallel(abs, range(-20, 0), 2)) == list(range(20, 0, -1))
        assert list(executor.run_parallel(abs, [-5], 1)) == [5]
    assert seen == {(hwflow.__file__, executor.code_fingerprint())}
    assert cluster.cluster_resources()["CPU"] == 2
    with executor.using("ray"):
        assert executor.parallelism() == 2


def test_a_killed_worker_is_retried_and_a_lost_task_names_its_item(cluster, tmp_path):
    markers = [str(tmp_path / f"m{i}") for i in range(3)]
    with executor.using("ray"):
        assert list(executor.run_parallel(_die_first_time, markers, 2)) == ["m0", "m1", "m2"]
    assert all(Path(m).is_file() for m in markers)  # every first attempt died
    lost = str(tmp_path / "lost")
    with executor.using("ray", max_retries=0), pytest.raises(ExecutorError) as info:
        list(executor.run_parallel(_die_first_time, [lost], 2))
    assert lost in str(info.value) and "WorkerCrashedError" in str(info.value)


def test_a_task_error_arrives_as_the_stage_raised_it(cluster):
    with executor.using("ray"):
        with pytest.raises(ConfigError, match="^item 2 is bad$"):
            list(executor.run_parallel(_refuse, [1, 2, 3], 2))
        with pytest.raises(TypeError):
            list(executor.run_parallel(abs, ["text"], 2))


def _library_contents(path: Path) -> dict:
    from hwflow.multipliers.library import Library

    lib = Library.open(path)
    return {
        e.name: (
            e.to_dict(),
            lib.table(e.name).tobytes(),
            lib.netlist_path(e.name).read_text(),
        )
        for e in lib.entries
    }


@pytest.mark.slow
def test_characterize_on_ray_equals_local(cluster, tmp_path):
    from hwflow.characterize.pipeline import characterize_builtin
    from hwflow.multipliers.generators import MultiplierSpec

    specs = [MultiplierSpec("trunc", False, {"k": 6, "comp": True})]  # + both exact ones
    local = characterize_builtin(tmp_path / "local", specs=specs, jobs=2)
    with executor.using("ray"):
        on_ray = characterize_builtin(tmp_path / "ray", specs=specs, jobs=2)
    assert [o.entry.name for o in on_ray] == [o.entry.name for o in local]
    assert len(local) == 3 and not any(o.cached for o in on_ray)
    assert _library_contents(tmp_path / "ray") == _library_contents(tmp_path / "local")


@pytest.fixture(scope="module")
def tiny_run(request, tmp_path_factory):
    """A private copy of the tiny trained run (stages write into it) and its library."""
    run, lib = request.getfixturevalue("tiny")
    copy = tmp_path_factory.mktemp("ray-run") / "run"
    shutil.copytree(run, copy)
    return copy, lib


@pytest.mark.slow
def test_assign_validate_on_ray_equals_local(cluster, tiny_run, tmp_path):
    run, lib = tiny_run
    docs = {}
    for where, extra in (("local", ["--jobs", "2"]), ("ray", ["--executor", "ray"])):
        out = tmp_path / f"{where}.yaml"
        argv = ["assign", str(run), "--library", str(lib), "--validate", "--no-hist-energy"]
        res = CliRunner().invoke(cli, [*argv, "--out", str(out), "--json", *extra])
        assert res.exit_code == 0, res.output
        docs[where] = json.loads(res.output)
    assert docs["ray"] == docs["local"]
    assert docs["ray"]["validation"]["pairs"] >= len(docs["ray"]["layers"])
    assert (tmp_path / "ray.yaml").read_text() == (tmp_path / "local.yaml").read_text()


@pytest.mark.slow
def test_sweep_on_ray_equals_local(cluster, tiny_run, tmp_path):
    from hwflow.experiments.sweep import sweep_run

    run, lib = tiny_run
    opts = dict(epochs=1, max_steps=2, hist_energy=False, homogeneous=False, jobs=2)
    sweep_run(run, lib, [0.0, 4.0], out_dir=tmp_path / "local", **opts)
    with executor.using("ray"):
        sweep_run(run, lib, [0.0, 4.0], out_dir=tmp_path / "ray", **opts)
    for name in ("sweep.csv", "scale-0/assignment.yaml", "scale-4/assignment.yaml"):
        assert (tmp_path / "ray" / name).read_text() == (tmp_path / "local" / name).read_text()
    assert len((tmp_path / "ray" / "sweep.csv").read_text().splitlines()) == 3


@pytest.mark.slow
def test_verify_on_ray_checks_every_accumulation(cluster, tiny_run, tmp_path):
    run, lib = tiny_run
    assignment = tmp_path / "assignment.yaml"
    assignment.write_text(f"library: {lib}\nlayers: []\n")  # every layer exact
    out = tmp_path / "design"
    argv = ["export", str(run), "--assignment", str(assignment), "--out", str(out)]
    res = CliRunner().invoke(cli, [*argv, "--images", "1", "--rows", "7", "--no-network"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["verify", str(out), "--json", "--executor", "ray"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    manifest = json.loads((out / "manifest.json").read_text())
    assert report["ok"] and report["checked"] == manifest["accumulations"] > 0
    assert report["jobs"] == 2  # the cluster's CPUs
    assert [(s["name"], s["ok"]) for s in report["simulations"]] == [("layers", True)]


@pytest.mark.slow
def test_the_cli_joins_a_cluster_started_apart_with_its_token(tmp_path):
    """`ray start --head` in another process (no PYTHONPATH, token authentication on),
    then `hwflow characterize --executor ray --ray-address` as a user runs it."""
    import secrets
    import socket
    import subprocess
    import tempfile

    from hwflow.multipliers.generators import MultiplierSpec, reference_table, to_verilog
    from hwflow.multipliers.library import Library

    spec = MultiplierSpec("trunc", False, {"k": 6, "comp": True})
    netlist = tmp_path / "mul_t6.v"
    netlist.write_text(to_verilog(spec, module_name="mul_t6"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(32)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONPATH"}
    temp = tempfile.mkdtemp(prefix="hwr", dir="/tmp")  # short: Ray's socket paths live here
    ray_cli = Path(sys.executable).parent / "ray"
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
         "--node-ip-address=127.0.0.1", "--include-dashboard=false", f"--temp-dir={temp}",
         "--disable-usage-stats"],
        env={**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
    )  # fmt: skip
    try:
        argv = [sys.executable, "-m", "hwflow.cli", "characterize", str(netlist), "--json"]
        argv += ["--library", str(tmp_path / "lib"), "--executor", "ray"]
        argv += ["--ray-address", f"127.0.0.1:{port}"]
        env = {**base, "PYTHONPATH": str(executor.code_root())}
        for _ in range(120):  # the head's GCS accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, "ray start --head exited"
                time.sleep(1)
        refused = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2, refused.stderr
        assert "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN" in refused.stderr
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
        res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        assert [e["name"] for e in json.loads(res.stdout)] == ["mul_t6"]
        table = Library.open(tmp_path / "lib").table("mul_t6")
        assert np.array_equal(table, reference_table(spec))
    finally:
        head.terminate()  # `ray start --block` stops its cluster on SIGTERM
        head.wait(timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
