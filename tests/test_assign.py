"""hwflow assign / retrain / sweep on a tiny trained run and a small library.

The library here is built from the generators' reference tables with hand-set energies
(no simulation or synthesis, so it is fast); `test_assign_e2e.py` uses a characterized one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from hwflow.assign.assignment import assignment_tables
from hwflow.assign.error_model import predict
from hwflow.assign.flow import assign_run, library_view, run_stats
from hwflow.assign.retrain import retrain_run
from hwflow.assign.select import choose, tolerances
from hwflow.assign.validate import measure_errors, relative_errors, spread
from hwflow.cli import cli
from hwflow.errors import AssignmentError, LibraryError, RunError
from hwflow.multipliers.generators import MultiplierSpec, reference_table
from hwflow.multipliers.library import Library, LibraryEntry, NewEntry

# (family, params, energy per op): energies are test inputs, not measurements.
DESIGNS = [
    ("exact", {}, 1000.0),
    ("trunc", {"k": 4, "comp": True}, 800.0),
    ("trunc", {"k": 7, "comp": True}, 550.0),
    ("bam", {"hbl": 2, "vbl": 8}, 450.0),
    ("drum", {"k": 4}, 300.0),
    ("trunc", {"k": 11, "comp": False}, 150.0),
]


def make_library(path: Path) -> Library:
    lib = Library.create(path)
    new = []
    for signed in (False, True):
        for family, params, energy in DESIGNS:
            spec = MultiplierSpec(family, signed, params)
            entry = LibraryEntry(
                name=spec.name,
                signed=signed,
                source={"kind": "generator", "family": family, "params": spec.params},
                metrics={},
                cost={"energy": energy},
            )
            new.append(NewEntry(entry, reference_table(spec), "// none\n", "{}"))
    lib.commit(new)
    return Library.open(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny digits run (few steps per stage) and the small library."""
    from hwflow.nn.train import AGNConfig, DataConfig, QATConfig, StageConfig, TrainConfig, train

    root = tmp_path_factory.mktemp("assign")
    cfg = TrainConfig(
        seed=0,
        data=DataConfig(max_samples=300, batch_size=32),
        float=StageConfig(epochs=1, max_steps=8),
        qat=QATConfig(epochs=1, max_steps=4, calibration_batches=2),
        agn=AGNConfig(epochs=1, max_steps=4),
    )
    train(cfg, root / "run", quiet=True)
    make_library(root / "lib")
    return root / "run", root / "lib"


@pytest.fixture
def run_copy(tiny, tmp_path):
    """A private copy of the run (tests write stats, assignments, checkpoints into it)."""
    import shutil

    run, lib = tiny
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run", lib


def test_selection_is_cheapest_fitting_multiplier(run_copy):
    run_dir, lib_dir = run_copy
    doc = assign_run(run_dir, lib_dir, scale=1.0, hist_energy=False)
    written = yaml.safe_load((run_dir / "assignment.yaml").read_text())
    assert written["layers"] == doc["layers"] and written["library"] == str(lib_dir.resolve())
    # Brute force from the model's predictions: lowest energy among those within tolerance.
    from hwflow.nn.run import load_run

    stats = run_stats(load_run(run_dir))
    view = library_view(lib_dir)
    pred = predict(view.tables, view.signed, stats, "sampled")
    summary = json.loads((run_dir / "summary.json").read_text())
    sigma = {layer["name"]: layer["sigma"] for layer in summary["layers"]}
    for i, (s, item) in enumerate(zip(stats, doc["layers"], strict=True)):
        ok = [
            j
            for j in range(len(view.names))
            if view.signed[j] == s.signed and pred.std[i, j] <= sigma[s.name] * s.acc_std
        ]
        best = min(view.energy[j] for j in ok)
        assert item["energy_rel"] == pytest.approx(best)
        assert item["sigma_predicted"] <= item["sigma_tolerated"] * (1 + 1e-9)
    ops = np.array([item["ops"] for item in doc["layers"]], dtype=float)
    e = np.array([item["energy_rel"] for item in doc["layers"]])
    assert doc["energy"]["relative"] == pytest.approx((ops * e).sum() / ops.sum(), abs=1e-6)


