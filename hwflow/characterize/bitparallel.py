"""The simulation view as a bit-parallel module: each net carries all 65,536 operand pairs.

Why: an event-driven simulator pays per gate evaluation per operand pair, so an
exhaustive run of a gate netlist costs about 0.4 CPU s in Icarus however it is driven.
Here yosys' elaborated, flattened view of the design is mapped to its generic one-bit
gates (`techmap`: `$_AND_`, `$_XOR_`, `$_MUX_`, ...) and written back as one procedural
block of 65,536-bit bitwise operations in topological order: bit `p` of every net is
that net's value for the operand pair `p = 256 a + b`. Icarus evaluates each gate once,
a machine word at a time (continuous assignments of wide vectors would be re-evaluated
per input change and bit by bit: 20x slower in our measurement), and a whole table
takes ~0.1 CPU s.

Four-valued semantics are kept where a table can show them: an undriven net reads Z, an
`x`/`z` constant stays one, two drivers resolve like a Verilog wire (equal bits pass,
unequal bits read X), and the gates are Verilog's bitwise operators, so X and Z reach
the product bits exactly where a gate-level simulation would put them.

A net's working register is reused once its last reader has run (live registers, not
nets, bound the simulator's memory: 16 KB each).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from hwflow.errors import NetlistError

PAIRS = 65536  # every operand pair of an 8x8 multiplier, bit p = pair 256 a + b
A_PLANES = tuple(f"a{i}" for i in range(8))  # operand bit planes, LSB first
B_PLANES = tuple(f"b{i}" for i in range(8))
O_PLANES = tuple(f"o{i}" for i in range(16))

# yosys' one-bit combinational cells (port names as in its simcells library).
GATE_EXPRESSIONS: dict[str, str] = {
    "$_BUF_": "{A}",
    "$_NOT_": "~{A}",
    "$_AND_": "{A} & {B}",
    "$_NAND_": "~({A} & {B})",
    "$_OR_": "{A} | {B}",
    "$_NOR_": "~({A} | {B})",
    "$_XOR_": "{A} ^ {B}",
    "$_XNOR_": "~({A} ^ {B})",
    "$_ANDNOT_": "{A} & ~{B}",
    "$_ORNOT_": "{A} | ~{B}",
    "$_MUX_": "({S} & {B}) | (~{S} & {A})",
    "$_NMUX_": "~(({S} & {B}) | (~{S} & {A}))",
    "$_AOI3_": "~(({A} & {B}) | {C})",
    "$_OAI3_": "~(({A} | {B}) & {C})",
    "$_AOI4_": "~(({A} & {B}) | ({C} & {D}))",
    "$_OAI4_": "~(({A} | {B}) & ({C} | {D}))",
}
_RESOLVE = "({A} & {B}) | (({A} ^ {B}) & {X})"  # a wire with two drivers


def _const(bit: str) -> str:
    value = {"0": "0", "1": "1", "z": "z"}.get(bit, "x")
    return f"{{{PAIRS}{{1'b{value}}}}}"


def view_verilog(
    design: dict[str, Any], top: str, ports: Sequence[str], module: str, where: str
) -> str:
    """The bit-parallel module `module` (ports a0..a7, b0..b7, o0..o15, each PAIRS wide)
    of `top` in a yosys JSON `design` mapped to one-bit gates; `ports` are the design's
    (a, b, o) port names. NetlistError for cells that are not combinational gates or a
    combinational loop, naming `where`."""
    try:
        mod = design["modules"][top]
        pa, pb, po = ports
        port_bits = {k: mod["ports"][p]["bits"] for k, p in (("a", pa), ("b", pb), ("o", po))}
    except (KeyError, ValueError, TypeError):
        raise NetlistError(f"{where}: yosys wrote no module {top} with ports {ports}") from None
    drivers: dict[int, list[str | int]] = defaultdict(list)  # net -> plane names / gate ids
    for k, planes in (("a", A_PLANES), ("b", B_PLANES)):
        for bit, plane in zip(port_bits[k], planes, strict=True):
            if isinstance(bit, int):
                drivers[bit].append(plane)
    gates: list[tuple[str, dict[str, int | str], int]] = []  # (expression, inputs, net)
    for name, cell in mod.get("cells", {}).items():
        kind = cell["type"]
        if kind not in GATE_EXPRESSIONS:
            what = "tri-state buffer" if kind == "$_TBUF_" else "cell"
            raise NetlistError(
                f"{where}: cannot simulate {what} {kind} ({name}) of {top}: hwflow "
                "characterizes combinational multipliers built from logic gates"
            )
        conn = {p: v[0] for p, v in cell["connections"].items()}
        out = conn.pop("Y")
        if isinstance(out, int):
            gates.append((GATE_EXPRESSIONS[kind], conn, out))
            drivers[out].append(len(gates) - 1)
    # A net with several drivers: each driver writes a net of its own, resolved into it.
    fresh = -1  # new net ids: below yosys' (ints >= 0)
    for net, who in list(drivers.items()):
        if len(who) < 2:
            continue
        own = []
        for w in who:
            own.append(fresh)
            drivers[fresh] = [w]
            if isinstance(w, int):
                gates[w] = (gates[w][0], gates[w][1], fresh)
            fresh -= 1
        acc = own[0]
        for i, nxt in enumerate(own[1:], start=2):
            target = net if i == len(own) else fresh
            fresh -= 0 if target == net else 1
            gates.append((_RESOLVE, {"A": acc, "B": nxt, "X": "x"}, target))
            drivers[target] = [len(gates) - 1]
            acc = target
    names: dict[int, str] = {}  # net -> a name for messages, the user's names first
    for name, info in sorted(mod.get("netnames", {}).items(), key=lambda kv: "$" in kv[0]):
        for i, bit in enumerate(info.get("bits", [])):
            if isinstance(bit, int) and bit not in names:
                names[bit] = name if len(info["bits"]) == 1 else f"{name}[{i}]"
    graph = [(list(ins.values()), out) for _, ins, out in gates]
    order = gate_order(graph, where, top, names, " in simulation")
    return _emit(module, gates, order, drivers, port_bits["o"])


def gate_order(
    gates: Sequence[tuple[Sequence[int | str], int]],
    where: str,
    top: str,
    names: Mapping[int, str] | None = None,
    context: str = "",
) -> list[int]:
    """Indices of `gates` ((input nets, output net) each) in topological order, inputs
    first (iterative depth-first search). NetlistError on a loop, naming `where`, `top`
    and, with `names` (net -> name), a net on it, a user's name before yosys' own."""
    driver = {out: i for i, (_, out) in enumerate(gates)}
    state = [0] * len(gates)  # 0 new, 1 on the stack, 2 done
    order: list[int] = []
    for root in range(len(gates)):
        if state[root]:
            continue
        state[root] = 1
        stack = [(root, 0)]
        while stack:
            i, k = stack.pop()
            ins = gates[i][0]
            if k == len(ins):
                state[i] = 2
                order.append(i)
                continue
            stack.append((i, k + 1))
            j = driver.get(ins[k]) if isinstance(ins[k], int) else None
            if j is None or state[j] == 2:
                continue
            if state[j] == 1:  # the stack from j on is the loop
                msg = f"{where}: {top} has a combinational loop{context}"
                if names is not None:
                    start = next(n for n, (h, _) in enumerate(stack) if h == j)
                    nets = [gates[h][1] for h, _ in stack[start:]]
                    named = [names[n] for n in nets if not names.get(n, "$").startswith("$")]
                    msg += f": net {named[0] if named else names.get(ins[k], ins[k])} feeds "
                    msg += "back into itself without a register"
                raise NetlistError(msg)
            state[j] = 1
            stack.append((j, 0))
    return order


def _emit(
    module: str,
    gates: list[tuple[str, dict[str, int | str], int]],
    order: list[int],
    drivers: dict[int, list[str | int]],
    out_bits: Sequence[int | str],
) -> str:
    last_read: dict[int, int] = {}
    for step, g in enumerate(order):
        for net in gates[g][1].values():
            if isinstance(net, int):
                last_read[net] = step
    for bit in out_bits:
        if isinstance(bit, int):
            last_read[bit] = len(order)  # read by the output copies at the end
    reg: dict[int, str] = {}
    free: list[str] = []
    count = 0

    def operand(net: int | str) -> str:
        if not isinstance(net, int):
            return _const(net)
        if net in reg:
            return reg[net]
        src = drivers.get(net)
        if src and isinstance(src[0], str):
            return src[0]  # an operand plane
        return _const("z")  # undriven: reads Z, as a wire would

    body = []
    for step, g in enumerate(order):
        expr, ins, out = gates[g]
        text = expr.format(**{p: operand(n) for p, n in ins.items()})
        for net in set(ins.values()):
            if isinstance(net, int) and net in reg and last_read.get(net) == step:
                free.append(reg.pop(net))
        if out not in last_read:
            continue  # read by nothing (yosys keeps no such gate, resolution might)
        if free:
            name = free.pop()
        else:
            name, count = f"t{count}", count + 1
        reg[out] = name
        body.append(f"    {name} = {text};")
    body += [f"    {o} = {operand(bit)};" for o, bit in zip(O_PLANES, out_bits, strict=True)]
    width = f"[{PAIRS - 1}:0]"
    lines = [
        f"module {module}(",
        f"  input {width} {', '.join(A_PLANES + B_PLANES)},",
        f"  output reg {width} {', '.join(O_PLANES)}",
        ");",
    ]
    if count:
        lines.append(f"  reg {width} {', '.join(f't{i}' for i in range(count))};")
    lines += [
        f"  always @({' or '.join(A_PLANES + B_PLANES)}) begin",
        *body,
        "  end",
        "endmodule",
        "",
    ]
    return "\n".join(lines)
