"""`characterize --builtin`: commits per group, so an interrupted run resumes."""

from __future__ import annotations

import numpy as np
import pytest

import hwflow.characterize.pipeline as pipeline
from hwflow.multipliers.generators import builtin_specs, reference_table
from hwflow.multipliers.library import Library


@pytest.mark.slow
def test_interrupted_builtin_run_resumes_without_redoing_finished_designs(tmp_path, monkeypatch):
    specs = [s for s in builtin_specs() if s.family in ("exact", "trunc")][:3]
    assert {s.family for s in specs} == {"exact", "trunc"}
    monkeypatch.setattr(pipeline, "MAX_BATCH", 1)  # one design per group
    real = pipeline._run_group
    calls: list[list[str]] = []

    def interrupted(group):
        calls.append([d.name for d in group.designs])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(group)

    monkeypatch.setattr(pipeline, "_run_group", interrupted)
    lib_dir = tmp_path / "lib"
    with pytest.raises(KeyboardInterrupt):
        pipeline.characterize_builtin(lib_dir, specs=specs)
    done = [e.name for e in Library.open(lib_dir).entries]
    assert done == [calls[0][0]]
    first_table = (lib_dir / "tables" / f"{done[0]}.npy").stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(
        pipeline, "_run_group", lambda g: (calls.append([d.name for d in g.designs]), real(g))[1]
    )
    outcomes = pipeline.characterize_builtin(lib_dir, specs=specs)
    redone = [name for group in calls for name in group]
    assert done[0] not in redone
    assert {o.entry.name for o in outcomes if o.cached} == set(done)
    lib = Library.open(lib_dir)
    assert (lib_dir / "tables" / f"{done[0]}.npy").stat().st_mtime_ns == first_table
    for spec in specs:  # cocotb tables equal the generators' independent numpy models
        assert np.array_equal(lib.table(spec.name), reference_table(spec)), spec.name
    assert lib.get(lib.exact_name(False)).cost["energy_rel"] == 1.0
    trunc = [s.name for s in specs if s.family == "trunc"]
    assert all(lib.get(n).cost["energy_rel"] < 1.0 for n in trunc)

    calls.clear()
    assert all(o.cached for o in pipeline.characterize_builtin(lib_dir, specs=specs))
    assert calls == []


def test_a_damaged_entry_is_recharacterized_not_called_cached(tmp_path):
    """A truncated gates/NAME.json: a clear error where it is read (assign's energy under
    recorded operands), and `characterize --builtin` rebuilds the entry."""
    import json

    from hwflow.characterize.synth import load_gates
    from hwflow.errors import NetlistError

    lib_dir = tmp_path / "lib"
    pipeline.characterize_builtin(lib_dir, specs=[])  # the two exact multipliers
    gates = Library.open(lib_dir).gate_netlist_path("u_exact")
    whole = gates.read_bytes()
    gates.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(NetlistError, match="u_exact.json: damaged gate netlist"):
        load_gates(gates)
    outcomes = {o.entry.name: o.cached for o in pipeline.characterize_builtin(lib_dir, specs=[])}
    assert outcomes == {"u_exact": False, "s_exact": True}
    rebuilt = json.loads(gates.read_bytes())  # whole again (yosys' net names may differ)
    assert rebuilt["hwflow"] == json.loads(whole)["hwflow"] and load_gates(gates)
