"""The CGP genome: a single row of gates, each free to read any earlier node.

Node indices: 0..7 are the operand bits a0..a7, 8..15 b0..b7, 16 and 17 the constants 0
and 1, then one index per gate (`N_IN + j` for gate j). A gate has a function (`FUNCS`,
the one-bit gates yosys maps multipliers to) and three connection genes (A, B, S; a gate
reads only as many as its arity). 16 output genes name the node driving each product
bit. Levels-back is the whole row, the usual form for circuit approximation (Mrazek et
al.): the seed netlist fits in topological order, and any gate may be bypassed.

Genes are numbered flat for mutation: gene `4 j + f` is gate j's function (f = 0) or its
connection f - 1; gene `4 n + k` is output k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwflow.characterize.synth import CONST0, CONST1, Gates

N_IN = 18  # a0..a7, b0..b7, const 0, const 1
N_OUT = 16
CONST0_INDEX, CONST1_INDEX = 16, 17
FIELDS = 4  # genes per gate: function, A, B, S
# Gate functions (codes are indices); MUX: Y = S ? B : A, as yosys' $_MUX_.
FUNCS = ("BUF", "NOT", "AND", "NAND", "OR", "NOR", "XOR", "XNOR", "ANDNOT", "ORNOT", "MUX")
ARITY = np.array([1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3], dtype=np.int64)
_EXPR = {
    "BUF": "{A}", "NOT": "~{A}", "AND": "{A} & {B}", "NAND": "~({A} & {B})",
    "OR": "{A} | {B}", "NOR": "~({A} | {B})", "XOR": "{A} ^ {B}", "XNOR": "~({A} ^ {B})",
    "ANDNOT": "{A} & ~{B}", "ORNOT": "{A} | ~{B}", "MUX": "{S} ? {B} : {A}",
}  # fmt: skip


@dataclass
class Genome:
    """`func` (n,) gate function codes, `conn` (n, 3) input node indices (< N_IN + j for
    gate j), `outs` (16,) node index per product bit, LSB first."""

    func: np.ndarray
    conn: np.ndarray
    outs: np.ndarray

    @property
    def n(self) -> int:
        return len(self.func)

    @property
    def genes(self) -> int:
        return FIELDS * self.n + N_OUT

    def copy(self) -> Genome:
        return Genome(self.func.copy(), self.conn.copy(), self.outs.copy())

    def get(self, gene: int) -> int:
        if gene >= FIELDS * self.n:
            return int(self.outs[gene - FIELDS * self.n])
        j, f = divmod(gene, FIELDS)
        return int(self.func[j]) if f == 0 else int(self.conn[j, f - 1])

    def set(self, gene: int, value: int) -> None:
        if gene >= FIELDS * self.n:
            self.outs[gene - FIELDS * self.n] = value
            return
        j, f = divmod(gene, FIELDS)
        if f == 0:
            self.func[j] = value
        else:
            self.conn[j, f - 1] = value

    def active(self) -> np.ndarray:
        """bool (n,): the gates some product bit depends on."""
        act = np.zeros(self.n, dtype=bool)
        stack = [int(o) - N_IN for o in self.outs if o >= N_IN]
        while stack:
            j = stack.pop()
            if act[j]:
                continue
            act[j] = True
            for i in self.conn[j, : ARITY[self.func[j]]]:
                if i >= N_IN and not act[i - N_IN]:
                    stack.append(int(i) - N_IN)
        return act

    def to_dict(self) -> dict[str, list]:
        return {"func": self.func.tolist(), "conn": self.conn.tolist(), "outs": self.outs.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> Genome:
        g = cls(
            np.asarray(d["func"], dtype=np.int64),
            np.asarray(d["conn"], dtype=np.int64).reshape(-1, 3),
            np.asarray(d["outs"], dtype=np.int64),
        )
        g.check()
        return g

    def check(self) -> None:
        """ValueError unless every gene is in range (a feed-forward row)."""
        n = self.n
        if self.conn.shape != (n, 3) or self.outs.shape != (N_OUT,):
            raise ValueError("genome: conn must be (n, 3) and outs (16,)")
        if ((self.func < 0) | (self.func >= len(FUNCS))).any():
            raise ValueError("genome: gate function code out of range")
        limit = N_IN + np.arange(n)[:, None]
        if ((self.conn < 0) | (self.conn >= limit)).any():
            raise ValueError("genome: a gate reads itself or a later node")
        if ((self.outs < 0) | (self.outs >= N_IN + n)).any():
            raise ValueError("genome: output gene out of range")


def from_gates(gates: Gates, extra: int = 0, rng: np.random.Generator | None = None) -> Genome:
    """The genome of a gate netlist (in its topological order), with `extra` unused gates
    (random genes from `rng`) after it for evolution to grow into."""
    index: dict[int, int] = {CONST0: CONST0_INDEX, CONST1: CONST1_INDEX}
    for i, net in enumerate(gates.a + gates.b):
        index.setdefault(net, i)
    n = len(gates.gates) + extra
    func = np.zeros(n, dtype=np.int64)
    conn = np.zeros((n, 3), dtype=np.int64)
    for j, (kind, ins, out) in enumerate(gates.gates):
        func[j] = FUNCS.index(kind)
        src = [index.get(net, CONST0_INDEX) for net in ins]  # undriven reads as 0
        conn[j, : len(src)] = src
        index[out] = N_IN + j
    rng = rng if rng is not None else np.random.default_rng(0)
    for j in range(len(gates.gates), n):
        func[j] = rng.integers(len(FUNCS))
        conn[j] = rng.integers(N_IN + j, size=3)
    outs = np.array([index.get(net, CONST0_INDEX) for net in gates.o], dtype=np.int64)
    g = Genome(func, conn, outs)
    g.check()
    return g


def to_verilog(genome: Genome, module: str) -> str:
    """Plain gate-level Verilog of the active gates: `module(a[7:0], b[7:0], o[15:0])`,
    one continuous assignment per gate."""
    act = genome.active()

    def name(i: int) -> str:
        if i < 8:
            return f"a[{i}]"
        if i < 16:
            return f"b[{i - 8}]"
        if i < N_IN:
            return "1'b0" if i == CONST0_INDEX else "1'b1"
        return f"g{i - N_IN}"

    used = np.nonzero(act)[0]
    lines = [
        f"module {module}(a, b, o);",
        "  input [7:0] a;",
        "  input [7:0] b;",
        "  output [15:0] o;",
    ]
    if len(used):
        lines.append("  wire " + ", ".join(f"g{j}" for j in used) + ";")
    for j in used:
        k = FUNCS[genome.func[j]]
        pins = dict(zip("ABS", (name(int(i)) for i in genome.conn[j]), strict=True))
        lines.append(f"  assign g{j} = {_EXPR[k].format(**pins)};")
    lines += [f"  assign o[{k}] = {name(int(i))};" for k, i in enumerate(genome.outs)]
    lines += ["endmodule", ""]
    return "\n".join(lines)
