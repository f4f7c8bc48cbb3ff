"""End to end through the CLI: characterize a few designs, train tiny, assign --validate,
retrain, evaluate. Slow (simulation, synthesis, training)."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from hwflow.cli import cli


@pytest.mark.slow
def test_characterize_train_assign_validate_retrain(tmp_path):
    from hwflow.characterize.pipeline import characterize_builtin
    from hwflow.multipliers.generators import MultiplierSpec
    from hwflow.nn.train import AGNConfig, DataConfig, QATConfig, StageConfig, TrainConfig, train

    specs = [
        MultiplierSpec("trunc", False, {"k": 6, "comp": True}),
        MultiplierSpec("drum", False, {"k": 4}),
        MultiplierSpec("bam", False, {"hbl": 2, "vbl": 8}),
    ]
    lib = tmp_path / "lib"
    characterize_builtin(lib, specs=specs)
    cfg = TrainConfig(
        data=DataConfig(max_samples=300, batch_size=32),
        float=StageConfig(epochs=1, max_steps=8),
        qat=QATConfig(epochs=1, max_steps=4, calibration_batches=2),
        agn=AGNConfig(epochs=1, max_steps=4),
    )
    run = tmp_path / "run"
    train(cfg, run, quiet=True)

    runner = CliRunner()
    res = runner.invoke(
        cli, ["assign", str(run), "--library", str(lib), "--validate", "--scale", "3", "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    # the default selection minimises the recorded-operand energy
    assert doc["energy"]["model"] == "histogram" and "relative_histogram" in doc["energy"]
    assert all(0 < item["energy_rel_hist"] <= 1.5 for item in doc["layers"])
    assert all("sigma_measured" in item for item in doc["layers"])
    v = doc["validation"]
    assert v["pairs"] >= 3 * len(doc["layers"]) - 1
    # The sampled model computes the recorded outputs' errors exactly; held-out batches
    # differ only by sampling, so it must land close.
    assert v["median_pct"] <= 15.0
    # Known answer of the recorded-operand energy: the exact multiplier is its own reference.
    from hwflow.assign.energy import HistogramEnergy
    from hwflow.assign.stats import load_stats
    from hwflow.multipliers.library import Library

    stats, _ = load_stats(run / "stats.npz")
    assert HistogramEnergy(Library.open(lib)).ratio(stats[0], "u_exact") == 1.0
    # The default (--energy histogram): each layer gets the fitting multiplier that is
    # cheapest under its recorded operands; --energy uniform: the cheapest by the library's
    # uniform-operand figure (brute force over the model's predictions).
    from hwflow.assign.error_model import predict
    from hwflow.assign.flow import library_view

    argv = ["assign", str(run), "--library", str(lib), "--scale", "3", "--energy", "uniform"]
    res = runner.invoke(cli, [*argv, "--out", str(tmp_path / "uniform.yaml"), "--json"])
    assert res.exit_code == 0, res.output
    udoc = json.loads(res.output)
    assert udoc["energy"]["model"] == "uniform"
    # each selection is the cheaper by its own figure (same candidates, per-layer minima)
    e, ue = doc["energy"], udoc["energy"]
    assert e["reduction_pct_histogram"] >= ue["reduction_pct_histogram"]
    assert ue["reduction_pct"] >= e["reduction_pct"]
    view = library_view(lib)
    pred = predict(view.tables, view.signed, stats, "sampled")
    he = HistogramEnergy(Library.open(lib))
    sigma = {
        item["name"]: item["sigma"]
        for item in json.loads((run / "summary.json").read_text())["layers"]
    }
    for i, (s, item, uitem) in enumerate(zip(stats, doc["layers"], udoc["layers"], strict=True)):
        fit = [
            j
            for j, name in enumerate(view.names)
            if view.signed[j] == s.signed and pred.std[i, j] <= 3 * sigma[s.name] * s.acc_std
        ]
        assert item["energy_rel_hist"] == pytest.approx(
            min(he.ratio(s, view.names[j]) for j in fit), abs=1e-6
        )
        assert uitem["energy_rel"] == pytest.approx(min(view.energy[j] for j in fit), abs=1e-6)
    on_disk = yaml.safe_load((run / "assignment.yaml").read_text())
    assert on_disk["validation"] == v and "validation_pairs" not in on_disk

    res = runner.invoke(
        cli,
        ["retrain", str(run), "--assignment", str(run / "assignment.yaml"), "--epochs", "1"],
    )
    assert res.exit_code == 0, res.output
    result = json.loads((run / "retrain.json").read_text())
    assert result["energy"] == on_disk["energy"]
    res = runner.invoke(
        cli,
        [
            "evaluate",
            str(run),
            "--mode",
            "approx",
            "--assignment",
            str(run / "assignment.yaml"),
            "--retrained",
            result["checkpoint"],
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["accuracy"] == result["accuracy"]["approx_after"]
