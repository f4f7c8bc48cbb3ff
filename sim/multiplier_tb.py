"""cocotb testbench: exhaustive 8x8 simulation of a batch of multipliers in one launch.

The top is the bench wrapper that `hwflow.characterize.simulate` generates: one instance
of every design's bit-parallel view (each net 65,536 bits wide, bit p = operand pair
p = 256 a + b), sharing operand bit planes that the wrapper sets at 1 ns. The testbench
waits for them to settle and reads each design's 16 product planes (`y<d>_<k>`): one
read per plane, Python never loops over pairs.

Arguments (JSON file named by $HWFLOW_SIM_ARGS, see `hwflow.simulator`):
  designs: design names (wrapper order), planes: product bits per design (16),
  out: path of the raw file to write: the planes as little-endian bytes (bit p of plane
  k = product bit k of pair p) in the order [design, plane] (the caller unpacks them;
  numpy is not imported here because it doubles the simulator's start-up time),
  xz_out: path of a JSON file mapping a design name to its first pair index p, in
  ascending order, whose product holds X or Z (clean designs are absent). X/Z bits read
  as 0 so the other designs of the batch still finish; the caller turns any entry of
  `xz_out` into an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
from cocotb.triggers import Timer

# Logic values other than 0/1 read as 0 (H/L as 1/0) so the batch can finish ...
_XZ_AS_ZERO = str.maketrans("xXzZuUwWlLhH-", "0000000000110")
# ... and are marked with a 1 in a mask of the pairs whose product is not clean.
_XZ_MASK = str.maketrans("01xXzZuUwWlLhH-", "001111111111111")


@cocotb.test()
async def exhaustive(dut):
    args = json.loads(Path(os.environ["HWFLOW_SIM_ARGS"]).read_text())
    names: list[str] = args["designs"]
    await Timer(2, unit="ns")  # the wrapper sets the operand planes at 1 ns
    raw = bytearray()
    first_xz: dict[str, int] = {}
    for d, name in enumerate(names):
        bad = 0
        for k in range(args["planes"]):
            bits = str(getattr(dut, f"y{d}_{k}").value)  # MSB (pair 65535) first
            try:
                plane = int(bits, 2)  # fast path; LogicArray.is_resolvable is ~100x slower
            except ValueError:
                bad |= int(bits.translate(_XZ_MASK), 2)
                plane = int(bits.translate(_XZ_AS_ZERO), 2)
            raw += plane.to_bytes(len(bits) // 8, "little")
        if bad:
            first_xz[name] = (bad & -bad).bit_length() - 1  # the lowest pair index
    Path(args["out"]).write_bytes(raw)
    Path(args["xz_out"]).write_text(json.dumps(first_xz))