def test_scale_zero_is_exact_and_huge_scale_cheapest(run_copy):
    run_dir, lib_dir = run_copy
    exact = assign_run(run_dir, lib_dir, scale=0.0, hist_energy=False, out=run_dir / "a0.yaml")
    assert {i["multiplier"] for i in exact["layers"]} == {"u_exact"}
    assert exact["energy"]["reduction_pct"] == 0.0
    cheap = assign_run(run_dir, lib_dir, scale=1e9, hist_energy=False, out=run_dir / "a1.yaml")
    assert {i["multiplier"] for i in cheap["layers"]} == {"u_trunc_k11"}
    assert cheap["energy"]["reduction_pct"] == pytest.approx(85.0)


def test_choose_prefers_energy_then_std_and_rejects_nothing_fitting():
    std = np.array([[0.0, 5.0, 5.0, np.nan], [0.0, 50.0, 50.0, 1.0]])
    mean = np.zeros_like(std)
    energy = np.array([1.0, 0.5, 0.5, 0.1])
    got = choose(["a", "b"], ["ex", "m1", "m2", "other"], mean, std, energy, np.array([10, 10]))
    assert [c.index for c in got] == [1, 3]
    per_layer = np.array([[1.0, 0.6, 0.5, 0.1], [1.0, 0.5, 0.5, 0.9]])  # (layers, multipliers)
    got = choose(["a", "b"], ["ex", "m1", "m2", "other"], mean, std, per_layer, np.array([10, 60]))
    assert [c.index for c in got] == [2, 1]
    with pytest.raises(AssignmentError, match="no multiplier"):
        choose(["a"], ["m1"], mean[:1, 1:2], std[:1, 1:2], energy[1:2], np.array([1.0]))
    with pytest.raises(AssignmentError, match="scale"):
        tolerances([0.1], [1.0], -1.0)


def test_validation_measures_against_independent_gather(run_copy):
    run_dir, lib_dir = run_copy
    from hwflow.nn import trace
    from hwflow.nn.run import load_run

    run = load_run(run_dir)
    x = run.data.val.x[:16]
    view = library_view(lib_dir)
    name = "u_drum_k4"
    table = view.tables[view.names.index(name)]
    layer = next(iter(trace(run.model, x)))
    got = measure_errors(run.model, [x], {layer: [(name, table, False)]})[(layer, name)]
    t = trace(run.model, x)[layer]
    xi, wi = t.x_int[0].numpy(), t.w_int[0].numpy()
    approx = (np.sign(wi)[None] * table[xi[:, :, None], np.abs(wi)[None]]).sum(1)
    err = approx - t.acc_exact[0].numpy()
    assert got.n == err.size
    assert got.mean == pytest.approx(err.mean()) and got.std == pytest.approx(err.std())
    assert spread([1, 2, 3, 4, 5, 6, 7], 3) == [1, 4, 7]
    summary = relative_errors(
        [{"predicted_std": 11.0, "measured_std": 10.0}, {"predicted_std": 0.0, "measured_std": 0}]
    )
    assert summary["pairs"] == 1 and summary["median_pct"] == pytest.approx(10.0)


def test_validate_records_measured_sigma(run_copy):
    run_dir, lib_dir = run_copy
    doc = assign_run(run_dir, lib_dir, scale=2.0, hist_energy=False, do_validate=True)
    assert all("sigma_measured" in item for item in doc["layers"])
    assert doc["validation"]["pairs"] > 0
    chosen = [p for p in doc["validation_pairs"] if p["chosen"]]
    assert len(chosen) == len(doc["layers"])


def _write_assignment(path: Path, layers: list[dict], lib_dir: Path) -> Path:
    path.write_text(yaml.safe_dump({"library": str(lib_dir), "layers": layers}))
    return path


