"""Integer-only inference of residual networks: per-channel fixed point against exact
arithmetic, ResNets (batch norm, additions, average pooling) against the fake-quant
emulation, and one clear error for what has no integer form."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import hwflow.nn as hn
from hwflow.errors import HwflowError
from hwflow.nn.models import CifarResNet
from hwflow.rtl import intinfer
from hwflow.rtl.intinfer import integer_inference, requantize


def _quantized(model: nn.Module, x: torch.Tensor, per_channel: bool = False) -> nn.Module:
    hn.approximate(model, x[:2], per_channel=per_channel)
    hn.calibrate(model, [x])
    hn.set_mode(model, "quant")
    return model.eval()


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _resnet8(per_channel: bool = False) -> nn.Module:
    """ResNet-8 on 8x8 images with batch norms that are not the identity: random
    statistics, one negative scale and one dead channel (weight 0)."""
    torch.manual_seed(0)
    model = CifarResNet(8, num_classes=10, in_channels=1)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        c = bn.num_features
        bn.running_mean.copy_(torch.randn(c) * 0.3)
        bn.running_var.copy_(torch.rand(c) + 0.5)
        bn.weight.data.copy_(torch.rand(c) + 0.5)
        bn.bias.data.copy_(torch.randn(c) * 0.1)
    model.layers[0].bn1.weight.data[0] = -0.8
    model.layers[0].bn2.weight.data[1] = 0.0
    return _quantized(model, _images(), per_channel)


@settings(max_examples=200, deadline=None)
@given(
    v=st.lists(st.integers(-(2**24), 2**24), min_size=3, max_size=3),
    m=st.lists(
        st.one_of(st.floats(1e-9, 1e3), st.floats(-1e3, -1e-9), st.just(0.0)),
        min_size=3,
        max_size=3,
    ),
    bias=st.lists(st.floats(-1e4, 1e4), min_size=3, max_size=3),
)
def test_rescale_is_round_half_up_within_its_fixed_point_precision(v, m, bias):
    """Per channel: |result - (v*m + bias)| is the half of round-half-up plus M0's
    relative error (2^-15) and the bias's 2^-shift, whatever the sign or size of m."""
    out = intinfer.rescale(
        torch.tensor(v).reshape(1, 3), torch.tensor(m, dtype=torch.float64), torch.tensor(bias)
    )
    for vc, mc, bc, got in zip(v, m, bias, out[0].tolist(), strict=True):
        exact = Fraction(vc) * Fraction(mc) + Fraction(bc)
        slack = Fraction(1, 2) + abs(Fraction(vc) * Fraction(mc)) / 2**14 + Fraction(1, 2**20)
        assert abs(got - exact) <= slack + abs(Fraction(vc)) * Fraction(1, 2**40)


def test_rescale_equals_the_rtl_requantization_for_one_scale():
    """hwflow_net's requantization (one M0 and shift) and the per-channel rescale are
    the same arithmetic: equal codes on every accumulator value tried."""
    t = torch.arange(-70000, 70000, 7, dtype=torch.int64).reshape(1, 1, -1)
    for m in (0.0123, 0.5, 1.0, 3.7e-4, 17.25):
        m0, shift = intinfer.fixed_point(m)
        per_channel = intinfer.rescale(t, torch.tensor([m], dtype=torch.float64)) + 3
        assert torch.equal(requantize(t, m0, shift, 3, False), per_channel.clamp(0, 255))


@pytest.mark.parametrize("per_channel", [False, True])
def test_resnet_integer_inference_follows_the_emulation(per_channel):
    """A ResNet-8 (batch norm with a negative and a zero scale, identity and projection
    shortcuts, global average pooling) runs integer-only: its first layer's sums are the
    emulation's exactly, its dequantized logits stay close to the fake-quant ones and
    their classes agree."""
    model = _resnet8(per_channel)
    x = _images(128, seed=1)
    result = integer_inference(model, x)
    traced = hn.trace(model, x)
    assert torch.equal(result.tensors["conv1.acc"], traced["conv1"].acc)
    assert torch.equal(result.tensors["input"], result.tensors["conv1.input"])
    # every integer tensor is named by the module that made it; batch norm has none (the
    # next rescaling applies it), nor a ReLU after it (the clamp at the zero point)
    keys = set(result.tensors)
    assert {"layers.1.shortcut.0.t", "layers.2.conv2.input", "pool.pool", "fc.t"} <= keys
    assert len([k for k in keys if k.endswith(".add")]) == 3  # one per block
    assert not [k for k in keys if k.endswith(".bn")]
    assert all(v.dtype == torch.int64 for v in result.tensors.values())
    with torch.no_grad():
        fake = model(x)
    logits = result.logits.double() * result.logit_scale
    spread = float(fake.abs().max())
    assert (
        float((logits - fake.double()).abs().max()) < 0.03 * spread
    )  # measured 0.9 %; a wrong sign or scale: 7-37 %
    assert (result.classes == fake.argmax(1)).float().mean() >= 0.95


