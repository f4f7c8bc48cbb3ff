"""hwflow evolve: genome, bit-parallel evaluator (both backends), search, resume, flow."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from hwflow.assign.stats import layer_stats_from_arrays, load_stats
from hwflow.characterize.energy import energy_under_histograms, output_codes
from hwflow.characterize.synth import Gates
from hwflow.errors import ConfigError
from hwflow.evolve.evaluator import NumpyEvaluator, active_genes
from hwflow.evolve.genome import FUNCS, Genome, from_gates
from hwflow.evolve.problem import layer_problem
from hwflow.evolve.search import SearchConfig, evolve, finalists_of, mutate
from hwflow.io import read_json
from hwflow.multipliers.table import output_to_int

KINDS = [k for k in FUNCS if k != "BUF"]


def random_gates(n: int, seed: int) -> Gates:
    """A random combinational netlist over the operand bits (net ids as yosys numbers)."""
    rng = np.random.default_rng(seed)
    nets = list(range(2, 18))  # a: 2..9, b: 10..17
    gates = []
    for i in range(n):
        kind = KINDS[rng.integers(len(KINDS))]
        arity = {"NOT": 1, "MUX": 3}.get(kind, 2)
        ins = tuple(int(nets[j]) for j in rng.integers(len(nets), size=arity))
        gates.append((kind, ins, 100 + i))
        nets.append(100 + i)
    outs = tuple(int(x) for x in rng.choice(nets[16:], size=16))
    return Gates("rand", tuple(range(2, 10)), tuple(range(10, 18)), outs, tuple(gates))


def array_multiplier() -> Gates:
    """An exact unsigned 8x8 shift-and-add multiplier as a gate netlist (no yosys)."""
    gates: list = []

    def g(kind: str, *ins: int) -> int:
        gates.append((kind, ins, 100 + len(gates)))
        return 100 + len(gates) - 1

    a, b = list(range(2, 10)), list(range(10, 18))
    total: list = [g("AND", a[j], b[0]) for j in range(8)] + [None] * 8
    for i in range(1, 8):
        carry = None
        for j in range(8):
            x, y = total[i + j], g("AND", a[j], b[i])
            if x is None:
                x, y = y, None
            if y is not None and carry is not None:
                t = g("XOR", x, y)
                total[i + j] = g("XOR", t, carry)
                carry = g("OR", g("AND", x, y), g("AND", t, carry))
            elif y is not None or carry is not None:
                z = y if y is not None else carry
                total[i + j], carry = g("XOR", x, z), g("AND", x, z)
            else:
                total[i + j] = x
        total[i + 8] = carry
    return Gates("mul", tuple(a), tuple(b), tuple(total), tuple(gates))


def test_array_multiplier_is_exact():
    every = np.arange(1 << 16)
    raw = output_codes(array_multiplier(), every >> 8, every & 0xFF)
    assert np.array_equal(raw, (every >> 8) * (every & 0xFF))


def live(gates: Gates) -> Gates:
    """The gates some product bit depends on (what yosys keeps of a netlist)."""
    driver = {out: g for g in gates.gates for out in [g[2]]}
    need, stack = set(), list(gates.o)
    while stack:
        n = stack.pop()
        if n in driver and n not in need:
            need.add(n)
            stack += driver[n][1]
    kept = tuple(g for g in gates.gates if g[2] in need)
    return Gates(gates.top, gates.a, gates.b, gates.o, kept)


def small_layer(signed: bool, seed: int = 0):  # noqa: ANN201
    rng = np.random.default_rng(seed)
    k = 16
    lo = -128 if signed else 0
    x = rng.integers(lo, 128, size=(1, 64, k))
    x[rng.random(x.shape) < 0.5] = 0
    w = np.clip(np.round(rng.normal(0, 30, size=(1, k, 8))), -127, 127).astype(np.int64)
    acc = np.einsum("gmk,gkn->gmn", x, w)
    return layer_stats_from_arrays("l", x, w, acc, signed, ops=x.size * 8, rows=32, cols=8, rng=rng)


@pytest.mark.parametrize("signed", [False, True])
def test_evaluator_table_and_energy_are_the_characterize_models(signed):
    gates = random_gates(120, seed=1)
    layer = small_layer(signed)
    prob = layer_problem(layer, tolerance=1.0, stream=1024)
    ev = NumpyEvaluator(prob, from_gates(gates))
    every = np.arange(1 << 16)
    raw = output_codes(gates, every >> 8, every & 0xFF)
    expect = output_to_int(raw.reshape(256, 256), signed)
    assert np.array_equal(ev.table(), expect)
    p_a, p_b = layer.multiplier_operand_hists()
    ref = energy_under_histograms(live(gates), p_a, p_b, n=1024, seed=0) * 1023
    assert ev.score.energy == round(ref)


def test_the_uniform_objective_is_the_librarys_uniform_energy():
    """energy="uniform": the stream is the one `uniform_energy` (the library's energy_rel
    figure) draws; the error constraint is still the layer's."""
    from hwflow.characterize.energy import uniform_energy

    gates = live(random_gates(120, seed=4))
    layer = small_layer(False)
    prob = layer_problem(layer, tolerance=1.0, stream=1024, energy="uniform")
    recorded = layer_problem(layer, tolerance=1.0, stream=1024)
    ev, ev_recorded = (
        NumpyEvaluator(prob, from_gates(gates)),
        NumpyEvaluator(recorded, from_gates(gates)),
    )
    assert ev.score.energy == round(uniform_energy(gates, n=1024) * 1023)
    assert ev.score.energy != ev_recorded.score.energy
    assert (ev.score.s1, ev.score.s2) == (ev_recorded.score.s1, ev_recorded.score.s2)


