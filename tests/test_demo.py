"""`hwflow demo --quick`: the whole flow end to end on digits, then the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwflow.cli import cli


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_reports(tmp_path: Path) -> None:
    out, lib = tmp_path / "demo", tmp_path / "lib"
    args = ["demo", "--quick", "--out", str(out), "--library", str(lib), "--jobs", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    steps = json.loads((out / "flow.json").read_text())
    assert [s["name"] for s in steps] == [
        "library", "train", "assign", "retrain", "sweep", "export", "verify", "report",
    ]  # fmt: skip
    verify = json.loads((out / "verify.json").read_text())
    assert verify["ok"] and verify["mismatches"] == 0 and verify["checked"] > 1000
    # the MAC array and the whole network, each its own simulation; both designs' sums
    assert [s["name"] for s in verify["simulations"]] == ["layers", "net"]
    assert verify["net"]["ok"] and verify["net"]["accumulations"] == verify["checked"]
    assert verify["accumulations_checked"] == 2 * verify["checked"]
    html = (out / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5  # pareto, sigmas, energy, scatter, sweep
    md = (out / "report" / "report.md").read_text()
    for heading in (
        "Accuracy",
        "Assignment and energy",
        "Multiplier library",
        "Error model vs measurement",
        "Accuracy vs energy",
        "Hardware verification",
    ):
        assert f"## {heading}" in md
    assert f"{verify['accumulations_checked']:,} accumulations in all" in md
    # A rerun resumes: every step with outputs is skipped, nothing is recomputed.
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    steps = json.loads((out / "flow.json").read_text())
    assert all(s["skipped"] for s in steps if s["name"] not in ("library", "report"))


def test_demo_rejects_unknown_forced_step(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--force", "nope"])
    assert result.exit_code == 2
    assert "unknown steps" in result.output
    assert not (tmp_path / "flow.json").exists()


def test_demo_passes_the_budget_settings_to_the_flow(tmp_path: Path, monkeypatch) -> None:
    import hwflow.flow as flow

    seen = []
    monkeypatch.setattr(flow, "run_flow", lambda cfg, log: seen.append(cfg) or [])
    args = ["demo", "--out", str(tmp_path / "d"), "--max-loss", "2", "--recovery-steps", "50"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert (seen[0].max_loss, seen[0].recovery_steps) == (2.0, 50)
    assert CliRunner().invoke(cli, [*args[:3], "--scale", "3"]).exit_code == 0
    assert (seen[1].max_loss, seen[1].scale, seen[1].recovery_steps) == (None, 3.0, 0)
    monkeypatch.undo()  # the real flow refuses recovery steps without a budget, up front
    res = CliRunner().invoke(cli, [*args, "--scale", "3"])
    assert res.exit_code == 2 and "--recovery-steps measures" in res.output
    assert not (tmp_path / "d").exists()


def test_demo_and_report_write_only_directories_they_made(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    result = CliRunner().invoke(cli, ["demo", "--out", str(mine), "--library", str(mine)])
    assert result.exit_code == 2
    assert result.output == f"error: {mine} exists and is not an hwflow flow\n"
    (mine / "report").mkdir()
    (mine / "report" / "report.md").write_text("my own report")
    result = CliRunner().invoke(cli, ["report", str(mine)])
    assert result.exit_code == 2
    assert result.output == f"error: {mine / 'report'} exists and is not an hwflow report\n"
    assert sorted(str(p.relative_to(mine)) for p in mine.rglob("*")) == [
        "notes.txt", "report", "report/report.md",
    ]  # fmt: skip
    assert (mine / "report" / "report.md").read_text() == "my own report"
