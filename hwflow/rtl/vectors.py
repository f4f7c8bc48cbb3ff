"""Layer operand streams for the MAC engines, from the integers the emulation recorded.

A layer's work is a list of jobs, one per accumulator: job j = (g, m, n) in row-major
order over the trace's `acc` shape (G, M, Ng), with operand row `x_int[g, m, :]` and
weight column `w_int[g, :, n]`. Jobs go to lanes round-robin: job j runs on lane
j % P in pass j // P, and pass q occupies cycles q*K .. q*K + K-1 (one MAC per lane per
cycle). The last pass is padded with all-zero operand jobs whose results are ignored.

Files (what `$readmemh` and the testbench read):
- `<port>_x.hex`, `<port>_w.hex`: one line per cycle, 2*P hex digits, lane 0 in the low
  byte; activations and weights as 8-bit codes (value & 0xFF).
- `<port>_expected.txt`: one decimal accumulator per job, in job order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerVectors:
    """One layer's schedule: operand memories (T = passes*K rows, P lanes) and sums."""

    x_mem: np.ndarray  # uint8 (T, P)
    w_mem: np.ndarray  # uint8 (T, P)
    expected: np.ndarray  # int64 (jobs,)
    shape: tuple[int, int, int]  # (G, M, Ng) of the trace's acc
    fan_in: int
    lanes: int
    row_aligned: bool = False

    @property
    def jobs(self) -> int:
        return int(self.expected.size)

    @property
    def passes(self) -> int:
        return self.x_mem.shape[0] // self.fan_in


