"""The `hwflow` command line. Thin: parse options, call the library, print.

Stage libraries are imported inside each command so `hwflow --help` and the light
commands stay fast (torch alone takes seconds to import).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import sys
import threading
from collections.abc import Iterator

import click

from hwflow import executor as executor_mod
from hwflow.errors import ConfigError, HwflowError, Terminated, listing
from hwflow.progress import progress

# click >= 8.2 signals "no arguments: show the help" as a usage error; that one stays
_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _usage_error(exc: click.UsageError) -> click.exceptions.Exit:
    """A click usage error as the one `error: ...` line every hwflow error is (exit 2),
    instead of click's usage block and "Error:" line."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    message = message[:1].lower() + message[1:]
    path = exc.ctx.command_path if exc.ctx is not None else "hwflow"
    click.echo(f"error: {message} (see '{path} --help')", err=True)
    return click.exceptions.Exit(exc.exit_code)


class _Group(click.Group):
    """Turns HwflowError and usage errors into one `error: ...` line and exit code 2."""

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[override]
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _NoArgsIsHelp:
            raise  # `hwflow` alone: click prints the help
        except click.UsageError as exc:  # the group's own options
            raise _usage_error(exc) from None

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            with _sigterm_as_interrupt():
                return super().invoke(ctx)
        except _NoArgsIsHelp:
            raise  # `hwflow library` alone: click prints the help
        except click.UsageError as exc:  # a subcommand's options and arguments
            raise _usage_error(exc) from None
        except HwflowError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted; completed work is kept, rerun to resume", err=True)
            ctx.exit(130)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (kill, a job scheduler) interrupts like Ctrl-C: `finally` blocks and
    context managers run, so temporary folders and half-written files are cleaned up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hwflow")
@click.option(
    "--trust-factory", is_flag=True,
    help="Run the model factory (Python code) that a run folder's config.yaml names. "
    "Without it, such a run is refused (built-in models need no opt-in).",
)  # fmt: skip
@click.pass_context
def cli(ctx: click.Context, trust_factory: bool) -> None:
    """Approximate multipliers for neural networks, from netlist to bit-exact Verilog."""
    if trust_factory:
        from hwflow.trust import TRUST_ALL, trusting

        ctx.with_resource(trusting(TRUST_ALL))


class _Number(click.FloatRange):
    """A finite number in a range (click's FloatRange lets nan and inf through)."""

    def convert(self, value, param, ctx):  # type: ignore[override]
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class _List(click.ParamType):
    """Comma-separated values, each of click type `item` (`0,1,2`)."""

    def __init__(self, item: click.ParamType) -> None:
        self.item, self.name = item, f"{item.name} list"

    def convert(self, value, param, ctx):  # type: ignore[override]
        if isinstance(value, list | tuple):
            return list(value)
        items = [v.strip() for v in str(value).split(",") if v.strip()]
        if not items:
            self.fail("give at least one value", param, ctx)
        return [self.item.convert(v, param, ctx) for v in items]


class _Generator(click.ParamType):
    """A built-in generator's design by name (`u_vct_k13_n3`), as its MultiplierSpec."""

    name = "generator"

    def convert(self, value, param, ctx):  # type: ignore[override]
        from hwflow.multipliers.generators import MultiplierSpec

        if isinstance(value, MultiplierSpec):
            return value
        try:
            return MultiplierSpec.from_name(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


COUNT = click.IntRange(min=1)  # jobs, lanes, images, steps
SEED = click.IntRange(0, 2**63 - 1)  # as a config's seed (hwflow.nn.train_config)
POSITIVE = _Number(min=0, min_open=True)
NON_NEGATIVE = _Number(min=0)


class _OutputFile(click.Path):
    """An output file option: a new file, or one hwflow wrote as `kind`, never a file of
    a library or a run (hwflow.io.check_output_file); `slot`: the managed folder's kind
    and the file name the command writes there by default."""

    def __init__(self, kind: str, slot: str | None = None) -> None:
        super().__init__(dir_okay=False)
        self.kind, self.slot = kind, slot

    def convert(self, value, param, ctx):  # type: ignore[override]
        from hwflow.io import RUN_KIND, check_output_file

        path = super().convert(value, param, ctx)
        try:
            check_output_file(path, self.kind, (RUN_KIND, self.slot) if self.slot else None)
        except HwflowError as exc:
            self.fail(str(exc), param, ctx)
        return path


def echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2))


def stderr_log(quiet: bool = False):
    """Progress messages for a stage's `log=` callback: stderr, or nothing when quiet."""
    from hwflow.progress import silent, to_stderr

    return silent if quiet else to_stderr


def executor_options(gpu_tasks: bool = False, fans_out_if: str | None = None):
    """`--executor`/`--ray-address` for every command that fans out (hwflow.executor).

    The choice holds while the command runs. With Ray and no explicit `--jobs`, the
    command fills the cluster (its CPU count), connecting at the start; `fans_out_if`
    names a flag without which the command runs nothing in parallel (and needs no Ray)."""

    def decorate(command):
        @click.option(
            "--executor", type=click.Choice(executor_mod.EXECUTORS), default="local",
            envvar="HWFLOW_EXECUTOR", show_envvar=True, show_default=True,
            help="Where parallel work runs: local processes or a Ray cluster.",
        )  # fmt: skip
        @click.option(
            "--ray-address", default=None, envvar="RAY_ADDRESS", show_envvar=True,
            help="Ray cluster [default: the one `ray start` made on this node, else a "
            "new local instance].",
        )  # fmt: skip
        @functools.wraps(command)
        def run(*args, executor: str, ray_address: str | None, **kwargs):
            with executor_mod.using(executor, ray_address=ray_address, gpu_tasks=gpu_tasks):
                if "jobs" in kwargs and (fans_out_if is None or kwargs[fans_out_if]):
                    source = click.get_current_context().get_parameter_source("jobs")
                    given = source != click.core.ParameterSource.DEFAULT
                    kwargs["jobs"] = executor_mod.jobs_for(kwargs["jobs"], given)
                return command(*args, **kwargs)

        return run

    return decorate


