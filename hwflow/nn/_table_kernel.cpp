// Compiled accumulation loop of hwflow.nn.kernels (see that module for the contract).
//
// out[m, n] = sum_k T[k, x[rows[m] + cols[k]], n], with T the per-weight table (build_tiles below)
// laid out (NT, K, 256, NB) so one tile of NB output columns over a block of K is a
// contiguous run that stays in L2 while every row of a task's M block reads it.
// Accumulators are fixed-size local vectors the compiler keeps in registers.
// The Python side chooses dtypes so that no sum can overflow (no wrap-around anywhere).
// Registered as plain torch ops (no pybind11) to keep the JIT build light.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>

// Rows per register block by tile width (overridable for tuning builds).
#ifndef HWFLOW_R16
#define HWFLOW_R16 4
#endif
#ifndef HWFLOW_R32
#define HWFLOW_R32 2
#endif
#ifndef HWFLOW_R64
#define HWFLOW_R64 1
#endif

namespace {

// 16 lanes per vector; GCC/Clang vector extensions lower these to the widest SIMD the
// target has (AVX-512, AVX2, NEON) without intrinsics.
template <typename T>
struct Vec16 {
  typedef T type __attribute__((vector_size(16 * sizeof(T))));
};

// acc[r] += T row of x[r, k] for each k of the block, for R rows x NB columns held in
// registers. With G > 1, G rows of int16 T are first summed in int16 (exact: the caller
// guarantees G * max|T| fits int16, so no partial sum leaves it), halving or quartering
// the widening conversions, the costliest step of the loop.
template <typename TV, typename ACC, int NB, int R, int G>
inline void accumulate_rows(const uint8_t* const* xr, const int64_t* off, const TV* tk,
                            int64_t kb, ACC* const* o, bool first) {
  typedef typename Vec16<TV>::type tv_t;
  typedef typename Vec16<ACC>::type acc_t;
  constexpr int NV = NB / 16;
  constexpr int64_t kStride = 256 * NB;
  acc_t acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      if (first) {
        acc[r][v] = acc_t{};
      } else {
        std::memcpy(&acc[r][v], o[r] + 16 * v, sizeof(acc_t));
      }
    }
  int64_t k = 0;
  for (; k + G <= kb; k += G) {
    const TV* base = tk + k * kStride;
    for (int r = 0; r < R; ++r) {
      const TV* rows[G];
      for (int g = 0; g < G; ++g)
        rows[g] = base + g * kStride + static_cast<int64_t>(xr[r][off[k + g]]) * NB;
      for (int v = 0; v < NV; ++v) {
        tv_t t;
        std::memcpy(&t, rows[0] + 16 * v, sizeof(tv_t));
        for (int g = 1; g < G; ++g) {
          tv_t u;
          std::memcpy(&u, rows[g] + 16 * v, sizeof(tv_t));
          t += u;
        }
        acc[r][v] += __builtin_convertvector(t, acc_t);
      }
    }
  }
  for (; k < kb; ++k) {
    const TV* base = tk + k * kStride;
    for (int r = 0; r < R; ++r) {
      const TV* row = base + static_cast<int64_t>(xr[r][off[k]]) * NB;
      for (int v = 0; v < NV; ++v) {
        tv_t t;
        std::memcpy(&t, row + 16 * v, sizeof(tv_t));
        acc[r][v] += __builtin_convertvector(t, acc_t);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) std::memcpy(o[r] + 16 * v, &acc[r][v], sizeof(acc_t));
}

template <typename TV, typename ACC, int NB, int G>
void accumulate(const uint8_t* x, const int64_t* row_base, const int64_t* col_off, int64_t M,
                int64_t K, const TV* T, int64_t NT, ACC* out, int64_t ldo, bool add_to_out,
                int64_t rows_per_task, int64_t block_bytes) {
  // Rows per register block: enough independent chains to hide load latency while
  // R * NB / 16 accumulators still fit the vector register file.
  constexpr int R = NB == 16 ? HWFLOW_R16 : (NB == 32 ? HWFLOW_R32 : HWFLOW_R64);
  const int64_t row_bytes = 256 * NB * static_cast<int64_t>(sizeof(TV));
  const int64_t KB = std::max<int64_t>(1, block_bytes / row_bytes);
  const int64_t n_mblocks = (M + rows_per_task - 1) / rows_per_task;
  at::parallel_for(0, n_mblocks * NT, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t nt = task % NT;
      const int64_t m0 = (task / NT) * rows_per_task;
      const int64_t m1 = std::min(M, m0 + rows_per_task);
      const TV* tile = T + nt * K * 256 * NB;
      for (int64_t k0 = 0; k0 < K; k0 += KB) {
        const int64_t kb = std::min(KB, K - k0);
        const TV* tk = tile + k0 * 256 * NB;
        const int64_t* off = col_off + k0;
        int64_t m = m0;
        for (; m + R <= m1; m += R) {
          const uint8_t* xr[R];
          ACC* o[R];
          for (int r = 0; r < R; ++r) {
            xr[r] = x + row_base[m + r];
            o[r] = out + (m + r) * ldo + nt * NB;
          }
          accumulate_rows<TV, ACC, NB, R, G>(xr, off, tk, kb, o, k0 == 0 && !add_to_out);
        }
        for (; m < m1; ++m) {
          const uint8_t* xr[1] = {x + row_base[m]};
          ACC* o[1] = {out + m * ldo + nt * NB};
          accumulate_rows<TV, ACC, NB, 1, G>(xr, off, tk, kb, o, k0 == 0 && !add_to_out);
        }
      }
    }
  });
}

