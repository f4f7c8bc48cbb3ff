"""Which code hwflow runs: a model factory only where the user named it.

A factory is code. It runs when the user named it: in the config they run (`hwflow train
CONFIG`, `demo --config`, `study CONFIG`), or, for a run folder's recorded config (a run
received from elsewhere is data), when they pass `hwflow --trust-factory`. The trusted
specs travel in the environment so that worker processes see the same decision.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from hwflow.errors import ConfigError

TRUST_ENV = "HWFLOW_TRUST_FACTORY"  # "*": every factory; else trusted specs, one a line
TRUST_ALL = "*"


def factory_trusted(spec: str) -> bool:
    trusted = os.environ.get(TRUST_ENV, "").split("\n")
    return TRUST_ALL in trusted or spec in trusted


@contextlib.contextmanager
def trusting(spec: str | None) -> Iterator[None]:
    """Within the block (and in the worker processes it starts), `spec` may run: a factory
    the user named (or TRUST_ALL for `--trust-factory`). None trusts nothing more."""
    saved = os.environ.get(TRUST_ENV)
    if spec is not None:
        os.environ[TRUST_ENV] = "\n".join(filter(None, [saved, spec]))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(TRUST_ENV, None)
        else:
            os.environ[TRUST_ENV] = saved


def check_factory_trusted(spec: str | None, where: str) -> None:
    """ConfigError unless `spec` (a recorded config's model.factory, read at `where`) may
    run; the one gate every model built from a run folder passes."""
    if spec is None or factory_trusted(spec):
        return
    raise ConfigError(
        f"{where}: model.factory: {spec!r} is code named by a run folder, and hwflow runs "
        "code only when you say so; if you trust this run, pass `hwflow --trust-factory "
        f"COMMAND ...` (or set {TRUST_ENV}='*')"
    )
