"""One small executor interface for parallel work (many netlists, sweep points, simulations).

Stages call `run_parallel(fn, items, jobs)` and never touch a pool or a cluster directly.
Which backend runs the items is chosen around them, not by them:

- `local` (default): `jobs <= 1` runs in this process; otherwise a local process pool.
- `ray`: every item is one Ray task on the cluster at `ray_address` (default: the
  `RAY_ADDRESS` variable, else the cluster last started on this node with `ray start`,
  else a fresh local Ray instance); at most `jobs` run at once.

The backend comes from `using(...)` (a context variable: the CLI's `--executor` and
`--ray-address` set it for one command), else the `HWFLOW_EXECUTOR` and `RAY_ADDRESS`
environment variables. Results come back in input order from either backend, so a
stage's output does not depend on where its items ran.

Ray tasks must be idempotent (stages write their files atomically and skip finished
work): a task whose worker dies is run again up to `max_retries` times (Ray's own retry),
then reported as an `ExecutorError` naming the item. Workers import hwflow from the same
code as the driver: the driver's package directory goes first on the workers'
PYTHONPATH, and each task checks a fingerprint of the code before it runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hwflow.errors import ExecutorError, HwflowError, Terminated
from hwflow.resources import resource_dir
from hwflow.trust import TRUST_ENV, trusting

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("local", "ray")
DEFAULT_MAX_RETRIES = 3  # Ray's default for tasks whose worker or node died


@dataclass(frozen=True)
class ExecutorConfig:
    """Where `run_parallel` sends its items."""

    kind: str = "local"
    ray_address: str | None = None  # None: RAY_ADDRESS, else the node's cluster, else local
    max_retries: int = DEFAULT_MAX_RETRIES
    gpus_per_task: float = 0.0  # Ray `num_gpus` of each task of a GPU-capable stage
    gpu_tasks: bool = False  # this run's tasks may use a GPU (sweep retraining)

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ExecutorError(
                f"unknown executor {self.kind!r} (HWFLOW_EXECUTOR or --executor): "
                f"choose from {', '.join(EXECUTORS)}"
            )
        if self.max_retries < 0:
            raise ExecutorError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.gpus_per_task < 0:
            raise ExecutorError(f"gpus per task must be >= 0, got {self.gpus_per_task}")

    @property
    def task_gpus(self) -> float:
        return self.gpus_per_task if self.gpu_tasks else 0.0


_CONFIG: contextvars.ContextVar[ExecutorConfig | None] = contextvars.ContextVar(
    "hwflow_executor", default=None
)


def config_from_env() -> ExecutorConfig:
    """The backend the environment asks for (HWFLOW_EXECUTOR, RAY_ADDRESS,
    HWFLOW_RAY_GPUS_PER_TASK)."""
    gpus = os.environ.get("HWFLOW_RAY_GPUS_PER_TASK", "0")
    try:
        gpus_per_task = float(gpus)
    except ValueError:
        raise ExecutorError(f"HWFLOW_RAY_GPUS_PER_TASK: expected a number, got {gpus!r}") from None
    return ExecutorConfig(
        kind=os.environ.get("HWFLOW_EXECUTOR", "local").strip().lower() or "local",
        ray_address=os.environ.get("RAY_ADDRESS") or None,
        gpus_per_task=gpus_per_task,
    )


def current() -> ExecutorConfig:
    """The backend `run_parallel` uses here and now."""
    config = _CONFIG.get()
    return config if config is not None else config_from_env()


@contextlib.contextmanager
def using(kind: str | None = None, **changes: Any) -> Iterator[ExecutorConfig]:
    """Run the enclosed `run_parallel` calls on `kind` ("local" or "ray"), with other
    `ExecutorConfig` fields changed as given; unnamed fields keep the current values."""
    base = current()
    if kind is not None:
        changes["kind"] = kind
    config = dataclasses.replace(base, **changes)
    token = _CONFIG.set(config)
    try:
        yield config
    finally:
        _CONFIG.reset(token)


def run_parallel(fn: Callable[[T], R], items: Iterable[T], jobs: int = 1) -> Iterator[R]:
    """Apply `fn` to each item, yielding results in input order.

    Local backend: jobs <= 1 runs in this process (simple tracebacks, no pickling);
    otherwise a local process pool. Ray backend: one task per item, at most `jobs` at
    once. `fn` and the items must be picklable for either pool; for Ray, `fn` must be
    importable on the workers (a module-level function of hwflow, or a partial of one).
    """
    items = list(items)
    config = current()
    if config.kind == "ray":
        yield from _run_ray(fn, items, jobs, config)
        return
    if jobs <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    # spawned, not forked: a child forked after this process's torch ran an OpenMP
    # parallel region hangs in its own first one (GNU OpenMP is not fork-safe), and
    # which stages ran before varies (a test suite's order, a study's seeds)
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
    )
    try:
        yield from pool.map(functools.partial(_task, fn), items)
    except BaseException as exc:
        # stop handing out items; a SIGTERM reached only this process: pass it on, so the
        # running workers clean up (temporary folders, simulators) as this one does
        workers = _worker_processes(pool)  # shutdown forgets them
        pool.shutdown(wait=False, cancel_futures=True)
        if isinstance(exc, Terminated):
            for proc in workers:
                with contextlib.suppress(OSError, ValueError):
                    proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True)


def _worker_init() -> None:
    """Pool workers turn SIGTERM into `Terminated`, so their `finally` blocks run."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