def test_sequential_network_keeps_its_tensor_names():
    """A plain stack: tensors named as hwflow_net's reference reads them."""
    model = _quantized(
        nn.Sequential(
            nn.Conv2d(1, 4, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(36, 10),
        ),
        _images(),
    )
    result = integer_inference(model, _images(8))
    want = {"input", "0.input", "0.acc", "0.t", "1.relu", "2.pool", "4.input", "4.acc", "4.t"}
    assert set(result.tensors) == want
    assert torch.equal(result.logits, result.tensors["4.t"])


class _FlattenFirst(nn.Module):
    """An MLP on the image: the image is flattened before its codes exist."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.flat = nn.Flatten()
        self.fc1, self.fc2 = nn.Linear(64, 12), nn.Linear(12, 10)

    def forward(self, x):
        if self.how == "module":
            x = self.flat(x)
        elif self.how == "function":
            x = torch.flatten(x, 1)
        else:
            x = x.view(x.size(0), -1)
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.parametrize("how", ["module", "function", "view"])
def test_the_image_may_be_flattened_before_the_first_layer(how):
    model = _quantized(_FlattenFirst(how), _images())
    x = _images(16)
    result = integer_inference(model, x)
    # the image's codes keep its layout (what hwflow_net's input buffer holds)
    assert result.tensors["input"].shape == (16, 1, 8, 8)
    assert torch.equal(result.tensors["input"].flatten(1), result.tensors["fc1.input"])
    assert torch.equal(result.tensors["fc1.acc"][0], hn.trace(model, x)["fc1"].acc[0])


class _Sigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(72, 10)

    def forward(self, x):
        return self.fc(torch.sigmoid(self.conv(x)).flatten(1))


class _Branchy(_Sigmoid):
    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:  # data-dependent control flow: no graph
            y = -y
        return self.fc(y.flatten(1))


class _NormFirst(_Sigmoid):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        return self.fc(self.conv(self.bn(x)).flatten(1))


class _PlusOne(_Sigmoid):
    def forward(self, x):
        return self.fc((self.conv(x) + 1.0).flatten(1))


@pytest.mark.parametrize(
    "net, expect",
    [
        (_Sigmoid, "unsupported operation sigmoid"),
        (_PlusOne, r"add: an operand that is not a tensor \(1.0\)"),
        (_Branchy, "torch.fx cannot trace the network"),
        (_NormFirst, "must go straight into an approximate layer"),
    ],
)
def test_networks_without_an_integer_form_are_one_clear_error(net, expect):
    model = _quantized(net(), _images())
    with pytest.raises(HwflowError, match=expect) as err:
        integer_inference(model, _images(4))
    assert "\n" not in str(err.value)


def test_the_network_rtl_still_needs_one_weight_scale():
    """Per-channel weight scales run integer-only, but hwflow_net's stages take one."""
    model = _quantized(
        nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 10)),
        _images(),
        per_channel=True,
    )
    assert integer_inference(model, _images(4)).logits.shape == (4, 10)
    with pytest.raises(HwflowError, match="per-tensor weight scales"):
        intinfer.requant_stages(model)


def test_export_accuracy_says_why_there_is_no_integer_pipeline():
    """The manifest's accuracy: the integer-only figure beside the emulation's where the
    network has one, else None and the reason (the unsupported operation)."""
    from types import SimpleNamespace

    from hwflow.nn.data import Split
    from hwflow.rtl.export import split_accuracy

    x = _images(32, seed=2)
    split = Split(x, torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(0)))
    config = SimpleNamespace(data=SimpleNamespace(eval_batch_size=16))
    plain = split_accuracy(SimpleNamespace(model=_resnet8(), config=config), split)
    assert plain["accuracy"]["integer_only"] is not None and "integer_skipped" not in plain
    sigmoid = split_accuracy(SimpleNamespace(model=_quantized(_Sigmoid(), x), config=config), split)
    assert sigmoid["accuracy"]["integer_only"] is None
    assert sigmoid["accuracy_top5"]["integer_only"] is None
    assert "unsupported operation sigmoid" in sigmoid["integer_skipped"]


def test_batchnorm_and_relu_fold_into_the_next_layers_codes():
    """conv -> batch norm -> ReLU -> conv: the second layer's codes come from the first's
    sums in one rescaling (batch norm's scale and bias in it, ReLU as the clamp at the
    zero point, which is above the code range's floor here), and equal the codes the
    emulation feeds that layer but for rare rounding ties."""
    torch.manual_seed(3)
    bn = nn.BatchNorm2d(4)
    bn.running_mean.copy_(torch.randn(4) * 0.3)
    bn.running_var.copy_(torch.rand(4) + 0.5)
    bn.weight.data.copy_(torch.tensor([1.0, -0.7, 0.4, 1.3]))
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), bn, nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(64, 10)
    )
    x = _images()
    _quantized(model, x)
    obs = model[3].act_obs
    obs.lo.fill_(-0.5 * float(obs.hi))  # a range below 0: the zero point is above 0
    zp = model[3]._act_qparams()[1]
    assert zp > 0
    result = integer_inference(model, x)
    codes = result.tensors["3.input"]
    assert int(codes.min()) == zp  # the ReLU: nothing below the code of 0
    emulated = hn.trace(model, x)["3"].x_int
    rows, _ = model[3]._operand_rows((codes - zp).double())
    assert (rows.round().long() + zp == emulated).float().mean() >= 0.99
    assert not [k for k in result.tensors if k.startswith(("1.", "2."))]  # folded
