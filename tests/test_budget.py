"""`hwflow assign --max-loss`: the budget search over scales and per-layer back-offs."""

from __future__ import annotations

import pytest

from hwflow.assign import budget
from hwflow.errors import AssignmentError

# per layer, per multiplier: (energy_rel, validation accuracy lost in pp when chosen)
DESIGNS = {"exact": (1.0, 0.0), "a": (0.6, 0.2), "b": (0.3, 0.4), "c": (0.1, 3.0)}


def _doc(choice: dict[str, str], scale: float = 1.0) -> dict:
    layers = [
        {"name": n, "multiplier": m, "ops": 100, "energy_rel": DESIGNS[m][0]}
        for n, m in choice.items()
    ]
    rel = sum(i["energy_rel"] for i in layers) / len(layers)
    return {"scale": scale, "layers": layers, "energy": {"relative": rel, "model": "uniform"}}


class FakeEvaluator:
    """Losses add up per layer (plus `extra` on layer L1's design `c`)."""

    int8 = 0.9
    recovery_steps = 0

    def __init__(self, extra: float = 0.0) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.extra = extra

    def __call__(self, doc: dict) -> dict:
        key = tuple(i["multiplier"] for i in doc["layers"])
        self.calls.append(key)
        lost = sum(DESIGNS[m][1] for m in key) + (self.extra if key[1] == "c" else 0.0)
        acc = self.int8 - lost / 100
        return {
            "doc": doc,
            "val_top1": acc,
            "val_top1_uncorrected": acc,
            "val_top1_corrected": acc,
            "corrected": False,
        }

    def loss_pp(self, r: dict) -> float:
        return 100 * (self.int8 - r["val_top1"])


def _by_scale(s: float) -> dict:
    """Larger scales choose cheaper designs, layer L0 first."""
    if s == 0:
        return _doc({"L0": "exact", "L1": "exact", "L2": "exact"}, s)
    if s < 1:
        return _doc({"L0": "a", "L1": "a", "L2": "exact"}, s)
    if s < 2:
        return _doc({"L0": "b", "L1": "a", "L2": "a"}, s)
    return _doc({"L0": "c", "L1": "c", "L2": "b"}, s)


def test_cheapest_within_the_budget_backs_off_where_the_loss_is():
    ev = FakeEvaluator()
    doc = budget.search(_by_scale, ev, 4.0)
    b = doc["budget"]
    # scales up to 1.84 choose (b, a, a), 0.8 pp; scale 2 (c, c, b) loses 6.4 pp.
    # Reverting one layer to the choice within: L1 -> (c, a, b) recovers most (3.6 pp),
    # which fits and ends the back-off, but (b, c, b) (3.8 pp) fits too and is cheaper
    assert b["met"] and b["val_loss_pp"] == pytest.approx(3.8)
    assert [i["multiplier"] for i in doc["layers"]] == ["b", "c", "b"]
    assert doc["backed_off"] == ["L0"] and b["chosen"] == "back off L0"
    assert doc["energy"]["relative"] == round((0.3 + 0.1 + 0.3) / 3, 6)  # as summary rounds
    # every measurement is listed
    assert len(b["candidates"]) == len(ev.calls) == 1 + 1 + 3 + 3
    assert b["split"] == "val" and b["max_loss_pp"] == 4.0


def test_backs_off_the_layer_whose_loss_concentrates():
    ev = FakeEvaluator(extra=5.0)  # c on L1 costs 8 pp, on L0 3 pp
    doc = budget.search(_by_scale, ev, 4.0)
    assert [i["multiplier"] for i in doc["layers"]] == ["c", "a", "b"]


def _one_layer_first(s: float) -> dict:
    """The scale path moves L1 to its cheapest design first, then every layer."""
    if s < 1.3:
        return _doc({"L0": "a", "L1": "a", "L2": "a"}, s)
    if s < 2:
        return _doc({"L0": "a", "L1": "c", "L2": "a"}, s)
    return _doc({"L0": "c", "L1": "c", "L2": "c"}, s)


@pytest.mark.parametrize(
    ("max_loss", "chosen", "advanced"),
    [(4.0, ["c", "a", "a"], ["L0"]), (7.0, ["c", "a", "c"], ["L0", "L2"])],
)
def test_layers_that_take_cheaper_designs_advance_past_one_that_cannot(max_loss, chosen, advanced):
    # L1's design c loses 8 pp and blocks every scale above 1.3; L0 and L2 take c
    # (3 pp each) one at a time from the cheapest fit toward the largest scale's choice
    ev = FakeEvaluator(extra=5.0)
    doc = budget.search(_one_layer_first, ev, max_loss)
    assert [i["multiplier"] for i in doc["layers"]] == chosen
    assert doc["advanced"] == advanced and doc["budget"]["chosen"] == f"advance {advanced[-1]}"
    assert ev.calls.count(("c", "c", "c")) == 1  # moving the last layer is not measured


def test_a_layer_stops_on_the_rung_of_its_ladder_that_still_fits():
    def path(s: float) -> dict:  # L0 takes b at scale 1.6 and c only at 2
        choice = "aaa" if s < 1.3 else "aca" if s < 1.6 else "bca" if s < 2 else "ccc"
        return _doc(dict(zip(("L0", "L1", "L2"), choice, strict=True)), s)

    ev = FakeEvaluator(extra=5.0)
    doc = budget.search(path, ev, 1.5)
    assert [i["multiplier"] for i in doc["layers"]] == ["b", "a", "a"]
    assert doc["advanced"] == ["L0"] and doc["budget"]["val_loss_pp"] == pytest.approx(0.8)
    assert ("c", "a", "a") in ev.calls  # its next rung was tried and did not fit


