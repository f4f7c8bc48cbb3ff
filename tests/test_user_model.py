"""A user's own network from a factory in the config: the whole flow on a
model defined in a file outside the package (residual block, depthwise conv, average
pooling, batch norm, dropout), with its trained float weights given; and the one-line
errors a user will meet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from hwflow.cli import cli
from hwflow.errors import ConfigError
from hwflow.nn.models import build_from_factory, load_float_weights

USER_MODELS = '''
import torch
from torch import nn


class Block(nn.Module):
    """Depthwise 3x3 + BN + ReLU, pointwise 1x1, added to the input (no ReLU after:
    the next layer sees signed operands)."""

    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.pw = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x + self.pw(torch.relu(self.bn(self.dw(x))))


class Net(nn.Module):
    def __init__(self, num_classes, width):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.block = Block(width)
        self.pool = nn.AvgPool2d(2)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(width * 2 * 2, num_classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.stem(x)))  # 8x8 digits -> 4x4
        x = self.pool(self.block(x))  # 2x2
        return self.head(self.drop(x.flatten(1)))


def build_net(num_classes=10, width=8):
    return Net(num_classes, width)


def not_a_module():
    return "a string"


NOT_CALLABLE = 3


def no_layers():
    return nn.Sequential(nn.ReLU(), nn.Flatten())
'''


def _write_user_files(root: Path) -> Path:
    """The model file, its float weights (a few plain SGD steps on digits) and a config,
    all in `root`; returns the config path (relative references, as a user writes them)."""
    import importlib.util

    from hwflow.nn.data import load_data

    root.mkdir(parents=True, exist_ok=True)
    (root / "my_models.py").write_text(USER_MODELS)
    spec = importlib.util.spec_from_file_location("user_models_for_weights", root / "my_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    net = module.build_net(num_classes=10, width=8)
    data = load_data("digits")
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for x, y in data.train.batches(32, shuffle=True, generator=gen, max_batches=60):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(net.state_dict(), root / "my_net.pt")
    cfg = {
        "seed": 0,
        "threads": 1,
        "data": {"dataset": "digits", "batch_size": 32},
        "model": {
            "factory": "my_models.py:build_net",
            "kwargs": {"num_classes": 10, "width": 8},
            "weights": "my_net.pt",
        },
        "float": {"epochs": 5},  # not run: the weights are given
        "qat": {"epochs": 1, "max_steps": 4, "calibration_batches": 2},
        "agn": {"epochs": 1, "max_steps": 4},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    return root / "config.yaml"


@pytest.mark.slow
def test_user_model_through_the_whole_flow(tmp_path):
    from hwflow.characterize.pipeline import characterize_builtin
    from hwflow.multipliers.generators import MultiplierSpec

    config = _write_user_files(tmp_path / "user")
    lib = tmp_path / "lib"
    specs = [
        MultiplierSpec("trunc", False, {"k": 6, "comp": True}),
        MultiplierSpec("exact", False, {}),
        MultiplierSpec("trunc", True, {"k": 6, "comp": True}),
        MultiplierSpec("exact", True, {}),
    ]
    characterize_builtin(lib, specs=specs)
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(
        cli, ["train", "--config", str(config), "--out", str(run), "--quiet", "--device", "cpu"]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((run / "summary.json").read_text())
    # the float stage evaluated the given weights (no training), QAT started from them
    float_ckpt = torch.load(run / "checkpoints" / "float.pt", weights_only=False)
    given = torch.load(tmp_path / "user" / "my_net.pt", weights_only=True)
    for key, value in given.items():
        assert torch.equal(float_ckpt["model"][key], value), key
    assert [m["epoch"] for m in float_ckpt["metrics"]] == [0]
    assert summary["float_weights"] == str((tmp_path / "user" / "my_net.pt").resolve())
    assert summary["accuracy"]["float"] > 0.3  # 60 SGD steps on digits: far above chance
    assert set(summary["accuracy_top5"]) == set(summary["accuracy"])
    for stage, top1 in summary["accuracy"].items():
        assert top1 <= summary["accuracy_top5"][stage] <= 1.0
    assert summary["device"] == "cpu" and summary["threads"] == 1
    # every Conv2d (depthwise included) and Linear became approximate, with its signedness
    layers = {layer["name"]: layer for layer in summary["layers"]}
    assert list(layers) == ["stem", "block.dw", "block.pw", "head"]
    assert layers["block.dw"]["fan_in"] == 9 and layers["head"]["signed"]
    assert not layers["stem"]["signed"]
    # the run's config holds absolute paths: it loads from anywhere
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert Path(saved["model"]["factory"].rpartition(":")[0]).is_absolute()

    # the run's factory is code: commands that rebuild the model from the run folder run
    # it only when told to
    assign = ["assign", str(run), "--library", str(lib), "--scale", "2", "--json"]
    res = runner.invoke(cli, [*assign, "--device", "cpu"])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "model.factory" in res.output and "--trust-factory" in res.output
    res = runner.invoke(cli, ["--trust-factory", *assign, "--device", "cpu"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [item["name"] for item in doc["layers"]] == list(layers)
    assignment = run / "assignment.yaml"

    res = runner.invoke(
        cli,
        [
            "--trust-factory",
            "retrain",
            str(run),
            "--assignment",
            str(assignment),
            "--epochs",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    result = json.loads((run / "retrain.json").read_text())
    # (approx_uncorrected too where the assignment carries accumulator corrections)
    assert set(result["accuracy_top5"]) == set(result["accuracy"])
    assert {"quant", "approx_before", "approx_after"} <= set(result["accuracy"])
    res = runner.invoke(
        cli,
        [
            "--trust-factory", "evaluate", str(run), "--mode", "approx",
            "--assignment", str(assignment),
            "--retrained", result["checkpoint"], "--json",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    evaluated = json.loads(res.output)
    assert evaluated["accuracy"] == result["accuracy"]["approx_after"]
    assert evaluated["accuracy_top5"] == result["accuracy_top5"]["approx_after"]

    out = tmp_path / "design"
    res = runner.invoke(
        cli,
        [
            "--trust-factory", "export", str(run), "--assignment", str(assignment),
            "--out", str(out), "--retrained", result["checkpoint"], "--images", "2",
            "--rows", "6", "--lanes", "4",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "not a plain nn.Sequential" in res.output  # says why there is no hwflow_net
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["net"] is None and "net_skipped" in manifest
    # no network RTL, but the integer-only pipeline (batch norm, the addition, average
    # pooling) runs and is reported beside the emulation
    accuracy = manifest["accuracy"]
    assert abs(accuracy["integer_only"] - accuracy["fake_quant"]) < 0.05
    assert "integer-only pipeline" in res.output
    assert [lay["layer"] for lay in manifest["layers"]] == list(layers)
    res = runner.invoke(cli, ["verify", str(out), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["ok"] and report["mismatches"] == 0 and report["checked"] > 0

    res = runner.invoke(cli, ["report", str(run), "--no-html"])
    assert res.exit_code == 0, res.output
    text = (run / "report" / "report.md").read_text()
    assert "top-5" in text


def _factory_error(tmp_path: Path, spec: str, kwargs=None) -> str:
    (tmp_path / "my_models.py").write_text(USER_MODELS)
    with pytest.raises(ConfigError) as err:
        build_from_factory(spec.replace("DIR", str(tmp_path)), kwargs)
    return str(err.value)


@pytest.mark.parametrize(
    ("spec", "expect"),
    [
        ("DIR/missing.py:build_net", "missing.py: file not found"),
        ("DIR/my_models.py:nothing", "has no 'nothing'"),
        ("no_such_module_hwflow:build", "module 'no_such_module_hwflow' not found"),
        ("DIR/my_models.py:NOT_CALLABLE", "is not callable"),
        ("DIR/my_models.py:not_a_module", "returned a str, not a torch.nn.Module"),
        ("DIR/my_models.py:no_layers", "no nn.Conv2d or nn.Linear layer"),
        ("DIR/my_models.py", "expected FILE.py:CALLABLE"),
    ],
)
def test_factory_errors_are_one_line(tmp_path, spec, expect):
    message = _factory_error(tmp_path, spec)
    assert expect in message and "\n" not in message


def test_factory_from_an_importable_module():
    model = build_from_factory("hwflow.nn.models:lenet5", {"num_classes": 4})
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 4)


def test_factory_call_and_forward_errors_name_the_factory(tmp_path):
    message = _factory_error(tmp_path, "DIR/my_models.py:build_net", {"colour": 1})
    assert "build_net" in message and "TypeError" in message


def test_weights_that_do_not_match_name_the_first_key(tmp_path):
    import hwflow.nn as hn

    (tmp_path / "my_models.py").write_text(USER_MODELS)
    spec = f"{tmp_path / 'my_models.py'}:build_net"
    model = build_from_factory(spec, {"width": 8})
    hn.approximate(model, torch.zeros(2, 1, 8, 8))
    good = build_from_factory(spec, {"width": 8}).state_dict()
    torch.save(good, tmp_path / "good.pt")
    load_float_weights(model, tmp_path / "good.pt")  # the approximate form accepts them
    assert torch.equal(model.state_dict()["stem.weight"], good["stem.weight"])

    wider = build_from_factory(spec, {"width": 4}).state_dict()
    torch.save(wider, tmp_path / "wider.pt")
    with pytest.raises(ConfigError, match=r"key 'stem.weight' has shape \(4, 1, 3, 3\)"):
        load_float_weights(model, tmp_path / "wider.pt")
    missing = {k: v for k, v in good.items() if k != "block.bn.running_mean"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="missing key 'block.bn.running_mean'"):
        load_float_weights(model, tmp_path / "missing.pt")
    torch.save({**good, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(ConfigError, match="unexpected key 'extra.weight'"):
        load_float_weights(model, tmp_path / "extra.pt")
    torch.save({"model": good}, tmp_path / "wrapped.pt")
    with pytest.raises(ConfigError, match="expected a state_dict"):
        load_float_weights(model, tmp_path / "wrapped.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="junk.pt: not a torch.save'd state_dict"):
        load_float_weights(model, tmp_path / "junk.pt")


def test_config_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    from hwflow.nn.train import load_train_config

    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "c.yaml").write_text(
        yaml.safe_dump(
            {"data": {"dataset": "digits"}, "model": {"factory": "m.py:f", "weights": "w.pt"}}
        )
    )
    monkeypatch.chdir(tmp_path)
    cfg = load_train_config("cfg/c.yaml")
    assert cfg.model.factory == f"{(tmp_path / 'cfg' / 'm.py').resolve()}:f"
    assert cfg.model.weights == str((tmp_path / "cfg" / "w.pt").resolve())
    (tmp_path / "cfg" / "d.yaml").write_text(
        yaml.safe_dump({"data": {"dataset": "digits"}, "model": {"name": "lenet5", "weights": "w"}})
    )
    with pytest.raises(ConfigError, match="need model.factory"):
        load_train_config("cfg/d.yaml")
    (tmp_path / "cfg" / "e.yaml").write_text(yaml.safe_dump({"data": {"dataset": "digits"}}))
    with pytest.raises(ConfigError, match=r"model.name: required key .*or model.factory"):
        load_train_config("cfg/e.yaml")


def test_train_cli_reports_a_bad_factory_in_one_line(tmp_path):
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"data": {"dataset": "digits"}, "model": {"factory": "nope.py:f"}})
    )
    res = CliRunner().invoke(
        cli, ["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: model.factory: {(tmp_path / 'nope.py').resolve()}: file not found"
    ]
