"""The hardware: MAC engines and the whole network in Amaranth, export, verification.

Modules: `mac` (one MAC engine per layer), `net` (the whole network as `hwflow_net`),
`intinfer` (the integer-only reference), `design` and `export` (the export directory),
`vectors` (recorded operands and expected sums), `verify` and `check` (simulation and exact
comparison), `lint` (Verilator lint) and `synth` (yosys synthesis of an export).
"""