# ---- characterize / library -----------------------------------------------------------

_LIB_OPTION = click.option(
    "--library", "library", default="hwflow-lib", show_default=True, type=click.Path(),
    help="Multiplier library directory.",
)  # fmt: skip


def _entry_json(lib, entry) -> dict:
    return {
        "name": entry.name,
        "signed": entry.signed,
        "metrics": entry.metrics,
        "cost": entry.cost,
        "table": str(lib.table_path(entry.name)),
    }


def _entry_line(entry, note: str = "") -> str:
    m, c = entry.metrics, entry.cost
    rel = c.get("energy_rel")
    rel_text = f"{rel:6.3f}" if rel is not None else "   n/a"
    kind = "s" if entry.signed else "u"
    return (
        f"{entry.name:<28} {kind} mae {m['mae']:10.3f} wce {m['wce']:8.0f} "
        f"ep {m['ep_pct']:6.2f}% cells {c['cells']:4d} area {c['area']:6.0f} "
        f"depth {c['depth']:3d} energy_rel {rel_text}{_published_text(c)}{note}"
    )


def _published_text(cost: dict) -> str:
    """The published figures beside the estimates, when the entry has them."""
    pub = cost.get("published") or {}
    parts = [f"{k} {pub[k]:g}" for k in ("power", "area") if pub.get(k) is not None]
    return f"  published {', '.join(parts)}" if parts else ""


@cli.command()
@click.argument("netlists", nargs=-1, type=click.Path())
@click.option("--builtin", is_flag=True, help="Characterize the built-in generator library.")
@click.option("--generator", "generators", type=_List(_Generator()), multiple=True,
              help="Generator designs by name, any parameters in the family's range "
              "(u_vct_k13_n3,u_optrunc_a5_b4; `s_`: signed).")  # fmt: skip
@click.option("--top", default=None, help="Top module (files with several modules).")
@click.option("--ports", default=None, help="Port names A,B,O (default: auto-detect).")
@click.option(
    "--signed/--unsigned", "signed", default=None,
    help="Operand signedness (default: whichever reads closer to the exact product).",
)  # fmt: skip
@click.option("--cells", type=click.Path(), default=None,
              help="Cell modules read with every netlist (never a top).")  # fmt: skip
@_LIB_OPTION
@click.option("--jobs", "-j", type=COUNT, default=1, show_default=True, help="Parallel workers.")
@click.option("--timeout", type=POSITIVE, default=300.0, show_default=True,
              help="Seconds one netlist's synthesis or simulation may take.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of entries.")
@click.option(
    "--costs",
    type=click.Path(),
    default=None,
    help="Published figures: CSV name,power,area,delay, or EvoApprox meta.json.",
)
@click.option("--quiet", is_flag=True, help="No progress output.")
@executor_options()
def characterize(
    netlists, builtin, generators, top, ports, signed, cells, library, jobs, timeout, as_json,
    costs, quiet,
):  # fmt: skip
    """Exhaustively simulate 8x8 multipliers (files or folders of .v files); store
    tables, metrics, gates, energy."""
    from hwflow.characterize.pipeline import (
        CharacterizeError,
        characterize_builtin,
        characterize_netlists,
    )
    from hwflow.multipliers.generators import builtin_specs
    from hwflow.multipliers.library import Library

    # each --generator gives a list; a design named twice is characterized once
    specs = list(dict.fromkeys(s for group in generators for s in group))
    generated = builtin or bool(specs)
    if generated == bool(netlists):
        raise HwflowError("give netlist files, or --builtin and/or --generator (not both)")
    if generated and (top or ports or signed is not None or costs or cells):
        raise HwflowError(
            "--top, --ports, --signed/--unsigned, --cells and --costs apply to netlists"
        )
    if builtin:
        specs = list(dict.fromkeys(builtin_specs() + specs))
    port_names = None
    if ports is not None:
        port_names = [p.strip() for p in ports.split(",")]
        if len(port_names) != 3 or not all(port_names):
            raise HwflowError(f"--ports needs three names A,B,O; got {ports!r}")
    bar = progress(desc="characterize", unit="design", quiet=quiet or as_json, leave=True)
    failed = None
    try:
        if generated:
            outcomes = characterize_builtin(
                library, jobs=jobs, specs=specs, timeout=timeout, progress=bar.update
            )
        else:
            outcomes = characterize_netlists(
                netlists, library, top=top, ports=port_names, signed=signed, jobs=jobs,
                costs=costs, cells=cells, timeout=timeout, progress=bar.update,
            )  # fmt: skip
    except CharacterizeError as exc:  # the good ones were kept: list them, then each failure
        failed, outcomes = exc, exc.outcomes
    finally:
        bar.close()
    if outcomes:
        lib = Library.open(library)
        if as_json:
            echo_json([_entry_json(lib, o.entry) for o in outcomes])
        elif not quiet:
            for o in outcomes:
                note = "  (cached)" if o.cached else (f"  ({o.note})" if o.note else "")
                click.echo(_entry_line(o.entry, note))
            added = sum(not o.cached for o in outcomes)
            click.echo(f"added {added}; library has {len(lib.entries)} ({library})")
    if costs and outcomes:
        missing = [o.entry.name for o in outcomes if "published" not in o.entry.cost]
        if missing:
            click.echo(
                f"note: no published figures in {costs} for {len(missing)} "
                f"(matched by module name, then entry name): {listing(missing)}",
                err=True,
            )
        if not (quiet or as_json) and len(missing) < len(outcomes):
            from hwflow.characterize.costs import compare_library

            for line in compare_library(library).lines(list_unmatched=False):
                click.echo(line)
    if failed is not None:
        for f in failed.failures:
            click.echo(f"error: {f.line()}", err=True)
        click.get_current_context().exit(failed.exit_code)