def _children(ev, genome, n, seed):  # noqa: ANN001, ANN202
    rng = random.Random(seed)
    genes = active_genes(genome, ev.active)
    return [mutate(rng, genome, genes, 3) for _ in range(n)]


def test_incremental_scores_equal_a_fresh_evaluation():
    gates = random_gates(150, seed=2)
    prob = layer_problem(small_layer(False), tolerance=1e9, stream=256)
    genome = from_gates(gates, extra=10)
    ev = NumpyEvaluator(prob, genome)
    for deltas in _children(ev, genome, 12, seed=3):
        s = ev.try_child(deltas)
        child = genome.copy()
        for g, v in deltas:
            child.set(g, v)
        assert NumpyEvaluator(prob, child).score == s


def test_compiled_and_numpy_backends_agree():
    from hwflow.evolve.compiled import CompiledEvaluator, kernel

    if kernel() is None:
        pytest.skip("no C++ compiler: the compiled evaluator cannot be built here")
    gates = random_gates(150, seed=4)
    for signed, bound in ((False, -1), (True, -1), (False, 3000)):
        prob = layer_problem(small_layer(signed), tolerance=50.0, stream=256, max_error=bound)
        genome = from_gates(gates, extra=10)
        a, b = NumpyEvaluator(prob, genome), CompiledEvaluator(prob, genome)
        assert a.score == b.score and np.array_equal(a.active, b.active)
        for i, deltas in enumerate(_children(a, genome, 40, seed=5)):
            limit = -1 if i % 3 else a.score.energy
            assert a.try_child(deltas, limit) == b.try_child(deltas, limit)
        cfg = SearchConfig(budget=400 if bound < 0 else 100, seed=1)
        ga, pa = evolve(prob, genome, SearchConfig(**{**cfg.__dict__, "backend": "numpy"}))
        gb, pb = evolve(prob, genome, SearchConfig(**{**cfg.__dict__, "backend": "compiled"}))
        assert ga.to_dict() == gb.to_dict() and pa.trace == pb.trace and pa.score == pb.score


def _compiled_kernel():  # noqa: ANN202
    from hwflow.evolve.compiled import kernel

    if kernel() is None:
        pytest.skip("no C++ compiler: the compiled evaluator cannot be built here")
    return kernel()


@pytest.mark.parametrize(
    ("signed", "bound", "tolerance", "seed"),
    [(False, -1, 200.0, "exact"), (False, 3000, 200.0, "exact"), (True, -1, 1.0, "random"),
     (False, -1, 1.0, "random")],
)  # fmt: skip
def test_fused_generations_are_the_python_loop(tmp_path, signed, bound, tolerance, seed):
    # Whole generations in C++ (on Python's generator state) against the reference loop,
    # one call per child: the same checkpoint (parent, generator state, counters, trace,
    # finalists). The exact seed fits (children ranked by energy, finalists kept); the
    # random one never does (children ranked by their error std).
    _compiled_kernel()
    prob = layer_problem(small_layer(signed), tolerance=tolerance, stream=256, max_error=bound)
    gates = array_multiplier() if seed == "exact" else random_gates(150, seed=4)
    genome = from_gates(gates, extra=10)
    cfg = SearchConfig(budget=240, seed=5, finalists=3, backend="compiled")
    saved = []
    for fused, every in ((False, 30.0), (True, 30.0), (True, 0.0)):  # 0.0: one generation/call
        ck = tmp_path / f"{fused}{every}.json"
        run = dataclasses.replace(cfg, fused=fused, checkpoint_s=every)
        evolve(prob, genome, run, checkpoint=ck, report=lambda _: None, report_s=every)
        saved.append({k: v for k, v in read_json(ck).items() if k != "wall_s"})
    assert saved[0]["trace"] and saved[0] == saved[1] == saved[2]
    assert bool(saved[0]["finalists"]) == (seed == "exact")