template <typename TV, typename ACC, int G>
void dispatch_nb(const at::Tensor& x, const at::Tensor& rows, const at::Tensor& cols,
                 const at::Tensor& t, const at::Tensor& out, bool add, int64_t task_rows,
                 int64_t bytes) {
  const int64_t M = rows.numel(), K = cols.numel(), NT = t.size(0), NB = t.size(3);
  const uint8_t* xp = x.data_ptr<uint8_t>();
  const int64_t* rp = rows.data_ptr<int64_t>();
  const int64_t* cp = cols.data_ptr<int64_t>();
  const TV* tp = t.data_ptr<TV>();
  ACC* o = out.data_ptr<ACC>();
  const int64_t ldo = out.size(1), r = task_rows;
  switch (NB) {
    case 16: return accumulate<TV, ACC, 16, G>(xp, rp, cp, M, K, tp, NT, o, ldo, add, r, bytes);
    case 32: return accumulate<TV, ACC, 32, G>(xp, rp, cp, M, K, tp, NT, o, ldo, add, r, bytes);
    case 64: return accumulate<TV, ACC, 64, G>(xp, rp, cp, M, K, tp, NT, o, ldo, add, r, bytes);
    default: TORCH_CHECK(false, "table kernel: tile width must be 16, 32 or 64, got ", NB);
  }
}

// Activation code of operand (m, k) = x[rows[m] + cols[k]] (x: uint8, any shape, contiguous):
// a plain matrix has rows[m] = m * K, cols[k] = k; a convolution reads its zero-point padded
// input image in place (rows: each output position's corner, cols: each tap's offset), so
// no im2col copy is ever made. t: int16/int32 (NT, K, 256, NB); out: int32/int64
// (M, NT * NB), overwritten, or added to when `add` is true. group: rows of int16 T summed
// in int16 before widening (1, 2 or 4; the caller checks group * max|T| fits int16).
void table_accumulate(const at::Tensor& x, const at::Tensor& rows, const at::Tensor& cols,
                      const at::Tensor& t, const at::Tensor& out, bool add,
                      int64_t rows_per_task, int64_t block_bytes, int64_t group) {
  TORCH_CHECK(rows_per_task > 0 && block_bytes > 0, "table kernel: bad blocking");
  TORCH_CHECK(group == 1 || (t.scalar_type() == at::kShort && (group == 2 || group == 4)),
              "table kernel: group must be 1, or 2 or 4 with int16 T");
  TORCH_CHECK(x.scalar_type() == at::kByte && x.is_contiguous(),
              "table kernel: x must be contiguous uint8");
  TORCH_CHECK(rows.scalar_type() == at::kLong && rows.dim() == 1 && rows.is_contiguous() &&
                  cols.scalar_type() == at::kLong && cols.dim() == 1 && cols.is_contiguous(),
              "table kernel: rows and cols must be contiguous int64 vectors");
  TORCH_CHECK(t.dim() == 4 && t.is_contiguous() && t.size(1) == cols.numel() && t.size(2) == 256,
              "table kernel: t must be contiguous (NT, K, 256, NB)");
  TORCH_CHECK(out.dim() == 2 && out.is_contiguous() && out.size(0) == rows.numel() &&
                  out.size(1) == t.size(0) * t.size(3),
              "table kernel: out must be contiguous (M, NT * NB)");
  const int64_t M = rows.numel(), K = cols.numel();
  if (M == 0 || K == 0 || t.size(0) == 0) return;
  {  // every index inside x: the loop itself never checks
    const int64_t* rp = rows.data_ptr<int64_t>();
    const int64_t* cp = cols.data_ptr<int64_t>();
    const auto [rlo, rhi] = std::minmax_element(rp, rp + M);
    const auto [clo, chi] = std::minmax_element(cp, cp + K);
    TORCH_CHECK(*rlo + *clo >= 0 && *rhi + *chi < x.numel(),
                "table kernel: operand index outside x");
  }
  const auto tv = t.scalar_type();
  const auto acc = out.scalar_type();
  const int64_t r = rows_per_task, b = block_bytes;
  if (tv == at::kShort && acc == at::kInt) {
    if (group == 4) return dispatch_nb<int16_t, int32_t, 4>(x, rows, cols, t, out, add, r, b);
    if (group == 2) return dispatch_nb<int16_t, int32_t, 2>(x, rows, cols, t, out, add, r, b);
    return dispatch_nb<int16_t, int32_t, 1>(x, rows, cols, t, out, add, r, b);
  }
  if (tv == at::kInt && acc == at::kInt)
    return dispatch_nb<int32_t, int32_t, 1>(x, rows, cols, t, out, add, r, b);
  if (tv == at::kInt && acc == at::kLong)
    return dispatch_nb<int32_t, int64_t, 1>(x, rows, cols, t, out, add, r, b);
  TORCH_CHECK(false, "table kernel: unsupported dtypes ", tv, " -> ", acc);
}