def test_load_assignment_bad_inputs(run_copy, tmp_path):
    run_dir, lib_dir = run_copy
    summary = json.loads((run_dir / "summary.json").read_text())
    names = {layer["name"]: layer["signed"] for layer in summary["layers"]}
    first = next(iter(names))
    good = [{"name": n, "multiplier": "u_exact"} for n in names]
    ok = assignment_tables(_write_assignment(tmp_path / "ok.yaml", good, lib_dir), lib_dir, names)
    assert set(ok) == set(names) and ok[first][0] == "u_exact" and ok[first][2] is False
    cases = {
        "unknown layer nope": [{"name": "nope", "multiplier": "u_exact"}],
        "unknown multiplier u_magic": [{"name": first, "multiplier": "u_magic"}],
        "signed multiplier": [{"name": first, "multiplier": "s_exact"}],
        "assigned twice": [good[0], good[0]],
    }
    for message, layers in cases.items():
        path = _write_assignment(tmp_path / "bad.yaml", layers, lib_dir)
        with pytest.raises(AssignmentError, match=message):
            assignment_tables(path, lib_dir, names)
    (tmp_path / "notalist.yaml").write_text("layers: 3\n")
    with pytest.raises(AssignmentError, match="layers"):
        assignment_tables(tmp_path / "notalist.yaml", lib_dir, names)


def test_library_without_tables_and_run_without_stats(run_copy, tmp_path):
    run_dir, lib_dir = run_copy
    import shutil

    broken = tmp_path / "broken-lib"
    shutil.copytree(lib_dir, broken)
    (broken / "tables" / "u_drum_k4.npy").unlink()
    with pytest.raises(LibraryError, match="u_drum_k4"):
        assign_run(run_dir, broken, hist_energy=False)
    with pytest.raises(LibraryError, match="no multiplier library"):
        assign_run(run_dir, tmp_path / "nolib", hist_energy=False)
    with pytest.raises(RunError, match="stats.npz"):
        assign_run(run_dir, lib_dir, hist_energy=False, record=False)
    assert not (run_dir / "assignment.yaml").exists() and not (run_dir / "stats.npz").exists()


def test_cli_assign_and_errors(run_copy, tmp_path):
    run_dir, lib_dir = run_copy
    runner = CliRunner()
    res = runner.invoke(cli, ["assign", str(run_dir), "--library", str(tmp_path / "nolib")])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output
    res = runner.invoke(
        cli, ["assign", str(run_dir), "--library", str(lib_dir), "--no-record", "--quiet"]
    )
    assert res.exit_code == 2 and "stats.npz" in res.output
    assert not (run_dir / "assignment.yaml").exists()
    res = runner.invoke(
        cli,
        ["assign", str(run_dir), "--library", str(lib_dir), "--no-hist-energy", "--json"],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["model"] == "sampled" and (run_dir / "assignment.yaml").is_file()
    # the default energy is the recorded-operand one; without that figure the selection
    # falls back to the uniform-operand energy and says so in one line
    assert doc["energy"]["model"] == "uniform" and "relative_histogram" not in doc["energy"]
    argv = ["assign", str(run_dir), "--library", str(lib_dir), "--no-hist-energy"]
    res = runner.invoke(cli, [*argv, "--out", str(tmp_path / "u.yaml")])
    assert res.exit_code == 0, res.output
    assert res.output.count("--no-hist-energy: no recorded-operand figure, so the selection ") == 1
    assert "% saved under uniform operands; selection minimised the uniform energy" in res.output
    res = runner.invoke(cli, [*argv, "--energy", "histogram", "--out", str(tmp_path / "h.yaml")])
    assert res.exit_code == 2 and res.output == (
        "error: --energy histogram needs the recorded-operand energy figure\n"
    )
    assert not (tmp_path / "h.yaml").exists()
    a = str(run_dir / "assignment.yaml")
    res = runner.invoke(
        cli, ["evaluate", str(run_dir), "--mode", "approx", "--assignment", a, "--json"]
    )
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    from hwflow.nn import apply_tables
    from hwflow.nn.run import load_run

    run = load_run(run_dir)
    model = run.fresh_model()
    apply_tables(model, {n: (t, s) for n, (_, t, s) in assignment_tables(a, lib_dir).items()})
    assert got["accuracy"] == run.evaluate(model, "test")
    assert set(got["multipliers"].values()) == {i["multiplier"] for i in doc["layers"]}
    res = runner.invoke(cli, ["evaluate", str(run_dir), "--mode", "approx"])
    assert res.exit_code == 2
    bad = _write_assignment(
        tmp_path / "bad.yaml", [{"name": "x", "multiplier": "u_exact"}], lib_dir
    )
    res = runner.invoke(cli, ["retrain", str(run_dir), "--assignment", str(bad), "--quiet"])
    assert res.exit_code == 2 and "unknown layer x" in res.output
    assert not (run_dir / "retrain.json").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "summary.json:1: invalid JSON"),
        ("[]", "summary.json: not a train summary"),
        ('{"accuracy": {}, "layers": 3}', "summary.json: layers: expected a list"),
        ('{"accuracy": {}, "layers": [{"name": "0"}]}', "layers[0].ops: missing or not a"),
        ("RENAMED", "summary.json: layers do not match the model's (0, 2, 5, 9)"),
    ],
)
def test_malformed_summary_is_one_error_line_and_nothing_written(run_copy, text, message):
    run_dir, lib_dir = run_copy
    summary = run_dir / "summary.json"
    if text == "RENAMED":
        doc = json.loads(summary.read_text())
        doc["layers"][0]["name"] = "conv1"
        text = json.dumps(doc)
    summary.write_text(text)
    before = sorted(p.name for p in run_dir.rglob("*"))
    res = CliRunner().invoke(cli, ["assign", str(run_dir), "--library", str(lib_dir)])
    assert res.exit_code == 2, res.output
    assert len(res.output.splitlines()) == 1 and res.output.startswith("error: "), res.output
    assert message in res.output, res.output
    assert sorted(p.name for p in run_dir.rglob("*")) == before


