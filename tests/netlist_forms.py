"""Gate netlists written the way published libraries ship them (tests and bench only).

`gate_netlist_forms` turns a synthesized `Gates` netlist into EvoApprox8b-style
structural Verilog: standard cells in a separate file, the top wiring them either
through one wide vector (`wire [2031:0] N; ... N[17]`, as EvoApprox8b's gate-level files
do) or through scalar wires. All forms compute exactly what `gates` computes.
"""

from __future__ import annotations

from hwflow.characterize.synth import CONST0, CONST1, Gates

CELL_EXPR = {
    "AND": "A & B", "NAND": "~(A & B)", "OR": "A | B", "NOR": "~(A | B)", "XOR": "A ^ B",
    "XNOR": "~(A ^ B)", "ANDNOT": "A & ~B", "ORNOT": "A | ~B", "MUX": "S ? B : A",
    "NOT": "~A", "BUF": "A",
}  # fmt: skip
CELL_PINS = {"MUX": ("A", "B", "S"), "NOT": ("A",), "BUF": ("A",)}
VECTOR_WIDTH = 2032  # EvoApprox8b declares N[2031:0] whatever the circuit uses


def cells_verilog() -> str:
    """One module per gate type: PDK_<TYPE>(inputs..., Y)."""
    out = []
    for kind, expr in CELL_EXPR.items():
        pins = CELL_PINS.get(kind, ("A", "B"))
        out.append(
            f"module PDK_{kind}({', '.join(pins)}, Y);\n"
            + "".join(f"  input {p};\n" for p in pins)
            + f"  output Y;\n  assign Y = {expr};\nendmodule\n"
        )
    return "\n".join(out)


def gate_netlist_forms(gates: Gates, name: str, vector: bool = True) -> str:
    """The top module `name` (ports A, B, O) instantiating PDK_* cells."""
    index: dict[int, int] = {}

    def net(n: int) -> str:
        if n == CONST0:
            return "1'b0"
        if n == CONST1:
            return "1'b1"
        i = index.setdefault(n, len(index))
        return f"N[{i}]" if vector else f"N{i}"

    body = [f"  assign {net(n)} = A[{i}];" for i, n in enumerate(gates.a) if n >= 0]
    body += [f"  assign {net(n)} = B[{i}];" for i, n in enumerate(gates.b) if n >= 0]
    for j, (kind, ins, out) in enumerate(gates.gates):
        pins = CELL_PINS.get(kind, ("A", "B"))
        conn = ", ".join(f".{p}({net(x)})" for p, x in zip(pins, ins, strict=True))
        body.append(f"  PDK_{kind} g{j} ({conn}, .Y({net(out)}));")
    body += [f"  assign O[{i}] = {net(n)};" for i, n in enumerate(gates.o)]
    if vector:
        wires = [f"  wire [{max(VECTOR_WIDTH, len(index)) - 1}:0] N;"]
    else:
        wires = [f"  wire N{i};" for i in range(len(index))]
    head = [
        f"module {name}(A, B, O);",
        "  input [7:0] A;",
        "  input [7:0] B;",
        "  output [15:0] O;",
    ]
    return "\n".join([*head, *wires, *body, "endmodule", ""])
