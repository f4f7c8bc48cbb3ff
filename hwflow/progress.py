"""Progress bars for long work: one helper so every stage behaves the same.

A bar is drawn only where stderr is a terminal. In a pipe, a log file or CI a bar's
carriage-return updates would flood the log (thousands per run), so there the stages'
own messages (one line per epoch or per design) are the progress.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable
from typing import Any


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    quiet: bool = False,
    leave: bool = False,
) -> Any:
    """A tqdm bar on stderr; none when `quiet` or when stderr is not a terminal."""
    from tqdm import tqdm  # local: `hwflow --help` need not import it

    # disable=None is tqdm's "off unless the output is a TTY"
    return tqdm(
        iterable, total=total, desc=desc, unit=unit, leave=leave, disable=True if quiet else None
    )


# Module-level, so a stage can hand them to pool workers (a lambda does not pickle).
def silent(_message: str) -> None:
    """A `log=` callback that discards the message."""


def to_stderr(message: str) -> None:
    """A `log=` callback: one line on stderr, flushed (workers share the parent's log)."""
    print(message, file=sys.stderr, flush=True)


def prefixed(log: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    """`log` with `prefix` before every message (picklable when `log` is): whose line it
    is, where several workers share one log."""
    return functools.partial(_prefixed_line, log, prefix)


def _prefixed_line(log: Callable[[str], None], prefix: str, message: str) -> None:
    log(prefix + message)
