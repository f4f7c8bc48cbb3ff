"""Quantized approximate layers, AGN training and table emulation (the network side).

Public entry points: `approximate`, `calibrate`, `set_mode`, `apply_tables`, `trace`
(from `hwflow.nn.layers`), the models in `hwflow.nn.models`, data in `hwflow.nn.data`,
training in `hwflow.nn.train` (configs in `hwflow.nn.train_config`), a finished run
(`load_run`, `load_weights`, evaluation) in `hwflow.nn.run`.
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
    measure_acc_offsets,
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
    "measure_acc_offsets",
    "set_acc_offsets",
    "set_mode",
    "set_observing",
    "trace",
]