def test_compiled_std_is_the_problems_float_for_float():
    mod = _compiled_kernel()
    rng = random.Random(0)
    prob = layer_problem(small_layer(False), tolerance=1.0, stream=256)
    for _ in range(3000):
        outputs = rng.choice([1, 3, 2047, 2048, rng.randrange(1, 1 << 20)])
        s1 = rng.randrange(-(1 << rng.randrange(1, 63)), 1 << rng.randrange(1, 63))
        s2 = rng.randrange(1 << rng.randrange(1, 126))  # beyond 2^53: Python's rounding
        expect = dataclasses.replace(prob, outputs=outputs).std(s1, s2)
        assert mod.std_of(s1, s2, outputs) == expect


def _is_same(a: Genome, b: Genome) -> bool:
    return a.to_dict() == b.to_dict()


def test_search_is_deterministic_and_resumes_exactly(tmp_path):
    prob = layer_problem(small_layer(False), tolerance=200.0, stream=256)
    genome = from_gates(array_multiplier())
    cfg = SearchConfig(budget=400, seed=3)
    g1, p1 = evolve(prob, genome, cfg)
    g2, p2 = evolve(prob, genome, cfg)
    assert _is_same(g1, g2) and p1.trace == p2.trace
    assert p1.fits and p1.score.energy <= NumpyEvaluator(prob, genome).score.energy
    # interrupted after 200 evaluations (the checkpoint written at its end), then resumed
    ck = tmp_path / "ck.json"
    evolve(prob, genome, SearchConfig(**{**cfg.__dict__, "budget": 200}), checkpoint=ck)
    g3, p3 = evolve(prob, genome, cfg, checkpoint=ck)
    assert _is_same(g1, g3) and p1.trace == p3.trace and p3.evaluations == p1.evaluations
    other = evolve(prob, genome, SearchConfig(**{**cfg.__dict__, "seed": 4}))[0]
    assert not _is_same(g1, other)


@pytest.fixture(scope="module")
def evolve_setup(tmp_path_factory):
    """A run folder with what evolve reads (operand statistics of two small layers and
    their sigmas) and a library holding the built-in exact multipliers."""
    import json

    from hwflow.assign.stats import save_stats
    from hwflow.characterize.pipeline import characterize_builtin
    from hwflow.multipliers.generators import MultiplierSpec

    root = tmp_path_factory.mktemp("evolve")
    run = root / "run"
    run.mkdir()
    layers = [dataclasses.replace(small_layer(s, seed=i), name=f"l{i}") for i, s in
              enumerate((False, True))]  # fmt: skip
    save_stats(run / "stats.npz", layers, {"test": True})
    sig = [{"name": s.name, "ops": s.ops, "fan_in": s.fan_in, "sigma": 0.05, "signed": s.signed}
           for s in layers]  # fmt: skip
    (run / "summary.json").write_text(json.dumps({"accuracy": {}, "layers": sig}))
    characterize_builtin(root / "lib", specs=[MultiplierSpec("exact", False, {})])
    return run, root / "lib"


