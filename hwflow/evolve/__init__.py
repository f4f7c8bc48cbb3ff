"""CGP evolution of multipliers for the operands a layer records (`hwflow evolve`).

Modules: `genome` (the gate row and its Verilog), `problem` (a layer's operands and error
model as integer arrays), `evaluator` (bit-parallel scoring of a child against its
parent; `compiled` is the same in C++), `search` (the (1 + lambda) strategy, checkpoints),
`flow` (the per-layer driver: executor, characterize, provenance).
"""