_interrupted = False  # in a pool worker: Ctrl-C or SIGTERM came, so no further item starts


def _task(fn: Callable[[T], R], item: T) -> R:
    """One item in a pool worker. After an interruption the worker refuses the items the
    pool had already queued to it (cancelling reaches only those not yet queued), so the
    parent's shutdown does not wait for whole further tasks."""
    global _interrupted
    if _interrupted:
        raise Terminated
    try:
        return fn(item)
    except KeyboardInterrupt:  # Terminated too
        _interrupted = True
        raise


def _worker_processes(pool: ProcessPoolExecutor) -> list[Any]:
    # the executor has no public list of its worker processes
    return list((getattr(pool, "_processes", None) or {}).values())


def parallelism() -> int:
    """How many tasks the current backend runs at once when filled: the CPUs of the
    Ray cluster (connecting to it), or of this machine."""
    config = current()
    if config.kind == "ray":
        ray = connect_ray(config.ray_address)
        return max(1, int(ray.cluster_resources().get("CPU", 1)))
    return os.cpu_count() or 1


def jobs_for(jobs: Any, given: bool) -> Any:
    """A command's parallel tasks: `jobs` where the user gave them; left at the command's
    default, Ray runs as many as its cluster has CPUs (the command fills the cluster,
    connecting to it now), the local pool the default."""
    if not given and current().kind == "ray":
        return parallelism()
    return jobs


def describe(item: Any, limit: int = 200) -> str:
    """A short name for an item in error messages: its netlist, design or point (names,
    paths and numbers; arrays and other bulk left out)."""
    text = _describe(item)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(item: Any) -> str:
    if isinstance(item, os.PathLike):
        return os.fspath(item)
    if isinstance(item, str):
        return item
    name = getattr(item, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(item, dict) and "name" in item:
        return str(item["name"])
    if isinstance(item, list | tuple):
        text = ", ".join(_describe(x) for x in item if _nameable(x))
        return f"[{text}]" if isinstance(item, list) else f"({text})"
    return repr(item)


def _nameable(item: Any) -> bool:
    if item is None or isinstance(item, str | int | float | os.PathLike):
        return True
    if isinstance(getattr(item, "name", None), str):
        return True
    if isinstance(item, dict):
        return "name" in item
    return isinstance(item, list | tuple) and any(_nameable(x) for x in item)


# ---- Ray backend ------------------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError(
            "--executor ray needs Ray: pip install 'hwflow[ray]' (on every node of the cluster)"
        ) from None
    return ray


