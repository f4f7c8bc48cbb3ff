"""Evolution of approximate multipliers (CGP) for one layer's recorded operands.

Modules: `genome` (the CGP genome), `problem` (the operands and error model a candidate is
scored on), `evaluator` and `compiled` (bit-parallel scoring, numpy and compiled C++),
`search` (the (1 + lambda) strategy, resumable). Evolved netlists go to `hwflow
characterize` like any user netlist.
"""
