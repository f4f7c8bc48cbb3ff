"""cocotb testbench: exhaustive 8x8 simulation of a batch of multipliers in one launch.

The top is the bench wrapper that `hwflow.characterize.simulate` generates: one instance
of every design of the batch, sharing operands `a` and `b`. The testbench drives `a`;
each toggle of `go` makes the wrapper sweep `b` through 0..255 and store the products in
one 4096-bit register per design (`row<d>`, product b in bits 16b..16b+15). One await and
one read per row and design: Python is paid per 256 vectors, never per vector.

Arguments (JSON file named by $HWFLOW_SIM_ARGS, see `hwflow.simulator`):
  designs: design names (row order), sweep_ns: time a sweep takes (then rows are read),
  out: path of the raw file to write: little-endian uint16 products in the order
  [a, design, b] (the caller reshapes; numpy is not imported here because it doubles
  the simulator's start-up time), xz_out: path of a JSON file mapping a design name to
  its first (a, b) pair, in ascending order, whose product holds X or Z (clean designs
  are absent). X/Z bits read as 0 so the other designs of the batch still finish; the
  caller turns any entry of `xz_out` into an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
from cocotb.triggers import Timer

# Logic values other than 0/1 read as 0 (H/L as 1/0) so the batch can finish.
_XZ_AS_ZERO = str.maketrans("xXzZuUwWlLhH-", "0000000000110")
ROW_BITS = 256 * 16


def _first_xz_b(bits: str) -> int:
    """Lowest b whose 16-bit product in a row string (MSB first) holds a non-0/1 bit."""
    bad = [(ROW_BITS - 1 - pos) // 16 for pos, ch in enumerate(bits) if ch not in "01"]
    return min(bad)


@cocotb.test()
async def exhaustive(dut):
    args = json.loads(Path(os.environ["HWFLOW_SIM_ARGS"]).read_text())
    names: list[str] = args["designs"]
    rows = [getattr(dut, f"row{d}") for d in range(len(names))]
    sweep = Timer(float(args["sweep_ns"]), unit="ns")
    raw = bytearray()
    first_xz: dict[str, tuple[int, int]] = {}
    for a in range(256):
        dut.a.value = a
        dut.go.value = a & 1  # every change of go starts a sweep of b
        await sweep
        for name, row in zip(names, rows, strict=True):
            bits = str(row.value)
            try:
                word = int(bits, 2)  # fast path; LogicArray.is_resolvable is ~100x slower
            except ValueError:
                first_xz.setdefault(name, (a, _first_xz_b(bits)))
                word = int(bits.translate(_XZ_AS_ZERO), 2)
            raw += word.to_bytes(ROW_BITS // 8, "little")
    Path(args["out"]).write_bytes(raw)
    Path(args["xz_out"]).write_text(json.dumps({n: list(p) for n, p in first_xz.items()}))