def test_sweep_writes_only_into_a_directory_a_sweep_made(run_copy, tmp_path):
    run_dir, lib_dir = run_copy
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    before = sorted(p.name for p in run_dir.rglob("*"))
    for out in (run_dir, mine):
        args = ["sweep", str(run_dir), "--library", str(lib_dir), "--out", str(out)]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2, res.output
        assert res.output == f"error: {out} exists and is not an hwflow sweep\n"
    assert sorted(p.name for p in run_dir.rglob("*")) == before
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_budget_after_recovery_is_the_recovered_models_validation(run_copy, tmp_path):
    """--recovery-steps: each candidate is measured after that many retraining batches;
    the figure recorded is what an independent rebuild of the chosen model gives."""
    from hwflow.assign.correct import apply_corrections
    from hwflow.assign.flow import chosen_tables
    from hwflow.assign.retrain import recover
    from hwflow.nn import apply_tables
    from hwflow.nn.run import load_run

    run_dir, lib_dir = run_copy
    out = tmp_path / "a.yaml"
    args = ["assign", str(run_dir), "--library", str(lib_dir), "--max-loss", "50", "--out"]
    res = CliRunner().invoke(cli, [*args, str(out), "--recovery-steps", "3", "--no-hist-energy"])
    assert res.exit_code == 0, res.output
    assert "after 3 recovery steps" in res.output
    doc = yaml.safe_load(out.read_text())
    b = doc["budget"]
    assert b["recovery_steps"] == 3 and b["met"]
    run = load_run(run_dir)
    model = run.fresh_model()
    apply_tables(model, chosen_tables(doc, library_view(lib_dir)))
    apply_corrections(run, model, doc, "assignment")
    sigmas = [p.detach().clone() for n, p in model.named_parameters() if "sigma" in n]
    recover(run, model, 3)
    assert b["val_top1"] == round(run.evaluate(model, "val"), 6)
    after = [p for n, p in model.named_parameters() if "sigma" in n]
    assert all(bool((a == s).all()) for a, s in zip(after, sigmas, strict=True))
    res = CliRunner().invoke(cli, [*args, str(out), "--recovery-steps", "-1"])
    assert res.exit_code == 2 and "--recovery-steps" in res.output


