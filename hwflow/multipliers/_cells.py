"""Gate-level building blocks for the generated multipliers (private to generators.py).

Circuits are built bit by bit from explicit cells (AND/NAND partial products, half and
full adders, ripple-carry adders, leading-one detectors) so the netlist yosys sees has
the structure of the approximate design, rather than Amaranth's `*`.

A *bit* is either an Amaranth 1-bit value or the Python int 0 or 1 (a constant). Cells
fold constants in Python, so removed or constant partial products cost no gates.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value

Bit = Value | int


class BitCircuit:
    """Adds named wires and adder cells to the combinational domain of a Module."""

    def __init__(self, m: Module) -> None:
        self.m = m

    def wire(self, expr: Value, name: str, width: int = 1) -> Signal:
        signal = Signal(width, name=name)
        self.m.d.comb += signal.eq(expr)
        return signal

    # ---- partial products -------------------------------------------------------------

    def partial_product(self, x: Bit, y: Bit, invert: bool, name: str) -> Bit:
        """x AND y (NAND when `invert`, as in Baugh-Wooley), constants folded."""
        if isinstance(x, int) or isinstance(y, int):
            if (isinstance(x, int) and x == 0) or (isinstance(y, int) and y == 0):
                return int(invert)
            other = y if isinstance(x, int) else x
            if isinstance(other, int):
                return other ^ int(invert)
            return self.wire(~other, name) if invert else other
        return self.wire(~(x & y) if invert else x & y, name)

    # ---- adder cells ------------------------------------------------------------------

    def add(self, bits: Sequence[Bit], name: str) -> tuple[Bit, Bit]:
        """Add up to three bits of one column: returns (sum, carry).

        Three signals make a full adder, two a half adder; constant inputs simplify the
        cell (a constant 1 with one signal is an inverter, with two an XNOR/OR pair).
        """
        const = sum(b for b in bits if isinstance(b, int))
        sigs = [b for b in bits if not isinstance(b, int)]
        if len(bits) > 3:
            raise ValueError("an adder cell takes at most three bits")
        if not sigs:
            return const & 1, const >> 1
        if len(sigs) == 1:
            (x,) = sigs
            if const == 0:
                return x, 0
            if const == 1:
                return self.wire(~x, f"{name}_s"), x
            return x, 1
        if len(sigs) == 2:
            x, y = sigs
            if const == 0:
                return self.wire(x ^ y, f"{name}_s"), self.wire(x & y, f"{name}_c")
            return self.wire(~(x ^ y), f"{name}_s"), self.wire(x | y, f"{name}_c")
        x, y, z = sigs
        half = self.wire(x ^ y, f"{name}_p")
        return (
            self.wire(half ^ z, f"{name}_s"),
            self.wire((x & y) | (half & z), f"{name}_c"),
        )

    def array_sum(self, rows: Sequence[dict[int, Bit]], width: int, name: str) -> list[Bit]:
        """Sum rows of weighted bits ({column: bit}) like an array multiplier.

        Each new row enters a row of carry-save adder cells together with the previous
        row's sums and carries; a final ripple-carry adder merges sums and carries.
        Columns >= width are dropped (the result wraps modulo 2^width).
        """
        sums: dict[int, Bit] = {}
        carries: dict[int, Bit] = {}
        for r, row in enumerate(rows):
            new_sums: dict[int, Bit] = {}
            new_carries: dict[int, Bit] = {}
            for col in sorted(set(sums) | set(carries) | set(row)):
                if col >= width:
                    continue
                bits = [d[col] for d in (sums, carries, row) if col in d]
                s, c = self.add(bits, f"{name}_r{r}c{col}")
                new_sums[col] = s
                if not (isinstance(c, int) and c == 0):
                    new_carries[col + 1] = c
            sums, carries = new_sums, new_carries
        out: list[Bit] = []
        carry: Bit = 0
        for col in range(width):
            bits = [sums.get(col, 0), carries.get(col, 0), carry]
            s, carry = self.add(bits, f"{name}_rca{col}")
            out.append(s)
        return out

    def tree_sum(self, columns: dict[int, list[Bit]], width: int, name: str) -> list[Bit]:
        """Sum columns of equally weighted bits ({column: [bits]}) with a Dadda tree.

        Each stage lowers every column to the next height of 2, 3, 4, 6, 9, 13, ... with
        as few full and half adders as that needs; a ripple-carry adder merges the last
        two rows. Unlike `array_sum`, a column may hold any number of bits (bits moved to
        a higher column). Columns >= width are dropped (the result wraps modulo 2^width).
        """
        cols = {c: list(columns.get(c, [])) for c in range(width)}
        stage = 0
        while (tallest := max(len(bits) for bits in cols.values())) > 2:
            target = 2
            while target * 3 // 2 < tallest:
                target = target * 3 // 2
            carries: dict[int, list[Bit]] = {c: [] for c in range(width + 1)}
            for c in range(width):
                pending, done = cols[c] + carries[c], []
                while len(pending) + len(done) > target and len(pending) >= 2:
                    take = 3 if len(pending) + len(done) - target >= 2 and len(pending) >= 3 else 2
                    s, carry = self.add(pending[:take], f"{name}_d{stage}c{c}_{len(done)}")
                    pending, done = pending[take:], done + [s]
                    if not (isinstance(carry, int) and carry == 0):
                        carries[c + 1].append(carry)
                cols[c] = pending + done
            stage += 1
        out: list[Bit] = []
        carry: Bit = 0
        for c in range(width):
            s, carry = self.add([*cols[c], carry], f"{name}_rca{c}")
            out.append(s)
        return out

    # ---- word-level helpers -----------------------------------------------------------

    def multiply_unsigned(self, a: Sequence[Bit], b: Sequence[Bit], name: str) -> list[Bit]:
        """Exact unsigned array multiplier of two bit vectors (LSB first)."""
        rows = [
            {
                i + j: self.partial_product(ai, bj, False, f"{name}_pp{i}_{j}")
                for i, ai in enumerate(a)
            }
            for j, bj in enumerate(b)
        ]
        return self.array_sum(rows, len(a) + len(b), name)

    def leading_one(self, x: Value, low: int, name: str) -> Signal:
        """Priority encoder over bits `low .. 7` of an 8-bit x: the leading one's index
        minus `low` plus 1, or 0 when none of those bits is set (3 bits, low >= 1)."""
        if not 1 <= low <= 7 or len(x) != 8:
            raise ValueError("leading_one takes an 8-bit value and 1 <= low <= 7")
        position: Value = Const(0, 3)
        for i in range(low, 8):
            position = Mux(x[i], i - low + 1, position)
        return self.wire(position, name, width=3)

    def conditional_negate(self, x: Value, negate: Value, name: str) -> Signal:
        """Two's complement negation of x when `negate` is 1 (same width, wrapping)."""
        width = len(x)
        return self.wire((x ^ negate.replicate(width)) + negate, name, width=width)


def to_value(bits: Sequence[Bit]) -> Value:
    """Concatenate bits (LSB first) into one Amaranth value."""
    return Cat(*(Const(b, 1) if isinstance(b, int) else b for b in bits))
