"""Where the networks run: `--device cpu|cuda` (default: cuda when available).

The multiplier tables run on the CPU's compiled kernel where the tensors live on the CPU,
and on the tensor's own device through the exact torch path otherwise
(`hwflow.nn.kernels`); everything else is plain torch on the chosen device.
"""

from __future__ import annotations

import torch

from hwflow.errors import HwflowError

DEVICES = ("cpu", "cuda")


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """The device to run on: `name` ("cpu", "cuda", "cuda:N"), or cuda when available."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in DEVICES:
        raise HwflowError(f"--device: expected one of {', '.join(DEVICES)}, got {name!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HwflowError(
                "--device cuda: no CUDA device is available to torch here; use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise HwflowError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
    return dev