def test_budget_search_resumes_from_the_candidates_kept_in_the_run(run_copy, monkeypatch):
    """A search killed mid-way measures again only what it had not measured: each
    candidate is one line of the run's CANDIDATES_FILE, reused only in its own context
    (recovery steps, seed, the run's weights, the multipliers' tables)."""
    from hwflow.assign import budget, flow

    run_dir, lib_dir = run_copy
    measured = []
    real = flow.add_corrections

    def counting(doc, *args, **kwargs):
        measured.append(tuple(i["multiplier"] for i in doc["layers"]))
        return real(doc, *args, **kwargs)

    monkeypatch.setattr(flow, "add_corrections", counting)

    def search(**kw) -> dict:
        measured.clear()
        return assign_run(run_dir, lib_dir, max_loss=2.0, hist_energy=False, **kw)

    first = search()
    kept = run_dir / budget.CANDIDATES_FILE
    lines = kept.read_text().splitlines()
    assert len(lines) == len(measured) == len(set(measured)) >= 3  # each choice once
    assert search() == first and measured == []  # all reused, the same answer
    # killed while writing the third line: the first two are kept, the rest measured again
    kept.write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])
    again = search()
    assert again == first and len(measured) == len(lines) - 2
    # lines that are not a candidate of this run are skipped, never an error
    kept.write_text("garbage\n[1, 2]\n{}\n" + json.dumps({"choices": 3}) + "\n" + lines[0] + "\n")
    search()
    assert len(measured) == len(lines) - 1
    # another context measures afresh: more recovery steps, another seed, other tables
    from hwflow.nn.run import load_run

    kept.write_text("\n".join(lines) + "\n")
    run = load_run(run_dir)
    assert len(budget._Kept(run, library_view(lib_dir), 0, 0).load()) == len(lines)
    assert budget._Kept(run, library_view(lib_dir), 0, 1).load() == {}
    assert budget._Kept(run, library_view(lib_dir), 1, 0).load() == {}
    lib = Library.open(lib_dir)
    chosen = first["layers"][0]["multiplier"]
    table = lib.table(chosen).copy()
    table[1, 1] += 1
    lib.commit([NewEntry(lib.get(chosen), table, lib.netlist_path(chosen).read_text(), "{}")])
    reused = budget._Kept(run, library_view(lib_dir), 0, 0).load()
    assert reused and not any(chosen in choices for choices in reused)


@pytest.mark.slow
def test_retrain_resumes_to_the_same_result(run_copy, monkeypatch):
    run_dir, lib_dir = run_copy
    assign_run(run_dir, lib_dir, scale=3.0, hist_energy=False)
    a = run_dir / "assignment.yaml"
    full = retrain_run(run_dir, a, epochs=2, max_steps=3, out=run_dir / "full.json")
    # tables alone, then with the free corrections (retraining's start), then retrained
    assert set(full["accuracy"]) == {
        "quant", "approx_uncorrected", "approx_before", "approx_after",
    }  # fmt: skip
    assert full["energy"]["reduction_pct"] > 0
    import hwflow.assign.retrain as rt

    real_save, calls = rt.save_torch, []

    def save_then_die(path, obj):
        real_save(path, obj)
        calls.append(path)
        if str(path).endswith(".last.pt"):
            raise KeyboardInterrupt

    monkeypatch.setattr(rt, "save_torch", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        retrain_run(run_dir, a, epochs=2, max_steps=3, out=run_dir / "resumed.json")
    assert not (run_dir / "resumed.json").exists()
    monkeypatch.setattr(rt, "save_torch", real_save)
    logs: list[str] = []
    resumed = retrain_run(
        run_dir, a, epochs=2, max_steps=3, out=run_dir / "resumed.json", log=logs.append
    )
    assert any("resuming after epoch 1" in m for m in logs)
    assert resumed["history"] == full["history"] and resumed["accuracy"] == full["accuracy"]


@pytest.mark.slow
def test_sweep_writes_csv_and_plot(run_copy):
    from hwflow.experiments.sweep import sweep_run
    from hwflow.present.experiments import render_sweep

    run_dir, lib_dir = run_copy
    rows = sweep_run(run_dir, lib_dir, [0.0, 4.0], epochs=1, max_steps=2, hist_energy=False)
    render_sweep(rows, run_dir / "sweep")
    kinds = [r["kind"] for r in rows]
    assert kinds.count("heterogeneous") == 2 and kinds.count("homogeneous") == len(DESIGNS)
    csv_text = (run_dir / "sweep" / "sweep.csv").read_text().splitlines()
    assert csv_text[0].startswith("point,kind,scale") and len(csv_text) == len(rows) + 1
    assert (run_dir / "sweep" / ".hwflow").read_text() == "sweep\n"
    png = (run_dir / "sweep" / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    exact = next(r for r in rows if r["point"] == "scale-0")
    assert exact["reduction_pct"] == 0.0
    assert {r["energy_model"] for r in rows} == {"uniform", ""}  # no recorded figure: uniform
    for r in rows:  # top-1 and top-5 after retraining, and of the exact int8 network
        assert 0.0 <= r["acc_after_mean"] <= r["acc_after_top5_mean"] <= 1.0, r
        assert 0.0 <= r["acc_quant"] <= r["acc_quant_top5"] <= 1.0, r
    header = csv_text[0].split(",")
    assert {"acc_quant_top5", "acc_after_top5_mean", "energy_model"} <= set(header)
    # a rerun whose selection chooses other multipliers than the points on disk is refused
    # before anything is retrained (their results belong to the earlier choice)
    point = run_dir / "sweep" / "scale-4" / "assignment.yaml"
    doc = yaml.safe_load(point.read_text())
    first = doc["layers"][0]
    first["multiplier"] = "u_exact" if first["multiplier"] != "u_exact" else "u_trunc_k4_c"
    point.write_text(yaml.safe_dump(doc))
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "sweep").rglob("*")}
    with pytest.raises(AssignmentError, match="scale-4/assignment.yaml: an earlier sweep chose"):
        sweep_run(run_dir, lib_dir, [0.0, 4.0], epochs=1, max_steps=2, hist_energy=False)
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "sweep").rglob("*")} == before