def sample_rows(m: int, rows: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of `rows` of a layer's `m` operand rows, drawn without replacement
    (every row when m <= rows): a uniform sample of the accumulators to simulate where
    checking all of them would take too long (a ResNet layer has ~10^5 rows an image)."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    if m <= rows:
        return np.arange(m)
    return np.sort(np.random.default_rng(seed).choice(m, size=rows, replace=False))


def check_operands(x_int: np.ndarray, w_int: np.ndarray, signed: bool, layer: str) -> None:
    """Operands must be what the 8-bit lanes take: int8 (signed) or uint8 activations."""
    x_lo, x_hi = (-128, 127) if signed else (0, 255)
    for what, arr, lo, hi in (("activations", x_int, x_lo, x_hi), ("weights", w_int, -128, 127)):
        if arr.size and (arr.min() < lo or arr.max() > hi):
            raise ValueError(
                f"layer {layer}: {what} span [{arr.min()}, {arr.max()}], outside the "
                f"{'signed' if signed else 'unsigned'} 8-bit lane range [{lo}, {hi}]"
            )


def job_slots(jobs: int, lanes: int, row: int | None) -> np.ndarray:
    """Slot (pass * lanes + lane) of every job: dense round-robin, or, with `row` = Ng
    (row-aligned layers, e.g. the classifier's argmax), row m in pass m, column n on lane n."""
    j = np.arange(jobs)
    return j if row is None else (j // row) * lanes + j % row


def schedule(
    x_int: np.ndarray, w_int: np.ndarray, acc: np.ndarray, lanes: int, row_aligned: bool = False
) -> LayerVectors:
    """Lay a traced layer's jobs out over `lanes` lanes (see the module docstring)."""
    x_int, w_int, acc = (np.asarray(a, dtype=np.int64) for a in (x_int, w_int, acc))
    g, m, k = x_int.shape
    g2, k2, ng = w_int.shape
    if (g2, k2) != (g, k) or acc.shape != (g, m, ng):
        raise ValueError(
            f"inconsistent trace shapes: x {x_int.shape}, w {w_int.shape}, acc {acc.shape}"
        )
    jobs = g * m * ng
    if row_aligned and ng > lanes:
        raise ValueError(f"a row of {ng} columns does not fit {lanes} lanes")
    slots = job_slots(jobs, lanes, ng if row_aligned else None)
    passes = g * m if row_aligned else -(-jobs // lanes)
    x_jobs = np.zeros((passes * lanes, k), dtype=np.uint8)
    w_jobs = np.zeros((passes * lanes, k), dtype=np.uint8)
    x_jobs[slots] = np.broadcast_to(x_int[:, :, None, :], (g, m, ng, k)).reshape(jobs, k) & 0xFF
    w_cols = np.transpose(w_int, (0, 2, 1))[:, None, :, :]
    w_jobs[slots] = np.broadcast_to(w_cols, (g, m, ng, k)).reshape(jobs, k) & 0xFF
    # (pass, lane, k) -> (pass, k, lane): row t = pass*K + k holds every lane's operands
    x_mem = x_jobs.reshape(passes, lanes, k).transpose(0, 2, 1).reshape(passes * k, lanes)
    w_mem = w_jobs.reshape(passes, lanes, k).transpose(0, 2, 1).reshape(passes * k, lanes)
    return LayerVectors(
        np.ascontiguousarray(x_mem),
        np.ascontiguousarray(w_mem),
        acc.reshape(-1).copy(),
        (g, m, ng),
        k,
        lanes,
        row_aligned,
    )


def reference_acc(
    x_int: np.ndarray, w_int: np.ndarray, table: np.ndarray, signed: bool
) -> np.ndarray:
    """The accumulation of docs/concepts/operands.md in plain numpy, independent of the nn kernels.

    acc[g, m, n] = sum_k table[x & 0xFF, w & 0xFF] (signed) or
    sum_k sign(w) * table[x, |w|] (unsigned, sign-magnitude weights, sign(0) = 0).
    """
    x = np.asarray(x_int, dtype=np.int64)
    w = np.asarray(w_int, dtype=np.int64)
    table = np.asarray(table, dtype=np.int64)
    g, m, k = x.shape
    ng = w.shape[2]
    out = np.zeros((g, m, ng), dtype=np.int64)
    w_code = (w & 0xFF) if signed else np.abs(w)
    sign = np.ones_like(w) if signed else np.sign(w)  # sign(0) = 0: zero weights add 0
    for gi in range(g):
        for kk in range(k):
            prods = table[(x[gi, :, kk] & 0xFF)[:, None], w_code[gi, kk][None, :]]
            out[gi] += prods * sign[gi, kk][None, :]
    return out


def hex_lines(mem: np.ndarray) -> str:
    """`$readmemh` text of a (rows, lanes) uint8 array, lane 0 in the low byte."""
    mem = np.ascontiguousarray(np.asarray(mem, dtype=np.uint8)[:, ::-1])
    rows, lanes = mem.shape
    flat = mem.tobytes().hex()
    width = 2 * lanes
    return "".join(flat[i * width : (i + 1) * width] + "\n" for i in range(rows))


def decimal_lines(values: np.ndarray) -> str:
    return "".join(f"{int(v)}\n" for v in np.asarray(values).reshape(-1))


def requant_vectors(
    sched: LayerVectors, offsets: np.ndarray, rq: object
) -> tuple[np.ndarray, np.ndarray]:
    """Per pass and lane the offset of the job's output channel (passes, P), and the
    expected code of every job: intinfer's requantization of relu?(acc + offset)."""
    import torch

    from hwflow.rtl.intinfer import requantize

    per_job, padded = _offsets(sched, offsets)
    t = sched.expected + per_job
    if rq.relu:
        t = np.maximum(t, 0)
    codes = requantize(torch.from_numpy(t), rq.m0, rq.shift, rq.zero_point, rq.signed).numpy()
    return padded, codes


def _offsets(sched: LayerVectors, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-job offsets (of the job's output channel) and their (passes, lanes) layout."""
    g, m, ng = sched.shape
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.shape != (g, ng):
        raise ValueError(f"offsets: expected shape {(g, ng)}, got {offsets.shape}")
    per_job = np.broadcast_to(offsets[:, None, :], (g, m, ng)).reshape(-1)
    padded = np.zeros(sched.passes * sched.lanes, dtype=np.int64)
    padded[job_slots(sched.jobs, sched.lanes, ng if sched.row_aligned else None)] = per_job
    return per_job, padded.reshape(sched.passes, sched.lanes)


def argmax_vectors(sched: LayerVectors, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets per pass and lane, and the expected class of every row: the first n with
    the largest acc + offset (np.argmax's and torch.argmax's rule)."""
    per_job, padded = _offsets(sched, offsets)
    g, m, ng = sched.shape
    t = (sched.expected + per_job).reshape(g * m, ng)
    return padded, t.argmax(axis=1)


def wide_hex_lines(values: np.ndarray, width: int) -> str:
    """`$readmemh` text of (rows, lanes) signed integers, `width` bits per lane, lane 0
    in the low bits."""
    mask = (1 << width) - 1
    digits = -(-width * values.shape[1] // 4)
    lines = []
    for row in np.asarray(values, dtype=np.int64).tolist():
        word = 0
        for lane, v in enumerate(row):
            word |= (v & mask) << (lane * width)
        lines.append(f"{word:0{digits}x}\n")
    return "".join(lines)
