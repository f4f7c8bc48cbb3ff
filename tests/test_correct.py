"""Free corrections: the accumulator offsets' arithmetic and batch-norm re-estimation
(through the emulation, integer inference, export and verify: tests/test_rtl_export.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwflow.assign.correct import measure_offsets, offsets_of, reestimate_bn
from hwflow.errors import AssignmentError
from hwflow.multipliers.table import exact_table


def _approx_net(table: np.ndarray) -> tuple[torch.nn.Module, torch.Tensor]:
    from hwflow.nn import apply_tables, approximate, calibrate

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(9, 6), torch.nn.ReLU(), torch.nn.Linear(6, 4))
    x = torch.rand(64, 9)
    approximate(model, x[:8])
    calibrate(model, [x])
    apply_tables(model, {"0": (table, False), "2": (table, False)})
    return model, x


def test_offsets_cancel_each_channels_mean_error_layer_by_layer():
    """Each channel's offset is minus its rounded mean accumulator error on the batches,
    the second layer's measured with the first one already corrected."""
    from hwflow.nn import trace

    table = exact_table(False).astype(np.int64)
    table = table + (np.arange(256)[:, None] % 7) * (np.arange(256)[None, :] % 3)  # biased
    model, x = _approx_net(table)
    offsets = measure_offsets(model, [x[:32], x[32:]], ["0", "2"])
    assert set(offsets) == {"0", "2"} and all(v.dtype == np.int64 for v in offsets.values())
    traced = trace(model, x)
    for name, off in offsets.items():
        err = (traced[name].acc - traced[name].acc_exact).double().mean(dim=1).reshape(-1)
        assert off.any() and np.array_equal(off, -np.rint(err.numpy()).astype(np.int64))
        assert np.array_equal(model.get_submodule(name).acc_offset.numpy(), off)
    exact, _ = _approx_net(exact_table(False))
    assert not any(v.any() for v in measure_offsets(exact, [x], ["0", "2"]).values())


def test_a_constant_error_is_removed_exactly():
    """Two designs whose tables differ by a constant on the operands a layer sees give the
    same corrected network, bit for bit (why homogeneous u_vct_k11_n4 and u_vct_k11_n5,
    which differ by 512 except where x bit 3 and w bit 7 are both set, had one corrected
    accuracy in the studies)."""
    table = exact_table(False).astype(np.int64)
    table = table + (np.arange(256)[:, None] % 7) * (np.arange(256)[None, :] % 3)
    outputs = []
    for shift in (0, 512):
        model, x = _approx_net(table + shift)
        measure_offsets(model, [x], ["0", "2"])
        with torch.no_grad():
            outputs.append(model(x))
    assert torch.equal(outputs[0], outputs[1])


def test_offsets_in_a_document_are_checked():
    assert offsets_of({"layers": [{"name": "a", "acc_offset": [1, -2]}]}, "f")["a"].tolist() == [
        1,
        -2,
    ]
    with pytest.raises(AssignmentError, match=r"f: layers\[0\].acc_offset"):
        offsets_of({"layers": [{"name": "a", "acc_offset": [1.5]}]}, "f")


def test_batchnorm_reestimated_under_the_network_as_it_is():
    bn = torch.nn.BatchNorm1d(3)
    model = torch.nn.Sequential(torch.nn.Identity(), bn).eval()
    x = torch.randn(64, 3) * 2 + 5
    assert reestimate_bn(model, [x[:32], x[32:]]) == 1
    assert torch.allclose(bn.running_mean, x.mean(0), atol=1e-5)
    # a cumulative average over the batches, not a momentum-weighted one
    assert torch.allclose(bn.running_var, (x[:32].var(0) + x[32:].var(0)) / 2, rtol=1e-5)
    assert bn.momentum == 0.1 and not bn.training


def _sequential_offsets(model: torch.nn.Module, batches: list, names: list[str]) -> dict:
    """The reference the one-forward measurement must equal: each layer traced in turn
    over every batch, its offset set before the next layer is traced."""
    from hwflow.nn import approx_layers, trace

    out = {}
    for name, layer in approx_layers(model):
        if name in names:
            traces = [trace(model, x, only=[name])[name] for x in batches]
            total = sum((t.acc - t.acc_exact).double().sum(dim=1) for t in traces)
            rows = sum(t.acc.shape[1] for t in traces)
            out[name] = (-torch.round(total / rows)).to(torch.int64).reshape(-1)
            layer.set_acc_offset(out[name])
    return out


@pytest.mark.parametrize("slice_rows", [1 << 16, 5])
def test_one_forward_finds_the_offsets_of_tracing_layer_by_layer(slice_rows, monkeypatch):
    """Grouped and plain convs, a signed first layer, pooling, a linear layer, biased
    tables: the histogram measurement in one forward equals the sequential trace, offset
    for offset (also when the operand rows are converted in slices of 5)."""
    import copy

    import hwflow.nn.layers as layers
    from hwflow.nn import apply_tables, approximate, calibrate

    torch.manual_seed(3)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 6, 3, groups=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(6 * 2 * 2, 5),
    )  # fmt: skip
    x = torch.randn(12, 2, 6, 6)  # signed input: layer 0 is signed, the others unsigned
    approximate(model, x[:4])
    calibrate(model, [x])
    bias = (np.arange(256)[:, None] % 5) * (np.arange(256)[None, :] % 3)
    tables = {"0": (exact_table(True) + bias, True)}
    tables |= {n: (exact_table(False) - 2 * bias, False) for n in ("2", "6")}
    apply_tables(model, tables)
    reference = copy.deepcopy(model)
    batches = [x[:5], x[5:]]
    want = _sequential_offsets(reference, batches, ["0", "2", "6"])
    monkeypatch.setattr(layers, "_PROBE_ROWS", slice_rows)
    model.train()
    got = measure_offsets(model, batches, ["0", "2", "6"])
    assert model.training  # its mode restored
    model.eval()
    assert set(got) == set(want) and all(want[n].any() for n in want)
    for name, off in got.items():
        assert np.array_equal(off, want[name].numpy()), name
        assert np.array_equal(model.get_submodule(name).acc_offset.numpy(), off)
    with torch.no_grad():
        assert torch.equal(model(x), reference.eval()(x))  # the corrected networks are one
    assert all(model.get_submodule(n)._offset_probe is None for n in got)


def test_a_layer_left_in_float_mode_is_named():
    from hwflow.errors import HwflowError
    from hwflow.nn import measure_acc_offsets, set_mode

    model, x = _approx_net(exact_table(False))
    set_mode(model, "float")
    with pytest.raises(HwflowError, match="0, 2 did not run quantized"):
        measure_acc_offsets(model, x, ["0", "2"])
