"""Bit-exact emulation of a matrix product through an 8x8 multiplier's table.

`acc[m, n] = sum_k table[x[m, k] & 0xFF, w[k, n] & 0xFF]`; for unsigned multipliers with
sign-magnitude weights (`sign_magnitude=True`)
`acc[m, n] = sum_k sign(w[k, n]) * table[x[m, k] & 0xFF, |w[k, n]|]`, with sign(0) = 0:
a zero weight contributes nothing whatever table[x, 0] holds (the equation of
docs/concepts/operands.md).
First table index = activation, never transposed.

Algorithm (chosen by measurement, see bench/kernels.py): the weights are folded into a
per-weight table `T[k, a, n]` = the contribution of activation code `a` at weight w[k, n],
so the product becomes `acc[m, n] = sum_k T[k, x[m, k], n]`: one row read per (m, k).
A compiled loop (`_table_kernel.cpp`, built just in time with torch.utils.cpp_extension,
cached) reads T in int16 where the values fit (int32 otherwise) and accumulates in int32
vector registers (int64 when K * max|T| could overflow int32). Without a compiler the
same T feeds `embedding_bag` in float blocks small enough that every partial sum stays
an exact integer. Both give identical integers. `prepare()` keeps T for fixed weights.

Measured (bench/kernels.py, one thread, CPU time; ratio to a float32 matmul of the same
shape): compiled 1.2x / 2.3x / 2.3x and embedding_bag 4.3x / 10.8x / 3.0x for
(M, K, N) = (131072, 144, 16) / (8192, 576, 64) / (23040, 144, 32); T takes 512 bytes per
weight in int16. Training keeps T per layer and rewrites only the entries of weights whose
codes a step changed (`TrainingTables`). Summing table rows in float32 without K blocks is
wrong past 2^24; an exact matmul plus a low-rank error term is exact only for tables whose
error has exactly low integer rank, so it was not kept.

Operands are addressed as `codes[rows[m] + cols[k]]`, so convolutions (`table_conv2d`,
`approx_conv2d`) read the zero-point-padded input image in place instead of im2col rows;
`approx_conv2d`'s backward is torch's own convolution backward (the straight-through
gradients). With the changes in `TrainingTables` and the widening of int16 rows, the
ResNet-8/20 retraining step went from 5.9x / 6.6x to 1.7x the float step
(bench/train_step.py --approx, one thread).

Devices: the compiled kernel runs on CPU tensors. Weights on another device (CUDA) take
the torch path on that device: T is built there, and activations, index tensors and sums
stay there (no copy to the CPU); `backend="torch"` takes the same path on the CPU.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hwflow.multipliers.table import operand_values
from hwflow.native import build_extension

log = logging.getLogger(__name__)

BACKENDS = ("auto", "compiled", "torch")
# Float sums of integers are exact while every partial sum stays within 2^mantissa.
_F32_EXACT = 1 << 24
_F64_EXACT = 1 << 53
_INT16 = (-(1 << 15), (1 << 15) - 1)
_INT32 = (-(1 << 31), (1 << 31) - 1)
# The kernel's tile widths (output columns per register block).
_TILE_WIDTHS = (64, 32, 16)
# T is built in K chunks of at most this many bytes, so huge layers stay in memory.
_CHUNK_BYTES = 64 << 20
# A prepared T up to this size is kept between calls; larger ones are rebuilt per call.
_KEEP_BYTES = 512 << 20
_KERNEL_SOURCE = Path(__file__).with_name("_table_kernel.cpp")


# -- validation ----------------------------------------------------------------------------
def _as_table(table: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Validate a (256, 256) integer table; return it as a contiguous int32 tensor."""
    t = table if isinstance(table, torch.Tensor) else torch.as_tensor(np.asarray(table))
    if tuple(t.shape) != (256, 256):
        raise ValueError(f"table: expected shape (256, 256), got {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"table: expected an integer table, got dtype {t.dtype}")
    t = t.detach()  # on its own device: the torch path runs wherever the operands live
    if t.dtype != torch.int32:
        t64 = t.to(torch.int64)
        if int(t64.min()) < _INT32[0] or int(t64.max()) > _INT32[1]:
            raise ValueError("table: values must fit int32")
        t = t64.to(torch.int32)
    return t.contiguous()


def _check_tensor(name: str, v: torch.Tensor, shape: str, allow_float: bool = False) -> None:
    if not isinstance(v, torch.Tensor):
        raise ValueError(f"{name}: expected a torch tensor, got {type(v).__name__}")
    if v.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D tensor {shape}, got shape {tuple(v.shape)}")
    if v.is_complex() or v.dtype == torch.bool or (v.is_floating_point() and not allow_float):
        raise ValueError(f"{name}: expected an integer tensor, got dtype {v.dtype}")


def _check_range(name: str, vmin: float, vmax: float, lo: int, hi: int) -> None:
    if vmin < lo or vmax > hi:
        got = f"[{vmin:.0f}, {vmax:.0f}]"
        raise ValueError(f"{name}: operand values must lie in [{lo}, {hi}], got {got}")


_CODE_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
_FLOAT_CODE_DTYPES = (torch.float32, torch.float64)


def _activation_codes(x: torch.Tensor, ops, allow_float: bool = False) -> torch.Tensor:
    """x & 0xFF as contiguous uint8 after checking x (M, K) holds values in [-128, 255].

    Floats (allowed for the autograd path) are rounded half to even first. With the
    compiled `ops` the codes are on the CPU; without, on x's own device."""
    _check_tensor("x", x, "(M, K)", allow_float)
    x = x.detach()
    if ops is not None:
        x = x.cpu()  # the compiled kernel reads host memory
    lo, hi = -128, 255
    if ops is not None and x.dtype in _CODE_DTYPES + _FLOAT_CODE_DTYPES:
        x = x.contiguous()
        codes = torch.empty(x.shape, dtype=torch.uint8)
        bad = ops.to_codes(x, codes, lo, hi)  # one fused pass
    else:
        v = x.round() if x.is_floating_point() else x
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise ValueError("x: operand values must be finite (found NaN or infinity)")
        vmin, vmax = (float(t) for t in torch.aminmax(v)) if v.numel() else (0.0, 0.0)
        _check_range("x", vmin, vmax, lo, hi)
        # Integer -> uint8 conversion wraps modulo 256, i.e. takes v & 0xFF.
        codes = (v.to(torch.int16) if v.is_floating_point() else v).to(torch.uint8).contiguous()
        bad = 0
    if bad:  # rare: describe the problem with a second pass
        v = x.round() if x.is_floating_point() else x
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError("x: operand values must be finite (found NaN or infinity)")
        vmin, vmax = (float(t) for t in torch.aminmax(v))
        _check_range("x", vmin, vmax, lo, hi)
        raise ValueError(f"x: {bad} operand values lie outside [{lo}, {hi}]")
    return codes


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


# -- the compiled kernel ---------------------------------------------------------------------
_build_lock = threading.Lock()
_build_state: dict[str, object] = {}


def compiled_kernel():
    """The compiled ops (`table_accumulate`, `to_codes`), built on first use; None if they
    cannot be built (logged once, with the reason). HWFLOW_KERNEL=torch disables them."""
    with _build_lock:
        if "op" not in _build_state:
            _build_state["op"] = build_extension(
                _KERNEL_SOURCE,
                "hwflow_table_kernel",
                "table kernel",
                log,
                flags=("-fopenmp",),
                ops="hwflow_table_kernel",
            )
        return _build_state["op"]


# -- the per-weight table ----------------------------------------------------------------------
# The weight-side preparation works on small (K, N) arrays in numpy: single-threaded, so
# none of its many small steps waits on an intra-op thread pool (measured 2x faster on a
# busy 2-core machine than the same steps in torch).
def _weight_codes(w: torch.Tensor, sign_magnitude: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(codes the multiplier sees as its second operand, signs or None), both (K, N) int64,
    after checking the weight values."""
    _check_tensor("w", w, "(K, N)")
    w64 = np.asarray(w.detach().cpu()).astype(np.int64)
    if w64.size:
        _check_range("w", int(w64.min()), int(w64.max()), -255 if sign_magnitude else -128, 255)
    if sign_magnitude:
        return np.abs(w64), np.sign(w64)
    return w64 & 0xFF, None


def _weight_codes_torch(
    w: torch.Tensor, sign_magnitude: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`_weight_codes` in torch on w's own device (the torch path off the CPU)."""
    _check_tensor("w", w, "(K, N)")
    w64 = w.detach().to(torch.int64)
    if w64.numel():
        wmin, wmax = (int(v) for v in torch.aminmax(w64))
        _check_range("w", wmin, wmax, -255 if sign_magnitude else -128, 255)
    if sign_magnitude:
        return w64.abs(), w64.sign()
    return w64 & 0xFF, None


def _column_extremes(table: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per weight code (table column): the (min, max) product over all activations."""
    t = np.asarray(table.cpu()).astype(np.int64)
    return t.min(axis=0), t.max(axis=0)


def _value_range(table: torch.Tensor, codes, signs, extremes=None):
    """Exact (min, max) over all entries of T, from per-column extremes of the table
    (`extremes`: `_column_extremes(table)` if already known).

    `codes`, `signs`: numpy arrays (CPU table) or tensors on the table's device."""
    if isinstance(codes, np.ndarray):
        if codes.size == 0:
            return 0, 0
        col_lo, col_hi = _column_extremes(table) if extremes is None else extremes
        lo, hi = col_lo[codes], col_hi[codes]
        if signs is not None:
            lo, hi = (
                np.where(signs > 0, lo, np.where(signs < 0, -hi, 0)),
                np.where(signs > 0, hi, np.where(signs < 0, -lo, 0)),
            )
        return int(lo.min()), int(hi.max())
    if codes.numel() == 0:
        return 0, 0
    t = table.to(torch.int64)
    lo, hi = t.amin(0)[codes], t.amax(0)[codes]
    if signs is not None:
        zero = torch.zeros((), dtype=torch.int64, device=t.device)
        lo, hi = (
            torch.where(signs > 0, lo, torch.where(signs < 0, -hi, zero)),
            torch.where(signs > 0, hi, torch.where(signs < 0, -lo, zero)),
        )
    return int(lo.min()), int(hi.max())


def _blocking(m: int, tiles: int) -> tuple[int, int]:
    """(rows per parallel task, bytes of T per K block) for the compiled loop.

    Each T line fetched into L2 serves about rows / 256 lookups, so tasks take as many
    rows as keeps every thread equally busy, up to 8,192 (measured, one thread: K=576 N=64 ran
    2x faster with 8,192-row tasks than with 2,048; M=131072 K=144 N=16 ran 1.5x slower
    with 65,536 than with 4,096); K blocks of 128-256 KB of T measured best.
    """
    threads = max(1, torch.get_num_threads())
    row_blocks = max(1, -(-m // 8192))
    # Tasks (row blocks x column tiles) in a multiple of the threads, so none idles.
    while (row_blocks * tiles) % threads:
        row_blocks += 1
    return max(256, -(-m // row_blocks)), 256 << 10


def _tile_width(n: int) -> int:
    """Widest tile whose column padding is at most 25 % above the least padding."""
    padded = {nb: -(-n // nb) * nb for nb in _TILE_WIDTHS}
    least = min(padded.values())
    return next(nb for nb in _TILE_WIDTHS if padded[nb] * 4 <= least * 5)


def _gather(
    table_t: torch.Tensor, codes: torch.Tensor, signs: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """T laid out (K, N, 256): T[k, n, a] = sign * table[a, code[k, n]]."""
    g = table_t.to(dtype)[codes]
    return g * signs.to(dtype).unsqueeze(-1) if signs is not None else g


def _compiled_dtypes(k: int, tmin: int, tmax: int) -> tuple[torch.dtype, torch.dtype, int]:
    """(accumulator dtype, T dtype, row group) of the compiled kernel for T values in
    [tmin, tmax] (within int32) summed over k rows."""
    max_abs = max(-tmin, tmax)
    # Exact in int32 while no partial sum can leave int32.
    out_dtype = torch.int32 if k * max_abs <= _INT32[1] else torch.int64
    # int16 T halves the bytes read; int64 accumulators (K > 65,538) pair with int32.
    small = _INT16[0] <= tmin and tmax <= _INT16[1] and out_dtype == torch.int32
    # Rows of int16 T the kernel may sum in int16 before widening: exact while
    # group * (every T value) stays within int16.
    bound = max(max_abs, 1)
    group = next((g for g in (4, 2) if small and g * bound <= _INT16[1]), 1)
    return out_dtype, (torch.int16 if small else torch.int32), group


@dataclass(frozen=True)
class _Chunk:
    """T for rows k0:k1 of the weights, in the layout its backend reads."""

    k0: int
    k1: int
    data: torch.Tensor


class PreparedWeights:
    """Weights folded with a table into the per-weight table T, reusable across calls.

    `prepare(w, table, sign_magnitude)` once, then `.matmul(x)` per batch: inference with
    fixed weights does not rebuild T. Immutable after construction, so thread-safe.
    """

    def __init__(
        self,
        w: torch.Tensor,
        table: np.ndarray | torch.Tensor,
        sign_magnitude: bool = False,
        *,
        backend: str = "auto",
    ) -> None:
        _check_backend(backend)
        _check_tensor("w", w, "(K, N)")
        self.device = w.device
        on_cpu = self.device.type == "cpu"
        if backend == "compiled" and not on_cpu:
            raise RuntimeError(
                f"table kernel: the compiled backend needs CPU tensors, not {w.device}"
            )
        op = compiled_kernel() if backend in ("auto", "compiled") and on_cpu else None
        if backend == "compiled" and op is None:
            raise RuntimeError("table kernel: the compiled backend is unavailable (see the log)")
        self._source = table  # what `_patch` checks it is given again
        self._source_version = getattr(table, "_version", None)
        self._extremes: tuple[np.ndarray, np.ndarray] | None = None  # for `_patch`
        table = _as_table(table).to(self.device)
        if op is not None:  # numpy weight preparation (measured faster, see above)
            codes, signs = _weight_codes(w, sign_magnitude)
        else:  # torch on the weights' own device
            codes, signs = _weight_codes_torch(w, sign_magnitude)
        self.k, self.n = codes.shape
        self.sign_magnitude = sign_magnitude
        tmin, tmax = _value_range(table, codes, signs)
        max_abs = max(-tmin, tmax)
        fits32 = _INT32[0] <= tmin and tmax <= _INT32[1]
        if op is not None and fits32:
            self.backend = "compiled"
            self.out_dtype, self._tdtype, self._group = _compiled_dtypes(self.k, tmin, tmax)
            self._nb = _tile_width(max(self.n, 1))
        else:
            # Exact in int32 while no partial sum can leave int32.
            self.out_dtype = torch.int32 if self.k * max_abs <= _INT32[1] else torch.int64
            # Also where sign-magnitude negation of -2^31 leaves int32: only int64 holds T.
            self.backend = "torch"
            # float32 unless its exact blocks would be tiny (huge table values).
            f32_block = _F32_EXACT // max(max_abs, 1)
            self._fdtype = torch.float32 if f32_block >= min(self.k, 32) else torch.float64
            self._fblock = (
                f32_block if self._fdtype == torch.float32 else _F64_EXACT // max(max_abs, 1)
            )
            if isinstance(codes, np.ndarray):  # a CPU table beyond int32 (rare)
                codes = torch.from_numpy(codes)
                signs = None if signs is None else torch.from_numpy(signs)
        self._op = op
        self._table_t = table.t().contiguous()
        self._codes, self._signs = self._padded(codes, signs)
        self._ranges = self._chunk_ranges()
        # Keep T when it fits the budget (the point of preparing); a larger T is rebuilt
        # chunk by chunk in each matmul, so peak memory stays at one chunk.
        self._chunks = (
            [self._chunk(k0, k1) for k0, k1 in self._ranges]
            if self.table_bytes <= _KEEP_BYTES
            else None
        )

    @property
    def table_bytes(self) -> int:
        """Size of the whole per-weight table T."""
        return sum(k1 - k0 for k0, k1 in self._ranges) * 256 * self._row_width() * self._itemsize()

    @property
    def nbytes(self) -> int:
        """Memory held between calls by T (0 when T is rebuilt per call)."""
        return self.table_bytes if self._chunks is not None else 0

    def _row_width(self) -> int:
        return self._codes.shape[1]

    def _itemsize(self) -> int:
        return (self._tdtype if self.backend == "compiled" else self._fdtype).itemsize

    def _padded(self, codes, signs):
        """Pad the columns to whole kernel tiles: padded columns get code 0 and sign 0, so
        they hold zeros; they are computed, then dropped."""
        if self.backend != "compiled" or self.n == 0:
            return codes, signs
        pad = -(-self.n // self._nb) * self._nb - self.n
        if pad:
            codes = np.pad(codes, ((0, 0), (0, pad)))
            signs = np.pad(
                signs if signs is not None else np.ones_like(codes[:, : self.n]), ((0, 0), (0, pad))
            )
        return codes, signs

    def _chunk_ranges(self) -> list[tuple[int, int]]:
        if self.k == 0 or self.n == 0:
            return []
        step = max(1, _CHUNK_BYTES // (256 * self._row_width() * self._itemsize()))
        if self.backend == "torch":
            step = min(step, self._fblock)  # float partial sums stay exact
        return [(k0, min(self.k, k0 + step)) for k0 in range(0, self.k, step)]

    def _chunk(self, k0: int, k1: int) -> _Chunk:
        """T for weight rows k0:k1, in the layout the backend reads."""
        if self.backend != "compiled":  # torch tensors on the weights' device
            g = _gather(
                self._table_t,
                self._codes[k0:k1],
                None if self._signs is None else self._signs[k0:k1],
                torch.int64,
            )
            data = g.transpose(1, 2).reshape((k1 - k0) * 256, self.n).to(self._fdtype)
            return _Chunk(k0, k1, data.contiguous())
        codes = torch.from_numpy(np.ascontiguousarray(self._codes[k0:k1]))
        signs = (
            None
            if self._signs is None
            else torch.from_numpy(np.ascontiguousarray(self._signs[k0:k1]))
        )
        if self.backend == "compiled":
            nb = self._nb
            # (NT, kc, 256, NB): one tile's rows contiguous per k.
            data = torch.empty(self._row_width() // nb, k1 - k0, 256, nb, dtype=self._tdtype)
            empty = torch.empty(0, dtype=torch.int64)
            self._op.build_tiles(self._table_t, codes, empty if signs is None else signs, data)
        return _Chunk(k0, k1, data)

    def _patch(self, w: torch.Tensor, table, sign_magnitude: bool) -> bool:
        """Update T in place to weights w where their codes changed; False (nothing
        changed) where that is not possible: another table or shape, T not kept, the torch
        backend, or new weights whose values need other dtypes."""
        same = (
            self.backend == "compiled"
            and self._chunks is not None
            and isinstance(table, torch.Tensor)  # in-place edits show in its _version
            and table is self._source
            and getattr(table, "_version", None) == self._source_version
            and sign_magnitude == self.sign_magnitude
            and tuple(w.shape) == (self.k, self.n)
        )
        if not same:
            return False
        codes, signs = _weight_codes(w, sign_magnitude)
        if self._extremes is None:
            self._extremes = _column_extremes(self._table_t.t())
        tmin, tmax = _value_range(self._table_t.t(), codes, signs, self._extremes)
        if _compiled_dtypes(self.k, tmin, tmax) != (self.out_dtype, self._tdtype, self._group):
            return False
        codes, signs = self._padded(codes, signs)
        diff = codes != self._codes
        if signs is not None:
            diff |= signs != self._signs
        ks, ns = np.nonzero(diff)
        self._codes, self._signs = codes, signs
        if 4 * len(ks) > diff.size:  # most weights moved: a full rebuild is cheaper
            self._chunks = [self._chunk(k0, k1) for k0, k1 in self._ranges]
            return True
        rows = self._table_t[torch.from_numpy(codes[ks, ns])]  # (changes, 256)
        if signs is not None:
            rows = rows * torch.from_numpy(signs[ks, ns]).to(rows.dtype)[:, None]
        nt, j = torch.from_numpy(ns // self._nb), torch.from_numpy(ns % self._nb)
        kt = torch.from_numpy(ks)
        for c in self._chunks:
            sel = (kt >= c.k0) & (kt < c.k1)
            c.data[nt[sel], kt[sel] - c.k0, :, j[sel]] = rows[sel].to(self._tdtype)
        return True

    def _iter_chunks(self):
        if self._chunks is not None:
            yield from self._chunks
        else:
            for k0, k1 in self._ranges:
                yield self._chunk(k0, k1)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """Exact accumulators (M, N) for integer activation values x (M, K) in [-128, 255]."""
        return self._matmul(x, allow_float=False)

    def _matmul(self, x: torch.Tensor, allow_float: bool) -> torch.Tensor:
        if x.device != self.device:
            raise ValueError(f"x is on {x.device} but the weights were prepared on {self.device}")
        ops = self._op if self.backend == "compiled" else None
        xb = _activation_codes(x, ops, allow_float)
        if xb.shape[1] != self.k:
            raise ValueError(
                f"x is {tuple(x.shape)} but the weights are ({self.k}, {self.n}): "
                "inner sizes differ"
            )
        m = xb.shape[0]
        rows = torch.arange(m, dtype=torch.int64, device=xb.device) * self.k
        return self.accumulate(xb, rows, torch.arange(self.k, device=xb.device))

    def accumulate(
        self, codes: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
    ) -> torch.Tensor:
        """Exact accumulators (M, N) where operand (m, k) is the activation code
        `codes.flatten()[rows[m] + cols[k]]`: codes is contiguous uint8 (on the prepared
        device), rows (M,) and cols (K,) int64 index vectors within it. A matrix has
        rows = arange(M) * K, cols = arange(K); a convolution indexes its padded input."""
        m = rows.numel()
        if self.backend == "compiled":
            width = -(-self.n // self._nb) * self._nb if self.n else 0
            if not self._ranges or m == 0:
                return torch.zeros(m, self.n, dtype=self.out_dtype)
            out = torch.empty(m, width, dtype=self.out_dtype)
            for i, c in enumerate(self._iter_chunks()):
                self._op.table_accumulate(
                    codes,
                    rows,
                    cols[c.k0 : c.k1],
                    c.data,
                    out,
                    i > 0,
                    *_blocking(m, c.data.shape[0]),
                    self._group,
                )
            return out[:, : self.n].contiguous() if width != self.n else out
        out = torch.zeros(m, self.n, dtype=self.out_dtype, device=self.device)
        if m == 0:
            return out
        flat = codes.reshape(-1)
        # Bound each (rows, chunk) index tensor to ~32 MB.
        block_m = max(1, (4 << 20) // max((k1 - k0 for k0, k1 in self._ranges), default=1))
        for c in self._iter_chunks():
            # int32 indices: half the bytes of int64, measured 1.8x faster.
            offsets = torch.arange(c.k1 - c.k0, dtype=torch.int32, device=self.device) * 256
            for m0 in range(0, m, block_m):
                taps = rows[m0 : m0 + block_m, None] + cols[None, c.k0 : c.k1]
                idx = flat[taps].to(torch.int32) + offsets
                part = torch.nn.functional.embedding_bag(idx, c.data, mode="sum")
                out[m0 : m0 + block_m] += part.to(self.out_dtype)
        return out


def prepare(
    w: torch.Tensor,
    table: np.ndarray | torch.Tensor,
    sign_magnitude: bool = False,
    *,
    backend: str = "auto",
) -> PreparedWeights:
    """Fold fixed weights w (K, N) and a table into a reusable `PreparedWeights`."""
    return PreparedWeights(w, table, sign_magnitude, backend=backend)


class PreparedCache:
    """Reuses `PreparedWeights` while weights, table and sign mode are unchanged.

    For layers evaluated batch after batch with fixed weights (inference, evaluation):
    keep one cache per layer and pass it to `approx_matmul(..., cache=...)`. Entries are
    matched by value (the weights are small next to the activations), so a weight update
    is never served stale. Holds at most `max_entries` entries (e.g. one per conv group)
    and `max_bytes` of T; larger Ts are built per call and not kept. Thread-safe.
    """

    def __init__(self, max_entries: int = 64, max_bytes: int = 256 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: list[tuple[torch.Tensor, torch.Tensor, bool, PreparedWeights]] = []
        self.hits = 0
        self.misses = 0

    def get(
        self, w: torch.Tensor, table: np.ndarray | torch.Tensor, sign_magnitude: bool = False
    ) -> PreparedWeights:
        """The prepared form of integer weights w (K, N) with `table` (on w's device)."""
        w_int = w.detach()
        table_t = _as_table(table).to(w_int.device)
        with self._lock:
            for i, (ew, et, esm, prepared) in enumerate(self._entries):
                same = (
                    esm == sign_magnitude
                    and ew.shape == w_int.shape
                    and torch.equal(ew, w_int.to(ew.dtype))
                    and torch.equal(et, table_t)
                )
                if same:
                    self._entries.append(self._entries.pop(i))  # most recently used last
                    self.hits += 1
                    return prepared
            self.misses += 1
        prepared = prepare(w_int, table_t, sign_magnitude)
        with self._lock:
            kept = sum(e[3].nbytes for e in self._entries)
            if prepared.nbytes <= self.max_bytes:
                self._entries.append(
                    (w_int.to(torch.int64).clone(), table_t, sign_magnitude, prepared)
                )
                kept += prepared.nbytes
                while self._entries and (
                    len(self._entries) > self.max_entries or kept > self.max_bytes
                ):
                    kept -= self._entries.pop(0)[3].nbytes
        return prepared


class TrainingTables:
    """Prepared weights of one layer while it trains: `get(w, table, sign_magnitude,
    slot)` updates the previous call's per-weight table T in place where the weight codes
    changed (an SGD step moves few of them across a rounding boundary) instead of
    rebuilding it, and prepares afresh when the table, shape or sign mode differs or the
    new values need other dtypes; results are identical to `prepare`. One owner, one
    thread: what `get` returns is valid until the next `get` for the same slot (e.g. a
    conv group). A T larger than `max_bytes` is not kept between calls (as in
    `PreparedCache`), so a large network's training does not hold every layer's T."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self._slots: dict[int, PreparedWeights] = {}
        self.patched = 0
        self.rebuilt = 0

    def get(
        self,
        w: torch.Tensor,
        table: np.ndarray | torch.Tensor,
        sign_magnitude: bool = False,
        slot: int = 0,
    ) -> PreparedWeights:
        prev = self._slots.get(slot)
        if prev is not None and prev._patch(w, table, sign_magnitude):
            self.patched += 1
            return prev
        self.rebuilt += 1
        prepared = prepare(w, table, sign_magnitude)
        if prepared.nbytes <= self.max_bytes:
            self._slots[slot] = prepared
        else:
            self._slots.pop(slot, None)
        return prepared


def table_matmul(
    x: torch.Tensor,
    w: torch.Tensor,
    table: np.ndarray | torch.Tensor,
    *,
    sign_magnitude: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Exact accumulators (M, N) of x (M, K) times w (K, N) through `table`.

    x holds activation values in [-128, 255] (read as `x & 0xFF`); w weight values
    in [-128, 255], or in [-255, 255] with `sign_magnitude` (|w| is the code the
    multiplier sees, so w = -128 reads column 128, negated). Returns int32 when
    K * max|table entry used| fits int32, else int64. `backend`: "auto" (compiled when
    available), "compiled" (error if unavailable; T beyond int32 still takes the torch
    path) or "torch"; all give identical integers.
    """
    _check_tensor("x", x, "(M, K)")
    _check_tensor("w", w, "(K, N)")
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"x is {tuple(x.shape)} but w is {tuple(w.shape)}: inner sizes differ")
    return prepare(w, table, sign_magnitude, backend=backend).matmul(x)


def code_histogram(x: torch.Tensor) -> torch.Tensor:
    """(K, 256) int64: how often each code (`x & 0xFF`) occurs in each column of x (M, K),
    integer values in [-128, 255] as `table_matmul` reads them (float operands are
    rounded half to even, as `approx_matmul` rounds them)."""
    _check_tensor("x", x, "(M, K)", allow_float=True)
    xi = x.detach()
    xi = xi.round().to(torch.int32) if xi.is_floating_point() else xi.to(torch.int32)
    k = xi.shape[1]
    where = xi + 256 * torch.arange(k, dtype=torch.int32, device=xi.device)
    if xi.numel():
        lo, hi = (int(v) for v in torch.aminmax(xi))
        _check_range("x", lo, hi, -128, 255)
        if lo < 0:  # x & 0xFF
            where += 256 * (xi < 0)
    return torch.bincount(where.reshape(-1), minlength=256 * k).reshape(k, 256)


def table_sum(
    hist: torch.Tensor,
    w: torch.Tensor,
    table: np.ndarray | torch.Tensor,
    *,
    sign_magnitude: bool = False,
) -> torch.Tensor:
    """`table_matmul(x, w, table, ...).sum(dim=0)` as int64 (N,), from x's
    `code_histogram` alone: the sum over k and codes v of hist[k, v] times the product
    the table gives v and w[k, n]. K * 256 * N lookups instead of M * K * N: what a
    layer's summed accumulator error per output channel needs (the free corrections)."""
    _check_tensor("w", w, "(K, N)")
    if tuple(hist.shape) != (w.shape[0], 256):
        raise ValueError(f"hist is {tuple(hist.shape)}, expected ({w.shape[0]}, 256)")
    codes, signs = _weight_codes_torch(w, sign_magnitude)
    products = _as_table(table).to(w.device, torch.int64)[:, codes]  # (256 codes v, K, N)
    if signs is not None:
        products = products * signs
    # (v-major on both sides: entry v * K + k)
    return hist.to(torch.int64).t().reshape(-1) @ products.reshape(-1, codes.shape[1])


# -- convolutions --------------------------------------------------------------------------
def _pair(v: int | tuple[int, ...], name: str) -> tuple[int, int]:
    p = (v, v) if isinstance(v, int) else tuple(int(i) for i in v)
    if len(p) != 2:
        raise ValueError(f"{name}: expected an int or a pair, got {v!r}")
    return p  # type: ignore[return-value]


@dataclass(frozen=True)
class ConvGeometry:
    """Stride, padding, dilation (pairs) and groups of a 2-D convolution."""

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    @classmethod
    def of(cls, stride=1, padding=0, dilation=1, groups: int = 1) -> ConvGeometry:
        geo = cls(
            _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation"), groups
        )
        if min(geo.stride + geo.dilation) < 1 or min(geo.padding) < 0 or groups < 1:
            raise ValueError(f"conv geometry out of range: {geo}")
        return geo

    def taps(
        self, x_shape: tuple[int, ...], w_shape: tuple[int, ...], device: torch.device
    ) -> tuple[torch.Tensor, list[torch.Tensor], tuple[int, int]]:
        """Index vectors into the padded input (N, C, H + 2ph, W + 2pw), flattened:
        rows (M,) for output positions m = (n, oh, ow), one cols (K,) per group for taps
        k = (c, i, j) in the weight's own order; and the output size (Ho, Wo)."""
        n, c, h, w = x_shape
        cout, cg, kh, kw = w_shape
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        hp, wp = h + 2 * ph, w + 2 * pw
        ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
        if c != cg * self.groups or cout % self.groups or ho < 1 or wo < 1:
            raise ValueError(
                f"conv shapes do not fit: x {tuple(x_shape)}, w {tuple(w_shape)}, {self}"
            )

        def ar(k: int) -> torch.Tensor:
            return torch.arange(k, dtype=torch.int64, device=device)

        rows = ar(n)[:, None, None] * (c * hp * wp) + ar(ho)[:, None] * (sh * wp) + ar(wo) * sw
        tap = ar(cg)[:, None, None] * (hp * wp) + ar(kh)[:, None] * (dh * wp) + ar(kw) * dw
        cols = [(tap + g * cg * hp * wp).reshape(-1) for g in range(self.groups)]
        return rows.reshape(-1), cols, (ho, wo)


def _padded_codes(
    x: torch.Tensor, padding: tuple[int, int], pad_value: int, offset: int, ops, allow_float: bool
) -> torch.Tensor:
    """(x + offset) (N, C, H, W) as uint8 codes (value & 0xFF), padded with pad_value & 0xFF;
    with the compiled `ops` on the CPU in one pass."""
    if not -128 <= pad_value <= 255:
        raise ValueError(f"pad_value must lie in [-128, 255], got {pad_value}")
    n, c, h, w = x.shape
    ph, pw = padding
    if ops is not None and x.dtype in _CODE_DTYPES + _FLOAT_CODE_DTYPES:
        if x.is_floating_point() and not allow_float:
            raise ValueError(f"x: expected an integer tensor, got dtype {x.dtype}")
        codes = torch.empty(n, c, h + 2 * ph, w + 2 * pw, dtype=torch.uint8)
        if not ops.padded_codes(x.detach().cpu().contiguous(), codes, offset, -128, 255, pad_value):
            return codes
    # Without the compiled ops, or to describe bad values: the torch path.
    v = x.detach() + offset if offset else x
    codes = _activation_codes(v.reshape(n * c, h * w), None, allow_float).reshape(n, c, h, w)
    if ph or pw:
        codes = torch.nn.functional.pad(codes, (pw, pw, ph, ph), value=pad_value & 0xFF)
    return codes.contiguous()


def _prepared_groups(
    w_int: torch.Tensor, table, sign_magnitude: bool, groups: int, backend: str, cache
) -> list[PreparedWeights]:
    """Per group, the weights (K, Ng) prepared: column n of group g is output channel
    g * Ng + n, rows the taps in the weight's own (c, i, j) order."""
    ng = w_int.shape[0] // groups
    wg = [w_int[g * ng : (g + 1) * ng].reshape(ng, -1).t() for g in range(groups)]
    if isinstance(cache, TrainingTables):
        return [cache.get(v, table, sign_magnitude, slot=g) for g, v in enumerate(wg)]
    if cache is not None:
        return [cache.get(v, table, sign_magnitude) for v in wg]
    return [prepare(v, table, sign_magnitude, backend=backend) for v in wg]


def _to_channels(accs: list[torch.Tensor], corr: torch.Tensor, out: torch.Tensor, ops) -> None:
    """out (N, C, L)[:, channels of group g] = accs[g] (N * L, >= C / G) rows, minus corr."""
    n, cout, length = out.shape
    ng = cout // len(accs)
    for g, a in enumerate(accs):
        cg = corr[g * ng : (g + 1) * ng]
        if ops is not None:
            ops.rows_to_channels(a, cg, out, g * ng)
        else:
            out[:, g * ng : (g + 1) * ng] = (a[:, :ng].view(n, length, ng) - cg).transpose(1, 2)


def _conv_accumulate(
    x: torch.Tensor,
    w: torch.Tensor,
    table: np.ndarray | torch.Tensor,
    sign_magnitude: bool,
    geo: ConvGeometry,
    codes_of: tuple[int, int, bool],
    backend: str,
    cache: PreparedCache | TrainingTables | None,
    zero_point_term: bool = False,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Accumulators (N, Cout, Ho, Wo) of the table convolution, the operand codes being
    x + offset with padding pad_value (`codes_of` = (offset, pad_value, allow_float));
    minus offset * sum(w) per output channel if `zero_point_term`, as `out_dtype` (default:
    the accumulators' own integer type)."""
    offset, pad_value, allow_float = codes_of
    for name, v in (("x", x), ("w", w)):
        if not isinstance(v, torch.Tensor) or v.dim() != 4:
            raise ValueError(f"{name}: expected a 4-D tensor, got {getattr(v, 'shape', v)}")
    rows, cols, (ho, wo) = geo.taps(tuple(x.shape), tuple(w.shape), x.device)
    w_int = _to_int(w) if w.is_floating_point() else w.detach()
    prepared = _prepared_groups(w_int, table, sign_magnitude, geo.groups, backend, cache)
    if x.device != prepared[0].device:
        raise ValueError(f"x is on {x.device} but the weights are on {prepared[0].device}")
    ops = prepared[0]._op if prepared[0].backend == "compiled" else None
    codes = _padded_codes(x, geo.padding, pad_value, offset, ops, allow_float)
    rows, cols = rows.to(codes.device), [c.to(codes.device) for c in cols]
    accs = [p.accumulate(codes, rows, c) for p, c in zip(prepared, cols, strict=True)]
    cout = w.shape[0]
    corr = torch.zeros(cout, dtype=torch.int64, device=codes.device)
    if zero_point_term and offset:
        corr = offset * w_int.reshape(cout, -1).sum(1).to(device=codes.device, dtype=torch.int64)
    # int64 where any sum or its difference with corr may leave int32
    wide = corr.any() or any(a.dtype == torch.int64 for a in accs)
    dtype = out_dtype or (torch.int64 if wide else torch.int32)
    out = torch.empty(x.shape[0], cout, ho * wo, dtype=dtype, device=codes.device)
    _to_channels(accs, corr, out, ops)
    return out.view(x.shape[0], cout, ho, wo)


def table_conv2d(
    x: torch.Tensor,
    w: torch.Tensor,
    table: np.ndarray | torch.Tensor,
    *,
    sign_magnitude: bool = False,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    pad_value: int = 0,
    backend: str = "auto",
) -> torch.Tensor:
    """Exact accumulators (N, Cout, Ho, Wo) of a 2-D convolution through `table`.

    `table_matmul` of the im2col rows (F.unfold order: taps (c, i, j) within the group)
    with the weights w (Cout, C / groups, kh, kw) as (K, Cout / groups) per group, where
    the padding holds `pad_value` (a layer's zero-point code) instead of 0. The input is
    read in place: no im2col copy is made. x holds integer values in [-128, 255].
    """
    _check_backend(backend)
    if isinstance(w, torch.Tensor) and w.dim() == 4:
        _check_tensor("w", w.reshape(w.shape[0], -1), "(Cout, C / groups * kh * kw)")
    geo = ConvGeometry.of(stride, padding, dilation, groups)
    return _conv_accumulate(x, w, table, sign_magnitude, geo, (0, pad_value, False), backend, None)


# -- straight-through autograd -----------------------------------------------------------------
def _to_int(v: torch.Tensor) -> torch.Tensor:
    v = v.detach()
    return v.round().to(torch.int64) if v.is_floating_point() else v.to(torch.int64)


def _check_prepared(prepared: PreparedWeights, w: torch.Tensor, sign_magnitude: bool) -> None:
    if (prepared.k, prepared.n) != tuple(w.shape) or prepared.sign_magnitude != sign_magnitude:
        raise ValueError(
            f"prepared weights are ({prepared.k}, {prepared.n}), sign_magnitude="
            f"{prepared.sign_magnitude}; got w {tuple(w.shape)}, sign_magnitude={sign_magnitude}"
        )


# -- gradients from the table's own slopes (retrain.gradient: table) ---------------------------
GRADIENTS = ("ste", "table")
# Half-width of the window the table's slopes are fitted over (operand values v-h..v+h).
SLOPE_WINDOW = 4


def _window_slopes(f: np.ndarray, half: int) -> np.ndarray:
    """Least-squares slope of f (..., 256) along its last axis over the window
    [i - half, i + half] clipped to 0..255, for every i (Savitzky-Golay first derivative,
    order 1; one-sided at the edges). Integer sums, one final division: a function linear
    along the axis gets its slope exactly."""
    n_pts = f.shape[-1]
    idx = np.arange(n_pts, dtype=np.int64)
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half, n_pts - 1) + 1

    def window_sum(v: np.ndarray) -> np.ndarray:
        c = np.concatenate([np.zeros(v.shape[:-1] + (1,), np.int64), np.cumsum(v, -1)], -1)
        return c[..., hi] - c[..., lo]

    f = f.astype(np.int64)
    count = hi - lo
    s_j, s_jj = window_sum(idx), window_sum(idx * idx)
    s_f, s_jf = window_sum(f), window_sum(f * idx)
    return (count * s_jf - s_j * s_f) / (count * s_jj - s_j * s_j)


def table_slopes(
    table: np.ndarray | torch.Tensor, signed: bool, window: int = SLOPE_WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """(d/da, d/db) of the table's product, float32[256, 256] indexed like the table.

    The slope along each operand is a least-squares line fitted to the table over
    operand values v - window .. v + window (clipped to the operand's range): where the
    table is flat (truncated or rounded products hold one value over several operands)
    the fit still sees the step to the next level, so the gradient follows the product's
    trend rather than being 0 on the flats and a spike at each step. Along the value
    axis, so for signed tables -1 (code 255) sits next to 0. The exact product's slopes
    are exactly b and a: the STE gradient.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    t = np.asarray(_as_table(table).cpu()).astype(np.int64)
    order = np.argsort(operand_values(signed), kind="stable")  # codes in value order
    tv = t[np.ix_(order, order)]
    da_v = _window_slopes(tv.T, window).T  # along a (axis 0)
    db_v = _window_slopes(tv, window)  # along b (axis 1)
    da, db = np.empty_like(da_v), np.empty_like(db_v)
    da[np.ix_(order, order)] = da_v
    db[np.ix_(order, order)] = db_v
    return da.astype(np.float32), db.astype(np.float32)


_slope_cache: dict[tuple[str, bool, int], tuple[np.ndarray, np.ndarray]] = {}
_slope_lock = threading.Lock()


def _cached_slopes(table: torch.Tensor, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    key = (hashlib.sha1(np.asarray(table.cpu()).tobytes()).hexdigest(), signed, SLOPE_WINDOW)
    with _slope_lock:
        hit = _slope_cache.get(key)
    if hit is None:
        hit = table_slopes(table, signed)
        with _slope_lock:
            if len(_slope_cache) >= 64:
                _slope_cache.pop(next(iter(_slope_cache)))
            _slope_cache[key] = hit
    return hit


# Elements of the gathered (rows, K, N) slope block per step: bounds the backward's memory.
_GRAD_BLOCK = 1 << 22


def table_gradients(
    x: torch.Tensor,
    w: torch.Tensor,
    table: np.ndarray | torch.Tensor,
    grad: torch.Tensor,
    sign_magnitude: bool = False,
    *,
    need_x: bool = True,
    need_w: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of sum(grad * table_matmul(x, w)) through the table's slopes.

    `grad_x[m, k] = sum_n grad[m, n] * s * Da[x[m, k], c[k, n]]` and
    `grad_w[k, n] = sum_m grad[m, n] * Db[x[m, k], c[k, n]]` (Da, Db = `table_slopes`;
    c = the weight code the multiplier sees, s = sign(w) with `sign_magnitude`, else 1:
    d/dw of sign(w) * f(x, |w|) is Db). Gathered per (row, k) in blocks on grad's device.
    """
    da, db = _cached_slopes(_as_table(table), not sign_magnitude)
    codes, signs = _weight_codes(_to_int(w), sign_magnitude)
    dev, dt = grad.device, grad.dtype
    k, n = codes.shape
    wcodes = torch.from_numpy(codes).to(dev)
    sx = torch.from_numpy(da).to(device=dev, dtype=dt).reshape(-1) if need_x else None
    sw = torch.from_numpy(db).to(device=dev, dtype=dt).reshape(-1) if need_w else None
    wsign = torch.from_numpy(signs).to(device=dev, dtype=dt) if signs is not None else None
    xv = x.detach()
    xv = xv.round() if xv.is_floating_point() else xv
    xcodes = xv.to(dev).to(torch.int64) & 0xFF
    m = xcodes.shape[0]
    grad_x = torch.empty(m, k, device=dev, dtype=dt) if need_x else None
    grad_w = torch.zeros(k, n, device=dev, dtype=dt) if need_w else None
    step = max(1, _GRAD_BLOCK // max(k * n, 1))
    for m0 in range(0, m, step):
        idx = (xcodes[m0 : m0 + step, :, None] << 8) + wcodes  # (rows, K, N) table index
        g = grad[m0 : m0 + step].unsqueeze(1)  # (rows, 1, N)
        if sx is not None:
            slope = sx[idx] if wsign is None else sx[idx] * wsign
            grad_x[m0 : m0 + step] = (slope * g).sum(2)
        if sw is not None:
            grad_w += (sw[idx] * g).sum(0)
    return grad_x, grad_w


class ApproxMatmul(torch.autograd.Function):
    """Forward: table_matmul as float. Backward: the exact product's gradients (STE), or
    with `gradient="table"` the table's own slopes (`table_gradients`)."""

    @staticmethod
    def forward(ctx, x, w, table, sign_magnitude, prepared=None, gradient="ste"):  # type: ignore[override]
        ctx.save_for_backward(x, w)
        ctx.table, ctx.sign_magnitude, ctx.gradient = table, sign_magnitude, gradient
        if prepared is None:
            prepared = prepare(_to_int(w), table, sign_magnitude)
        _check_prepared(prepared, w, sign_magnitude)
        acc = prepared._matmul(x, allow_float=True)
        # Compiled: summed on the CPU, the result goes back to where x lives (else it is there).
        return acc.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, w = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if ctx.gradient == "table":
            grad_x, grad_w = table_gradients(
                x, w, ctx.table, grad, ctx.sign_magnitude, need_x=need_x, need_w=need_w
            )
            grad_x = grad_x.to(x.dtype) if grad_x is not None and x.is_floating_point() else grad_x
            return grad_x, grad_w, None, None, None, None
        grad_x = grad @ w.to(grad.dtype).t() if need_x else None
        grad_w = x.to(grad.dtype).t() @ grad if need_w else None
        return grad_x, grad_w, None, None, None, None


def approx_matmul(
    x: torch.Tensor,
    w: torch.Tensor,
    table: np.ndarray | torch.Tensor,
    sign_magnitude: bool = False,
    *,
    prepared: PreparedWeights | None = None,
    cache: PreparedCache | TrainingTables | None = None,
    gradient: str = "ste",
    slot: int = 0,
) -> torch.Tensor:
    """Differentiable table product: x (M, K) and w (K, N) float tensors holding integer
    operand values. Forward = table_matmul as float; gradients = those of x @ w
    (`gradient="ste"`), or the table's own slopes along each operand (`"table"`).

    `prepared` (from `prepare(w, table, sign_magnitude)` with these same weights) skips
    rebuilding T, e.g. for inference with fixed weights; `cache` (a layer's
    `PreparedCache`) does the same automatically while the weights stay unchanged, or
    (its `TrainingTables`, with `slot` naming which of the layer's weight matrices this
    is, e.g. a conv group) updates T to weights that training changed.
    """
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    if prepared is not None and cache is not None:
        raise ValueError("approx_matmul: pass prepared or cache, not both")
    if isinstance(cache, TrainingTables):
        prepared = cache.get(_to_int(w), table, sign_magnitude, slot=slot)
    elif cache is not None:
        prepared = cache.get(_to_int(w), table, sign_magnitude)
    return ApproxMatmul.apply(x, w, table, sign_magnitude, prepared, gradient)


class ApproxConv(torch.autograd.Function):
    """Forward: the table convolution of centered codes x (code = x + zero_point; padding
    is real zero, the code zero_point) minus the zero-point term zero_point * sum(w), as
    float: with the exact table this is F.conv2d(x, w) exactly. Backward: F.conv2d's own
    gradients (the exact product's, straight-through), computed by torch's convolution
    backward rather than through im2col rows."""

    @staticmethod
    def forward(ctx, x, w, table, sign_magnitude, zero_point, geo, cache):  # type: ignore[override]
        ctx.save_for_backward(x, w)
        ctx.geo = geo
        codes_of = (zero_point, zero_point, True)
        y = _conv_accumulate(
            x, w, table, sign_magnitude, geo, codes_of, "auto", cache, True, x.dtype
        )
        return y.to(x.device)  # compiled: summed on the CPU

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, w = ctx.saved_tensors
        geo = ctx.geo
        need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False]
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad, x, w, None, geo.stride, geo.padding, geo.dilation, False, [0, 0],
            geo.groups, need,
        )  # fmt: skip
        return grad_x, grad_w, None, None, None, None, None


def approx_conv2d(
    x: torch.Tensor,
    w: torch.Tensor,
    table: np.ndarray | torch.Tensor,
    sign_magnitude: bool = False,
    *,
    zero_point: int = 0,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    cache: PreparedCache | TrainingTables | None = None,
) -> torch.Tensor:
    """Differentiable table convolution: x (N, C, H, W) float centered codes (the operand
    code is x + zero_point; padded positions are real zero, i.e. the code zero_point), w
    (Cout, C / groups, kh, kw) float integer weights. Returns the accumulators minus
    zero_point * sum(w) per output channel, as float, so the exact table gives
    F.conv2d(x, w) exactly; gradients are F.conv2d's (straight-through). `cache`: a
    `PreparedCache` (fixed weights, as in `approx_matmul`) or, while training, the layer's
    `TrainingTables`."""
    geo = ConvGeometry.of(stride, padding, dilation, groups)
    return ApproxConv.apply(x, w, table, sign_magnitude, zero_point, geo, cache)