@pytest.mark.slow
def test_evolve_flow_characterizes_the_netlist_and_keeps_the_constraint(evolve_setup):
    from hwflow.assign.error_model import predict
    from hwflow.evolve.flow import EvolveOptions, evolve_run
    from hwflow.io import read_json
    from hwflow.multipliers.library import Library

    run, lib_dir = evolve_setup
    opts = EvolveOptions(budget=800, seed=2, stream=1024, max_error=3000, finalists=2)
    summary = evolve_run(run, lib_dir, layers=["l1"], options=opts, quiet=True)
    (item,) = summary["layers"]
    lib = Library.open(lib_dir)
    entry = lib.get(item["evolved"])
    assert entry.signed and entry.source["evolved"]["layer"] == "l1"
    assert entry.source["evolved"]["evaluations"] == 800
    # the constraint holds on the characterized table, by assign's own error model
    layer = next(s for s in load_stats(run / "stats.npz")[0] if s.name == "l1")
    std = predict(lib.table(item["evolved"])[None], [True], [layer], "sampled").std[0, 0]
    assert item["fits"] and std <= 0.05 * layer.acc_std
    assert entry.metrics["wce"] <= 3000 and entry.source["evolved"]["max_error"] == 3000
    assert item["evolved_energy_hist"] < 1.0  # cheaper than exact under its operands
    # the netlist read back by characterize is the circuit the evolver scored
    (ck,) = (run / "evolve").glob("l1_*.checkpoint.json")
    state = read_json(ck)
    kept = finalists_of(state["finalists"], state["genome"], opts.finalists)
    assert len(item["finalist_energy_hist"]) == len(kept) > 1
    genome = Genome.from_dict(kept[::-1][item["finalist"]])
    prob = layer_problem(layer, tolerance=1.0, stream=1024)
    assert np.array_equal(NumpyEvaluator(prob, genome).table(), lib.table(item["evolved"]))
    assert len((run / "evolve" / "evolve.log").read_text().splitlines()) == 1
    again = evolve_run(run, lib_dir, layers=["l1"], options=opts, quiet=True)
    assert again["layers"][0]["evolved"] == item["evolved"]  # resumed: nothing left to do
    assert again["layers"][0]["rate"] == 0  # no evaluation in the resumed session


@pytest.mark.slow
def test_evolve_for_uniform_energy_compares_with_the_uniform_figures(evolve_setup):
    from hwflow.evolve.flow import EvolveOptions, evolve_run
    from hwflow.multipliers.library import Library

    run, lib_dir = evolve_setup
    opts = EvolveOptions(budget=400, seed=1, stream=1024, finalists=1, energy="uniform")
    (item,) = evolve_run(run, lib_dir, layers=["l0"], options=opts, quiet=True)["layers"]
    entry = Library.open(lib_dir).get(item["evolved"])
    assert item["energy"] == "uniform" and entry.source["evolved"]["energy"] == "uniform"
    assert item["best_existing_energy_uniform"] == 1.0  # only the exact design exists
    assert item["fits"] and item["evolved_energy_uniform"] < 1.0
    line = (run / "evolve" / "evolve.log").read_text().splitlines()[-1]
    assert "under uniform operands" in line and f"{item['evolved_energy_uniform']:.4f}" in line
    with pytest.raises(ConfigError, match="--energy must be one of histogram, uniform"):
        evolve_run(run, lib_dir, options=EvolveOptions(energy="published"), quiet=True)


def test_the_short_energy_stream_ranks_circuits_as_the_library_figure_does():
    # The evolver counts toggles on an 8192-operation stream; the library's recorded-
    # operand figure uses 65,536. Both must order circuits of different cost alike.
    layer = small_layer(False, seed=3)
    circuits = [live(random_gates(n, seed=n)) for n in (20, 40, 80, 160, 320)]
    circuits.append(array_multiplier())
    prob = layer_problem(layer, tolerance=1.0)
    p_a, p_b = layer.multiplier_operand_hists()
    short = [NumpyEvaluator(prob, from_gates(g)).score.energy for g in circuits]
    full = [energy_under_histograms(g, p_a, p_b) for g in circuits]
    assert len(set(short)) == len(short)
    assert list(np.argsort(short)) == list(np.argsort(full))


def test_a_library_seed_is_used_only_where_it_fits(tmp_path):
    from hwflow.evolve.flow import EvolveOptions, LayerJob, _evolve_layer

    layer = small_layer(False)
    opts = EvolveOptions(budget=40, stream=256, finalists=1)
    exact = ("exact", array_multiplier())
    for name, gates, expect in (("good", live(array_multiplier()), "good"),
                                ("bad", live(random_gates(80, seed=9)), "exact")):  # fmt: skip
        job = LayerJob(f"u_evo_{name}", layer, 0.05, 10.0, ((name, gates), exact),
                       str(tmp_path / f"{name}.json"), opts, quiet=True)  # fmt: skip
        assert _evolve_layer(job)["seed"] == expect
