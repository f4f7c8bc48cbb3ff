"""Model zoo, built by name: the digits CNN (default), LeNet-5, ResNet-8/20/32, a small VGG;
or a user's own network from a factory (`load_factory`, `model.factory` in a config).

All are plain float nn.Modules; `hwflow.nn.approximate` turns their Conv2d/Linear layers
into approximate ones. Every multiplication sits in a Conv2d or Linear, and the digits CNN
is shaped for integer inference: conv -> ReLU -> max-pool stacks (every layer after the
first sees non-negative inputs, so unsigned multipliers fit), no batch norm by default
(optional; foldable into the conv since it follows it directly).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hwflow import io
from hwflow.errors import ConfigError, HwflowError


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


# -- a user's own network ------------------------------------------------------------------
def _factory_parts(spec: str) -> tuple[str, str]:
    source, sep, attr = spec.rpartition(":")
    if not sep or not source or not attr:
        raise ConfigError(
            f"model.factory: expected FILE.py:CALLABLE or MODULE:CALLABLE, got {spec!r}"
        )
    return source, attr


def is_factory_file(source: str) -> bool:
    """A factory source names a .py file (else an importable module)."""
    return source.endswith(".py") or "/" in source


def _import_file(path: Path) -> Any:
    """Import a user's .py file as a module of its own (named by its path's hash, so two
    files of the same name never collide; registered so its classes pickle and copy)."""
    name = "hwflow_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"model.factory: {path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's code: any error is theirs, in one line
        del sys.modules[name]
        raise ConfigError(
            f"model.factory: {path}: importing it failed: {type(exc).__name__}: {exc}"
        ) from None
    return module


def load_factory(spec: str) -> Callable[..., Any]:
    """The callable `spec` names: `path/to/file.py:name` or `package.module:name`.

    Relative file paths are taken from the working directory (configs resolve them
    against the config file first, `hwflow.nn.train.load_train_config`)."""
    source, attr = _factory_parts(spec)
    if is_factory_file(source):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.factory: {path}: file not found")
        module = _import_file(path.resolve())
    else:
        try:
            module = importlib.import_module(source)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"model.factory: module {source!r} not found ({exc}); name a .py file or an "
                "importable module"
            ) from None
        except (Exception, SystemExit) as exc:  # sys.exit() in user code must not end hwflow
            raise ConfigError(
                f"model.factory: importing {source!r} failed: {type(exc).__name__}: {exc}"
            ) from None
    if not hasattr(module, attr):
        raise ConfigError(f"model.factory: {source} has no {attr!r}")
    fn = getattr(module, attr)
    if not callable(fn):
        raise ConfigError(f"model.factory: {source}:{attr} is not callable (a {type(fn).__name__})")
    return fn


def build_from_factory(spec: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Call the factory with `kwargs`; the result must be an nn.Module holding at least one
    nn.Conv2d or nn.Linear (the layers that become approximate)."""
    fn = load_factory(spec)
    try:
        model = fn(**dict(kwargs or {}))
    except (Exception, SystemExit) as exc:
        raise ConfigError(
            f"model.factory: {spec}(**{dict(kwargs or {})}) failed: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model.factory: {spec} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    check_approximable(model, f"model.factory: {spec}")
    return model


def check_approximable(model: nn.Module, where: str) -> None:
    """ConfigError unless the network has a multiplication hwflow can approximate."""
    if not any(isinstance(m, nn.Conv2d | nn.Linear) for m in model.modules()):
        raise ConfigError(
            f"{where}: the network has no nn.Conv2d or nn.Linear layer, so nothing to "
            "approximate (other multiplications, e.g. torch.matmul in forward, stay float)"
        )


def _approx_internal(model: nn.Module) -> set[str]:
    """State-dict keys hwflow adds to approximate layers (noise scale, operand signedness,
    activation observer): not part of the user's float weights."""
    from hwflow.nn.layers import approx_layers

    own = set(model.state_dict())
    internal = set()
    for name, _ in approx_layers(model):
        prefix = f"{name}." if name else ""
        internal |= {
            k
            for k in own
            if k.startswith(prefix)
            and k[len(prefix) :].split(".")[0] in ("sigma", "signed_code", "act_obs")
        }
    return internal


def load_float_weights(model: nn.Module, path: str | Path) -> None:
    """Load `torch.save(model.state_dict())` of the user's trained float network into
    `model` (its approximate form, or the plain one). Untrusted files load with
    weights_only=True. Keys and shapes must match exactly; the error names the first
    key that does not."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model.weights: {path}: file not found")
    try:
        state = io.load_torch(path)  # the one checkpoint reader: weights_only, one-line errors
    except HwflowError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise ConfigError(
            f"model.weights: {path}: not a torch.save'd state_dict ({reason})"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ConfigError(
            f"model.weights: {path}: expected a state_dict (torch.save(model.state_dict())), "
            f"got a {type(state).__name__}"
        )
    internal = _approx_internal(model)
    expected = {k: v for k, v in model.state_dict().items() if k not in internal}
    for key, want in expected.items():
        if key not in state:
            raise ConfigError(f"model.weights: {path}: missing key {key!r} the network has")
        if tuple(state[key].shape) != tuple(want.shape):
            raise ConfigError(
                f"model.weights: {path}: key {key!r} has shape {tuple(state[key].shape)}, "
                f"the network's is {tuple(want.shape)}"
            )
    extra = [k for k in state if k not in expected]
    if extra:
        raise ConfigError(
            f"model.weights: {path}: unexpected key {extra[0]!r} (not in the network)"
        )
    model.load_state_dict(dict(state), strict=False)


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
