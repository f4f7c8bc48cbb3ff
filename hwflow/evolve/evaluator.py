"""Bit-parallel scoring of candidates that differ from a parent in a few genes.

An evaluator holds the parent: its genome, the words of every active gate (`Problem`:
all 65,536 operand pairs, then the energy stream), each gate's stream toggles, the error
at each operand pair the error model reads and each sampled output's error. A child is
scored by recomputing only the active gates downstream of its changed genes (and gates
that were inactive in the parent, whose words are not kept), patching the error of the
pairs whose product changed, and summing energy over its active gates:

    energy = sum over active gates g of load(g) * toggles(g)   (integers)
    load(g) = gate input pins g drives + 1 per product bit it drives

`try_child` scores a child, `keep` marks the last child scored as the generation's best,
`accept` makes the kept child the parent. Two backends give identical integers:
`NumpyEvaluator` (this module) and the compiled one (`compiled.py`), cross-checked by
the tests; `make_evaluator` picks the compiled one when it builds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from hwflow.evolve.genome import ARITY, FIELDS, N_IN, N_OUT, Genome
from hwflow.evolve.problem import TABLE_WORDS, Problem
from hwflow.multipliers.table import exact_table

BACKENDS = ("auto", "compiled", "numpy")
_EXACT = {s: exact_table(s).reshape(-1).astype(np.int64) for s in (False, True)}
_LOW63 = np.uint64(0x7FFFFFFFFFFFFFFF)
_ONE = np.uint64(1)


@dataclass(frozen=True)
class Score:
    """A candidate's integer figures: energy (stream toggles x loads), and the sum and
    sum of squares of the sampled outputs' accumulator errors."""

    energy: int
    s1: int
    s2: int
    skipped: bool = False  # energy above the caller's limit: s1, s2 not computed
    violations: int = 0  # pairs beyond the problem's worst-case bound (if it has one)


def gate(kind: int, a: np.ndarray, b: np.ndarray, s: np.ndarray) -> np.ndarray:
    """One gate function (genome.FUNCS order) on packed words."""
    if kind == 0:
        return a.copy()
    if kind == 1:
        return ~a
    if kind == 2:
        return a & b
    if kind == 3:
        return ~(a & b)
    if kind == 4:
        return a | b
    if kind == 5:
        return ~(a | b)
    if kind == 6:
        return a ^ b
    if kind == 7:
        return ~(a ^ b)
    if kind == 8:
        return a & ~b
    if kind == 9:
        return a | ~b
    return (b & s) | (a & ~s)


def toggles(stream: np.ndarray) -> int:
    """Value changes between consecutive operations (operation t in bit t % 64 of word
    t // 64)."""
    inner = np.bitwise_count((stream ^ (stream >> _ONE)) & _LOW63).sum()
    cross = np.bitwise_count((stream[:-1] >> np.uint64(63)) ^ (stream[1:] & _ONE)).sum()
    return int(inner) + int(cross)


def loads(genome: Genome, active: np.ndarray) -> np.ndarray:
    """int64 (n,): input pins (of active gates) and product bits each gate drives."""
    n = genome.n
    idx = np.nonzero(active)[0]
    pins = genome.conn[idx]
    used = np.arange(3)[None, :] < ARITY[genome.func[idx]][:, None]
    src = pins[used]
    out = np.bincount(src[src >= N_IN] - N_IN, minlength=n)
    o = genome.outs[genome.outs >= N_IN] - N_IN
    return (out + np.bincount(o, minlength=n)).astype(np.int64)


def product_values(planes: Sequence[np.ndarray], pairs: np.ndarray, signed: bool) -> np.ndarray:
    """int64: the product the 16 output planes hold at operand pairs `pairs`."""
    word, bit = pairs >> 6, (pairs & 63).astype(np.uint64)
    val = np.zeros(len(pairs), dtype=np.int64)
    for k, plane in enumerate(planes):
        val |= ((plane[word] >> bit) & _ONE).astype(np.int64) << k
    if signed:
        val -= (val & 0x8000) << 1
    return val


def sums(err: np.ndarray) -> tuple[int, int]:
    """Exact sum and sum of squares of integer errors."""
    if err.size and int(np.abs(err).max()) ** 2 * err.size >= 1 << 62:
        as_int = [int(e) for e in err]
        return sum(as_int), sum(e * e for e in as_int)
    return int(err.sum()), int((err * err).sum())


class _Child:
    """A scored candidate's state, kept until the generation is decided."""

    def __init__(self, genome: Genome, active: np.ndarray, dirty: np.ndarray) -> None:
        self.genome, self.active, self.dirty = genome, active, dirty
        self.rows: dict[int, np.ndarray] = {}  # gate -> words (dirty gates only)
        self.tog: dict[int, int] = {}
        self.err: np.ndarray | None = None  # None: the parent's
        self.e: np.ndarray | None = None
        self.eall: np.ndarray | None = None
        self.score = Score(0, 0, 0)


