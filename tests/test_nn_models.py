"""Model zoo: shapes, registry errors, every multiplication becomes approximate."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hwflow.nn as hn
from hwflow.errors import ConfigError
from hwflow.multipliers.table import exact_table
from hwflow.nn.models import MODELS, build_model, fold_batchnorm

SHAPES = {
    "digits_cnn": (1, 8, 8),
    "lenet5": (1, 28, 28),
    "resnet8": (3, 32, 32),
    "resnet20": (3, 32, 32),
    "resnet32": (3, 32, 32),
    "vgg_small": (3, 32, 32),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_forward_and_approximate(name):
    torch.manual_seed(0)
    c, h, w = SHAPES[name]
    model = build_model(name, num_classes=7, in_channels=c)
    x = torch.randn(2, c, h, w)
    assert model(x).shape == (2, 7)
    info = hn.approximate(model, x)
    assert not any(type(m) in (nn.Conv2d, nn.Linear) for m in model.modules())
    assert all(i.ops > 0 and i.fan_in > 0 for i in info)
    hn.calibrate(model, [x])
    hn.set_mode(model, "quant")
    with torch.no_grad():
        y_quant = model.eval()(x)
        assert y_quant.shape == (2, 7)
        # the whole network in approx mode with exact tables is quant mode, bit for bit
        tables = {n: (exact_table(l.signed), l.signed) for n, l in hn.approx_layers(model)}
        hn.apply_tables(model, tables)
        assert torch.equal(model(x), y_quant)


def test_resnet_depths_and_digits_layers():
    def n_convs(name):
        return sum(isinstance(m, nn.Conv2d) for m in build_model(name, in_channels=3).modules())

    # 6n+1 3x3 convs plus 2 projection shortcuts
    assert (n_convs("resnet8"), n_convs("resnet20"), n_convs("resnet32")) == (9, 21, 33)
    digits = build_model("digits_cnn")
    assert [type(m).__name__ for m in digits if isinstance(m, nn.Conv2d | nn.Linear)] == [
        "Conv2d",
        "Conv2d",
        "Conv2d",
        "Linear",
    ]


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model 'resnet7'.*digits_cnn"):
        build_model("resnet7")


def test_fold_batchnorm_preserves_eval_output():
    torch.manual_seed(1)
    model = build_model("digits_cnn", bn=True)
    x = torch.rand(16, 1, 8, 8)
    model.train()
    for _ in range(3):  # non-trivial running statistics
        model(x)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    model.eval()
    before = model(x)
    assert fold_batchnorm(model) == 3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-5)
