"""`hwflow train` / `hwflow evaluate`: stages, run directory, resume, load_run, errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from test_data import make_cifar, make_mnist  # tests/ is on sys.path under pytest

import hwflow.nn as hn
from hwflow.cli import cli
from hwflow.errors import ConfigError, RunError
from hwflow.io import DIR_MARK
from hwflow.nn.run import load_run
from hwflow.nn.train import (
    AGNConfig,
    DataConfig,
    QATConfig,
    StageConfig,
    TrainConfig,
    load_train_config,
    train,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NEEDED = "data: {dataset: digits}\nmodel: {name: digits_cnn}\n"  # keys a config must name


def tiny_config(seed: int = 0) -> TrainConfig:
    return TrainConfig(
        seed=seed,
        threads=1,
        data=DataConfig(max_samples=160, batch_size=32),
        float=StageConfig(epochs=2, lr=0.05, max_steps=3),
        qat=QATConfig(epochs=2, max_steps=3, calibration_batches=2),
        agn=AGNConfig(epochs=2, lr=0.01, sigma_lr=0.1, max_steps=3),
    )


def write_config(path: Path, cfg: TrainConfig) -> Path:
    from hwflow.config import dump_dataclass

    path.write_text(yaml.safe_dump(dump_dataclass(cfg)))
    return path


class Interrupt(Exception):
    pass


def _final_states(out: Path) -> dict[str, dict]:
    return {s: torch.load(out / f"checkpoints/{s}.pt")["model"] for s in ("float", "qat", "agn")}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiny") / "run"
    return out, train(tiny_config(), out, quiet=True)


def test_tiny_run_writes_the_run_directory(tiny_run):
    out, summary = tiny_run
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 0
    assert set(summary["accuracy"]) >= {"float", "quant", "agn"}
    assert all(0.0 <= a <= 1.0 for a in summary["accuracy"].values())
    assert [layer["name"] for layer in summary["layers"]] == ["0", "2", "5", "9"]
    for layer in summary["layers"]:
        assert set(layer) == {"name", "ops", "fan_in", "sigma", "signed"}
        assert layer["signed"] is False and layer["sigma"] >= 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in records] == [
        ("float", 1), ("float", 2), ("qat", 1), ("qat", 2), ("agn", 1), ("agn", 2),
    ]  # fmt: skip
    assert "sigmas" in records[-1]
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "agn.pt",
        "float.pt",
        "qat.pt",
    ]
    assert [p.name for p in out.rglob(".*")] == [DIR_MARK]  # no temp files left
    assert (out / DIR_MARK).read_text() == "train run\n"


def test_resume_after_interruptions_matches_uninterrupted_run(tiny_run, tmp_path):
    ref, want = tiny_run
    out = tmp_path / "run"
    for stop in (("float", 1), ("qat", 1), ("qat", 2), ("agn", 1)):

        def hook(stage, epoch, stop=stop):
            if (stage, epoch) == stop:
                raise Interrupt

        with pytest.raises(Interrupt):
            train(tiny_config(), out, resume=True, quiet=True, on_epoch=hook)
        assert not (out / "summary.json").exists()
    got = train(tiny_config(), out, resume=True, quiet=True)
    assert got == want
    assert (out / "metrics.jsonl").read_text().count("\n") == 6
    for stage, state in _final_states(ref).items():
        other = _final_states(out)[stage]
        assert all(torch.equal(state[k], other[k]) for k in state), stage


def test_load_run_model_is_quantized_and_reproduces_summary(tiny_run):
    out, summary = tiny_run
    run = load_run(out)
    assert run.summary.to_dict() == summary
    assert {layer.mode for _, layer in hn.approx_layers(run.model)} == {"quant"}
    assert run.evaluate() == summary["accuracy"]["quant_after_agn"]
    assert len(run.data.test) == 160
    sig = [abs(float(layer.sigma.detach())) for _, layer in hn.approx_layers(run.model)]
    assert sig == [layer["sigma"] for layer in summary["layers"]]
    tr = hn.trace(run.model, run.data.test.x[:4])
    assert set(tr) == {"0", "2", "5", "9"}


def test_config_errors_name_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("float:\n  epochs: 2\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: float\.lrr: unknown key"):
        load_train_config(bad)
    bad.write_text(f"{NEEDED}qat:\n  lr: -1\n")
    with pytest.raises(ConfigError, match="qat.lr: must be > 0"):
        load_train_config(bad)
    bad.write_text("model:\n  operands: maybe\n")
    with pytest.raises(ConfigError, match="model.operands: expected one of"):
        load_train_config(bad)


def test_load_run_missing_files(tmp_path):
    with pytest.raises(RunError, match="config.yaml: not found"):
        load_run(tmp_path)


def test_cli_train_evaluate_and_errors(tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml", tiny_config())
    out = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "--config", str(cfg), "--out", str(out), "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "test accuracy float" in res.output
    assert json.loads((out / "summary.json").read_text())["seed"] == 3
    res = runner.invoke(cli, ["evaluate", str(out), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result["mode"] == "quant" and 0.0 <= result["accuracy"] <= 1.0
    # rerun into the same directory without --resume: refused, nothing changed
    before = (out / "summary.json").read_bytes()
    res = runner.invoke(cli, ["train", "--config", str(cfg), "--out", str(out), "--quiet"])
    assert res.exit_code == 2 and "pass --resume" in res.output
    # --resume with another seed: refused
    res = runner.invoke(
        cli, ["train", "--config", str(cfg), "--out", str(out), "--resume", "--seed", "4"]
    )
    assert res.exit_code == 2 and "different config" in res.output
    assert (out / "summary.json").read_bytes() == before
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  dataset: digits\n  batchsize: 3\n")
    res = runner.invoke(cli, ["train", "--config", str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "data.batchsize: unknown key" in res.output
    assert not (tmp_path / "x").exists()
    res = runner.invoke(cli, ["evaluate", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "not found" in res.output


def _smoke(example: str, data_dir: Path, tmp_path: Path) -> dict:
    cfg = load_train_config(EXAMPLES / example)
    short = {"epochs": 1, "max_steps": 2}
    cfg = replace(
        cfg,
        threads=1,
        data=replace(cfg.data, data_dir=str(data_dir), batch_size=8, eval_batch_size=16),
        float=replace(cfg.float, **short),
        qat=replace(cfg.qat, calibration_batches=1, **short),
        agn=replace(cfg.agn, **short),
    )
    return train(cfg, tmp_path / "run", quiet=True)


def test_example_mnist_lenet5_smoke(tmp_path):
    make_mnist(tmp_path / "mnist", n_train=40, n_test=10)
    summary = _smoke("mnist_lenet5.yaml", tmp_path / "mnist", tmp_path)
    assert len(summary["layers"]) == 5
    assert summary["layers"][0]["signed"] is False  # pixels in [0, 1]


@pytest.mark.slow
def test_example_cifar10_resnet20_smoke(tmp_path):
    make_cifar(tmp_path / "cifar", per_batch=8)
    summary = _smoke("cifar10_resnet20.yaml", tmp_path / "cifar", tmp_path)
    assert len(summary["layers"]) == 22
    assert summary["layers"][0]["signed"] is True  # mean/std-normalised input


@pytest.mark.slow
def test_digits_example_meets_the_targets(tmp_path):
    """The default: float >= 97 %, QAT within 0.5 pp of float, sigmas differ per layer."""
    summary = train(load_train_config(EXAMPLES / "digits.yaml"), tmp_path / "run", quiet=True)
    acc = summary["accuracy"]
    assert acc["float"] >= 0.97
    assert acc["quant"] >= acc["float"] - 0.005
    sigmas = [layer["sigma"] for layer in summary["layers"]]
    assert max(sigmas) - min(sigmas) > 0.05


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tiny_run, tmp_path):
    """A real kill -9 of `hwflow train` mid-stage; --resume finishes with the same result."""
    import os
    import signal
    import subprocess
    import sys
    import time

    ref, want = tiny_run
    cfg = write_config(tmp_path / "tiny.yaml", tiny_config())
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hwflow.cli", "train", "--config", str(cfg), "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = out / "checkpoints" / "qat.last.pt"
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    res = subprocess.run([*cmd, "--resume", "--quiet"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "summary.json").read_text()) == want
    for stage, state in _final_states(ref).items():
        other = _final_states(out)[stage]
        assert all(torch.equal(state[k], other[k]) for k in state), stage


def test_load_weights_errors(tiny_run, tmp_path):
    from hwflow.nn.run import load_weights

    out, _ = tiny_run
    run = load_run(out)
    load_weights(run.model, out / "checkpoints" / "qat.pt")
    with pytest.raises(RunError, match="checkpoint not found"):
        load_weights(run.model, tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="bad.pt: not a PyTorch checkpoint hwflow can read$"):
        load_weights(run.model, bad)
    torch.save({"model": {"weird": torch.zeros(1)}}, bad)
    with pytest.raises(RunError, match="not a checkpoint of this model"):
        load_weights(run.model, bad)


def test_zero_epoch_qat_is_post_training_quantization(tmp_path):
    cfg = replace(tiny_config(), qat=QATConfig(epochs=0, calibration_batches=2))
    summary = train(cfg, tmp_path / "run", quiet=True)
    assert 0.0 <= summary["val_accuracy"]["qat"] <= 1.0
    assert all(layer["signed"] is False for layer in summary["layers"])  # calibrated


def _one_error_line(res, fragment: str) -> None:
    assert res.exit_code == 2, res.output
    assert len(res.output.splitlines()) == 1 and res.output.startswith("error: "), res.output
    assert fragment in res.output, res.output


class _RunsCode:
    """Unpickling this calls os.system (a crafted checkpoint)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_crafted_or_garbage_checkpoints_are_refused_without_running_code(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)
    marker = tmp_path / "PWNED"
    ckpt = run / "checkpoints" / "agn.pt"
    torch.save({"model": _RunsCode(marker)}, ckpt)  # a torch zip whose pickle runs code
    res = CliRunner().invoke(cli, ["evaluate", str(run)])
    _one_error_line(res, f"{ckpt}: refused: the checkpoint needs posix.system")
    assert not marker.exists()
    import pickle

    ckpt.write_bytes(pickle.dumps({"model": _RunsCode(marker)}))  # a bare pickle
    _one_error_line(CliRunner().invoke(cli, ["evaluate", str(run)]), f"{ckpt}: not a PyTorch")
    assert not marker.exists()
    for garbage in (b"", b"PK\x03\x04 truncated zip", b"garbage" * 10):
        ckpt.write_bytes(garbage)
        _one_error_line(CliRunner().invoke(cli, ["evaluate", str(run)]), f"{ckpt}: not a")
    # a resume checkpoint goes through the same loader
    shutil.copy(tiny_run[0] / "checkpoints" / "agn.pt", ckpt)
    last = run / "checkpoints" / "qat.last.pt"
    (run / "checkpoints" / "qat.pt").unlink()
    (run / "summary.json").unlink()
    torch.save({"epoch": 1, "model": _RunsCode(marker)}, last)
    with pytest.raises(RunError, match="refused"):
        train(tiny_config(), run, resume=True, quiet=True)
    assert not marker.exists()