// T tiles from the table and the weights: out[nt, k, a, j] = sign[k, c] * table_t[code[k, c], a]
// with c = nt * NB + j (table_t = table transposed: one weight code's column contiguous).
// Each (nt, k) block is NB strided copies of a contiguous 256-entry column, all in L1.
template <typename TV>
void build(const int32_t* table_t, const int64_t* codes, const int64_t* signs, int64_t K,
           int64_t NT, int64_t NB, TV* out) {
  const int64_t width = NT * NB;
  at::parallel_for(0, NT * K, 16, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t nt = blk / K, k = blk % K;
      TV* o = out + blk * 256 * NB;
      for (int64_t j = 0; j < NB; ++j) {
        const int64_t c = k * width + nt * NB + j;
        const int32_t* col = table_t + codes[c] * 256;
        const int64_t s = signs ? signs[c] : 1;
        for (int64_t a = 0; a < 256; ++a) o[a * NB + j] = static_cast<TV>(s * col[a]);
      }
    }
  });
}

// table_t: int32 (256, 256) contiguous; codes, signs (optional, may be empty): int64 (K, NT*NB);
// out: int16/int32 (NT, K, 256, NB). The caller checks every value fits out's type.
void build_tiles(const at::Tensor& table_t, const at::Tensor& codes, const at::Tensor& signs,
                 const at::Tensor& out) {
  TORCH_CHECK(table_t.scalar_type() == at::kInt && table_t.is_contiguous() &&
                  table_t.numel() == 65536,
              "build_tiles: table_t must be contiguous int32 (256, 256)");
  TORCH_CHECK(out.dim() == 4 && out.is_contiguous() && out.size(2) == 256,
              "build_tiles: out must be contiguous (NT, K, 256, NB)");
  const int64_t NT = out.size(0), K = out.size(1), NB = out.size(3);
  TORCH_CHECK(codes.scalar_type() == at::kLong && codes.is_contiguous() &&
                  codes.numel() == K * NT * NB,
              "build_tiles: codes must be contiguous int64 (K, NT * NB)");
  const bool has_signs = signs.numel() > 0;
  TORCH_CHECK(!has_signs || (signs.scalar_type() == at::kLong && signs.is_contiguous() &&
                             signs.numel() == codes.numel()),
              "build_tiles: signs must be empty or like codes");
  const int64_t* cp = codes.data_ptr<int64_t>();
  for (int64_t i = 0; i < codes.numel(); ++i)
    TORCH_CHECK(cp[i] >= 0 && cp[i] < 256, "build_tiles: weight code out of range");
  const int64_t* sp = has_signs ? signs.data_ptr<int64_t>() : nullptr;
  const int32_t* tp = table_t.data_ptr<int32_t>();
  if (out.scalar_type() == at::kShort)
    return build(tp, cp, sp, K, NT, NB, out.data_ptr<int16_t>());
  if (out.scalar_type() == at::kInt)
    return build(tp, cp, sp, K, NT, NB, out.data_ptr<int32_t>());
  TORCH_CHECK(false, "build_tiles: out must be int16 or int32");
}

