"""Writers that cannot collide or destroy: one-writer locks, output files, user mistakes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hwflow import io
from hwflow.cli import cli
from hwflow.errors import HwflowError

ROOT = Path(__file__).resolve().parent.parent


def _one_error_line(res, fragment: str) -> None:
    assert res.exit_code == 2, res.output
    assert len(res.output.splitlines()) == 1 and res.output.startswith("error: "), res.output
    assert fragment in res.output, res.output


# ---- one writer per run, sweep, study, export -----------------------------------------


def test_a_second_writer_of_a_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with io.exclusive(out, "run"):
        lock = tmp_path / ".run.lock"
        assert f"pid {os.getpid()}" in lock.read_text()
        busy = rf"run is being written by pid {os.getpid()} on "
        with pytest.raises(HwflowError, match=busy), io.exclusive(out, "run"):
            pass
        with io.exclusive(tmp_path / "other", "run"):  # another folder is free
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no lock file left behind
    lock.write_text("pid 999999 on gone (killed with -9)\n")  # a dead holder's leftover
    with io.exclusive(out, "run"):
        assert f"pid {os.getpid()}" in lock.read_text()
    assert not lock.exists()


def test_a_file_system_without_locks_writes_unguarded_as_before(tmp_path, monkeypatch) -> None:
    import errno
    import fcntl

    def no_locks(*_a):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with io.exclusive(tmp_path / "run", "run"):
        assert f"pid {os.getpid()}" in (tmp_path / ".run.lock").read_text()
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def held(tmp_path: Path):
    """Hold `path`'s lock in another process (as a concurrent hwflow command would)."""
    procs = []

    def hold(path: Path) -> None:
        code = (
            "import sys; from hwflow import io\n"
            "with io.exclusive(sys.argv[1], 'x'):\n"
            "    print('held', flush=True); sys.stdin.read()\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"

    yield hold
    for proc in procs:
        proc.communicate("", timeout=30)


def test_train_sweep_study_and_export_refuse_a_folder_being_written(tmp_path, held) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {dataset: digits}\nmodel: {name: digits_cnn}\n")
    out = tmp_path / "busy"
    held(out)
    commands = [
        ["train", "--config", str(cfg), "--out", str(out)],
        ["sweep", str(tmp_path / "run"), "--out", str(out)],
        ["study", str(cfg), "--out", str(out)],
        ["export", str(tmp_path / "run"), "--assignment", str(cfg), "--out", str(out)],
    ]
    for args in commands:
        res = CliRunner().invoke(cli, args)
        _one_error_line(res, f"{out}: this ")
        assert "is being written by pid " in res.output and "(-c " in res.output
    assert not out.exists()


# ---- output file options: create, or replace hwflow's own, never anything else --------


@pytest.fixture
def small_lib(tmp_path: Path) -> Path:
    """A one-entry library made without simulation."""
    from hwflow.multipliers.library import Library, LibraryEntry, NewEntry
    from hwflow.multipliers.table import compute_metrics, exact_table

    lib = Library.load(tmp_path / "lib")
    cost = {"cells": 1, "gates": {}, "area": 1.0, "depth": 1, "energy": 2.0}
    entry = LibraryEntry(
        "u_exact", False, {"kind": "generator", "family": "exact"},
        compute_metrics(exact_table(False), False), cost,
    )  # fmt: skip
    lib.commit([NewEntry(entry, exact_table(False), "// stub\n", "{}")])
    return tmp_path / "lib"


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_heatmap_creates_or_replaces_its_own_png_and_nothing_else(small_lib, tmp_path):
    show = ["library", "show", "u_exact", "--library", str(small_lib), "--heatmap"]
    png = tmp_path / "heat.png"
    assert CliRunner().invoke(cli, [*show, str(png)]).exit_code == 0
    first = png.read_bytes()
    assert first.startswith(b"\x89PNG")
    png.write_bytes(first[:-1] + b"\x00")  # ours, changed: replaced again
    assert CliRunner().invoke(cli, [*show, str(png)]).exit_code == 0
    assert png.read_bytes() == first
    before = _tree(small_lib)
    mine = tmp_path / "notes.txt"
    mine.write_text("keep\n")
    plain = tmp_path / "photo.png"  # a PNG hwflow did not make
    plain.write_bytes(first[:33])  # signature and header, no hwflow text
    for target, message in [
        (small_lib / "library.yaml", "inside the hwflow multiplier library"),
        (small_lib / "tables" / "new.png", "inside the hwflow multiplier library"),
        (mine, "exists and is not an hwflow error heatmap"),
        (plain, "exists and is not an hwflow error heatmap"),
        (tmp_path, "is a directory"),
    ]:
        res = CliRunner().invoke(cli, [*show, str(target)])
        _one_error_line(res, message)
    assert _tree(small_lib) == before and mine.read_text() == "keep\n"
    assert plain.read_bytes() == first[:33]


def test_assign_and_retrain_out_never_replace_a_run_or_user_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    io.claim_dir(run, io.RUN_KIND)
    io.write_json(run / "summary.json", {"layers": []})
    mine = tmp_path / "mine.yaml"
    mine.write_text("library: x\n")
    cases = [
        (["assign", str(run), "--out", str(run / "summary.json")], "inside the hwflow train run"),
        (["assign", str(run), "--out", str(run / "other.yaml")], "inside the hwflow train run"),
        (["assign", str(run), "--out", str(mine)], "exists and is not an hwflow assignment"),
        (
            ["retrain", str(run), "--assignment", str(mine), "--out", str(run / "summary.json")],
            "inside the hwflow train run",
        ),  # fmt: skip
        (
            ["retrain", str(run), "--assignment", str(mine), "--out", str(mine)],
            "exists and is not an hwflow retrain result",
        ),  # fmt: skip
    ]
    before = _tree(run)
    for args, message in cases:
        _one_error_line(CliRunner().invoke(cli, args), message)
    assert _tree(run) == before and mine.read_text() == "library: x\n"
    # the default slot and an earlier assignment elsewhere are allowed
    io.write_yaml(run / "assignment.yaml", {"library": "l", "layers": [], "energy": {}})
    io.check_output_file(run / "assignment.yaml", "assignment", (io.RUN_KIND, "assignment.yaml"))
    io.write_yaml(mine, {"library": "l", "layers": [], "energy": {}})
    io.check_output_file(mine, "assignment")


# ---- netlist file names of every shape ------------------------------------------------

NL = ROOT / "tests" / "fixtures" / "netlists"


SHAPES = ["my mul.v", 'it\'s "q".v', "a;b.v", "müll.v"]


def test_netlist_names_of_every_shape_reach_yosys_intact(tmp_path: Path) -> None:
    from hwflow.characterize.netlist import inspect_staged, stage_netlist

    staged = []
    for i, name in enumerate(SHAPES):
        (tmp_path / name).write_text((NL / "trunc_u.v").read_text())
        staged.append(stage_netlist(tmp_path / name, tmp_path / "work" / f"n{i}"))
    found = inspect_staged(staged, tmp_path / "work", None, None, None)
    assert [(nl.path.name, nl.top) for nl in found] == [(n, "mul8u_trunc4") for n in SHAPES]
    (tmp_path / SHAPES[0]).write_text("module m(input a;\n")  # errors name the user's file
    staged = [stage_netlist(tmp_path / SHAPES[0], tmp_path / "work" / "n0")]
    (error,) = inspect_staged(staged, tmp_path / "work", None, None, None)
    assert str(error).startswith(f"{tmp_path / SHAPES[0]}:1: syntax error"), error


def test_characterize_takes_a_netlist_named_with_every_odd_character(tmp_path: Path) -> None:
    import json

    netlist = tmp_path / "my 'q\";ü.v"
    netlist.write_text((NL / "trunc_u.v").read_text())
    lib = tmp_path / "lib"
    args = ["characterize", str(netlist), "--library", str(lib), "--json", "--quiet"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    (entry,) = [e for e in json.loads(res.output) if e["name"] != "u_exact"]
    assert np.load(entry["table"])[255, 255] == 0xF0 * 0xF0  # the truncated circuit's


# ---- broken files and mistaken configs: one line, never a traceback -----------------


def test_files_that_are_not_utf8_are_one_error_naming_file_and_line(tmp_path: Path) -> None:
    bad = b"format: 1\nname: \xff\xfe\n"
    for name in ("summary.json", "manifest.json", "assignment.yaml"):
        (tmp_path / name).write_bytes(bad)
    with pytest.raises(HwflowError, match=r"summary\.json:2: not UTF-8 text \(byte 0xff\)"):
        io.read_json(tmp_path / "summary.json")
    with pytest.raises(HwflowError, match=r"assignment\.yaml:2: not UTF-8 text"):
        io.read_yaml(tmp_path / "assignment.yaml")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "library.yaml").write_bytes(bad)
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_bytes(bad)
    for args, fragment in [
        (["library", "list", "--library", str(lib)], "library.yaml:2: not UTF-8"),
        (["verify", str(export)], "manifest.json:2: not UTF-8"),
        (
            ["retrain", str(tmp_path), "--assignment", str(tmp_path / "assignment.yaml")],
            "assignment.yaml:2: not UTF-8",
        ),  # fmt: skip
    ]:
        _one_error_line(CliRunner().invoke(cli, args), fragment)


NEEDED = "data: {dataset: digits}\nmodel: {name: digits_cnn}\n"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("float: {momentum: -0.1}", "float.momentum: must be >= 0 and < 1, got -0.1"),
        ("qat: {weight_decay: -1}", "qat.weight_decay: must be >= 0, got -1"),
        ("data: {dataset: digits, split_seed: -1}", "data.split_seed: must be >= 0"),
        ("seed: 18446744073709551616", "seed: must be >= 0 and < 9223372036854775808"),
        ("data: {dataset: digits, max_samples: 0}", "data.max_samples: must be >= 1, got 0"),
        ("agn: {sigma_lr: -1}", "agn.sigma_lr: must be > 0, got -1"),
        ("agn: {lam: -0.2}", "agn.lam: must be >= 0, got -0.2"),
        ("agn: {sigma_max: 0}", "agn.sigma_max: must be > 0, got 0"),
        ("data: {dataset: digits, val_fraction: 1}", "data.val_fraction: must be > 0 and < 1"),
        ("threads: 0", "threads: must be >= 1, got 0"),
    ],
)
def test_config_values_outside_their_range_are_refused_naming_the_key(
    tmp_path: Path, text: str, fragment: str
) -> None:
    from hwflow.nn.train_config import load_train_config

    cfg = tmp_path / "c.yaml"
    own_data = text.startswith("data:")  # replaces the data line every config needs
    cfg.write_text(f"{text}\nmodel: {{name: digits_cnn}}\n" if own_data else f"{NEEDED}{text}\n")
    with pytest.raises(HwflowError, match=re.escape(f"c.yaml: {fragment}")):
        load_train_config(cfg)


