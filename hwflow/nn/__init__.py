"""Quantized approximate layers, AGN training and table emulation (the network side).

Public entry points: `approximate`, `calibrate`, `set_mode`, `apply_tables`, `trace`
(from `hwflow.nn.layers`), the models in `hwflow.nn.models`, data in `hwflow.nn.data`,
training and `load_run` in `hwflow.nn.train`.
"""

from hwflow.nn.layers import (
    ApproxConv2d,
    ApproxLinear,
    LayerInfo,
    LayerTrace,
    apply_tables,
    approx_layers,
    approximate,
    calibrate,
    layer_info,
    set_acc_offsets,
    set_mode,
    set_observing,
    trace,
)

__all__ = [
    "ApproxConv2d",
    "ApproxLinear",
    "LayerInfo",
    "LayerTrace",
    "apply_tables",
    "approx_layers",
    "approximate",
    "calibrate",
    "layer_info",
    "set_acc_offsets",
    "set_mode",
    "set_observing",
    "trace",
]