// Round half to even (torch.round) in a form compilers vectorize: adding and removing
// 1.5 * 2^mantissa rounds in the default rounding mode. Larger magnitudes (integers
// already, or far outside any operand range) pass through unchanged.
template <typename V>
inline V round_half_even(V v) {
  constexpr V magic = std::is_same_v<V, float> ? V(12582912.0) : V(6755399441055744.0);
  constexpr V limit = std::is_same_v<V, float> ? V(4194304.0) : V(2251799813685248.0);
  const V r = (v + magic) - magic;
  return std::abs(v) < limit ? r : v;
}

// One pass over operand values: out = value & 0xFF (floats rounded half to even, as
// torch.round), returning how many values lie outside [lo, hi] (NaN included), so the
// caller can reject bad operands without another pass. Branch-free, count-only bodies
// let the compiler vectorize (float min/max reductions would not).
template <typename V>
int64_t codes_of(const V* x, int64_t n, uint8_t* out, int64_t lo, int64_t hi) {
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<int64_t> bad(chunks, 0);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t i0 = c * kChunk, i1 = std::min(n, (c + 1) * kChunk);
      // Restrict-qualified locals: byte stores through `out` may otherwise alias anything.
      const V* __restrict xs = x;
      uint8_t* __restrict os = out;
      int64_t nbad = 0;
      if constexpr (std::is_floating_point_v<V>) {
        const V vlo = static_cast<V>(lo), vhi = static_cast<V>(hi);
        for (int64_t i = i0; i < i1; ++i) {
          const V r = round_half_even(xs[i]);
          const bool ok = r >= vlo && r <= vhi;  // false for NaN
          nbad += !ok;
          os[i] = static_cast<uint8_t>(static_cast<int32_t>(ok ? r : V(0)) & 0xFF);
        }
      } else {
        // Bounds clamped into V's own range, so comparisons stay in V's width.
        const V vlo = static_cast<V>(std::max<int64_t>(lo, std::numeric_limits<V>::min()));
        const V vhi = static_cast<V>(std::min<int64_t>(hi, std::numeric_limits<V>::max()));
        for (int64_t i = i0; i < i1; ++i) {
          const V v = xs[i];
          nbad += !(v >= vlo && v <= vhi);
          os[i] = static_cast<uint8_t>(v);  // modulo 256: v & 0xFF
        }
      }
      bad[c] = nbad;
    }
  });
  int64_t total = 0;
  for (int64_t c = 0; c < chunks; ++c) total += bad[c];
  return total;
}

int64_t to_codes(const at::Tensor& x, const at::Tensor& out, int64_t lo, int64_t hi) {
  TORCH_CHECK(x.is_contiguous() && out.is_contiguous() && out.scalar_type() == at::kByte &&
                  out.numel() == x.numel(),
              "to_codes: x and out must be contiguous, out uint8 of x's size");
  const int64_t n = x.numel();
  uint8_t* o = out.data_ptr<uint8_t>();
  switch (x.scalar_type()) {
    case at::kByte: return codes_of(x.data_ptr<uint8_t>(), n, o, lo, hi);
    case at::kChar: return codes_of(x.data_ptr<int8_t>(), n, o, lo, hi);
    case at::kShort: return codes_of(x.data_ptr<int16_t>(), n, o, lo, hi);
    case at::kInt: return codes_of(x.data_ptr<int32_t>(), n, o, lo, hi);
    case at::kLong: return codes_of(x.data_ptr<int64_t>(), n, o, lo, hi);
    case at::kFloat: return codes_of(x.data_ptr<float>(), n, o, lo, hi);
    case at::kDouble: return codes_of(x.data_ptr<double>(), n, o, lo, hi);
    default: TORCH_CHECK(false, "to_codes: unsupported dtype ", x.scalar_type());
  }
}

}  // namespace

TORCH_LIBRARY(hwflow_table_kernel, m) {
  m.def("table_accumulate(Tensor x, Tensor rows, Tensor cols, Tensor t, Tensor(a!) out, "
        "bool add, int rows_per_task, int block_bytes, int group) -> ()",
        &table_accumulate);
  m.def("to_codes(Tensor x, Tensor(a!) out, int lo, int hi) -> int", &to_codes);
  m.def("build_tiles(Tensor table_t, Tensor codes, Tensor signs, Tensor(a!) out) -> ()",
        &build_tiles);
}
