"""Typed stage artifacts: one reader and one writer each, validated once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from hwflow.artifacts import (
    ASSIGNMENT_FILE,
    MANIFEST_FILE,
    RETRAIN_FILE,
    SUMMARY_FILE,
    VALIDATION_FILE,
    VERIFY_FILE,
    Assignment,
    RetrainResult,
    RunSummary,
    ValidationReport,
)
from hwflow.errors import AssignmentError, RunError
from hwflow.io import write_json

ROOT = Path(__file__).resolve().parents[1]

DOC = {  # as `hwflow assign --validate` writes it, keys in that order
    "library": "/abs/lib",
    "model": "sampled",
    "scale": 1.5,
    "layers": [
        {
            "name": "0",
            "multiplier": "u_drum_k4",
            "signed": False,
            "ops": 3456,
            "sigma_learned": 0.1,
            "sigma_tolerated": 0.15,
            "sigma_predicted": 0.12,
            "mean_predicted": -0.01,
            "energy_rel": 0.3,
            "energy_rel_hist": 0.28,
            "sigma_measured": 0.11,
        },  # fmt: skip
        {"name": "2", "multiplier": "u_exact", "future_key": [1, 2]},
    ],
    "energy": {"relative": 0.5, "reduction_pct": 50.0, "model": "histogram"},
    "run": "/abs/run",
    "validation": {"pairs": 3},
    "note": "kept",
}


def test_assignment_saves_what_it_loaded_byte_for_byte(tmp_path):
    path = tmp_path / ASSIGNMENT_FILE
    Assignment.from_dict(DOC).save(path)
    loaded = Assignment.load(path)
    assert loaded.to_dict() == DOC and list(loaded.to_dict()) == list(DOC)
    assert [list(a) for a in loaded.to_dict()["layers"]] == [list(a) for a in DOC["layers"]]
    assert loaded.error_model == "sampled" and loaded.layers[0].sigma_measured == 0.11
    assert loaded.layers[1].signed is None and loaded.multipliers() == {
        "0": "u_drum_k4",
        "2": "u_exact",
    }
    again = tmp_path / "again.yaml"
    loaded.save(again)
    assert again.read_bytes() == path.read_bytes() == loaded.raw


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], r"a.yaml: expected a mapping with a `layers:` list"),
        ({"layers": [3]}, r"a.yaml: layers\[0\]: expected a mapping with name and multiplier"),
        ({"layers": [{"name": "0"}]}, r"layers\[0\]: `name` and `multiplier` must be strings"),
        ({"layers": [{"name": "0", "multiplier": "m", "ops": "many"}]}, r"layers\[0\]\.ops"),
        ({"layers": [{"name": "0", "multiplier": "m", "signed": 1}]}, r"layers\[0\]\.signed"),
        ({"layers": [{"name": "0", "multiplier": "m", "energy_rel": "x"}]}, r"\.energy_rel"),
        ({"layers": [{"name": "0", "multiplier": "m"}] * 2}, "layer 0 is assigned twice"),
        ({"layers": [], "scale": "big"}, r"a.yaml: scale: expected a number"),
        ({"layers": [], "library": 3}, r"a.yaml: library: expected a string"),
        ({"layers": [], "energy": [1]}, r"a.yaml: energy: expected a mapping"),
    ],
)
def test_assignment_errors_name_the_file_and_key(tmp_path, doc, message):
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(AssignmentError, match=message):
        Assignment.load(path)


def test_a_relative_library_is_relative_to_the_assignments_folder(tmp_path, monkeypatch):
    path = tmp_path / "point" / ASSIGNMENT_FILE
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"library": "../lib", "layers": []}))
    monkeypatch.chdir(path.parent)  # the working directory plays no part
    assert Assignment.load(path).library_path() == tmp_path / "point" / ".." / "lib"
    assert Assignment.load(path).library_path("given") == Path("given")
    path.write_text(yaml.safe_dump({"layers": []}))
    with pytest.raises(AssignmentError, match=r"assignment.yaml: no `library:` recorded"):
        Assignment.load(path).library_path()


SUMMARY = {
    "seed": 1, "split_seed": 0, "accuracy": {"float": 0.9}, "accuracy_top5": {"float": 1.0},
    "classes": None, "float_weights": None, "val_accuracy": {"float": 0.8},
    "layers": [{"name": "0", "ops": 10, "fan_in": 9, "sigma": 0.25, "signed": False}],
    "threads": 1, "device": "cpu",
}  # fmt: skip


def test_run_summary_round_trip_and_errors(tmp_path):
    path = tmp_path / SUMMARY_FILE
    RunSummary.from_dict(SUMMARY).save(path)
    loaded = RunSummary.load(path)
    assert loaded.to_dict() == SUMMARY and list(loaded.to_dict()) == list(SUMMARY)
    assert loaded.sigmas() == {"0": 0.25} and loaded.signedness() == {"0": False}
    assert loaded.ops() == {"0": 10} and loaded.threads == 1
    old = {"accuracy": {}, "layers": []}  # an older run: absent keys stay absent
    assert RunSummary.from_dict(old).to_dict() == old
    path.write_text('{"accuracy": {}, "layers": [], "threads": "two"}')
    with pytest.raises(RunError, match=r"summary.json: threads: expected an integer"):
        RunSummary.load(path)


ARTIFACT_FILES = {
    ASSIGNMENT_FILE, SUMMARY_FILE, MANIFEST_FILE, VERIFY_FILE, RETRAIN_FILE, VALIDATION_FILE
}  # fmt: skip
# Named, not read or written: evolve's own RUN/evolve/summary.json (another file named
# alike), and the names `assign --out` and `retrain --out` guard, spelled out so
# `hwflow --help` stays light.
# The exported checker (rtl/check.py, copied into every export) reads the manifest
# without hwflow installed.
OTHER_FILES_NAMED_ALIKE = {
    ("hwflow/evolve/flow.py", SUMMARY_FILE),
    ("hwflow/cli.py", ASSIGNMENT_FILE),
    ("hwflow/cli.py", RETRAIN_FILE),
    ("hwflow/rtl/check.py", MANIFEST_FILE),
}


def test_only_the_artifacts_package_names_the_artifact_files():
    """A path literal naming an artifact file outside hwflow/artifacts (`run /
    "summary.json"`) is a second reader or writer in the making: use the artifact's class
    and its *_FILE constant. Messages and help texts that mention a file are fine."""
    stray = []
    for path in sorted((ROOT / "hwflow").rglob("*.py")):
        if path.relative_to(ROOT / "hwflow").parts[0] == "artifacts":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            value = node.value if isinstance(node, ast.Constant) else None
            if not isinstance(value, str) or any(c.isspace() for c in value):
                continue
            where = path.relative_to(ROOT).as_posix()
            named = {n for n in ARTIFACT_FILES if value == n or value.endswith("/" + n)}
            if named - {n for w, n in OTHER_FILES_NAMED_ALIKE if w == where}:
                stray.append(f"{path.relative_to(ROOT)}:{node.lineno}: {value!r}")
    assert not stray, "\n".join(stray)


def test_the_energy_block_is_typed_and_checked():
    doc = {**DOC, "energy": {**DOC["energy"], "relative_histogram": 0.4}}
    energy = Assignment.from_dict(doc).energy
    assert energy is not None and energy.energy_model == "histogram"
    assert energy.relative_histogram == 0.4 and energy.reduction_pct_published is None
    assert Assignment.from_dict(doc).to_dict()["energy"] == doc["energy"]
    for bad, message in (
        ({"reduction_pct": 50.0}, r"energy\.relative: expected a number, got None"),
        ({"relative": 0.5, "reduction_pct": "half"}, r"energy\.reduction_pct: expected a number"),
        ({"relative": 0.5, "reduction_pct": 50.0, "model": 3}, r"energy\.model: expected a str"),
    ):
        with pytest.raises(AssignmentError, match=message):
            Assignment.from_dict({"layers": [], "energy": bad}, "a.yaml")


OLD_RETRAIN = {  # as the first retrain wrote it: no gradient, schedule or top-5 yet
    "assignment": "/abs/run/assignment.yaml", "checkpoint": "/abs/run/checkpoints/r.pt",
    "epochs": 1, "best_epoch": 1, "lr": 0.001, "seed": 0,
    "accuracy": {"quant": 0.9, "approx_before": 0.8, "approx_after": 0.85},
    "val_accuracy": {"quant": 0.9}, "energy": {}, "layers": {"0": "u_exact"},
    "history": [{"epoch": 1, "val_acc": 0.9}],
}  # fmt: skip


def test_a_retrain_result_reads_old_files_and_writes_them_unchanged(tmp_path):
    old = tmp_path / "old.json"
    write_json(old, OLD_RETRAIN)  # how retrain wrote it before the class
    loaded = RetrainResult.load(old)
    assert loaded.to_dict() == OLD_RETRAIN and loaded.checkpoint == Path(OLD_RETRAIN["checkpoint"])
    loaded.save(tmp_path / RETRAIN_FILE)
    assert RetrainResult.load(tmp_path).to_dict() == OLD_RETRAIN  # a run folder reads too
    assert (tmp_path / RETRAIN_FILE).read_bytes() == old.read_bytes()
    for bad, message in (
        ({"checkpoint": "c.pt"}, r"old.json: not a retrain result \(no `accuracy` mapping\)"),
        ({**OLD_RETRAIN, "checkpoint": None}, r"old.json: checkpoint: missing or not a string"),
        ({**OLD_RETRAIN, "val_accuracy": [0.9]}, r"old.json: val_accuracy: expected a mapping"),
    ):
        write_json(old, bad)
        with pytest.raises(RunError, match=message):
            RetrainResult.load(old)


def test_a_validation_report_round_trips_and_names_bad_keys(tmp_path):
    pairs = [{"layer": "0", "multiplier": "u_exact", "predicted_std": 0.0, "measured_std": 0}]
    summary = {"pairs": 0, "median_pct": float("nan"), "p90_pct": float("nan")}
    old = tmp_path / "old.json"
    write_json(old, {"summary": summary, "pairs": pairs})  # as the demo wrote it before
    ValidationReport.of(summary, pairs).save(tmp_path / VALIDATION_FILE)
    assert (tmp_path / VALIDATION_FILE).read_bytes() == old.read_bytes()
    assert ValidationReport.load(tmp_path)["pairs"] == pairs
    assert ValidationReport.load(old)["summary"]["pairs"] == 0
    for bad, message in (
        ({"summary": None}, r"old.json: not a validation report \(no `pairs` list\)"),
        ({"summary": [], "pairs": []}, r"old.json: summary: expected a mapping"),
        ({"pairs": [{"predicted_std": 1.0}]}, r"old.json: pairs\[0\]\.measured_std: missing"),
    ):
        write_json(old, bad)
        with pytest.raises(RunError, match=message):
            ValidationReport.load(old)
