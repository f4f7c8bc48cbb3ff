"""The executor interface without a cluster: backend choice, item names, the CLI options.

Ray itself runs in test_executor_ray.py (one shared local cluster)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwflow import executor
from hwflow.cli import cli
from hwflow.errors import ExecutorError

FAN_OUT_COMMANDS = ["characterize", "sweep", "verify", "demo"]


def test_local_backend_keeps_input_order_in_process_and_in_a_pool():
    items = [3, -1, 4, -1, -5, 9]
    assert list(executor.run_parallel(abs, items, 1)) == [3, 1, 4, 1, 5, 9]
    assert list(executor.run_parallel(abs, items, 2)) == [3, 1, 4, 1, 5, 9]
    assert list(executor.run_parallel(abs, [], 2)) == []


# A parent whose torch has run multi-threaded work (any earlier stage or test), then a
# pool whose tasks run multi-threaded torch too: forked children hung in GNU OpenMP.
_TORCH_AFTER_THREADS = """
import torch
from hwflow.executor import run_parallel

def work(n):
    torch.set_num_threads(2)
    a = torch.randn(400, 400)
    (a @ a).tanh().sum()
    return n

if __name__ == "__main__":
    torch.set_num_threads(2)
    a = torch.randn(600, 600)
    (a @ a).tanh().sum()
    print(list(run_parallel(work, [1, 2, 3], 2)))
"""


def _start_script(path: Path, text: str, *args: str) -> subprocess.Popen:
    """`text` run as a script in a session of its own, so that `_end_session` also ends
    the pool workers it starts."""
    path.write_text(text)
    return subprocess.Popen(
        [sys.executable, str(path), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip


def _end_session(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def test_a_pool_after_multithreaded_torch_finishes(tmp_path):
    proc = _start_script(tmp_path / "pool.py", _TORCH_AFTER_THREADS)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the pool's workers hung")
    finally:
        _end_session(proc)
    assert proc.returncode == 0, err[-2000:]
    assert out.split() == ["[1,", "2,", "3]"]


_SLOW_ITEMS = """
import signal, sys, time
from pathlib import Path
from hwflow.errors import Terminated
from hwflow.executor import run_parallel

def work(i):
    Path(sys.argv[1], f"started-{i}").touch()
    time.sleep(4)
    Path(sys.argv[1], f"finished-{i}").touch()
    return i

def stop(signum, frame):
    raise Terminated

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    try:
        list(run_parallel(work, range(8), 2))
    except Terminated:
        print("interrupted")