def test_a_config_built_in_python_is_checked_the_same_way(tmp_path: Path) -> None:
    from dataclasses import replace

    from hwflow.nn.train import AGNConfig, TrainConfig, train

    cfg = replace(TrainConfig(), agn=AGNConfig(lam=-1.0))
    with pytest.raises(HwflowError, match=r"config: agn\.lam: must be >= 0, got -1\.0"):
        train(cfg, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


FACTORIES = """
import sys
from torch import nn

class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.flat, self.fc = nn.Flatten(), nn.Linear(64, 10)

    def forward(self, x):
        y = self.fc(self.flat(x))
        return y, y

def tuple_net():
    return Pair()

def leaves():
    sys.exit(0)
"""


@pytest.mark.parametrize(
    ("factory", "fragment"),
    [
        ("leaves", "leaves(**{}) failed: SystemExit: 0"),
        ("tuple_net", "forward returns a tuple; hwflow needs the logits, one tensor of shape"),
    ],
)
def test_a_misbehaving_model_factory_fails_train_with_one_line(tmp_path, factory, fragment):
    (tmp_path / "nets.py").write_text(FACTORIES)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data: {dataset: digits, image_size: 8, max_samples: 64}\n"
        f"model: {{factory: nets.py:{factory}}}\n"
    )
    res = CliRunner().invoke(cli, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")])
    _one_error_line(res, fragment)
    assert not (tmp_path / "r").exists()


# ---- a full disk or a read-only folder: one line, nothing half-written ------------------


def _disk_full(*_a, **_k):
    import errno

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_leaves_no_half_written_file_or_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(Path, "write_bytes", _disk_full)
    with pytest.raises(HwflowError, match=r"out\.json: cannot write \(No space left on device\)"):
        io.write_json(tmp_path / "out.json", {"a": 1})
    full = r"/\.design\.tmp-\d+-.*: cannot write \(No space"
    with pytest.raises(HwflowError, match=full), io.atomic_dir(tmp_path / "design", "x") as tmp:
        (tmp / "a.v").write_bytes(b"module a; endmodule\n")
    assert list(tmp_path.iterdir()) == []


def test_train_on_a_full_disk_is_one_line_and_resumable(tmp_path, monkeypatch) -> None:
    import torch

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data: {dataset: digits, max_samples: 64, batch_size: 32}\nmodel: {name: digits_cnn}\n"
        "threads: 1\nfloat: {epochs: 1, max_steps: 1}\n"
    )
    monkeypatch.setattr(torch, "save", _disk_full)  # the first checkpoint meets a full disk
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--config", str(cfg), "--out", str(out), "--quiet"])
    _one_error_line(res, "float.last.pt: cannot write (No space left on device)")
    assert sorted(p.name for p in out.rglob("*")) == [".hwflow", "checkpoints", "config.yaml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "run"]  # no lock left


def test_a_read_only_folder_is_one_line_before_any_work(tmp_path: Path) -> None:
    shut = tmp_path / "shut"
    shut.mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(NEEDED)
    prefix = []
    if os.geteuid() == 0:  # root ignores permission bits, except in a user namespace
        import shutil

        unshare = shutil.which("unshare")
        if unshare is None or subprocess.run([unshare, "--user", "true"]).returncode != 0:
            pytest.skip("running as root without user namespaces: read-only dirs stay writable")
        prefix = [unshare, "--user"]
    shut.chmod(0o555)
    try:
        res = subprocess.run(
            [*prefix, sys.executable, "-m", "hwflow.cli", "train", "--config", str(cfg),
             "--out", str(shut / "run")],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    finally:
        shut.chmod(0o755)
    assert res.returncode == 2 and res.stdout == "", res.stderr
    assert res.stderr.startswith("error: ") and len(res.stderr.splitlines()) == 1, res.stderr
    assert f"{shut}/.run.lock: cannot write (Permission denied)" in res.stderr
    assert list(shut.iterdir()) == []


# ---- what a killed process left behind is removed by the next run -----------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_folders_of_killed_processes_are_removed_and_live_ones_kept(tmp_path, monkeypatch):
    dead, live = _dead_pid(), os.getpid()
    stale = [tmp_path / f".design.tmp-{dead}-x1", tmp_path / f".design.old-{dead}-x2"]
    kept = [tmp_path / f".design.tmp-{live}-x3", tmp_path / ".design.tmp-x4", tmp_path / "mine"]
    for p in stale + kept:
        (p / "sub").mkdir(parents=True)
    with io.atomic_dir(tmp_path / "design", "export") as tmp:
        (tmp / "a.v").write_text("module a; endmodule\n")
    assert sorted(tmp_path.iterdir()) == sorted([*kept, tmp_path / "design"])
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    (tmp_path / f"hwflow-char-{dead}-abc").mkdir()
    with io.temp_dir("hwflow-char-") as work:
        assert work.name.startswith(f"hwflow-char-{live}-")
        assert not (tmp_path / f"hwflow-char-{dead}-abc").exists()
    assert not work.exists()


# ---- options are parsed by click's own types -----------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["sweep", "r", "--seeds", "1.5"], "'1.5' is not a valid integer"),
        (["sweep", "r", "--seeds", "nan"], "'nan' is not a valid integer"),
        (["study", "c", "--out", "o", "--seeds", "0,1.5"], "'1.5' is not a valid integer"),
        (["sweep", "r", "--lr", "nan"], "'nan' is not a finite number"),
        (["retrain", "r", "--assignment", "a", "--lr", "nan"], "'nan' is not a finite number"),
        (["sweep", "r", "--scales", "1,inf"], "'inf' is not a finite number"),
        (["evolve", "r", "--scale", "nan"], "'nan' is not a finite number"),
        (["retrain", "r", "--assignment", "a", "--gamma", "nan"], "'nan' is not a finite number"),
        (["sweep", "r", "--epochs", "-1"], "-1 is not in the range x>=0"),
        (["train", "--config", "c", "--out", "o", "--seed", str(2**64)], "--seed"),
        *[
            ([*cmd, "--jobs", "0"], "0 is not in the range x>=1")
            for cmd in (
                ["characterize", "x.v"],
                ["assign", "r"],
                ["verify", "e"],
                ["sweep", "r"],
                ["study", "c", "--out", "o"],
                ["demo"],
                ["evolve", "r"],
            )
        ],
    ],
)
def test_options_out_of_range_are_refused_by_their_type(args, fragment) -> None:
    _one_error_line(CliRunner().invoke(cli, args), fragment)


