"""Errors a user can fix. The CLI prints `error: <message>` on one line and exits 2."""

from __future__ import annotations

from collections.abc import Iterable


def listing(names: Iterable[str], limit: int = 8) -> str:
    """Names for a one-line message: all of a few, else the first `limit` and the count
    (a file of 10,000 modules must not make a 100 KB error line)."""
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])}, ... ({len(names):,} in all)"


class HwflowError(Exception):
    """A user-facing error: bad input, missing file, failed tool run.

    The message names the file, key or line at fault and, where it helps, what to do.
    """

    exit_code = 2


class ConfigError(HwflowError):
    """A YAML config or data file has an unknown, missing or mistyped key."""


class NetlistError(HwflowError):
    """A multiplier netlist cannot be simulated or synthesized as an 8x8 multiplier."""


class SimulationError(HwflowError):
    """The simulator failed, or the circuit produced X/Z or inconsistent outputs."""


class LibraryError(HwflowError):
    """The multiplier library is missing, incomplete or lacks a requested entry."""


class RunError(HwflowError):
    """A training run directory lacks a file a stage needs, or holds inconsistent data."""


class AssignmentError(HwflowError):
    """An assignment names an unknown layer or multiplier, or mismatches signedness."""


class VerificationError(HwflowError):
    """Exported RTL disagrees with the emulation (or its tests could not run)."""


class ExecutorError(HwflowError):
    """The parallel backend cannot run: unknown executor, Ray missing or unreachable, a
    cluster task lost after its retries (the message names the item)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so cleanup runs; unlike Ctrl-C it
    reached one process only, so a pool passes it on to its workers."""
