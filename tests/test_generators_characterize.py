"""Built-in generators through the characterization pipeline's own tools: exhaustive
cocotb tables equal the reference models for every built-in design (the plain-Icarus
check in test_generators.py samples pairs, to stay fast), and yosys gate counts and
switching energy fall as the approximation grows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_generators import needs_iverilog

from hwflow.characterize.energy import uniform_energy
from hwflow.characterize.netlist import Netlist
from hwflow.characterize.simulate import MAX_BATCH, SimDesign, simulate_batch
from hwflow.characterize.synth import synthesize
from hwflow.multipliers.generators import MultiplierSpec, builtin_specs, reference_table, to_verilog
from hwflow.multipliers.table import compute_metrics, output_to_int


@pytest.fixture(scope="module")
def builtin_netlists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Verilog of every built-in design, converted once for the tests of this module."""
    folder = tmp_path_factory.mktemp("builtin_netlists")
    paths = {}
    for spec in builtin_specs():
        paths[spec.name] = folder / f"{spec.name}.v"
        paths[spec.name].write_text(to_verilog(spec))
    return paths


@needs_iverilog
@pytest.mark.slow
def test_every_builtin_circuit_equals_reference_cocotb(
    builtin_netlists: dict[str, Path], tmp_path: Path
) -> None:
    specs = builtin_specs()
    designs = [SimDesign(s.name, builtin_netlists[s.name], s.name) for s in specs]
    mismatched = []
    for start in range(0, len(designs), MAX_BATCH):
        batch = range(start, min(start + MAX_BATCH, len(designs)))
        raws = simulate_batch([designs[i] for i in batch], tmp_path / f"batch{start}")
        for i, raw in zip(batch, raws, strict=True):
            if not np.array_equal(output_to_int(raw, specs[i].signed), reference_table(specs[i])):
                mismatched.append(specs[i].name)
    assert not mismatched, f"cocotb table differs from the reference model: {mismatched}"


def _cost(spec: MultiplierSpec, folder: Path) -> tuple[int, float]:
    path = folder / f"{spec.name}.v"
    path.write_text(to_verilog(spec))
    gates = synthesize(Netlist(path, spec.name, ("a", "b", "o"))).gates
    return len(gates.gates), uniform_energy(gates, n=4096)


@pytest.mark.parametrize("signed", [False, True])
def test_cost_falls_as_approximation_grows(signed: bool, tmp_path: Path) -> None:
    """Gate count and switching energy fall along a family's knob, and the cheapest
    built-in design costs at most a fifth of the exact multiplier."""
    chain = [
        MultiplierSpec("exact", signed),
        MultiplierSpec("trunc", signed, {"k": 6, "comp": True}),
        MultiplierSpec("trunc", signed, {"k": 9, "comp": True}),
        MultiplierSpec("trunc", signed, {"k": 11, "comp": True}),
    ]
    cells, energy = zip(*(_cost(s, tmp_path) for s in chain), strict=True)
    assert list(cells) == sorted(cells, reverse=True) and len(set(cells)) == len(cells)
    assert list(energy) == sorted(energy, reverse=True)
    assert cells[-1] <= 0.2 * cells[0] and energy[-1] <= 0.2 * energy[0]
    drum_cells = [_cost(MultiplierSpec("drum", signed, {"k": k}), tmp_path)[0] for k in (3, 5)]
    assert drum_cells[0] < drum_cells[1] < cells[0]


def test_variable_correction_beats_constant_correction(tmp_path: Path) -> None:
    """Unsigned `vct` with k = 10 has a smaller error and a lower energy than constant-
    compensated truncation one column lower (`trunc` k = 9), the built-in it replaces on
    the front."""
    vct = MultiplierSpec("vct", False, {"k": 10, "n": 6})
    trunc = MultiplierSpec("trunc", False, {"k": 9, "comp": True})
    maes = [compute_metrics(reference_table(s), False)["mae_pct"] for s in (vct, trunc)]
    energies = [_cost(s, tmp_path)[1] for s in (vct, trunc)]
    assert maes[0] < 0.9 * maes[1] and energies[0] < energies[1]
