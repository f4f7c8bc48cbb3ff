"""Data loaders on tiny fixture files in the real on-disk formats."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hwflow.errors import ConfigError, HwflowError
from hwflow.nn.data import (
    CIFAR_MEAN,
    CIFAR_STD,
    load_data,
    random_crop_flip,
    read_idx,
)


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def make_mnist(root: Path, n_train: int = 40, n_test: int = 10, compress: bool = True) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            root / f"{prefix}-images-idx3-ubyte{suffix}",
            rng.integers(0, 256, (n, 28, 28)),
            compress,
        )
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n), compress)


def make_cifar(root: Path, per_batch: int = 8) -> Path:
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        d = {
            b"data": rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
            b"batch_label": name.encode(),
        }
        (folder / name).write_bytes(pickle.dumps(d))
    return folder


def _py2_str(b: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING: a Python 2 `str`
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def _py2_int(n: int) -> bytes:
    return b"K" + bytes([n]) if n < 256 else b"M" + struct.pack("<H", n)


def py2_cifar_batch(data: np.ndarray, labels: list[int], batch_label: bytes) -> bytes:
    """A batch as the real dataset's files are: cPickle protocol 2 from Python 2 and numpy 1
    (str keys, `numpy.core.multiarray._reconstruct`), written opcode by opcode."""
    s, i = _py2_str, _py2_int
    dtype = b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R("
    dtype += i(3) + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff" + i(0) + b"tb"
    array = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + i(0) + b"\x85"
    array += s(b"b") + b"\x87R(" + i(1) + i(data.shape[0]) + i(data.shape[1]) + b"\x86"
    array += dtype + b"\x89" + s(data.tobytes()) + b"tb"
    names = b"".join(s(f"img_{k}.png".encode()) for k in range(len(labels)))
    return (
        b"\x80\x02}(" + s(b"data") + array
        + s(b"labels") + b"](" + b"".join(i(v) for v in labels) + b"e"
        + s(b"batch_label") + s(batch_label) + s(b"filenames") + b"](" + names + b"eu."
    )  # fmt: skip


def test_cifar_batches_in_the_real_python2_format_load(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    want = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (3, 3072)).astype(np.uint8)
        y = rng.integers(0, 10, 3).tolist()
        (folder / name).write_bytes(py2_cifar_batch(x, y, name.encode()))
        want[name] = (x, y)
    data = load_data("cifar10", tmp_path, val_fraction=0.2)
    x, y = want["test_batch"]
    assert data.test.y.tolist() == y
    expect = (x.reshape(-1, 3, 32, 32) / 255.0 - np.array(CIFAR_MEAN)[:, None, None]) / np.array(
        CIFAR_STD
    )[:, None, None]
    np.testing.assert_allclose(data.test.x.numpy(), expect, rtol=1e-5, atol=1e-5)
    assert len(data.train) + len(data.val) == 15


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class _EvalsCode(_RunsCode):
    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


@pytest.mark.parametrize("payload", [_RunsCode, _EvalsCode])
def test_cifar_batch_that_would_run_code_is_refused_before_it_runs(tmp_path, payload):
    from click.testing import CliRunner

    from hwflow.cli import cli

    folder = make_cifar(tmp_path)
    marker = tmp_path / "PWNED"
    crafted = {b"data": payload(marker), b"labels": [0]}
    (folder / "data_batch_2").write_bytes(pickle.dumps(crafted))
    with pytest.raises(HwflowError, match="data_batch_2 is not a CIFAR-10 python batch$"):
        load_data("cifar10", tmp_path)
    assert not marker.exists()
    config = tmp_path / "c.yaml"
    config.write_text("data: {dataset: cifar10}\nmodel: {name: resnet20}\n")
    out = tmp_path / "run"
    args = ["train", "--config", str(config), "--data-dir", str(tmp_path), "--out", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2
    assert res.output == f"error: {folder / 'data_batch_2'} is not a CIFAR-10 python batch\n"
    assert not marker.exists() and not out.exists()


def make_imagefolder(root: Path, per_class: int = 3) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                img = rng.integers(0, 256, (10, 12, 3)).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")


def test_digits_split_is_fixed_and_in_unit_range():
    a = load_data("digits")
    b = load_data("digits")
    assert len(a.test) == 360
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert torch.equal(a.test.y, b.test.y) and torch.equal(a.val.x, b.val.x)
    assert a.train.x.shape[1:] == (1, 8, 8)
    assert float(a.train.x.min()) == 0.0 and float(a.train.x.max()) == 1.0
    other = load_data("digits", split_seed=1)
    assert not torch.equal(other.test.y, a.test.y)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_idx_files(tmp_path, compress):
    make_mnist(tmp_path, compress=compress)
    data = load_data("mnist", tmp_path, val_fraction=0.25)
    assert (len(data.train), len(data.val), len(data.test)) == (30, 10, 10)
    assert data.train.x.shape[1:] == (1, 28, 28) and data.in_channels == 1
    raw = read_idx(tmp_path / f"t10k-images-idx3-ubyte{'.gz' if compress else ''}")
    np.testing.assert_allclose(data.test.x[:, 0].numpy(), raw / 255.0, atol=0, rtol=1e-6)


def test_mnist_missing_and_corrupt_files(tmp_path):
    with pytest.raises(HwflowError, match="not found"):
        load_data("mnist", tmp_path)
    make_mnist(tmp_path, compress=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(HwflowError, match="train-labels-idx1-ubyte: IDX data holds"):
        load_data("mnist", tmp_path)
    path.write_bytes(b"\x01\x02\x03")
    with pytest.raises(HwflowError, match="bad magic"):
        load_data("mnist", tmp_path)
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8bnot gzip")
    with pytest.raises(HwflowError, match=r"bad\.gz: cannot read IDX"):
        read_idx(tmp_path / "bad.gz")


def test_cifar_batches_normalised_and_augmented(tmp_path):
    folder = make_cifar(tmp_path)
    data = load_data("cifar10", tmp_path, val_fraction=0.25)
    assert (len(data.train), len(data.val), len(data.test)) == (30, 10, 8)
    with open(folder / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"].reshape(-1, 3, 32, 32)
    expected = (raw / 255.0 - np.array(CIFAR_MEAN)[:, None, None]) / np.array(CIFAR_STD)[
        :, None, None
    ]
    np.testing.assert_allclose(data.test.x.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert data.train.augment and not data.val.augment and not data.test.augment
    g = torch.Generator().manual_seed(0)
    x, _ = next(data.train.batches(30, generator=g))
    assert x.shape == (30, 3, 32, 32) and not torch.equal(x, data.train.x)
    x, _ = next(data.train.batches(30, augment=False))
    assert torch.equal(x, data.train.x)  # evaluation never augments
    # the data dir may also point straight at the batches folder
    assert len(load_data("cifar10", folder).test) == 8


def test_cifar_corrupt_batch(tmp_path):
    folder = make_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(HwflowError, match="data_batch_3 is not a CIFAR-10 python batch$"):
        load_data("cifar10", tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(HwflowError, match="data_batch_3 not found"):
        load_data("cifar10", tmp_path)


def test_imagefolder_pngs(tmp_path):
    make_imagefolder(tmp_path)
    data = load_data("imagefolder", tmp_path, image_size=8, val_fraction=0.34)
    assert data.num_classes == 2 and data.in_channels == 3
    assert len(data.train) + len(data.val) == 6 and len(data.test) == 6
    assert data.test.x.shape == (6, 3, 8, 8)
    assert sorted(data.test.y.tolist()) == [0, 0, 0, 1, 1, 1]
    small = load_data("imagefolder", tmp_path, image_size=8, max_samples=2)
    assert sorted(small.test.y.tolist()) == [0, 1]  # a truncated split keeps both classes
    (tmp_path / "test" / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(HwflowError, match="broken.png: cannot read image"):
        load_data("imagefolder", tmp_path, image_size=8)


def test_bad_dataset_arguments(tmp_path):
    with pytest.raises(ConfigError, match="needs --data-dir"):
        load_data("cifar10")
    with pytest.raises(HwflowError, match="data directory not found"):
        load_data("mnist", tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_data("svhn", tmp_path)


def test_random_crop_flip_is_a_shifted_flipped_window():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    g = torch.Generator().manual_seed(3)
    out = random_crop_flip(x, 2, g)
    g = torch.Generator().manual_seed(3)
    oy = torch.randint(0, 5, (2,), generator=g)
    ox = torch.randint(0, 5, (2,), generator=g)
    flip = torch.rand(2, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        win = padded[i, :, oy[i] : oy[i] + 4, ox[i] : ox[i] + 4]
        assert torch.equal(out[i], win.flip(-1) if flip[i] else win)