def test_sweep_refuses_negative_epochs_before_making_a_folder(tmp_path: Path) -> None:
    from hwflow.errors import AssignmentError
    from hwflow.experiments.sweep import sweep_run

    with pytest.raises(AssignmentError, match="--epochs must be >= 0, got -1"):
        sweep_run(tmp_path / "run", tmp_path / "lib", [1.0], epochs=-1)
    assert list(tmp_path.iterdir()) == []


def test_ray_fills_its_cluster_only_when_jobs_are_left_at_their_default(monkeypatch) -> None:
    from hwflow import executor

    monkeypatch.setattr(executor, "parallelism", lambda: 7)
    with executor.using("ray"):
        assert (executor.jobs_for(1, given=False), executor.jobs_for(3, given=True)) == (7, 3)
    with executor.using("local"):
        assert executor.jobs_for(2, given=False) == 2


def test_a_file_of_ten_thousand_modules_without_top_is_a_short_line() -> None:
    from hwflow.characterize.netlist import find_top
    from hwflow.errors import NetlistError

    modules = {f"mul_{i:05d}": {} for i in range(10_000)}
    with pytest.raises(NetlistError) as err:
        find_top(modules, Path("big.v"))
    message = str(err.value)
    assert len(message) < 300, len(message)
    assert "mul_00000, mul_00001" in message and "(10,000 in all)" in message
    with pytest.raises(NetlistError, match=r"\(10,000 in all\)\)$"):
        find_top(modules, Path("big.v"), top="nosuch")


