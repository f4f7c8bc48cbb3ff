"""Fashion-MNIST: the loader on tiny generated IDX files, its default
directory, the examples, thread choice, top-5 accuracy; the real data set (installed by
`make setup` from Debian's dataset-fashion-mnist) only in a slow test on a small subset."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_data import make_mnist  # tests/ is on sys.path under pytest
from torch import nn

from hwflow.cli import cli
from hwflow.errors import HwflowError
from hwflow.nn import data as data_mod
from hwflow.nn.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, Split, load_data
from hwflow.nn.run import accuracies
from hwflow.nn.train import auto_threads, load_train_config, train

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_fashion_mnist_reads_idx_files_with_its_class_names(tmp_path):
    make_mnist(tmp_path, n_train=40, n_test=10)
    data = load_data("fashion_mnist", tmp_path, val_fraction=0.25)
    assert (len(data.train), len(data.val), len(data.test)) == (30, 10, 10)
    assert data.class_names == FASHION_MNIST_CLASSES and data.class_names[9] == "Ankle boot"
    assert data.train.augment and data.train.pad == 2 and not data.val.augment
    assert load_data("mnist", tmp_path).class_names == tuple("0123456789")
    assert not load_data("fashion_mnist", tmp_path, augment=False).train.augment


def test_fashion_mnist_default_directory(tmp_path, monkeypatch):
    make_mnist(tmp_path / "fm", n_train=20, n_test=10)
    monkeypatch.setitem(data_mod.DEFAULT_DIRS, "fashion_mnist", str(tmp_path / "fm"))
    assert len(load_data("fashion_mnist").test) == 10
    monkeypatch.setitem(data_mod.DEFAULT_DIRS, "fashion_mnist", str(tmp_path / "none"))
    with pytest.raises(HwflowError, match="dataset-fashion-mnist"):
        load_data("fashion_mnist")


def _smoke(example: str, data_dir: Path, out: Path) -> dict:
    cfg = load_train_config(EXAMPLES / example)
    short = {"epochs": 1, "max_steps": 2}
    cfg = replace(
        cfg,
        data=replace(cfg.data, data_dir=str(data_dir), batch_size=8, eval_batch_size=16),
        float=replace(cfg.float, **short),
        qat=replace(cfg.qat, calibration_batches=1, **short),
        agn=replace(cfg.agn, **short),
    )
    return train(cfg, out, quiet=True, device="cpu")


@pytest.mark.parametrize(
    ("example", "layers"),
    [("fashion_lenet5.yaml", 5), ("fashion_resnet8.yaml", 10), ("fashion_resnet20.yaml", 22)],
)
def test_fashion_examples_smoke(tmp_path, example, layers):
    make_mnist(tmp_path / "fm", n_train=24, n_test=8)
    summary = _smoke(example, tmp_path / "fm", tmp_path / "run")
    assert len(summary["layers"]) == layers
    assert summary["classes"] == list(FASHION_MNIST_CLASSES)
    assert summary["threads"] >= 1 and summary["device"] == "cpu"


def test_small_models_train_on_one_thread_and_the_probe_leaves_no_trace():
    import hwflow.nn as hn
    from hwflow.nn.models import build_model

    torch.manual_seed(0)
    small = build_model("lenet5", 10, 1)
    hn.approximate(small, torch.zeros(2, 1, 28, 28))
    assert auto_threads(small, torch.zeros(8, 1, 28, 28), torch.device("cpu")) == 1
    assert auto_threads(small, torch.zeros(8, 1, 28, 28), torch.device("cuda")) == 1
    big = build_model("resnet8", 10, 1)
    hn.approximate(big, torch.zeros(2, 1, 28, 28))
    before = {k: v.clone() for k, v in big.state_dict().items()}
    x = torch.randn(4, 1, 28, 28)
    rng = torch.get_rng_state()
    threads = torch.get_num_threads()
    chosen = auto_threads(big, x, torch.device("cpu"))
    assert chosen >= 1  # which count wins is the machine's load: measured, not asserted
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in big.state_dict().items())


def test_train_threads_option_overrides_the_config(tmp_path):
    make_mnist(tmp_path / "fm", n_train=16, n_test=8)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data: {dataset: fashion_mnist, batch_size: 8}\nmodel: {name: lenet5}\n"
        "float: {epochs: 1, max_steps: 1}\nqat: {epochs: 0, calibration_batches: 1}\n"
        "agn: {epochs: 0}\n"
    )
    args = ["train", "--config", str(cfg), "--data-dir", str(tmp_path / "fm"), "--quiet"]
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "r"), "--threads", "2"])
    assert res.exit_code == 0, res.output
    import json

    assert json.loads((tmp_path / "r" / "summary.json").read_text())["threads"] == 2
    res = CliRunner().invoke(cli, ["train", "--help"])
    assert "--threads" in res.output and "--device" in res.output


class _FixedLogits(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x[:, 0].long()]


def test_top1_and_top5_accuracy_count_exactly():
    # image i's logits rank class (i mod 7) at position i mod 7: top-1 hits for rank 0,
    # top-5 for ranks 0..4
    n, classes = 14, 7
    logits = torch.stack(
        [torch.roll(torch.arange(classes, 0, -1).float(), shifts=i % 7) for i in range(n)]
    )
    y = torch.tensor([0] * n)
    ranks = [int((logits[i] > logits[i, 0]).sum()) for i in range(n)]
    split = Split(torch.arange(n).float().reshape(n, 1), y)
    acc = accuracies(_FixedLogits(logits), split, batch_size=4)
    assert acc[1] == sum(r == 0 for r in ranks) / n
    assert acc[5] == sum(r < 5 for r in ranks) / n
    two = Split(torch.arange(2).float().reshape(2, 1), torch.tensor([1, 1]))
    assert accuracies(_FixedLogits(torch.tensor([[1.0, 0.0], [0.0, 1.0]])), two)[5] == 1.0


@pytest.mark.slow
def test_real_fashion_mnist_small_subset(tmp_path):
    root = Path(FASHION_MNIST_DIR)
    assert root.is_dir(), f"{root} missing: `make setup` installs dataset-fashion-mnist"
    full = load_data("fashion_mnist", val_fraction=0.1)
    assert (len(full.train), len(full.val), len(full.test)) == (54000, 6000, 10000)
    assert full.test.y.bincount().tolist() == [1000] * 10
    cfg = load_train_config(EXAMPLES / "fashion_lenet5.yaml")
    cfg = replace(
        cfg,
        data=replace(cfg.data, max_samples=2000, batch_size=32, augment=False),
        float=replace(cfg.float, epochs=3),
        qat=replace(cfg.qat, epochs=1, calibration_batches=2),
        agn=replace(cfg.agn, epochs=1),
    )
    summary = train(cfg, tmp_path / "run", quiet=True, device="cpu")
    # 2,000 training images, 3 epochs: far above chance (10 %), below the full run's 90 %
    assert summary["accuracy"]["float"] > 0.6
    assert summary["accuracy_top5"]["quant"] > 0.9
