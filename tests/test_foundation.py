"""errors / io / config / table: the leaves every stage relies on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from click.testing import CliRunner

from hwflow import io
from hwflow.cli import cli
from hwflow.config import dump_dataclass, load_config, load_dataclass
from hwflow.errors import ConfigError, HwflowError
from hwflow.multipliers.table import compute_metrics, exact_table, operand_values, output_to_int


@dataclasses.dataclass
class Optim:
    lr: float = 0.1
    epochs: int = 3


@dataclasses.dataclass
class Cfg:
    name: str
    mode: Literal["quant", "agn"] = "quant"
    optim: Optim = dataclasses.field(default_factory=Optim)
    scales: list[float] = dataclasses.field(default_factory=list)
    seed: int | None = None


def test_config_loads_nested_and_converts_ints_to_floats(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\noptim: {lr: 1}\nscales: [1, 2.5]\n")
    cfg = load_config(Cfg, path)
    assert cfg == Cfg(name="x", optim=Optim(lr=1.0), scales=[1.0, 2.5])
    assert isinstance(cfg.optim.lr, float)
    assert load_dataclass(Cfg, dump_dataclass(cfg)) == cfg


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: x\noptim: {lrr: 1}\n", "optim.lrr: unknown key"),
        ("name: x\noptim: {lr: fast}\n", "optim.lr: expected a number"),
        ("name: x\noptim: {epochs: 1.5}\n", "optim.epochs: expected an integer"),
        ("name: x\nmode: approx\n", "mode: expected one of"),
        ("name: x\nscales: [1, a]\n", "scales[1]: expected a number"),
        ("optim: {}\n", "name: required key is missing"),
        ("- a\n- b\n", "expected a mapping"),
        ("name: [unclosed\n", "invalid YAML"),
    ],
)
def test_config_errors_name_the_key_path(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(Cfg, path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_config_refuses_nan_and_inf(tmp_path: Path, value: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"name: x\noptim:\n  lr: {value}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: optim\.lr: expected a finite number"):
        load_config(Cfg, path)


def test_config_required_keys_must_be_spelled_out(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: optim\.lr: required key is missing"):
        load_config(Cfg, path, required=("optim.lr",))
    path.write_text("name: x\noptim: {lr: 0.5}\n")
    assert load_config(Cfg, path, required=("optim.lr",)).optim.lr == 0.5


def test_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(Cfg, tmp_path / "nope.yaml")


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    io.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_dir_replaces_whole_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "export"
    with io.atomic_dir(out, "export") as d:
        (d / "a.txt").write_text("1")
    with pytest.raises(RuntimeError), io.atomic_dir(out, "export") as d:
        (d / "b.txt").write_text("2")
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == [io.DIR_MARK, "a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    with io.atomic_dir(out, "export") as d:  # an earlier export's directory: replaced
        (d / "c.txt").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == [io.DIR_MARK, "c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind", ["export", "train run"])
def test_owned_directories_refuse_what_they_did_not_make(tmp_path: Path, kind: str) -> None:
    """Only an absent path, an empty directory or one of the same kind is written."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    other = io.claim_dir(tmp_path / "other", "sweep")
    (other / "sweep.csv").write_text("point\n")
    afile = tmp_path / "afile"
    afile.write_text("x")
    before = _tree(tmp_path)
    for target in (mine, other, afile):
        with pytest.raises(HwflowError, match=f"^{target} exists and is not an hwflow {kind}$"):
            io.check_dir(target, kind)
        with pytest.raises(HwflowError, match="is not an hwflow"), io.atomic_dir(target, kind):
            pytest.fail("the block must not run")
        with pytest.raises(HwflowError, match="is not an hwflow"):
            io.claim_dir(target, kind)
    assert _tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "mine", "other"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert io.claim_dir(empty, kind) == empty
    assert (empty / io.DIR_MARK).read_text() == kind + "\n"
    io.claim_dir(empty, kind)  # its own kind again: fine


def test_written_files_and_directories_respect_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o027)
    try:
        io.write_text(tmp_path / "f.txt", "x")
        with io.atomic_dir(tmp_path / "d", "export") as d:
            io.write_text(d / "g.txt", "y")
        assert io.umask() == 0o027
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "d" / "g.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750


def test_npy_roundtrip_and_hash(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.int32).reshape(3, 4)
    io.write_npy(tmp_path / "t.npy", arr)
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), arr)
    assert io.sha256_file(tmp_path / "t.npy") == io.sha256_bytes((tmp_path / "t.npy").read_bytes())


def test_operand_values_and_exact_tables() -> None:
    assert operand_values(True)[[0, 127, 128, 255]].tolist() == [0, 127, -128, -1]
    assert operand_values(False)[[0, 255]].tolist() == [0, 255]
    s = exact_table(True)
    assert s[0x80, 0x80] == 16384 and s[0xFF, 0x02] == -2 and s[0x80, 0x7F] == -16256
    assert exact_table(False)[255, 255] == 65025
    assert output_to_int(np.array([0xFFFE, 0x4000]), True).tolist() == [-2, 16384]


def test_metrics_known_answers() -> None:
    for signed in (False, True):
        m = compute_metrics(exact_table(signed), signed)
        assert all(m[k] == 0 for k in ("mae", "wce", "mse", "bias", "std", "ep_pct", "mre_pct"))
    plus_one = exact_table(False) + 1
    m = compute_metrics(plus_one, False)
    assert (m["mae"], m["wce"], m["bias"], m["std"], m["ep_pct"]) == (1, 1, 1, 0, 100)
    assert m["mae_pct"] == pytest.approx(100 / 2**16)
    # Only a[1]*b[1] = 1 is off, by +1: MRE over the 255*255 non-zero products.
    one = exact_table(False)
    one[1, 1] += 1
    m = compute_metrics(one, False)
    assert m["mre_pct"] == pytest.approx(100 / 255**2)
    assert m["ep_pct"] == pytest.approx(100 / 65536)


def test_cli_turns_hwflow_error_into_one_line_exit_2() -> None:
    @cli.command("_raise_for_test", hidden=True)
    def _raise() -> None:
        raise HwflowError("thing.v:3: something is wrong")

    try:
        result = CliRunner().invoke(cli, ["_raise_for_test"])
    finally:
        cli.commands.pop("_raise_for_test")
    assert result.exit_code == 2
    assert result.output.strip() == "error: thing.v:3: something is wrong"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train"], "error: missing option '--config' (see 'hwflow train --help')"),
        (["--bogus"], "error: no such option '--bogus' (see 'hwflow --help')"),
        (["nosuch"], "error: no such command 'nosuch' (see 'hwflow --help')"),
        (["library", "show"], "error: missing argument 'NAME' (see 'hwflow library show --help')"),
        (["evaluate", "r", "--mode", "x"], "error: invalid value for '--mode': 'x' is not one"),
    ],
)
def test_cli_usage_errors_are_one_error_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args, prog_name="hwflow")
    assert result.exit_code == 2
    assert len(result.output.splitlines()) == 1, result.output
    assert result.output.startswith(message), result.output