"""


def test_sigterm_stops_the_pool_without_starting_queued_items(tmp_path):
    # the pool queues items to its workers beyond the running ones; after the SIGTERM
    # they must not run, else the parent waits whole further tasks before it exits
    proc = _start_script(tmp_path / "slow.py", _SLOW_ITEMS, str(tmp_path))
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("started-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        _end_session(proc)
    assert out.strip() == "interrupted", err[-2000:]
    assert sorted(p.name for p in tmp_path.glob("started-*")) == ["started-0", "started-1"]
    assert not list(tmp_path.glob("finished-*"))  # the running items stopped too


def test_backend_comes_from_the_environment_unless_set_around_the_call(monkeypatch):
    monkeypatch.delenv("HWFLOW_EXECUTOR", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert executor.current() == executor.ExecutorConfig()
    monkeypatch.setenv("HWFLOW_EXECUTOR", "Ray")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert executor.current().kind == "ray"
    assert executor.current().ray_address == "10.0.0.1:6379"
    with executor.using("local", max_retries=0) as config:
        assert executor.current() is config
        assert (config.kind, config.ray_address, config.max_retries) == (
            "local",
            "10.0.0.1:6379",
            0,
        )
        with executor.using(gpu_tasks=True, gpus_per_task=0.5):
            assert executor.current().task_gpus == 0.5 and executor.current().kind == "local"
        assert executor.current().task_gpus == 0.0
    assert executor.current().kind == "ray"  # restored on exit
    monkeypatch.setenv("HWFLOW_EXECUTOR", "dask")
    with pytest.raises(ExecutorError, match="unknown executor 'dask'.*local, ray"):
        executor.current()
    monkeypatch.setenv("HWFLOW_EXECUTOR", "local")
    monkeypatch.setenv("HWFLOW_RAY_GPUS_PER_TASK", "one")
    with pytest.raises(ExecutorError, match="HWFLOW_RAY_GPUS_PER_TASK"):
        executor.current()
    with pytest.raises(ExecutorError, match="max_retries"):
        executor.ExecutorConfig(max_retries=-1)


def test_items_are_named_by_their_netlist_design_or_point():
    from hwflow.characterize.pipeline import Design

    group = [
        Design("u_trunc_k6", {}, False),
        Design("u_drum_k4", {}, False),
    ]
    assert executor.describe(group) == "[u_trunc_k6, u_drum_k4]"
    assert executor.describe(Path("nets/mul8_x.v")) == "nets/mul8_x.v"
    point = ("runs/a", "runs/a/sweep/scale-2", 1, 0.001, 0, 1, None)
    assert "runs/a/sweep/scale-2" in executor.describe(point)
    assert executor.describe({"name": "network", "harness": "x"}) == "network"
    assert len(executor.describe("x" * 500)) == 200
    import numpy as np

    layer_task = ("conv1", [(np.zeros((3, 3)),)], [("u_trunc_k6", np.zeros(4), False)])
    assert executor.describe(layer_task) == "(conv1, [(u_trunc_k6, False)])"


def test_a_worker_with_other_hwflow_code_refuses_to_run():
    with pytest.raises(ExecutorError, match="differs from the driver's"):
        executor._ray_task(abs, -1, "0" * 64, ".")
    assert executor._ray_task(abs, -1, executor.code_fingerprint(), ".") == 1


def test_ray_missing_is_one_line_that_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ExecutorError, match=r"pip install 'hwflow\[ray\]'"):
        executor.connect_ray()
    with executor.using("ray"), pytest.raises(ExecutorError, match="needs Ray"):
        list(executor.run_parallel(abs, [1, 2], 2))
    res = CliRunner().invoke(cli, ["verify", "nowhere", "--executor", "ray"])
    assert res.exit_code == 2 and res.output.startswith("error: --executor ray needs Ray")


def test_an_address_nobody_answers_at_fails_at_once_naming_it(monkeypatch):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nobody listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ExecutorError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        executor.connect_ray(f"127.0.0.1:{port}")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(ExecutorError, match="ray start --head"):
        executor.connect_ray()


@pytest.mark.parametrize("command", FAN_OUT_COMMANDS)
def test_every_fan_out_command_takes_the_executor_options(command):
    res = CliRunner().invoke(cli, [command, "--help"])
    assert res.exit_code == 0
    assert "--executor [local|ray]" in res.output and "--ray-address" in res.output
    assert "HWFLOW_EXECUTOR" in res.output


def test_executor_option_reads_its_environment_variable(monkeypatch):
    monkeypatch.setenv("HWFLOW_EXECUTOR", "spark")
    res = CliRunner().invoke(cli, ["verify", "nowhere"])
    assert res.exit_code == 2 and "'spark' is not one of 'local', 'ray'" in res.output


def test_the_command_runs_with_its_executor_and_restores_the_previous_one(monkeypatch, tmp_path):
    from hwflow.rtl import verify as verify_mod

    seen = []

    def fake_verify(export_dir, jobs=None, **options):
        seen.append((executor.current(), jobs))
        return {"ok": True}

    monkeypatch.setattr(verify_mod, "verify", fake_verify)
    monkeypatch.setattr(verify_mod, "format_report", lambda report: ["ok"])
    monkeypatch.setattr(executor, "parallelism", lambda: 7)  # the cluster's CPUs
    monkeypatch.delenv("HWFLOW_EXECUTOR", raising=False)
    runner = CliRunner()
    argv = ["verify", str(tmp_path), "--quiet"]
    assert runner.invoke(cli, [*argv, "--executor", "ray", "--ray-address", "h:1"]).exit_code == 0
    assert runner.invoke(cli, [*argv, "--executor", "ray", "--jobs", "3"]).exit_code == 0
    assert runner.invoke(cli, argv).exit_code == 0
    (ray_cfg, ray_jobs), (_, explicit_jobs), (local_cfg, local_jobs) = seen
    assert (ray_cfg.kind, ray_cfg.ray_address, ray_jobs) == ("ray", "h:1", 7)
    assert explicit_jobs == 3  # --jobs given: the cluster runs at most that many at once
    assert (local_cfg.kind, local_jobs) == ("local", None)
    assert executor.current().kind == "local"
