"""Wall time of `hwflow demo` by stage (fresh flow directory and library).

    python -m bench.demo [--full]

`--quick` mode (the default here) is the flow `make test` runs end to end; `--full` is
`make demo` itself (targets: quick < 2 min, full < 10 min on 2 cores, installs done).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench._common import Row, print_rows
from hwflow.flow import FlowConfig, run_flow


def rows(quick: bool = True) -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="hwflow-bench-demo-"))
    try:
        cfg = FlowConfig(out=work / "demo", library=work / "lib", quick=quick)
        results = run_flow(cfg, log=lambda msg: print(msg, flush=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    kind = "quick" if quick else "full"
    total = sum(r.seconds for r in results)
    limit = 120 if quick else 600
    out = [Row("demo", f"{kind} demo, stage {r.name}", r.seconds, "s", "") for r in results]
    out.append(Row("demo", f"{kind} demo, all stages", total, "s", f"< {limit} s", total < limit))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the full demo instead of --quick")
    print_rows(rows(quick=not ap.parse_args().full))


if __name__ == "__main__":
    main()