def test_a_characterize_that_fails_midway_keeps_the_designs_it_finished(tmp_path, monkeypatch):
    from hwflow.characterize import pipeline
    from hwflow.multipliers.library import Library, LibraryEntry, NewEntry
    from hwflow.multipliers.table import compute_metrics, exact_table

    def first_then_full_disk(fn, groups, jobs):
        design = list(groups)[0].designs[0]
        table = exact_table(False)
        cost = {"cells": 1, "gates": {}, "area": 1.0, "depth": 1, "energy": 2.0}
        entry = LibraryEntry(design.name, False, design.source, compute_metrics(table, False), cost)
        yield [pipeline._Result(design.name, new=NewEntry(entry, table, "// stub\n", "{}"))]
        raise HwflowError(f"{tmp_path}/tmp: cannot write (No space left on device)")

    monkeypatch.setattr(pipeline, "run_parallel", first_then_full_disk)
    files = []
    for name in ("first", "second"):
        files.append(tmp_path / f"{name}.v")
        files[-1].write_text((NL / "trunc_u.v").read_text().replace("mul8u_trunc4", name))
    with pytest.raises(HwflowError, match="No space left on device"):
        pipeline.characterize_netlists(files, tmp_path / "lib")
    assert [e.name for e in Library.open(tmp_path / "lib").entries] == ["first"]


def test_a_symlink_to_an_earlier_export_has_its_target_replaced(tmp_path: Path) -> None:
    real = tmp_path / "real"
    with io.atomic_dir(real, "export") as tmp:
        (tmp / "old.v").write_text("old\n")
    link = tmp_path / "link"
    link.symlink_to(real)
    with io.atomic_dir(link, "export") as tmp:
        (tmp / "new.v").write_text("new\n")
    assert link.is_symlink() and sorted(p.name for p in link.iterdir()) == [".hwflow", "new.v"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
