"""The compiled evaluator (`_evolve_kernel.cpp`, built just in time with
torch.utils.cpp_extension and cached), behind the interface of `NumpyEvaluator`."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwflow.evolve.evaluator import Score
from hwflow.evolve.genome import Genome
from hwflow.evolve.problem import TABLE_WORDS, Problem
from hwflow.native import build_extension

log = logging.getLogger(__name__)
_SOURCE = Path(__file__).with_name("_evolve_kernel.cpp")
_lock = threading.Lock()
_state: dict[str, Any] = {}


def kernel() -> Any:
    """The compiled module, built on first use; None if it cannot be built (logged once).
    HWFLOW_KERNEL=torch (no compiled code) disables it too."""
    with _lock:
        if "mod" not in _state:
            _state["mod"] = build_extension(_SOURCE, "hwflow_evolve_kernel", "evolve", log)
        return _state["mod"]


class CompiledEvaluator:
    """Same contract and results as `evaluator.NumpyEvaluator`."""

    def __init__(self, problem: Problem, genome: Genome) -> None:
        genome.check()
        mod = kernel()
        if mod is None:
            raise RuntimeError("the compiled evaluator could not be built")
        p = problem
        self.p = p
        self._e = mod.Evaluator(
            p.inputs, TABLE_WORDS, p.pairs, p.exact, p.h_ptr, p.h_row, p.h_val, p.outputs,
            p.signed, p.max_error, genome.func.astype(np.int64),
            genome.conn.astype(np.int64).reshape(-1), genome.outs.astype(np.int64),
        )  # fmt: skip
        self._sync()

    def _sync(self) -> None:
        self.score = Score(*self._e.parent_score())
        self.active = self._e.active()

    @property
    def genome(self) -> Genome:
        return Genome(self._e.genome_func(), self._e.genome_conn(), self._e.genome_outs())

    def try_child(self, deltas: Sequence[tuple[int, int]], limit: int = -1) -> Score:
        return Score(*self._e.try_child(deltas, limit))

    def keep(self) -> None:
        self._e.keep()

    def accept(self) -> None:
        self._e.accept()
        self._sync()

    def table(self) -> np.ndarray:
        return self._e.table().reshape(256, 256)

    def run(
        self, rng: random.Random, lam: int, mutations: int, evaluations: int, budget: int,
        seconds: float,
    ) -> tuple[int, int, list[tuple]]:  # fmt: skip
        """Generations of `search._generation`, draw for draw on `rng` (whose state it
        advances), until `budget` evaluations or about `seconds`: (evaluations,
        generations run, improvements (evaluations, energy, s1, s2, violations, fits,
        (func, conn, outs) where it fits))."""
        version, state, gauss = rng.getstate()
        out, evaluations, generations, improved = self._e.run(
            list(state), lam, mutations, self.p.std_limit, evaluations, budget, seconds
        )
        rng.setstate((version, tuple(out), gauss))
        self._sync()
        return evaluations, generations, improved
