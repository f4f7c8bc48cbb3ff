"""Characterization of 8x8 multipliers: exhaustive cocotb simulation, yosys gate costs,
switching-energy estimate (`hwflow characterize`).

Modules: `netlist` (syntax, top and port detection), `synth` (gate counts, area, depth,
gate netlist), `energy` (bit-parallel switching-activity energy), `simulate` (batched
cocotb + Icarus runs), `pipeline` (netlists or built-in generators -> library entries).
Import from the submodules; this package file stays light (no Amaranth, no cocotb).
"""