def test_train_user_mistakes_are_one_line_and_write_nothing(tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml", tiny_config())
    runner = CliRunner()
    afile = tmp_path / "afile"
    afile.write_text("mine")
    res = runner.invoke(cli, ["train", "--config", str(cfg), "--out", str(afile)])
    _one_error_line(res, f"{afile} exists and is not an hwflow train run")
    assert afile.read_text() == "mine"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    res = runner.invoke(cli, ["train", "--config", str(cfg), "--out", str(mine), "--resume"])
    _one_error_line(res, f"{mine} exists and is not an hwflow train run")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    out = tmp_path / "run"
    nan = tmp_path / "nan.yaml"
    for value, key in ((".nan", "float.lr"), (".inf", "agn.sigma_max")):
        stage, name = key.split(".")
        nan.write_text(f"{NEEDED}{stage}:\n  {name}: {value}\n")
        res = runner.invoke(cli, ["train", "--config", str(nan), "--out", str(out)])
        _one_error_line(res, f"{nan}: {key}: expected a finite number")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    res = runner.invoke(cli, ["train", "--config", str(empty), "--out", str(out)])
    _one_error_line(res, f"{empty}: data.dataset: required key is missing")
    empty.write_text("data: {dataset: digits}\n")
    res = runner.invoke(cli, ["train", "--config", str(empty), "--out", str(out)])
    _one_error_line(res, f"{empty}: model.name: required key is missing")
    assert not out.exists()


def test_a_run_that_failed_before_any_epoch_does_not_block_the_corrected_rerun(
    tmp_path, monkeypatch
):
    runner = CliRunner()
    out = tmp_path / "run"
    good = tiny_config()
    # a mistake found while loading: missing --data-dir, then an unknown model
    cfg = write_config(tmp_path / "mnist.yaml", replace(good, data=DataConfig(dataset="mnist")))
    res = runner.invoke(cli, ["train", "--config", str(cfg), "--out", str(out)])
    _one_error_line(res, "needs --data-dir")
    bad_model = replace(good, model=replace(good.model, name="resnet_nine"))
    cfg = write_config(tmp_path / "model.yaml", bad_model)
    res = runner.invoke(cli, ["train", "--config", str(cfg), "--out", str(out)])
    _one_error_line(res, "unknown model 'resnet_nine'")
    assert not out.exists()
    # a run stopped before its first epoch finished (config.yaml written, no checkpoint)
    import hwflow.nn.train as train_mod

    def stop(*_a, **_k):
        raise Interrupt

    monkeypatch.setattr(train_mod, "_run_stage", stop)
    with pytest.raises(Interrupt):
        train(replace(good, seed=5), out, quiet=True)
    assert (out / "config.yaml").is_file() and not (out / "checkpoints").exists()
    monkeypatch.undo()
    cfg = write_config(tmp_path / "good.yaml", good)
    res = runner.invoke(cli, ["train", "--config", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 0
    # stderr is not a terminal here (as in a pipe, a log file or CI): no progress-bar
    # updates, one line per epoch
    assert "\r" not in res.stderr
    epochs = [line for line in res.stderr.splitlines() if " epoch " in line]
    assert len(epochs) == 6 and len(res.stderr.splitlines()) == 7, res.stderr
    assert res.stderr.startswith("training on cpu, 1 thread(s)\n")  # the measured choice