def test_energy_accounting():
    from hwflow.assign.energy import relative_energy, selection_model, summary
    from hwflow.present.tables import saved_text

    assert relative_energy([1, 3], [1.0, 0.2]) == pytest.approx(0.4)
    s = summary([1, 3], [1.0, 0.2], [1.0, 0.5])
    assert s["relative"] == pytest.approx(0.4) and s["reduction_pct"] == pytest.approx(60.0)
    assert s["relative_histogram"] == pytest.approx(0.625)
    assert s["reduction_pct_histogram"] == pytest.approx(37.5) and s["model"] == "uniform"
    assert "relative_histogram" not in summary([1], [0.5], None)
    # the default selection energy: recorded operands where the run has that figure
    assert selection_model(None, recorded=True) == "histogram"
    assert selection_model(None, recorded=False) == "uniform"
    assert selection_model("uniform", recorded=True) == "uniform"
    # the savings in words: the selection's figure first and marked, the others labelled
    h = summary([1, 3], [1.0, 0.2], [1.0, 0.5], "histogram", [0.5, 0.5])
    assert saved_text(h) == (
        "37.5 % saved under recorded operands; 60.0 % under uniform operands; "
        "50.0 % by published power"
    )
    assert saved_text(summary([1], [0.5], None)) == "50.0 % saved under uniform operands"
    with pytest.raises(ValueError):
        relative_energy([0], [1.0])


def test_energy_published_selects_by_published_power(run_copy, tmp_path):
    import shutil

    run_dir, lib_src = run_copy
    lib_dir = tmp_path / "lib"
    shutil.copytree(lib_src, lib_dir)
    lib = Library.open(lib_dir)
    # published power disagrees with the hand-set switching energies: drum is cheapest
    power = {"exact": 0.4, "trunc": 0.3, "bam": 0.2, "drum": 0.05}
    entries = [e for e in lib.entries if not e.signed]
    for e in entries:
        e.cost["published"] = {"power": power[e.source["family"]]}
    lib.update(entries)
    kw = {"hist_energy": False, "energy_model": "published"}
    doc = assign_run(run_dir, lib_dir, scale=1e9, out=tmp_path / "a.yaml", **kw)
    assert {i["multiplier"] for i in doc["layers"]} == {"u_drum_k4"}
    assert [i["energy_rel_published"] for i in doc["layers"]] == [0.125] * len(doc["layers"])
    assert doc["energy"]["model"] == "published"
    assert doc["energy"]["reduction_pct_published"] == pytest.approx(87.5)
    uniform = assign_run(run_dir, lib_dir, scale=1e9, hist_energy=False, out=tmp_path / "u.yaml")
    assert {i["multiplier"] for i in uniform["layers"]} == {"u_trunc_k11"}
    # a candidate without a figure: one clear error naming it (CLI: exit 2, one line)
    bam = next(e for e in entries if e.source["family"] == "bam")
    del bam.cost["published"]
    lib.update([bam])
    with pytest.raises(AssignmentError, match=f"no published power for candidate.s. {bam.name}"):
        assign_run(run_dir, lib_dir, scale=1e9, out=tmp_path / "b.yaml", **kw)
    res = CliRunner().invoke(
        cli, ["assign", str(run_dir), "--library", str(lib_dir), "--energy", "published"]
    )
    assert res.exit_code == 2 and "--energy published: layer" in res.output
    # at scale 0 only the exact multiplier fits, and it has its figure: no error
    exact = assign_run(run_dir, lib_dir, scale=0.0, out=tmp_path / "e.yaml", **kw)
    assert exact["energy"]["reduction_pct_published"] == 0.0


