"""`make bench`: every benchmark's ratios in one table, targets beside them.

    python -m bench [--quick]

Each figure is measured side by side with its baseline in this run (the machines are
noisy); no timing is asserted in tests. Run a single area's own bench for detail, e.g.
`python -m bench.kernels --threads 1 --clock cpu`.
"""

from __future__ import annotations

import argparse
import importlib

from bench._common import Row, print_rows

AREAS = [
    "characterize",
    "kernels",
    "train_step",
    "error_model",
    "verify",
    "demo",
    "executor",
    "evolve",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer shapes, designs and rounds")
    ap.add_argument("--only", nargs="*", choices=AREAS, default=AREAS)
    args = ap.parse_args()
    rows: list[Row] = []
    for area in args.only:
        print(f"\n=== {area} ===", flush=True)
        rows += importlib.import_module(f"bench.{area}").rows(quick=args.quick)
    print("\n=== summary ===")
    print_rows(rows)


if __name__ == "__main__":
    main()
