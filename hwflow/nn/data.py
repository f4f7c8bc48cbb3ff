"""Datasets as in-memory tensors with seeded splits; nothing is downloaded.

- `digits` (default): scikit-learn's bundled `load_digits` (1,797 8x8 images), pixel
  values / 16 so inputs lie in [0, 1] (non-negative: the first layer can be unsigned).
  Fixed seeded split: test 360 images (20 %), validation `val_fraction` of the rest.
- `mnist`: IDX files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
  `t10k-...`) in `data_dir` (or `data_dir/MNIST/raw`); pixels / 255 in [0, 1].
- `fashion_mnist`: Zalando's Fashion-MNIST, the same IDX layout (60,000 + 10,000 28x28
  images, 10 clothing classes); `data_dir` defaults to where Debian's
  `dataset-fashion-mnist` package installs it (`FASHION_MNIST_DIR`); training
  augmentation = random crop (pad 2) + horizontal flip (`data.augment: false` turns it off).
- `cifar10`: the python pickle batches (`data_batch_1..5`, `test_batch`) in `data_dir` or
  `data_dir/cifar-10-batches-py`; per-channel mean/std normalisation; training
  augmentation = random crop (pad 4) + horizontal flip.
- `imagefolder`: `data_dir/{train,test}[,val]/<class>/<image>` read with Pillow, resized
  to `image_size`, ImageNet mean/std normalisation, crop + flip augmentation.
Validation sets are carved from the training set with the split seed when the dataset
has none. Missing or corrupt files raise HwflowError naming the file.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hwflow.errors import ConfigError, HwflowError

DIGITS_TEST = 360
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".webp"}
# Debian's `dataset-fashion-mnist` (installed by `make setup`) puts the gzipped IDX files here.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
FASHION_MNIST_PAD = 2  # crop padding of its training augmentation (28x28 images)
DEFAULT_DIRS = {"fashion_mnist": FASHION_MNIST_DIR}
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "imagefolder")


@dataclass
class Split:
    """Images (N, C, H, W) float32, already normalised; labels (N,) int64."""

    x: Tensor
    y: Tensor
    augment: bool = False  # random crop (pad) + flip when batching for training
    pad: int = 4
    # where `batches` delivers (None: where x lives, the CPU); the split itself stays put
    device: torch.device | None = None

    def __len__(self) -> int:
        return len(self.y)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        max_batches: int | None = None,
        augment: bool | None = None,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Mini-batches; shuffling and augmentation draw only from `generator`.

        `augment`: None follows the split's setting (training augmentation)."""
        augment = self.augment if augment is None else augment
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for i, start in enumerate(range(0, n, batch_size)):
            if max_batches is not None and i >= max_batches:
                return
            idx = order[start : start + batch_size]
            x = self.x[idx]
            if augment:
                x = random_crop_flip(x, self.pad, generator)
            yield self.on_device(x), self.on_device(self.y[idx])

    def on_device(self, t: Tensor) -> Tensor:
        """`t` moved to the split's delivery device (unchanged when none is set)."""
        return t if self.device is None else t.to(self.device, non_blocking=True)

    def num_batches(self, batch_size: int, max_batches: int | None = None) -> int:
        n = -(-len(self) // batch_size)
        return n if max_batches is None else min(n, max_batches)


@dataclass
class Data:
    train: Split
    val: Split
    test: Split
    num_classes: int
    in_channels: int
    class_names: tuple[str, ...] | None = None  # label i's name, where the data set has them

    def to(self, device: torch.device | str | None) -> Data:
        """Deliver every split's batches on `device` (the images stay in host memory)."""
        dev = None if device is None else torch.device(device)
        for split in (self.train, self.val, self.test):
            split.device = dev
        return self

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise HwflowError(f"unknown split {name!r} (train, val, test)")
        return getattr(self, name)


def random_crop_flip(x: Tensor, pad: int, generator: torch.Generator | None) -> Tensor:
    """Per-sample random crop of the zero-padded image and horizontal flip (vectorised)."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = oy[:, None] + torch.arange(h)  # (n, h)
    cols = ox[:, None] + torch.arange(w)  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


def _normalise(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1], then per-channel (x - mean) / std."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float() / 255.0
    m = torch.tensor(mean).reshape(1, -1, 1, 1)
    s = torch.tensor(std).reshape(1, -1, 1, 1)
    return (t - m) / s


def _split_off(n: int, n_held: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (kept, held-out) index arrays."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def _with_val(
    x: Tensor, y: Tensor, val_fraction: float, seed: int, augment: bool
) -> tuple[Split, Split]:
    keep, val = _split_off(len(y), int(round(val_fraction * len(y))), seed)
    return Split(x[keep], y[keep], augment=augment), Split(x[val], y[val])


def _limit(split: Split, max_samples: int | None) -> Split:
    """Evenly spaced samples (class-sorted folders keep every class)."""
    if max_samples is None or len(split) <= max_samples:
        return split
    idx = torch.arange(max_samples) * len(split) // max_samples
    return Split(split.x[idx], split.y[idx], split.augment, split.pad)


# -- digits ----------------------------------------------------------------------------
def load_digits_data(split_seed: int = 0, val_fraction: float = 0.15) -> Data:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    rest, test = _split_off(len(y), DIGITS_TEST, split_seed)
    train, val = _with_val(x[rest], y[rest], val_fraction, split_seed + 1, augment=False)
    return Data(train, val, Split(x[test], y[test]), 10, 1, tuple(str(i) for i in range(10)))


# -- MNIST IDX -------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzip-compressed) as a numpy array."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise HwflowError(f"{path}: cannot read IDX file: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise HwflowError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise HwflowError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims)) if dims else 0
    if len(raw) - header != count:
        raise HwflowError(
            f"{path}: IDX data holds {len(raw) - header} bytes, header says {count} (corrupt?)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_file(root: Path, stems: list[str], what: str) -> Path:
    for base in (root, root / "MNIST" / "raw", root / "cifar-10-batches-py"):
        for stem in stems:
            for cand in (base / stem, base / f"{stem}.gz"):
                if cand.is_file():
                    return cand
    raise HwflowError(f"{root}: {what} not found (looked for {', '.join(stems)}[.gz])")


def load_mnist_data(
    data_dir: Path,
    split_seed: int = 0,
    val_fraction: float = 0.1,
    class_names: tuple[str, ...] = tuple(str(i) for i in range(10)),
    augment_pad: int | None = None,
) -> Data:
    """MNIST-layout IDX files (MNIST itself, Fashion-MNIST with its `class_names`).

    `augment_pad`: training augmentation by random crop (this padding) + horizontal flip
    (clothes, not digits: a flipped digit is another symbol)."""

    def pair(prefix: str) -> tuple[Tensor, Tensor]:
        img_path = _find_file(
            data_dir, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"], "images"
        )
        lbl_path = _find_file(
            data_dir, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"], "labels"
        )
        images, labels = read_idx(img_path), read_idx(lbl_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise HwflowError(
                f"{img_path}: expected (N, H, W) images matching {lbl_path}'s N labels, "
                f"got {images.shape} and {labels.shape}"
            )
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        return x, torch.from_numpy(labels.astype(np.int64))

    x_train, y_train = pair("train")
    x_test, y_test = pair("t10k")
    augment = augment_pad is not None
    train, val = _with_val(x_train, y_train, val_fraction, split_seed, augment=augment)
    train.pad = augment_pad if augment_pad is not None else train.pad
    bad = [int(v) for v in (y_train.max(), y_test.max()) if v >= len(class_names)]
    if bad:
        raise HwflowError(f"{data_dir}: label {bad[0]} out of range for {len(class_names)} classes")
    return Data(train, val, Split(x_test, y_test), 10, 1, class_names)


# -- CIFAR-10 python batches ---------------------------------------------------------------
class _CifarUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR-10 batch holds: dicts, lists, bytes/str, ints and numpy
    arrays. The standard unpickler would call any function a crafted file names (code
    runs before a format check could look at the result); there is no maintained
    restricted loader for this format, so this is the stdlib's documented way."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),  # arrays pickled by numpy < 2 (the dataset)
        ("numpy._core.multiarray", "_reconstruct"),  # ... and by numpy >= 2
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR-10 batch: uint8 images (N, 3, 32, 32) and labels (N,)."""
    not_cifar = HwflowError(f"{path} is not a CIFAR-10 python batch")
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise HwflowError(f"{path}: cannot read ({exc.strerror})") from None
    except Exception:  # any malformed pickle: the unpickler raises many kinds
        raise not_cifar from None
    try:
        data, labels = d[b"data"], np.asarray(d[b"labels"], dtype=np.int64)
    except (KeyError, TypeError, ValueError, IndexError):
        raise not_cifar from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise not_cifar
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise HwflowError(f"{path}: expected data (N, 3072) and N labels, got {data.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10_data(data_dir: Path, split_seed: int = 0, val_fraction: float = 0.1) -> Data:
    names = [f"data_batch_{i}" for i in range(1, 6)]
    parts = [read_cifar_batch(_find_file(data_dir, [n], n)) for n in names]
    x_train = _normalise(np.concatenate([p[0] for p in parts]), CIFAR_MEAN, CIFAR_STD)
    y_train = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    xt, yt = read_cifar_batch(_find_file(data_dir, ["test_batch"], "test_batch"))
    train, val = _with_val(x_train, y_train, val_fraction, split_seed, augment=True)
    test = Split(_normalise(xt, CIFAR_MEAN, CIFAR_STD), torch.from_numpy(yt))
    return Data(train, val, test, 10, 3, CIFAR10_CLASSES)


# -- ImageFolder ---------------------------------------------------------------------------
def _read_folder(root: Path, classes: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    images, labels = [], []
    for label, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as im:
                    im = im.convert("RGB").resize((size, size), Image.BILINEAR)
                    images.append(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
            except (OSError, UnidentifiedImageError) as exc:
                raise HwflowError(f"{path}: cannot read image ({exc})") from None
            labels.append(label)
    if not images:
        raise HwflowError(f"{root}: no images found (expected {root}/<class>/<image>.png)")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def load_imagefolder_data(
    data_dir: Path, image_size: int, split_seed: int = 0, val_fraction: float = 0.1
) -> Data:
    train_dir, test_dir = data_dir / "train", data_dir / "test"
    for d in (train_dir, test_dir):
        if not d.is_dir():
            raise HwflowError(f"{d}: folder not found (expected train/ and test/ in {data_dir})")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise HwflowError(f"{train_dir}: no class folders")
    pad = max(1, image_size // 8)

    def split(root: Path, augment: bool) -> Split:
        x, y = _read_folder(root, classes, image_size)
        return Split(_normalise(x, IMAGENET_MEAN, IMAGENET_STD), torch.from_numpy(y), augment, pad)

    train = split(train_dir, augment=True)
    if (data_dir / "val").is_dir():
        val = split(data_dir / "val", augment=False)
    else:
        train, val = _with_val(train.x, train.y, val_fraction, split_seed, augment=True)
        train.pad = pad
    return Data(train, val, split(test_dir, False), len(classes), 3, tuple(classes))


def load_data(
    dataset: str,
    data_dir: str | Path | None = None,
    *,
    split_seed: int = 0,
    val_fraction: float = 0.15,
    augment: bool = True,
    image_size: int = 64,
    max_samples: int | None = None,
) -> Data:
    """Load `dataset` with its seeded splits; `max_samples` truncates each split (smoke runs).

    `data_dir` None: the data set's default directory (`DEFAULT_DIRS`), if it has one."""
    if dataset == "digits":
        data = load_digits_data(split_seed, val_fraction)
    else:
        if data_dir is None and dataset in DEFAULT_DIRS:
            data_dir = DEFAULT_DIRS[dataset]
            if not Path(data_dir).is_dir():
                raise HwflowError(
                    f"{data_dir}: {dataset} not installed (`apt-get install "
                    "dataset-fashion-mnist`, or `make setup`); or pass --data-dir"
                )
        if data_dir is None:
            raise ConfigError(f"data.data_dir: dataset {dataset!r} needs --data-dir (or data_dir)")
        root = Path(data_dir)
        if not root.is_dir():
            raise HwflowError(f"{root}: data directory not found")
        if dataset == "mnist":
            data = load_mnist_data(root, split_seed, val_fraction)
        elif dataset == "fashion_mnist":
            data = load_mnist_data(
                root, split_seed, val_fraction, FASHION_MNIST_CLASSES, FASHION_MNIST_PAD
            )
        elif dataset == "cifar10":
            data = load_cifar10_data(root, split_seed, val_fraction)
        elif dataset == "imagefolder":
            data = load_imagefolder_data(root, image_size, split_seed, val_fraction)
        else:
            raise ConfigError(f"data.dataset: unknown dataset {dataset!r} ({', '.join(DATASETS)})")
    if not augment:
        data.train.augment = False
    data.train = _limit(data.train, max_samples)
    data.val = _limit(data.val, max_samples)
    data.test = _limit(data.test, max_samples)
    return data
