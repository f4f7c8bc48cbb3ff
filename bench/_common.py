"""What every bench shares: interleaved best-of timing, a CPU+wall clock, result rows."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of `make bench`: a measured figure next to its target."""

    area: str
    what: str
    measured: float
    unit: str  # "x" (ratio), "s", "/s"
    target: str  # e.g. "<= 1.5x"; "" where the figure is informative only
    met: bool | None = None

    def line(self) -> str:
        verdict = {True: "ok", False: "MISSED", None: ""}[self.met]
        value = (
            f"{self.measured:,.2f}{self.unit}"
            if self.unit == "x"
            else (f"{self.measured:,.1f} {self.unit}")
        )
        return f"{self.area:<13} {self.what:<64} {value:>14}  {self.target:<12} {verdict}"


def print_rows(rows: list[Row]) -> None:
    print(f"{'area':<13} {'measured':<64} {'value':>14}  {'target':<12}")
    for row in rows:
        print(row.line())


def best_times(
    fns: dict[str, Callable[[], object]], rounds: int, clock: Callable[[], float]
) -> dict[str, float]:
    """Best time of each function over `rounds` interleaved rounds (after one warm-up call
    each), so machine load hits every candidate alike."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            best[name] = min(best[name], clock() - t0)
    return best


class Clock:
    """Wall and CPU seconds (this process + finished children: simulators, yosys, workers).

    The machine is shared: CPU seconds are the load-independent figure to compare."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, self._cpu() - self.cpu

    @staticmethod
    def _cpu() -> float:
        own, kids = (
            resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