class NumpyEvaluator:
    """The reference backend (plain numpy, one gate at a time)."""

    def __init__(self, problem: Problem, genome: Genome) -> None:
        genome.check()
        self.p = problem
        n = genome.n
        self.values = np.zeros((N_IN + n, problem.words), dtype=np.uint64)
        self.values[:N_IN] = problem.inputs
        self.tog = np.zeros(n, dtype=np.int64)
        self.valid = np.zeros(n, dtype=bool)
        self.genome = genome.copy()
        self.e = np.zeros(len(problem.pairs), dtype=np.int64)
        self.err = np.zeros(problem.outputs, dtype=np.int64)
        self.eall = np.zeros(1 << 16, dtype=np.int64)  # every pair's error (with a bound)
        self._h = sparse.csc_matrix(
            (problem.h_val, problem.h_row, problem.h_ptr),
            shape=(problem.outputs, len(problem.pairs)),
        )
        self._best: _Child | None = None
        self._last: _Child | None = None
        first = self._score(self.genome, np.ones(n, dtype=bool), full=True)
        self._last = first
        self.keep()
        self.accept()

    # -- the interface shared with the compiled backend --------------------------------
    @property
    def score(self) -> Score:
        return self._parent_score

    @property
    def active(self) -> np.ndarray:
        return self._active

    def try_child(self, deltas: Sequence[tuple[int, int]], limit: int = -1) -> Score:
        """Score the parent with `deltas` ((gene, value) pairs) applied. `limit` >= 0: a
        child of higher energy cannot win, so its error is not computed (`skipped`)."""
        child = self.genome.copy()
        mutated = np.zeros(child.n, dtype=bool)
        for gene, value in deltas:
            child.set(gene, value)
            if gene < FIELDS * child.n:
                mutated[gene // FIELDS] = True
        self._last = self._score(child, mutated, full=False, limit=limit)
        return self._last.score

    def keep(self) -> None:
        """Mark the last child scored (not a skipped one) as the generation's best."""
        assert self._last is not None and not self._last.score.skipped
        self._best = self._last

    def accept(self) -> None:
        c = self._best
        assert c is not None, "accept() needs a kept child"
        for j, row in c.rows.items():
            self.values[N_IN + j] = row
            self.tog[j] = c.tog[j]
        if c.e is not None:
            self.e, self.err, self.eall = c.e, c.err, c.eall
        self.genome, self._active, self.valid = c.genome, c.active, c.active.copy()
        self._parent_score = c.score
        self._best = None

    def table(self) -> np.ndarray:
        """int64 (256, 256): the parent's product at every operand pair."""
        planes = [self._word(self.genome, {}, int(o))[:TABLE_WORDS] for o in self.genome.outs]
        return product_values(planes, np.arange(1 << 16), self.p.signed).reshape(256, 256)

    # -- scoring ------------------------------------------------------------------------
    def _word(self, genome: Genome, rows: dict[int, np.ndarray], i: int) -> np.ndarray:
        if i >= N_IN and i - N_IN in rows:
            return rows[i - N_IN]
        return self.values[i]

    def _score(self, genome: Genome, mutated: np.ndarray, full: bool, limit: int = -1) -> _Child:
        act = genome.active()
        dirty = np.zeros(genome.n, dtype=bool)
        c = _Child(genome, act, dirty)
        for j in np.nonzero(act)[0]:
            ins = genome.conn[j, : ARITY[genome.func[j]]]
            if not (
                mutated[j] or not self.valid[j] or any(i >= N_IN and dirty[i - N_IN] for i in ins)
            ):
                continue
            dirty[j] = True
            a, b, s = (self._word(genome, c.rows, int(i)) for i in genome.conn[j])
            c.rows[j] = gate(int(genome.func[j]), a, b, s)
            c.tog[j] = toggles(c.rows[j][TABLE_WORDS:])
        tog = self.tog.copy()
        tog[list(c.tog)] = list(c.tog.values())
        energy = int((loads(genome, act) * np.where(act, tog, 0)).sum())
        skipped = 0 <= limit < energy
        changed = full or any(
            o != p or (o >= N_IN and dirty[o - N_IN])
            for o, p in zip(genome.outs, self.genome.outs, strict=True)
        )
        if changed and not skipped:
            c.e, c.err, c.eall = self._errors(genome, c.rows, full)
            s1, s2 = sums(c.err)
            bound = self.p.max_error
            viol = int(np.count_nonzero(np.abs(c.eall) > bound)) if bound >= 0 else 0
        else:
            s1, s2 = self._parent_score.s1, self._parent_score.s2
            viol = self._parent_score.violations
        c.score = Score(energy, s1, s2, skipped, viol)
        return c

    def _errors(
        self, genome: Genome, rows: dict[int, np.ndarray], full: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pair errors, sampled outputs' errors and (with a bound) every pair's error of a
        child: pairs are looked at again only in words where a product bit changed."""
        p = self.p
        planes = [self._word(genome, rows, int(o))[:TABLE_WORDS] for o in genome.outs]
        words, bits = p.pairs >> 6, (p.pairs & 63).astype(np.uint64)
        diff = np.full(TABLE_WORDS, ~np.uint64(0))
        if not full:
            diff[:] = 0
            for new, o in zip(planes, self.genome.outs, strict=True):
                diff |= new ^ self.values[o, :TABLE_WORDS]
        look = np.nonzero((diff[words] >> bits) & _ONE)[0]
        eall = self.eall
        if p.max_error >= 0:
            every = np.arange(1 << 16)
            again = np.nonzero((diff[every >> 6] >> (every & 63).astype(np.uint64)) & _ONE)[0]
            eall = eall.copy()
            eall[again] = product_values(planes, again, p.signed) - _EXACT[p.signed][again]
        e = self.e.copy()
        e[look] = product_values(planes, p.pairs[look], p.signed) - p.exact[look]
        de = e - self.e
        changed = np.nonzero(de)[0]
        err = self.err + self._h[:, changed] @ de[changed]
        return e, err.astype(np.int64), eall


def active_genes(genome: Genome, active: np.ndarray) -> np.ndarray:
    """Gene numbers whose change alters the circuit: active gates' functions and used
    connections, and the outputs."""
    idx = np.nonzero(active)[0]
    cols = np.arange(FIELDS)[None, :]
    used = cols <= ARITY[genome.func[idx]][:, None]  # function gene + arity connections
    genes = (idx[:, None] * FIELDS + cols)[used]
    return np.concatenate([genes, FIELDS * genome.n + np.arange(N_OUT)])
