"""Model zoo, built by name: the digits CNN (default), LeNet-5, ResNet-8/20/32, a small VGG.

All are plain float nn.Modules; `hwflow.nn.approximate` turns their Conv2d/Linear layers
into approximate ones. Every multiplication sits in a Conv2d or Linear, and the digits CNN
is shaped for integer inference: conv -> ReLU -> max-pool stacks (every layer after the
first sees non-negative inputs, so unsigned multipliers fit), no batch norm by default
(optional; foldable into the conv since it follows it directly).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from hwflow.errors import ConfigError


def _conv_block(cin: int, cout: int, bn: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return layers


def digits_cnn(num_classes: int = 10, in_channels: int = 1, bn: bool = False) -> nn.Module:
    """8x8 digits: 3 convs (16, 32, 32 channels) with two 2x2 max-pools, one linear."""
    return nn.Sequential(
        *_conv_block(in_channels, 16, bn),
        *_conv_block(16, 32, bn),
        nn.MaxPool2d(2),  # 4x4
        *_conv_block(32, 32, bn),
        nn.MaxPool2d(2),  # 2x2
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, num_classes),
    )


def lenet5(num_classes: int = 10, in_channels: int = 1, bn: bool = False) -> nn.Module:
    """LeNet-5 for 28x28 inputs (ReLU and max-pool, the common modern variant)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),  # 14x14
        nn.Conv2d(6, 16, 5),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),  # 5x5
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(inplace=True),
        nn.Linear(120, 84),
        nn.ReLU(inplace=True),
        nn.Linear(84, num_classes),
    )


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016, CIFAR variant) with a 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: 16/32/64 channels, n blocks per stage."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ConfigError(f"model: ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        blocks: list[nn.Module] = []
        cin = 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.pool(self.layers(x)).flatten(1)
        return self.fc(x)


def vgg_small(num_classes: int = 10, in_channels: int = 3, bn: bool = True) -> nn.Module:
    """A small VGG for 32x32: (64, 64, M, 128, 128, M, 256, 256, M), global pool, linear."""
    layers: list[nn.Module] = []
    cin = in_channels
    for v in (64, 64, "M", 128, 128, "M", 256, 256, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += _conv_block(cin, int(v), bn)
            cin = int(v)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "digits_cnn": digits_cnn,
    "lenet5": lenet5,
    "resnet8": lambda num_classes=10, in_channels=3, bn=True: CifarResNet(
        8, num_classes, in_channels
    ),
    "resnet20": lambda num_classes=10, in_channels=3, bn=True: CifarResNet(
        20, num_classes, in_channels
    ),
    "resnet32": lambda num_classes=10, in_channels=3, bn=True: CifarResNet(
        32, num_classes, in_channels
    ),
    "vgg_small": vgg_small,
}


def build_model(
    name: str, num_classes: int = 10, in_channels: int = 1, bn: bool | None = None
) -> nn.Module:
    """A fresh float model from the registry; ConfigError names the known models."""
    if name not in MODELS:
        raise ConfigError(f"model.name: unknown model {name!r} (known: {', '.join(MODELS)})")
    kwargs = {"num_classes": num_classes, "in_channels": in_channels}
    if bn is not None:
        kwargs["bn"] = bn
    return MODELS[name](**kwargs)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d inside an nn.Sequential into
    that conv (weights scaled per output channel, bias absorbs the shift); the BN becomes
    nn.Identity. For a float model in eval use, before `approximate`. Returns the count.

    After folding, the conv's integer accumulator is followed only by a per-channel
    scale and bias, the simplest integer-inference form (the digits CNN with `bn: true`).
    """
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        children = list(seq.named_children())
        for (_, conv), (bn_name, bn) in zip(children, children[1:], strict=False):
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if bn.running_mean is None or bn.running_var is None:
                continue
            scale = (
                bn.weight / torch.sqrt(bn.running_var + bn.eps)
                if bn.affine
                else (1.0 / torch.sqrt(bn.running_var + bn.eps))
            )
            shift = bn.bias if bn.affine else torch.zeros_like(scale)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            conv.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)
            setattr(seq, bn_name, nn.Identity())
            folded += 1
    return folded
