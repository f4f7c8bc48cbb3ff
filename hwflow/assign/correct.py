"""Corrections that cost no retraining: accumulator bias correction and batch-norm
re-estimation under the approximate multipliers.

Bias correction: a truncating or OR-column multiplier errs mostly one way, so each output
channel's accumulator is off by a nearly constant amount: `sum_k E_k[w_kn]`, with
`E_k[w] = sum_x p_k(x) E[x, w]` the table error E = table - exact averaged over the
activation codes recorded at input position k (sign-magnitude layers: sign(w) E[x, |w|]).
That is exactly the mean, over the recorded rows, of the accumulator error itself, so it
is measured as such on train-split batches. Layer by layer in network order, with
the upstream layers already approximate and corrected: operand histograms recorded under
exact arithmetic (`stats.npz`) mispredict deeper layers' offsets by 30-50 % on the
digits CNN, because the upstream multipliers shift those layers' activations. The
negated mean, rounded, is the channel's integer accumulator offset: the emulation adds it
to the accumulator, integer inference and the RTL add it to the integer bias, so all
three stay bit-exact. It is recorded per layer in assignment.yaml (`acc_offset`).

Batch-norm re-estimation: the running mean and variance of every BatchNorm are measured
afresh with the approximate multipliers in place (train-split batches, a cumulative
average), which absorbs each channel's mean shift and rescales its spread exactly
for the layers BN follows.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from hwflow.errors import AssignmentError

OFFSET_METHOD = "measured-sequential"
OFFSET_BATCHES = 2  # train-split batches the offsets are measured on
BN_BATCHES = 16  # train-split batches for the batch-norm re-estimation


def measure_offsets(model: Any, batches: Sequence[Any], names: Iterable[str]) -> dict:
    """{layer: (out_channels,) int64 offsets} for the named layers of `model` (tables
    applied), set on the model as they are found, layer by layer in network order (one
    forward of the batches together: `hwflow.nn.measure_acc_offsets`)."""
    import torch

    from hwflow.nn import measure_acc_offsets

    found = measure_acc_offsets(model, torch.cat(list(batches)), names)
    return {name: off.numpy() for name, off in found.items()}


def has_batchnorm(model: Any) -> bool:
    from torch import nn

    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def reestimate_bn(model: Any, batches: Iterable[Any]) -> int:
    """Measure every BatchNorm's running statistics afresh over `batches` (inputs), with
    the network as it is (approximate layers in approx mode); returns the BN count.

    Everything else runs in eval mode (no dropout, frozen quantization observers)."""
    import torch
    from torch import nn

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    was_training = model.training
    momenta = [bn.momentum for bn in bns]
    model.eval()
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches
            bn.train()
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
        model.train(was_training)
    return len(bns)


def _as_doc(doc: Any) -> Mapping[str, Any]:
    """An assignment document from an `Assignment` or a document."""
    return doc.to_dict() if hasattr(doc, "to_dict") else doc


def offsets_of(doc: Any, where: str) -> dict[str, np.ndarray]:
    """{layer: offsets} recorded in an assignment (layers' `acc_offset`)."""
    doc = _as_doc(doc)
    out = {}
    for i, item in enumerate(doc.get("layers") or []):
        if not isinstance(item, Mapping) or item.get("acc_offset") is None:
            continue
        off = item["acc_offset"]
        if not isinstance(off, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in off
        ):
            raise AssignmentError(f"{where}: layers[{i}].acc_offset must be a list of integers")
        out[str(item.get("name"))] = np.asarray(off, dtype=np.int64)
    return out


def has_corrections(doc: Any) -> bool:
    """Whether an assignment records corrections (even all-zero offsets)."""
    doc = _as_doc(doc)
    corr = doc.get("corrections")
    if isinstance(corr, Mapping) and corr.get("applied") is False:
        return False  # measured and left out
    return isinstance(corr, Mapping) or bool(offsets_of(doc, "assignment"))


def bn_settings(doc: Any) -> dict[str, Any] | None:
    """The recorded batch-norm re-estimation ({batches, seed}), or None."""
    corr = _as_doc(doc).get("corrections") or {}
    bn = corr.get("bn") if isinstance(corr, Mapping) and corr.get("applied", True) else None
    return dict(bn) if isinstance(bn, Mapping) else None


def apply_corrections(
    run: Any,
    model: Any,
    doc: Any,
    where: str,
    *,
    bn: bool = True,
) -> None:
    """Put an assignment's recorded corrections into `model` (its tables already applied):
    the accumulator offsets, and with `bn` the batch-norm re-estimation it records."""
    from hwflow.nn import set_acc_offsets

    set_acc_offsets(model, offsets_of(doc, where))
    settings = bn_settings(doc) if bn else None
    if settings:
        from hwflow.assign.flow import _stats_batches

        batches = _stats_batches(
            run.data.train,
            int(settings.get("batches", BN_BATCHES)),
            run.config.data.batch_size,
            int(settings.get("seed", 0)),
        )
        reestimate_bn(model, batches)


def record_corrections(
    doc: dict[str, Any],
    run: Any,
    tables: Mapping[str, tuple[np.ndarray, bool]],
    *,
    offset_batches: int = OFFSET_BATCHES,
    bn_batches: int = BN_BATCHES,
    seed: int = 0,
) -> None:
    """Write the corrections for `doc`'s choices ({layer: (table, signed)}) into it:
    `acc_offset` per layer (omitted where all zero) and `corrections` (method, and the
    BN re-estimation when the network has batch norm). The run's model is not changed."""
    from hwflow.assign.flow import DEFAULT_BATCH, _stats_batches
    from hwflow.nn import apply_tables

    model = copy.deepcopy(run.model)
    apply_tables(model, tables)
    batches = _stats_batches(run.data.train, offset_batches, DEFAULT_BATCH, seed)
    offsets = measure_offsets(model, batches, tables)
    for item in doc["layers"]:
        off = offsets.get(item["name"])
        item.pop("acc_offset", None)
        if off is not None and off.any():
            item["acc_offset"] = [int(v) for v in off]
    corr: dict[str, Any] = {"acc_offset": OFFSET_METHOD, "batches": int(offset_batches)}
    corr["seed"] = int(seed)
    if has_batchnorm(model):
        corr["bn"] = {"batches": int(bn_batches), "seed": int(seed)}
    doc["corrections"] = corr