def code_root() -> Path:
    """The directory the running hwflow package was imported from (its parent)."""
    import hwflow

    return Path(hwflow.__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over hwflow's Python sources and the testbench/template files it reads:
    driver and workers must agree on it, or their results could differ."""
    root = code_root()
    h = hashlib.sha256()
    files = sorted((root / "hwflow").rglob("*.py"))
    for extra in ("sim", "rtl_templates"):
        folder = resource_dir(extra)
        if not folder.is_relative_to(root / "hwflow"):  # a wheel's copies were listed above
            files += sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def connect_ray(address: str | None = None, **init_options: Any) -> Any:
    """Connect this process to Ray once (later calls reuse the connection) and return
    the `ray` module. `address=None` follows Ray: RAY_ADDRESS, else the cluster started
    on this node with `ray start`, else a new local instance ("local" forces one).
    `init_options` go to `ray.init` (e.g. num_cpus for a local instance)."""
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    import logging

    # Workers put the driver's hwflow first on their path: a local cluster and nodes that
    # share the code directory run exactly this code; the fingerprint check catches others.
    pythonpath = os.pathsep.join([str(code_root()), "${PYTHONPATH}"])
    options = {
        "address": address,
        "runtime_env": {"env_vars": {"PYTHONPATH": pythonpath}},
        "include_dashboard": False,
        "log_to_driver": False,  # worker output would mix into --json on stdout
        "logging_level": logging.WARNING,
        **init_options,
    }
    target = address or os.environ.get("RAY_ADDRESS")
    if target:
        _check_reachable(target)
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a local instance"
        hint = "start one with `ray start --head`, or check --ray-address / RAY_ADDRESS"
        chain, link = [], exc
        while link is not None and len(chain) < 10:
            chain.append(link)
            link = link.__cause__ or link.__context__
        # Ray passes the refusal on as text (a RuntimeError quoting the RPC error)
        if any(
            isinstance(e, getattr(ray.exceptions, "AuthenticationError", ()))
            or "InvalidAuthToken" in str(e)
            or "Unauthenticated" in str(e)
            for e in chain
        ):
            # Ray never sends a token to an address it was given unless told to.
            hint = (
                "the cluster wants its token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
                "(`ray get-auth-token` on the head prints it)"
            )
        raise ExecutorError(
            f"cannot start or reach the Ray cluster at {where}: {exc} ({hint})"
        ) from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail in seconds on a cluster address nobody answers at (`ray.init` would retry
    for minutes)."""
    import socket

    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", "local" and other forms Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise ExecutorError(
            f"no Ray cluster answers at {address} ({exc}); start one there with "
            "`ray start --head`, or check --ray-address / RAY_ADDRESS"
        ) from None


def _ray_task(
    fn: Callable[[T], R], item: T, fingerprint: str, cwd: str, trusted: str | None = None
) -> R:
    """What each Ray task runs: check the code, then `fn(item)` in the driver's cwd
    (relative paths in items mean the same files when the node shares them), trusting the
    model factories the driver trusts (`hwflow.trust`; a local pool inherits them)."""
    if code_fingerprint() != fingerprint:
        import socket

        raise ExecutorError(
            f"worker on {socket.gethostname()} imports hwflow from {code_root()}, whose code "
            "differs from the driver's; install the same hwflow on every node (or share "
            "the code directory at the same path)"
        )
    if os.path.isdir(cwd):
        os.chdir(cwd)
    with trusting(trusted):
        return fn(item)


def _run_ray(fn: Callable[[T], R], items: list[T], jobs: int, config: ExecutorConfig):
    if not items:
        return
    ray = connect_ray(config.ray_address)
    task = ray.remote(_ray_task).options(
        num_cpus=1,
        num_gpus=config.task_gpus,
        max_retries=config.max_retries,
        retry_exceptions=False,  # a Python exception is the stage's answer, not a crash
    )
    fn_ref = ray.put(fn)
    fingerprint = code_fingerprint()
    cwd = os.getcwd()
    trusted = os.environ.get(TRUST_ENV)
    window = max(1, jobs)
    pending: dict[Any, int] = {}
    done: dict[int, Any] = {}
    submitted = emitted = 0
    try:
        while emitted < len(items):
            while submitted < len(items) and len(pending) < window:
                ref = task.remote(fn_ref, items[submitted], fingerprint, cwd, trusted)
                pending[ref] = submitted
                submitted += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                index = pending.pop(ref)
                done[index] = _result(ray, ref, items[index], config)
            while emitted in done:
                yield done.pop(emitted)
                emitted += 1
    finally:
        for ref in pending:  # an error or an abandoned generator: stop the rest
            ray.cancel(ref)


def _result(ray: Any, ref: Any, item: Any, config: ExecutorConfig) -> Any:
    """The task's value; its own exception as the local pool would raise it; a lost
    worker or node as an ExecutorError naming the item."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        # A user mistake stays one clean line; other errors keep Ray's remote traceback
        # (the exception is also an instance of the task's own exception class).
        if isinstance(exc.cause, HwflowError):
            raise exc.cause from None
        raise
    except ray.exceptions.RayError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ExecutorError(
            f"Ray task for {describe(item)} failed after {config.max_retries} retries: "
            f"{type(exc).__name__}: {first}"
        ) from None
