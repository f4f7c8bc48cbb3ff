"""The `hwflow` command line. Thin: parse options, call the library, print.

Stage libraries are imported inside each command so `hwflow --help` and the light
commands stay fast (torch alone takes seconds to import).
"""

from __future__ import annotations

import json
import sys

import click

from hwflow.errors import HwflowError


class _Group(click.Group):
    """Turns HwflowError into one `error: ...` line and exit code 2, no traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except HwflowError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted; completed work is kept, rerun to resume", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hwflow")
def cli() -> None:
    """Approximate multipliers for neural networks, from netlist to bit-exact Verilog."""


def echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2))


# ---- characterize / library (issue 3) -------------------------------------------------

# ---- train / evaluate (issue 4) -------------------------------------------------------


@cli.command()
@click.option("--config", "config_path", required=True, type=click.Path(), help="YAML config.")
@click.option("--out", required=True, type=click.Path(), help="Run directory to write.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--seed", type=int, default=None, help="Override the config's seed.")
@click.option("--data-dir", type=click.Path(), default=None, help="Dataset folder (not digits).")
@click.option("--quiet", is_flag=True, help="No progress output.")
def train(config_path, out, resume, seed, data_dir, quiet) -> None:
    """Train float -> QAT -> AGN sigma search; writes RUN/summary.json."""
    from dataclasses import replace

    from hwflow.nn.train import load_train_config
    from hwflow.nn.train import train as run_training

    cfg = load_train_config(config_path)
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    if data_dir is not None:
        cfg = replace(cfg, data=replace(cfg.data, data_dir=data_dir))
    log = (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))
    summary = run_training(cfg, out, resume=resume, quiet=quiet, log=log)
    if not quiet:
        acc = summary["accuracy"]
        click.echo(
            f"{out}: test accuracy float {acc['float']:.4f} quant {acc['quant']:.4f} "
            f"agn {acc['agn']:.4f}"
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
    "--mode", type=click.Choice(["float", "quant", "agn"]), default="quant", show_default=True
)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test")
@click.option("--data-dir", type=click.Path(), default=None, help="Dataset folder override.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evaluate(run_dir, mode, split, data_dir, as_json) -> None:
    """Accuracy of a trained run (agn: with its learned noise drawn at evaluation)."""
    from hwflow.nn.train import evaluate_run

    result = evaluate_run(run_dir, mode=mode, split=split, data_dir=data_dir)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{run_dir}: {mode} {split} accuracy {result['accuracy']:.4f}")


# ---- assign / retrain / sweep (issue 5) -----------------------------------------------

# ---- export / verify (issue 6) --------------------------------------------------------


@cli.command("export")
@click.argument("run", type=click.Path(file_okay=False, path_type=str))
@click.option("--assignment", required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str))
@click.option("--lanes", default=16, show_default=True, help="MAC lanes per layer engine.")
@click.option("--images", default=16, show_default=True, help="Test images to record.")
@click.option("--library", default=None, help="Library directory [default: the assignment's].")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON.")
def export_cmd(run, assignment, out, lanes, images, library, as_json) -> None:
    """Write the MAC array, its cocotb tests and the recorded layer vectors to OUT."""
    from hwflow.rtl.export import export_run

    manifest = export_run(run, assignment, out, lanes=lanes, images=images, library=library)
    summary = {
        "out": out,
        "accumulations": manifest["accumulations"],
        "macs": manifest["macs"],
        "cycles": manifest["cycles"],
        "layers": {lay["layer"]: lay["multiplier"] for lay in manifest["layers"]},
    }
    if as_json:
        echo_json(summary)
        return
    for lay in manifest["layers"]:
        click.echo(
            f"{lay['layer']:<24} {lay['multiplier']:<20} {lay['jobs']:>8,} accumulations "
            f"x K={lay['fan_in']}, {lay['acc_width']}-bit accumulators"
        )
    click.echo(
        f"wrote {out}: {manifest['accumulations']:,} accumulations, {manifest['cycles']:,} "
        f"cycles at {lanes} lanes; check with `hwflow verify {out}` or `make -C {out}`"
    )


@cli.command("verify")
@click.argument("export_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def verify_cmd(export_dir, as_json) -> None:
    """Simulate an exported design and compare every accumulator with the emulation."""
    from hwflow.errors import VerificationError
    from hwflow.rtl.verify import format_report, verify

    report = verify(export_dir)
    if as_json:
        echo_json(report)
    else:
        for line in format_report(report):
            click.echo(line)
    if not report["ok"]:
        bad = [lay["layer"] for lay in report["layers"] if lay["mismatches"] or lay.get("error")]
        raise VerificationError(
            f"{export_dir}: {report['mismatches']:,} of {report['checked']:,} accumulations "
            f"differ from the emulation (layers: {', '.join(bad)})"
        )

# ---- demo / report (issue 7) ----------------------------------------------------------


def main() -> None:
    cli(prog_name="hwflow")


if __name__ == "__main__":
    sys.exit(main())