@cli.group()
def library() -> None:
    """Inspect the multiplier library."""


@library.command("list")
@_LIB_OPTION
@click.option("--sort", "sort_key", default="energy", show_default=True,
              help="energy, area, cells, depth, name, or a metric (mae, wce, ...).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def library_list(library, sort_key, as_json) -> None:
    """One line per multiplier, sorted."""
    from hwflow.multipliers.library import Library, sort_entries

    lib = Library.open(library)
    entries = sort_entries(lib.entries, sort_key)
    if as_json:
        echo_json([_entry_json(lib, e) for e in entries])
    else:
        for e in entries:
            click.echo(_entry_line(e))


@library.command("compare")
@_LIB_OPTION
@click.option(
    "--costs",
    type=click.Path(),
    default=None,
    help="CSV or EvoApprox meta.json [default: the library's stored figures].",
)
@click.option(
    "--min-power",
    type=NON_NEGATIVE,
    default=None,
    help="Power threshold of the 'larger circuits' rows [default: 0.3].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def library_compare(library, costs, min_power, as_json) -> None:
    """Spearman correlation of each estimate with the published power."""
    from hwflow.characterize.costs import LARGE_POWER, compare_library

    report = compare_library(
        library, costs, large_power=LARGE_POWER if min_power is None else min_power
    )
    if as_json:
        echo_json(report.to_dict())
        return
    for line in report.lines():
        click.echo(line)


@library.command("show")
@click.argument("name")
@_LIB_OPTION
@click.option("--heatmap", type=_OutputFile("error heatmap"), default=None,
              help="Write an error heatmap PNG.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def library_show(name, library, heatmap, as_json) -> None:
    """Metrics, cost and source of one multiplier; optionally its error heatmap."""
    from hwflow.multipliers.library import Library

    lib = Library.open(library)
    entry = lib.get(name)
    if heatmap:
        from hwflow.present.plots import error_heatmap

        error_heatmap(lib, name, heatmap)
    if as_json:
        echo_json({**entry.to_dict(), "table": str(lib.table_path(name))})
        return
    click.echo(f"{entry.name} ({'signed' if entry.signed else 'unsigned'})")
    click.echo("source: " + ", ".join(f"{k}={v}" for k, v in entry.source.items()))
    click.echo("metrics: " + ", ".join(f"{k}={v:.6g}" for k, v in entry.metrics.items()))
    for key, value in entry.cost.items():
        click.echo(f"cost.{key}: {value}")
    click.echo(f"table: {lib.table_path(name)}")
    if heatmap:
        click.echo(f"heatmap: {heatmap}")


@library.command("remove")
@click.argument("name")
@_LIB_OPTION
def library_remove(name, library) -> None:
    """Remove one multiplier (index entry, table, netlist, gates)."""
    from hwflow.multipliers.library import Library

    Library.open(library).remove(name)
    click.echo(f"removed {name} from {library}")


# ---- train / evaluate -----------------------------------------------------------------

_DEVICE_OPTION = click.option(
    "--device", type=click.Choice(["cpu", "cuda"]), default=None,
    help="Where the network runs [default: cuda when available, else cpu].",
)  # fmt: skip


@cli.command()
@click.option("--config", "config_path", required=True, type=click.Path(), help="YAML config.")
@click.option("--out", required=True, type=click.Path(), help="Run directory to write.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--seed", type=SEED, default=None, help="Override the config's seed.")
@click.option("--data-dir", type=click.Path(), default=None,
              help="Dataset folder (digits needs none; fashion_mnist defaults to "
              "/usr/share/datasets/fashion-mnist).")  # fmt: skip
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads (overrides the config's `threads:`) [default: the "
              "config's, else chosen by measurement: one for small models].")  # fmt: skip
@_DEVICE_OPTION
@click.option("--quiet", is_flag=True, help="No progress output.")
def train(config_path, out, resume, seed, data_dir, threads, device, quiet) -> None:
    """Train float -> QAT -> AGN sigma search; writes RUN/summary.json."""
    from dataclasses import replace

    from hwflow.nn.train import load_train_config
    from hwflow.nn.train import train as run_training

    cfg = load_train_config(config_path)
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    if data_dir is not None:
        cfg = replace(cfg, data=replace(cfg.data, data_dir=data_dir))
    if threads is not None:
        cfg = replace(cfg, threads=threads)
    log = stderr_log(quiet)
    summary = run_training(cfg, out, resume=resume, quiet=quiet, log=log, device=device)
    if not quiet:
        acc, top5 = summary["accuracy"], summary.get("accuracy_top5", {})
        click.echo(
            f"{out}: test accuracy float {acc['float']:.4f} quant {acc['quant']:.4f} "
            f"agn {acc['agn']:.4f}"
            + (f" (top-5: quant {top5['quant']:.4f})" if "quant" in top5 else "")
        )
        for layer in summary["layers"]:
            kind = "signed" if layer["signed"] else "unsigned"
            click.echo(
                f"  {layer['name']:<24} ops {layer['ops']:>10} fan_in {layer['fan_in']:>5} "
                f"sigma {layer['sigma']:.4f} {kind}"
            )


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option(
    "--mode",
    type=click.Choice(["float", "quant", "agn", "approx"]),
    default="quant",
    show_default=True,
)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test")
@click.option("--data-dir", type=click.Path(), default=None, help="Dataset folder override.")
@click.option("--assignment", type=click.Path(), default=None, help="approx: assignment.yaml")
@click.option("--retrained", type=click.Path(), default=None, help="approx: retrain checkpoint")
@_DEVICE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evaluate(run_dir, mode, split, data_dir, assignment, retrained, device, as_json) -> None:
    """Accuracy of a trained run (agn: with its learned noise drawn at evaluation)."""
    from hwflow.nn.run import evaluate_run

    if mode == "approx" or assignment is not None:  # approx mode with tables
        from hwflow.assign.retrain import evaluate_assignment

        if mode != "approx" or assignment is None:
            raise click.UsageError("--mode approx and --assignment go together")
        result = evaluate_assignment(
            run_dir, assignment, split=split, data_dir=data_dir, retrained=retrained,
            device=device,
        )  # fmt: skip
    else:
        result = evaluate_run(run_dir, mode=mode, split=split, data_dir=data_dir, device=device)
    if as_json:
        echo_json(result)
    else:
        click.echo(
            f"{run_dir}: {mode} {split} accuracy {result['accuracy']:.4f} "
            f"(top-5 {result['accuracy_top5']:.4f})"
        )


# ---- assign / retrain / sweep ---------------------------------------------------------

_GRADIENT_OPTION = click.option(
    "--gradient", type=click.Choice(["ste", "table"]), default=None,
    help="Retraining backward: ste = exact product's; table = the multiplier table's own "
    "slopes. [default: the run config's retrain.gradient, else ste]",
)  # fmt: skip


_ENERGY_OPTION = click.option(
    "--energy", "energy_model", type=click.Choice(["uniform", "histogram", "published"]),
    default=None,
    help="Energy the selection minimises: recorded operands (histogram: each layer's operand "
    "histograms through the gate-level switching model), the library's uniform-operand "
    "figure, or the published power (--costs figures; every candidate needs one). "
    "[default: histogram; uniform where --no-hist-energy skips the recorded figure]",
)  # fmt: skip


# `model` names the network everywhere else; --model stays accepted as the old spelling.
_ERROR_MODEL_OPTION = click.option(
    "--error-model", "--model", "error_model", type=click.Choice(["seed", "channel", "sampled"]),
    default="sampled", show_default=True,
    help="Error model (seed = the paper's histogram model).",
)  # fmt: skip


_RECOVERY_OPTION = click.option(
    "--recovery-steps", type=click.IntRange(min=0), default=0, show_default=True,
    help="--max-loss: measure each candidate after this many retraining batches (Adam "
    "1e-3, STE), so the budget bounds the loss retraining does not recover (0: the tables "
    "as they are).",
)  # fmt: skip


def _recovery_text(budget: dict) -> str:
    steps = budget.get("recovery_steps", 0)
    return f", after {steps} recovery steps {100 * budget['val_top1']:.2f} %" if steps else ""


def _print_assignment(doc: dict) -> None:
    from hwflow.present.tables import saved_text

    click.echo(
        f"{'layer':<16} {'multiplier':<22} {'tolerated':>9} {'predicted':>9} "
        f"{'measured':>9} {'E_rel':>7} {'E_hist':>7}"
    )
    for item in doc["layers"]:
        meas = item.get("sigma_measured")
        hist = item.get("energy_rel_hist")
        click.echo(
            f"{item['name']:<16} {item['multiplier']:<22} {item['sigma_tolerated']:>9.4f} "
            f"{item['sigma_predicted']:>9.4f} {'-' if meas is None else f'{meas:.4f}':>9} "
            f"{item['energy_rel']:>7.3f} {'-' if hist is None else f'{hist:.3f}':>7}"
        )
    e = doc["energy"]
    click.echo(f"energy: {saved_text(e)}; selection minimised the {e['model']} energy")
    b = doc.get("budget")
    if b:
        click.echo(
            f"budget: {b['max_loss_pp']:g} pp, {'met' if b['met'] else 'NOT met'}: validation "
            f"top-1 {100 * b['val_top1']:.2f} % vs int8 {100 * b['val_top1_int8']:.2f} % "
            f"(loss {b['val_loss_pp']:.2f} pp; tables only {100 * b['val_top1_uncorrected']:.2f}"
            f" %, corrected {100 * b['val_top1_corrected']:.2f} %"
            f"{_recovery_text(b)}), {b['chosen']}, "
            f"{len(b['candidates'])} candidates measured"
        )
    v = doc.get("validation")
    if v:
        click.echo(
            f"validation: {v['pairs']} layer/multiplier pairs, relative std error "
            f"median {v['median_pct']:.1f} %, p90 {v['p90_pct']:.1f} %"
        )


@cli.command()
@click.argument("run_dir", type=click.Path())
@_LIB_OPTION
@click.option("--out", type=_OutputFile("assignment", slot="assignment.yaml"), default=None,
              help="[default: RUN/assignment.yaml]")  # fmt: skip
@click.option(
    "--scale",
    type=NON_NEGATIVE,
    default=1.0,
    show_default=True,
    help="Multiply every layer's tolerated error std.",
)
@_ERROR_MODEL_OPTION
@click.option(
    "--validate",
    "do_validate",
    is_flag=True,
    help="Measure predicted vs actual error by table emulation on held-out batches.",
)
@click.option(
    "--max-loss",
    type=NON_NEGATIVE,
    default=None,
    help="Instead of --scale: the cheapest assignment within this top-1 loss (percentage "
    "points below the run's int8 accuracy, measured on the validation split). Measured "
    "candidates are kept in RUN/budget_candidates.jsonl: an interrupted search resumes.",
)
@_RECOVERY_OPTION
@click.option("--no-correct", is_flag=True, help="Record no free corrections (bias, BN).")
@click.option("--no-record", is_flag=True, help="Fail if RUN/stats.npz is missing.")
@click.option("--no-hist-energy", is_flag=True, help="Skip the recorded-operand energy figure.")
@_ENERGY_OPTION
@click.option("--seed", type=SEED, default=0, show_default=True, help="Sampling seed.")
@click.option("--jobs", "-j", type=COUNT, default=1, show_default=True,
              help="Parallel layer tasks of --validate.")  # fmt: skip
@_DEVICE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the assignment (and pairs) as JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@executor_options(fans_out_if="do_validate")
def assign(
    run_dir,
    library,
    out,
    scale,
    error_model,
    do_validate,
    max_loss,
    recovery_steps,
    no_correct,
    no_record,
    no_hist_energy,
    energy_model,
    seed,
    jobs,
    device,
    as_json,
    quiet,
) -> None:
    """Choose the cheapest multiplier per layer within its learned error tolerance, or
    (--max-loss) the cheapest assignment within a measured accuracy budget."""
    from hwflow.assign.flow import assign_run

    log = stderr_log(quiet or as_json)
    doc = assign_run(
        run_dir,
        library,
        out=out,
        scale=scale,
        error_model=error_model,
        do_validate=do_validate,
        record=not no_record,
        hist_energy=not no_hist_energy,
        energy_model=energy_model,
        seed=seed,
        jobs=jobs,
        log=log,
        device=device,
        correct=not no_correct,
        max_loss=max_loss,
        recovery_steps=recovery_steps,
    )
    if as_json:
        echo_json(doc)
    else:
        _print_assignment(doc)
    b = doc.get("budget")
    if b and not b["met"]:
        from pathlib import Path

        from hwflow.artifacts import ASSIGNMENT_FILE
        from hwflow.errors import AssignmentError

        where = out or Path(run_dir) / ASSIGNMENT_FILE
        raise AssignmentError(
            f"--max-loss {max_loss:g}: no assignment found within the budget; the closest "
            f"({b['chosen']}, validation loss {b['val_loss_pp']:.2f} pp) is in {where}"
        )


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--assignment", required=True, type=click.Path(), help="An assignment.yaml.")
@click.option("--epochs", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--lr", type=POSITIVE, default=1e-3, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option(
    "--library",
    "library",
    default=None,
    type=click.Path(),
    help="[default: the assignment's library]",
)
@click.option("--out", type=_OutputFile("retrain result", slot="retrain.json"), default=None,
              help="[default: RUN/retrain.json]")  # fmt: skip
@_DEVICE_OPTION
@_GRADIENT_OPTION
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam",
              show_default=True, help="sgd: momentum 0.9 (the reference's recipe).")  # fmt: skip
@click.option("--step-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Multiply the lr by --gamma every N epochs (0: constant lr).")  # fmt: skip
@click.option("--gamma", type=_Number(0, 1, min_open=True), default=0.1,
              show_default=True, help="Step decay factor.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print retrain.json.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def retrain(
    run_dir, assignment, epochs, lr, seed, library, out, device, gradient, optimizer,
    step_every, gamma, as_json, quiet,
) -> None:  # fmt: skip
    """Fine-tune with the assigned multipliers (straight-through gradients), resumably.
    The kept checkpoint is the epoch with the best validation accuracy."""
    from hwflow.assign.retrain import Schedule, retrain_run

    log = stderr_log(quiet or as_json)
    result = retrain_run(
        run_dir,
        assignment,
        epochs=epochs,
        lr=lr,
        seed=seed,
        library=library,
        out=out,
        quiet=quiet or as_json,
        log=log,
        device=device,
        gradient=gradient,
        schedule=Schedule(optimizer, step_every=step_every, gamma=gamma),
    )
    if as_json:
        echo_json(result)
        return
    a, a5 = result["accuracy"], result.get("accuracy_top5", {})
    raw = a.get("approx_uncorrected")
    click.echo(
        f"test accuracy: quant {a['quant']:.4f}, approx "
        + ("" if raw is None else f"uncorrected {raw:.4f}, corrected ")
        + f"{a['approx_before']:.4f}, retrained {a['approx_after']:.4f} "
        f"(best val epoch {result['best_epoch']})"
        + (f"; top-5 after {a5['approx_after']:.4f}" if "approx_after" in a5 else "")
    )
    e = result.get("energy") or {}
    if "reduction_pct" in e:
        from hwflow.present.tables import saved_text

        click.echo(
            f"multiplication energy: {saved_text(e)}; selection minimised the "
            f"{e.get('model', 'uniform')} energy"
        )


@cli.command()
@click.argument("run_dir", type=click.Path())
@_LIB_OPTION
@click.option(
    "--scales",
    type=_List(NON_NEGATIVE),
    default="0.5,1,2,4",
    show_default=True,
    help="Comma-separated tolerance scales (heterogeneous points).",
)
@click.option("--epochs", type=click.IntRange(min=0), default=1, show_default=True,
              help="Retraining per point.")  # fmt: skip
@click.option("--lr", type=POSITIVE, default=1e-3, show_default=True)
@click.option("--seeds", type=_List(SEED), default="0", show_default=True,
              help="Retraining seeds, e.g. 0,1,2.")  # fmt: skip
@_ERROR_MODEL_OPTION
@click.option("--no-homogeneous", is_flag=True, help="Skip the one-multiplier baselines.")
@click.option("--no-hist-energy", is_flag=True, help="Skip the recorded-operand energy figure.")
@_ENERGY_OPTION
@click.option("--jobs", "-j", type=COUNT, default=1, show_default=True, help="Parallel points.")
@click.option("--out", type=click.Path(), default=None, help="[default: RUN/sweep]")
@_GRADIENT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@executor_options(gpu_tasks=True)
def sweep(
    run_dir,
    library,
    scales,
    epochs,
    lr,
    seeds,
    error_model,
    no_homogeneous,
    no_hist_energy,
    energy_model,
    jobs,
    out,
    gradient,
    as_json,
    quiet,
) -> None:
    """Accuracy/energy trade-off: scales x retraining, plus homogeneous baselines."""
    from hwflow.experiments.sweep import sweep_dir, sweep_run

    log = stderr_log(quiet or as_json)
    rows = sweep_run(
        run_dir,
        library,
        scales,
        epochs=epochs,
        lr=lr,
        seeds=seeds,
        error_model=error_model,
        homogeneous=not no_homogeneous,
        jobs=jobs,
        hist_energy=not no_hist_energy,
        energy_model=energy_model,
        out_dir=out,
        log=log,
        gradient=gradient,
    )
    from hwflow.present.experiments import render_sweep

    render_sweep(rows, sweep_dir(run_dir, out))
    if as_json:
        echo_json(rows)
        return
    click.echo(
        f"{'point':<34} {'saved % uniform':>15} {'recorded':>8} {'acc before':>10} {'after':>14}"
    )
    for r in rows:
        hist = r["reduction_pct_hist"]
        click.echo(
            f"{r['point'][:34]:<34} {r['reduction_pct']:>15.1f} "
            f"{'-' if hist == '' else f'{hist:.1f}':>8} {r['acc_before']:>10.4f} "
            f"{r['acc_after_mean']:>7.4f}+-{r['acc_after_std']:.4f}"
        )
    model = next((r["energy_model"] for r in rows if r["energy_model"]), None)
    if model:
        click.echo(f"heterogeneous selections minimised the {model} energy")


@cli.command()
@click.argument("config", type=click.Path())
@_LIB_OPTION
@click.option("--seeds", type=_List(SEED), default="0,1,2", show_default=True,
              help="Training seeds.")  # fmt: skip
@click.option("--out", required=True, type=click.Path(), help="Study directory.")
@click.option("--scales", type=_List(NON_NEGATIVE), default=None,
              help="Tolerance scales of the heterogeneous points [default: 0.5,1,1.5,2,3; "
              "none when --max-loss gives budget points instead].")  # fmt: skip
@click.option("--energy", "energy_models", default="uniform,histogram", show_default=True,
              type=_List(click.Choice(["uniform", "histogram", "published"])),
              help="Selection energies (uniform; histogram = recorded operands).")  # fmt: skip
@click.option("--epochs", type=click.IntRange(min=0), default=1, show_default=True,
              help="Retraining per point.")  # fmt: skip
@click.option("--max-steps", type=COUNT, default=None, help="Cap on retraining steps per epoch.")
@click.option("--lr", type=POSITIVE, default=1e-3, show_default=True)
@click.option("--gradient-scale", type=NON_NEGATIVE, default=None,
              help="Scale where STE and table gradients are compared [default: the first "
              "scale more than 0.5 pp below int8].")  # fmt: skip
@click.option("--no-gradient-compare", is_flag=True, help="Skip the table-gradient retraining.")
@click.option("--homog-min-saved", type=_Number(), default=0.0, show_default=True,
              help="Omit homogeneous designs saving less [% energy, uniform].")  # fmt: skip
@click.option("--data-dir", type=click.Path(), default=None, help="Dataset folder.")
@click.option("--jobs", "-j", type=COUNT, default=1, show_default=True, help="Parallel runs.")
@click.option("--json", "as_json", is_flag=True, help="Print study.json.")
@click.option("--max-loss", "max_losses", type=_List(NON_NEGATIVE), default=None,
              help="Also a budget point per budget: assign --max-loss (validation, pp; "
              "e.g. 1,2: a budget before retraining above the target can still end "
              "within it after).")  # fmt: skip
@_RECOVERY_OPTION
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam",
              show_default=True, help="Retraining optimizer (sgd: momentum 0.9).")  # fmt: skip
@click.option("--step-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Retraining: lr times 0.1 every N epochs (0: constant).")  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress output.")
def study(config, library, seeds, out, scales, energy_models, epochs, max_steps, lr,
          gradient_scale, no_gradient_compare, homog_min_saved, data_dir, jobs, as_json,
          max_losses, recovery_steps, optimizer, step_every, quiet) -> None:  # fmt: skip
    """Heterogeneous vs homogeneous over training seeds: CSV, plot, tables, paired tests.

    Progress goes to stderr, one line per training epoch, budget candidate and
    retraining epoch, each prefixed with its seed (and point); --quiet silences it."""
    from hwflow.assign.retrain import Schedule
    from hwflow.experiments.study import DEFAULT_SCALES, study_run

    result = study_run(
        config, library, out,
        seeds=seeds, energy_models=energy_models,
        scales=scales if scales is not None else () if max_losses else DEFAULT_SCALES,
        epochs=epochs, lr=lr, max_steps=max_steps, gradient_scale=gradient_scale,
        compare_gradients=not no_gradient_compare, homog_min_saved=homog_min_saved,
        data_dir=data_dir, jobs=jobs, max_losses=max_losses or (),
        schedule=Schedule(optimizer, step_every=step_every), recovery_steps=recovery_steps,
        log=stderr_log(quiet or as_json),
    )  # fmt: skip
    from hwflow.present.experiments import render_study

    text = render_study(result, out)
    if as_json:
        echo_json(result)
        return
    click.echo(text, nl=False)
    click.echo(f"wrote {out}/study.csv, study.md, study.json, pareto.png")


# ---- evolve ---------------------------------------------------------------------------


@cli.command()
@click.argument("run_dir", type=click.Path())
@_LIB_OPTION
@click.option("--layers", default=None, help="Comma-separated layer names [default: all].")
@click.option("--scale", type=NON_NEGATIVE, default=1.0, show_default=True,
              help="Tolerance scale, as in assign.")  # fmt: skip
@click.option("--budget", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Candidate evaluations per layer.")  # fmt: skip
@click.option("--seed", type=SEED, default=0, show_default=True, help="Search seed.")
@click.option("--lam", type=click.IntRange(min=1), default=4, show_default=True,
              help="Children per generation.")  # fmt: skip
@click.option("--mutations", type=click.IntRange(min=1), default=3, show_default=True,
              help="Genes changed per child, at most.")  # fmt: skip
@click.option("--stream", type=click.IntRange(min=128), default=8192, show_default=True,
              help="Operations of the energy stream (multiple of 64).")  # fmt: skip
@click.option("--max-error", type=click.IntRange(min=0), default=None,
              help="Also bound |product error| at all 65,536 operand pairs.")  # fmt: skip
@click.option("--finalists", type=click.IntRange(min=1), default=4, show_default=True,
              help="Last improved circuits compared after resynthesis.")  # fmt: skip
@click.option("--from-library", is_flag=True,
              help="Seed from the layer's best existing design (else exact).")  # fmt: skip
@click.option("--energy", type=click.Choice(["histogram", "uniform"]), default="histogram",
              show_default=True, help="Energy minimised: under the layer's recorded operands, "
              "or under uniform ones (the library's energy_rel, the reference's measure); the "
              "error constraint is the layer's either way.")  # fmt: skip
@click.option("--jobs", "-j", type=COUNT, default=1, show_default=True,
              help="Layers evolved side by side.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@executor_options()
def evolve(
    run_dir, library, layers, scale, budget, seed, lam, mutations, stream, max_error,
    finalists, from_library, energy, jobs, as_json, quiet,
) -> None:  # fmt: skip
    """Evolve a multiplier per layer for the operands it sees (CGP), into the library."""
    from hwflow.evolve.flow import EvolveOptions, evolve_run

    options = EvolveOptions(
        scale=scale, budget=budget, seed=seed, lam=lam, mutations=mutations, stream=stream,
        from_library=from_library, max_error=max_error, finalists=finalists, energy=energy,
    )  # fmt: skip
    names = [n.strip() for n in layers.split(",") if n.strip()] if layers else None
    summary = evolve_run(
        run_dir, library, layers=names, options=options, jobs=jobs,
        quiet=quiet or as_json, log=stderr_log(quiet or as_json),
    )  # fmt: skip
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"wrote {run_dir}/evolve/summary.json; library {library}")


# ---- export / verify ------------------------------------------------------------------


@cli.command("export")
@click.argument("run", type=click.Path(file_okay=False, path_type=str))
@click.option("--assignment", required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str))
@click.option("--lanes", type=COUNT, default=16, show_default=True,
              help="MAC lanes per layer engine.")  # fmt: skip
@click.option("--images", type=COUNT, default=16, show_default=True, help="Test images to record.")
@click.option("--library", default=None, help="Library directory [default: the assignment's].")
@click.option("--retrained", default=None, help="Retrain checkpoint whose weights to deploy.")
@click.option("--network/--no-network", default=True, show_default=True,
              help="Also the whole network in RTL (hwflow_net), image codes to class.")  # fmt: skip
@click.option("--rows", type=click.IntRange(min=1), default=None,
              help="At most N operand rows per layer for the per-layer engines (a seeded "
              "random sample, every output channel of each): networks too large to "
              "simulate whole. [default: every row]")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON.")
def export_cmd(
    run, assignment, out, lanes, images, library, retrained, network, rows, as_json
) -> None:
    """Write the MAC array, its cocotb tests and the recorded layer vectors to OUT."""
    from hwflow.rtl.export import export_run

    manifest = export_run(
        run,
        assignment,
        out,
        lanes=lanes,
        images=images,
        library=library,
        checkpoint=retrained,
        network=network,
        rows=rows,
    )
    summary = {
        "out": out,
        "accumulations": manifest["accumulations"],
        "macs": manifest["macs"],
        "cycles": manifest["cycles"],
        "layers": {lay["layer"]: lay["multiplier"] for lay in manifest["layers"]},
        "accuracy": manifest["accuracy"],
        "accuracy_top5": manifest["accuracy_top5"],
    }
    if as_json:
        echo_json(summary)
        return
    for lay in manifest["layers"]:
        sampled = f" ({len(lay['row_ids'])} sampled rows)" if lay.get("row_ids") else ""
        click.echo(
            f"{lay['layer']:<24} {lay['multiplier']:<20} {lay['jobs']:>8,} accumulations "
            f"x K={lay['fan_in']}, {lay['acc_width']}-bit accumulators{sampled}"
        )
    acc, top5 = manifest["accuracy"], manifest["accuracy_top5"]
    if acc["integer_only"] is not None:
        click.echo(
            f"{manifest['split']} accuracy with these multipliers (top-1 / top-5): fake-quant "
            f"{acc['fake_quant']:.2%} / {top5['fake_quant']:.2%}, integer-only pipeline "
            f"{acc['integer_only']:.2%} / {top5['integer_only']:.2%}"
        )
    if manifest.get("integer_skipped"):
        click.echo(f"no integer-only accuracy: {manifest['integer_skipped']}")
    if manifest.get("net_skipped"):
        click.echo(manifest["net_skipped"])
    if manifest.get("net"):
        click.echo(
            f"whole network in RTL ({manifest['net']['module']}): {manifest['net']['images']} "
            f"images, {manifest['net']['macs_per_image']:,} MACs each"
        )
    click.echo(
        f"wrote {out}: {manifest['accumulations']:,} accumulations, {manifest['cycles']:,} "
        f"cycles at {lanes} lanes; check with `hwflow verify {out}` or `make -C {out}`"
    )


@cli.command("verify")
@click.argument("export_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option(
    "--jobs", type=COUNT, default=None,
    help="Simulations run in parallel [default: one process each, up to the CPU count].",
)  # fmt: skip
@executor_options()
@click.option("--simulator", type=click.Choice(["verilator", "icarus"]), default=None,
              help="[default: Verilator when it works here, else Icarus]")  # fmt: skip
@click.option(
    "--allow-changed",
    is_flag=True,
    help="Verify even if design, testbench or vector files changed since export.",
)
@click.option(
    "--library", type=click.Path(file_okay=False, path_type=str), default=None,
    help="Library to check the export's multipliers against [default: the manifest's].",
)  # fmt: skip
@click.option(
    "--rebuild", is_flag=True,
    help="Compile the simulations afresh instead of reusing a Verilator build of the same "
    "files (kept in $HWFLOW_CACHE_DIR, else ~/.cache/hwflow).",
)  # fmt: skip
def verify_cmd(
    export_dir, as_json, quiet, jobs, simulator, allow_changed, library, rebuild
) -> None:
    """Simulate an exported design and compare every accumulator with the emulation.

    Uses hwflow's own testbench and checker, never the Python inside the export; every
    multiplier must be the RTL of its library entry. The report is also written to
    EXPORT_DIR/verify.json."""
    from pathlib import Path

    from hwflow.artifacts import VERIFY_FILE
    from hwflow.errors import VerificationError
    from hwflow.rtl.verify import format_report, verify

    def announce(chosen: str, why: str, manifest: dict) -> None:
        if not (quiet or as_json):
            sims = ", ".join(
                f"{s['name']} ({s['cycles']:,} cycles)" for s in manifest["simulations"]
            )
            name = {"verilator": "Verilator", "icarus": "Icarus"}[chosen]
            click.echo(f"simulating in {name} ({why}): {sims} ...", err=True)

    report = verify(
        export_dir,
        jobs=jobs,
        simulator=simulator,
        allow_changed=allow_changed,
        library=library,
        on_simulate=announce,
        rebuild=rebuild,
    )
    if as_json:
        echo_json(report)
    else:
        for line in format_report(report):
            click.echo(line)
    if not report["ok"]:
        from hwflow.rtl.check import failure_message

        raise VerificationError(failure_message(export_dir, report, Path(export_dir) / VERIFY_FILE))


# ---- demo / report --------------------------------------------------------------------


@cli.command()
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False),
              help="Flow directory: every stage's outputs stay here.")  # fmt: skip