def test_published_ratios_take_the_exact_reference():
    from hwflow.assign.energy import published_ratios

    def e(name, signed, power=None):
        cost = {} if power is None else {"published": {"power": power}}
        return LibraryEntry(name, signed, {}, {}, cost)

    entries = [
        e("u_exact", False),  # built-in reference without a figure: same function as mul8u_X
        e("mul8u_X", False, 0.4),
        e("mul8u_Y", False, 0.1),
        e("mul8u_Z", False),
        e("mul8s_Y", True, 0.2),  # no exact signed multiplier with a figure: no reference
    ]
    got = published_ratios(entries, [True, True, False, False, False])
    assert got[:3].tolist() == [1.0, 1.0, 0.25]
    assert np.isnan(got[3]) and np.isnan(got[4])


def test_a_relative_library_resolves_against_the_assignment_file_from_anywhere(
    run_copy, tmp_path, monkeypatch
):
    """`library: ../lib` in an assignment is relative to the file's folder for evaluate
    and retrain alike (they once read it relative to the working directory)."""
    import shutil

    run_dir, lib_dir = run_copy
    shutil.copytree(lib_dir, tmp_path / "a" / "lib")
    summary = json.loads((run_dir / "summary.json").read_text())
    layers = [{"name": layer["name"], "multiplier": "u_exact"} for layer in summary["layers"]]
    assignment = tmp_path / "a" / "point" / "assignment.yaml"
    assignment.parent.mkdir()
    assignment.write_text(yaml.safe_dump({"library": "../lib", "layers": layers}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    runner = CliRunner()
    args = ["--assignment", str(assignment), "--json"]
    res = runner.invoke(cli, ["evaluate", str(run_dir), "--mode", "approx", *args])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["retrain", str(run_dir), "--epochs", "0", *args])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["layers"] == {la["name"]: "u_exact" for la in layers}


def test_assign_and_export_on_a_full_disk_are_one_line_with_nothing_half_written(
    run_copy, tmp_path, monkeypatch
):
    import errno

    run_dir, lib_dir = run_copy
    summary = json.loads((run_dir / "summary.json").read_text())
    layers = [{"name": layer["name"], "multiplier": "u_exact"} for layer in summary["layers"]]
    assignment = tmp_path / "assignment.yaml"
    assignment.write_text(yaml.safe_dump({"library": str(lib_dir), "layers": layers}))

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)  # every hwflow write ends in it
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    out = tmp_path / "a.yaml"
    args = ["assign", str(run_dir), "--library", str(lib_dir), "--no-hist-energy", "--quiet"]
    res = CliRunner().invoke(cli, [*args, "--out", str(out)])
    _ends_in_one_error(res, "cannot write (No space left on device)")
    export = tmp_path / "design"
    args = ["export", str(run_dir), "--assignment", str(assignment), "--no-network"]
    res = CliRunner().invoke(cli, [*args, "--out", str(export)])
    _ends_in_one_error(res, "cannot write (No space left on device)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["assignment.yaml", "run"]
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def _ends_in_one_error(res, fragment: str) -> None:
    """Progress lines may precede it; the failure itself is one `error:` line."""
    lines = res.output.splitlines()
    assert res.exit_code == 2 and lines[-1].startswith("error: "), res.output
    assert fragment in lines[-1] and sum(ln.startswith("error: ") for ln in lines) == 1
