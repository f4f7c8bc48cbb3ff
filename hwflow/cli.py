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

# ---- assign / retrain / sweep (issue 5) -----------------------------------------------

# ---- export / verify (issue 6) --------------------------------------------------------

# ---- demo / report (issue 7) ----------------------------------------------------------


def main() -> None:
    cli(prog_name="hwflow")


if __name__ == "__main__":
    sys.exit(main())