@click.option("--library", default="hwflow-lib", show_default=True, type=click.Path(),
              help="Multiplier library (built-in designs, cached by sha256).")  # fmt: skip
@click.option("--config", "train_config", default=None, type=click.Path(dir_okay=False),
              help="Training config [default: hwflow's examples/digits.yaml].")  # fmt: skip
@click.option("--quick", is_flag=True, help="A few steps per stage (tests, smoke runs).")
@click.option("--max-loss", type=NON_NEGATIVE, default=1.0, show_default=True,
              help="assign: the cheapest assignment within this validation loss (pp).")  # fmt: skip
@click.option("--scale", type=NON_NEGATIVE, default=None,
              help="assign: a fixed tolerance scale instead of --max-loss.")  # fmt: skip
@_RECOVERY_OPTION
@click.option("--jobs", "-j", type=COUNT, default=2, show_default=True, help="Parallel workers.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed for every random choice.")  # fmt: skip
@click.option("--force", multiple=True, help="Rerun this step even if its outputs exist.")
@_ENERGY_OPTION
@executor_options()
def demo(
    out, library, train_config, quick, max_loss, scale, recovery_steps, jobs, seed, force,
    energy_model,
) -> None:  # fmt: skip
    """The whole flow on the digits default: library, train, assign, retrain, sweep,
    export, verify, report."""
    from pathlib import Path

    from hwflow.flow import FlowConfig, run_flow

    budget = {"max_loss": max_loss} if scale is None else {"scale": scale, "max_loss": None}
    cfg = FlowConfig(
        out=Path(out), library=Path(library), quick=quick, jobs=jobs, seed=seed,
        force=tuple(force), energy_model=energy_model, recovery_steps=recovery_steps, **budget,
    )  # fmt: skip
    if train_config is not None:
        cfg.train_config = Path(train_config)
    results = run_flow(cfg, log=stderr_log())
    total = sum(r.seconds for r in results)
    click.echo(f"flow finished in {total:.0f} s; report: {Path(out) / 'report' / 'report.html'}")


@cli.command()
@click.argument("run", type=click.Path(file_okay=False, exists=True))
@click.option("--library", default=None, type=click.Path(),
              help="Library [default: the one the assignment names].")  # fmt: skip
@click.option("--html/--no-html", default=True, show_default=True,
              help="Also write a self-contained HTML page.")  # fmt: skip
def report(run, library, html) -> None:
    """Write RUN/report/report.md (and report.html) with figures from the stages' files."""
    from hwflow.present.report import write_report

    for path in write_report(run, library=library, html=html):
        click.echo(str(path))


def main() -> None:
    cli(prog_name="hwflow")


if __name__ == "__main__":
    sys.exit(main())