def test_a_budget_it_cannot_meet_returns_the_closest_marked():
    class Broken(FakeEvaluator):
        def loss_pp(self, r: dict) -> float:
            return 2.0 + super().loss_pp(r)  # even the exact design loses 2 pp

    doc = budget.search(_by_scale, Broken(), 1.0)
    b = doc["budget"]
    assert not b["met"] and b["val_loss_pp"] == pytest.approx(2.0)
    assert {i["multiplier"] for i in doc["layers"]} == {"exact"}
    with pytest.raises(AssignmentError, match="--max-loss must be >= 0"):
        budget.search(_by_scale, FakeEvaluator(), -1.0)


def test_cli_says_when_the_budget_is_not_met(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import hwflow.assign.flow as flow
    from hwflow.cli import cli

    closest = _doc({"L0": "exact"})
    closest["budget"] = {
        "met": False, "chosen": "scale 0", "val_loss_pp": 2.5, "max_loss_pp": 1.0,
        "val_top1": 0.5, "val_top1_int8": 0.525, "val_top1_uncorrected": 0.5,
        "val_top1_corrected": 0.5, "candidates": [],
    }  # fmt: skip
    for item in closest["layers"]:
        item |= {"sigma_tolerated": 0.0, "sigma_predicted": 0.0}
    closest["energy"]["reduction_pct"] = 0.0
    seen = {}

    def fake(run_dir, library, **kw):
        seen.update(kw)
        return closest

    monkeypatch.setattr(flow, "assign_run", fake)
    out = tmp_path / "a.yaml"
    args = ["assign", "RUN", "--library", "LIB", "--max-loss", "1", "--out", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and seen["max_loss"] == 1.0
    assert res.output.splitlines()[-1] == (
        "error: --max-loss 1: no assignment found within the budget; the closest "
        f"(scale 0, validation loss 2.50 pp) is in {out}"
    )
    res = CliRunner().invoke(cli, [*args[:-4], "--max-loss", "-1"])
    assert res.exit_code == 2 and "--max-loss" in res.output


def test_evaluator_memo_returns_the_callers_document(monkeypatch):
    """Budget points of several selection energies share one evaluator: a choice measured
    for one is not measured again, but each gets its own document back (its energy
    summary and selection model) with the memoised corrections in it."""
    from hwflow.assign import flow

    class Run:
        def fresh_model(self):
            return None

        def evaluate(self, model, split):
            return 0.9

    measured = []

    def fake_corrections(doc, run, lib, seed=0):
        measured.append(tuple(i["multiplier"] for i in doc["layers"]))
        doc["layers"][0]["acc_offset"] = [3, -1]
        doc["corrections"] = {"applied": True, "val_top1_uncorrected": 0.8}
        doc["corrections"]["val_top1_corrected"] = 0.85

    monkeypatch.setattr(flow, "add_corrections", fake_corrections)
    ev = budget.Evaluator(Run(), lib=None)
    uniform = _doc({"L0": "a", "L1": "b", "L2": "exact"})
    histogram = _doc({"L0": "a", "L1": "b", "L2": "exact"})
    histogram["energy"] = {"relative": 0.5, "relative_histogram": 0.2, "model": "histogram"}
    first, second = ev(uniform), ev(histogram)
    assert measured == [("a", "b", "exact")]  # measured once
    assert first["doc"]["energy"]["model"] == "uniform"
    assert second["doc"]["energy"] == histogram["energy"]  # not the first caller's
    assert second["doc"]["layers"][0]["acc_offset"] == [3, -1]
    assert second["doc"]["corrections"]["applied"] and second["val_top1"] == 0.85
    assert (
        budget.cost(second["doc"]) == 0.2
        and budget.cost(first["doc"]) == uniform["energy"]["relative"]
    )
    assert "acc_offset" not in histogram["layers"][0]  # the caller's document is untouched


def test_recovery_runs_exactly_the_steps_asked_across_epochs(monkeypatch):
    from types import SimpleNamespace

    import torch

    import hwflow.assign.retrain as rt

    batches: list[int] = []
    monkeypatch.setattr(rt, "_train_epoch", lambda *a, **k: batches.append(a[4]) or 0.0)
    split = SimpleNamespace(num_batches=lambda batch_size, most: 3)
    run = SimpleNamespace(
        data=SimpleNamespace(train=split),
        config=SimpleNamespace(data=SimpleNamespace(batch_size=4)),
    )
    model = torch.nn.Linear(2, 2)
    rt.recover(run, model, 7)
    assert batches == [3, 3, 1] and not model.training
    batches.clear()
    rt.recover(run, model, 0)
    assert batches == []


def test_recovery_steps_need_a_budget(tmp_path):
    from click.testing import CliRunner

    from hwflow.cli import cli

    with pytest.raises(AssignmentError, match="--recovery-steps measures the --max-loss"):
        budget.check_recovery(100, max_loss=None)
    budget.check_recovery(0, max_loss=None)
    budget.check_recovery(100, max_loss=1.0)
    for args in (
        ["assign", str(tmp_path), "--library", str(tmp_path), "--recovery-steps", "5"],
        ["study", "c.yaml", "--out", str(tmp_path / "s"), "--scales", "1", "--recovery-steps", "5"],
    ):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2 and "--recovery-steps measures the --max-loss" in res.output
    assert not (tmp_path / "s").exists()
