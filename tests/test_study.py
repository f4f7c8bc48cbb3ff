"""`hwflow study`: statistics against known values, and the whole study on a tiny
digits schedule (two training seeds)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from hwflow.cli import cli
from hwflow.experiments.statistics import discordant, mcnemar_exact, mean_ci
from hwflow.experiments.study import library_front


def test_mcnemar_exact_known_values():
    # Two-sided binomial test of the smaller discordant count against Bin(n, 1/2).
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)  # P(X <= 1), n = 10, doubled
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    # 2 * sum_{k<=10} C(40, k) / 2^40, summed exactly
    expected = 2 * sum(math.comb(40, k) for k in range(11)) / 2**40
    assert mcnemar_exact(10, 30) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_discordant_counts():
    a = np.array([1, 1, 0, 0, 1], bool)
    b = np.array([1, 0, 1, 0, 0], bool)
    assert discordant(a, b) == (2, 1)
    with pytest.raises(ValueError):
        discordant(a, b[:3])


def test_mean_ci_student_t():
    mean, std, lo, hi = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 dof) * s / sqrt(n), s = 1
    assert (mean, std) == (2.0, 1.0)
    assert lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert mean_ci([0.5]) == (0.5, 0.0, 0.5, 0.5)


def test_library_front_per_signedness():
    from types import SimpleNamespace

    def entry(name, signed, mae):
        return SimpleNamespace(name=name, signed=signed, metrics={"mae": mae})

    entries = [
        entry("u_a", False, 0.0),  # energy 1.0: exact, on the front
        entry("u_b", False, 5.0),  # 0.5: on the front
        entry("u_c", False, 6.0),  # 0.6: dominated by u_b
        entry("u_d", False, 9.0),  # 0.2: on the front
        entry("s_a", True, 7.0),  # 0.4: the only signed design competes with no u_*
    ]
    lib = SimpleNamespace(
        library=SimpleNamespace(entries=entries),
        names=[e.name for e in entries],
        energy=np.array([1.0, 0.5, 0.6, 0.2, 0.4]),
    )
    assert library_front(lib) == {"u_a", "u_b", "u_d", "s_a"}


def test_study_refuses_bad_input_before_work(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's\n")
    config = tmp_path / "c.yaml"
    config.write_text("data: {dataset: digits}\nmodel: {name: digits_cnn}\n")
    runner = CliRunner()
    base = ["study", str(config), "--library", str(tmp_path / "nolib")]
    res = runner.invoke(cli, [*base, "--out", str(mine)])
    assert res.exit_code == 2 and "is not an hwflow study" in res.output
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    res = runner.invoke(cli, [*base, "--out", str(tmp_path / "o"), "--energy", "joules"])
    assert res.exit_code == 2 and "--energy" in res.output
    res = runner.invoke(cli, [*base, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "error:" in res.output  # no library there
    assert not (tmp_path / "o").exists()


def test_study_points_from_scales_or_budgets(monkeypatch, tmp_path):
    """Without --scales: the default scales, or none where --max-loss gives budgets."""
    from hwflow.errors import AssignmentError
    from hwflow.experiments import study as study_mod

    seen = {}

    def fake_run(config, library, out, **kw):
        seen.update(kw)
        raise AssignmentError("stop here")

    monkeypatch.setattr(study_mod, "study_run", fake_run)
    base = ["study", "c.yaml", "--out", str(tmp_path / "o")]
    CliRunner().invoke(cli, base)
    assert tuple(seen["scales"]) == study_mod.DEFAULT_SCALES and seen["max_losses"] == ()
    CliRunner().invoke(cli, [*base, "--max-loss", "1,3"])
    assert tuple(seen["scales"]) == () and seen["max_losses"] == [1.0, 3.0]
    CliRunner().invoke(cli, [*base, "--max-loss", "1", "--scales", "2"])
    assert seen["scales"] == [2.0]
    with pytest.raises(AssignmentError, match="--scales: give scales >= 0 .or budgets"):
        study_mod._check_input([0], [], [], ["uniform"], 1, 1e-3, "sampled")
    study_mod._check_input([0], [], [1.0], ["uniform"], 1, 1e-3, "sampled")  # budgets only


@pytest.mark.slow
def test_study_on_tiny_digits(tmp_path):
    from hwflow.characterize.pipeline import characterize_builtin
    from hwflow.multipliers.generators import MultiplierSpec

    specs = [
        MultiplierSpec("exact", False, {}),
        MultiplierSpec("trunc", False, {"k": 6, "comp": True}),
        MultiplierSpec("trunc", False, {"k": 9, "comp": True}),
        MultiplierSpec("drum", False, {"k": 4}),
    ]
    lib = tmp_path / "lib"
    characterize_builtin(lib, specs=specs)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "threads": 1,
                "model": {"name": "digits_cnn"},
                "data": {"dataset": "digits", "max_samples": 300, "batch_size": 32},
                "float": {"epochs": 1, "max_steps": 8},
                "qat": {"epochs": 1, "max_steps": 4, "calibration_batches": 2},
                "agn": {"epochs": 1, "max_steps": 4},
            }
        )
    )
    out = tmp_path / "study"
    args = ["study", str(config), "--library", str(lib), "--seeds", "0,1", "--out", str(out)]
    args += ["--scales", "8", "--epochs", "1", "--max-steps", "2", "--max-loss", "5,50"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    # progress: each seed's training epochs and budget candidates, saying whose they are
    progress = res.stderr.splitlines()
    for s in (0, 1):
        assert f"seed {s}: agn epoch 1/1" in res.stderr
        assert f"seed {s}: budget-uniform-5pp: searching" in progress
        assert any(line.startswith(f"seed {s}: budget: scale ") for line in progress)
        # and every retraining's epochs, named by seed and point
        assert any(
            line.startswith(f"seed {s}, hetero-uniform-x8: retrain epoch 1/1: loss ")
            for line in progress
        )
    result = json.loads((out / "study.json").read_text())
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv_lines = (out / "study.csv").read_text().splitlines()
    assert csv_lines[0].startswith("point,kind,energy_model,scale")
    assert len(csv_lines) == len(result["rows"]) + 1
    md = (out / "study.md").read_text()
    assert "| point |" in md and "best homogeneous" in md and "table" in md
    points = {r["point"] for r in result["rows"]}
    assert {"hetero-uniform-x8", "hetero-histogram-x8", "budget-uniform-5pp"} <= points
    assert {"budget-histogram-5pp", "budget-histogram-50pp"} <= points
    for s in (0, 1):  # the budget point relied on validation figures, recorded with it
        b = yaml.safe_load(
            (out / f"seed-{s}" / "study" / "budget-histogram-5pp" / "assignment.yaml").read_text()
        )
        assert b["budget"]["split"] == "val" and b["budget"]["max_loss_pp"] == 5.0
        loose = yaml.safe_load(
            (out / f"seed-{s}" / "study" / "budget-histogram-50pp" / "assignment.yaml").read_text()
        )  # the looser budget admits at least what the tighter one did
        assert loose["budget"]["max_loss_pp"] == 50.0
        assert loose["energy"]["relative_histogram"] <= b["energy"]["relative_histogram"]
    # each lever's share: tables alone, corrected (retraining's start), retrained
    assert all(np.isfinite(r["acc_uncorrected_mean"]) for r in result["rows"])
    assert "tables only %" in md
    assert not any("exact" in p for p in points)  # the exact design is the int8 row
    assert set(result["sigma_history"]) == {"0", "1"} and result["sigma_history"]["0"]
    assert all(r["seeds"] == 2 for r in result["rows"])
    assert "acc_top5_mean" in csv_lines[0].split(",")
    for r in result["rows"]:  # top-5 after retraining, next to top-1
        assert 0.0 <= r["acc_mean"] <= r["acc_top5_mean"] <= 1.0, r
    labels = None
    for s in (0, 1):
        run = out / f"seed-{s}"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["seed"] == s
        int8 = np.load(run / "study" / "int8.pred.npy")
        if labels is None:
            from hwflow.nn.run import load_run

            labels = load_run(run).data.test.y.numpy()
        # the kept predictions are the retrained models' own: same accuracy as retrain.json
        assert result["int8"]["per_seed"][s] == float((int8 == labels).mean())
        for p in points:
            rj = json.loads((run / "study" / p / f"retrain-s{s}.json").read_text())
            pred = np.load(run / "study" / p / f"retrain-s{s}.pred.npy")
            assert rj["accuracy"]["approx_after"] == float((pred == labels).mean())
    # the pooled McNemar p of a row, recomputed from the stored predictions
    row = next(r for r in result["rows"] if r["point"] == "hetero-uniform-x8")
    b = c = 0
    for s in (0, 1):
        run = out / f"seed-{s}" / "study"
        mine = np.load(run / "hetero-uniform-x8" / f"retrain-s{s}.pred.npy") == labels
        base = np.load(run / "int8.pred.npy") == labels
        b, c = b + int((mine & ~base).sum()), c + int((~mine & base).sum())
    assert row["p_vs_int8"] == pytest.approx(mcnemar_exact(b, c))
    g = result["gradients"]
    assert g["point"].startswith("hetero-uniform-x") and len(g["table"]) == 2
    table_row = next(r for r in result["rows"] if r["gradient"] == "table")
    assert table_row["point"] == g["point"]
    assert result["comparisons"]["uniform"] and result["comparisons"]["recorded"]
    # a rerun reuses every training and retraining
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("retrain-s*.json")}
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("retrain-s*.json")} == stamp


def test_sigma_history_and_its_table(tmp_path):
    from hwflow.errors import RunError
    from hwflow.nn.run import sigma_history
    from hwflow.present.experiments import _sigma_lines

    records = [
        {"stage": "qat", "epoch": 1},
        {"stage": "agn", "epoch": 1, "sigmas": {"0": 0.1, "3": 0.4}},
        {"stage": "agn", "epoch": 2, "sigmas": {"0": 0.05, "3": 0.5}},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    history = sigma_history(tmp_path)
    assert history == {"0": [0.1, 0.05], "3": [0.4, 0.5]}
    table = "\n".join(_sigma_lines({"0": history, "1": {}}))
    assert "| 0 | 0.1 → 0.05 | 0.50x |" in table and "| 3 | 0.4 → 0.5 | 1.25x |" in table
    assert "seed 1" not in table  # a seed without a history has no column
    assert sigma_history(tmp_path / "missing") == {}
    (tmp_path / "metrics.jsonl").write_text("{broken\n")
    with pytest.raises(RunError, match="metrics.jsonl: not one JSON record per line"):
        sigma_history(tmp_path)


def test_study_log_reaches_pooled_seed_workers():
    """With --jobs > 1 each seed's task crosses a process boundary with the CLI's log."""
    import pickle

    from hwflow.cli import stderr_log
    from hwflow.experiments import study

    for quiet in (False, True):
        task = study._SeedTask(
            "c.yaml", 1, "run", None, "lib", (1.0,), ("uniform",), "sampled", 0.0, (), 0, 1,
            stderr_log(quiet),
        )  # fmt: skip
        assert pickle.loads(pickle.dumps(task)) == task
        # and each retraining job, with the study's log prefixed by seed and point
        st = study._Study({1: Path("run")}, None, "sampled", 0.0, 1, 1e-3, None, 2)
        st.log, st.docs = stderr_log(quiet), {1: {"budget-uniform-1pp": {}}}
        (job,) = st.jobs_for(["budget-uniform-1pp"], "ste")
        copy = pickle.loads(pickle.dumps(job))
        assert copy.log.args == job.log.args == (stderr_log(quiet), "seed 1, budget-uniform-1pp: ")
