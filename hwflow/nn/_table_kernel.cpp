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
#include <type_traits>
#include <vector>

#if defined(__AVX512BW__)
#include <immintrin.h>
#endif

// Rows per register block by tile width (overridable for tuning builds). Narrow tiles
// take 8 rows where every row read is widened alone (G = 1: tables with products beyond
// 16,383, i.e. real multipliers): ResNet K=144 N=16 measured 1.5x faster than with 4,
// whose misses into the L2-resident T then overlap too little. Grouped reads keep 4.
#ifndef HWFLOW_R16
#define HWFLOW_R16 4
#endif
#ifndef HWFLOW_R16_G1
#define HWFLOW_R16_G1 8
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

// Lanes of T widened to the accumulator type. GCC lowers the generic 16 x int16 -> int32
// conversion to two half-width conversions and an insert (three shuffles per row read);
// with AVX-512 one vpmovsxwd does it.
template <typename TV, typename ACC>
inline typename Vec16<ACC>::type widen(typename Vec16<TV>::type t) {
#if defined(__AVX512BW__)
  if constexpr (std::is_same_v<TV, int16_t> && std::is_same_v<ACC, int32_t>)
    return reinterpret_cast<typename Vec16<ACC>::type>(
        _mm512_cvtepi16_epi32(reinterpret_cast<__m256i>(t)));
#endif
  return __builtin_convertvector(t, typename Vec16<ACC>::type);
}

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
        acc[r][v] += widen<TV, ACC>(t);
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
        acc[r][v] += widen<TV, ACC>(t);
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
  constexpr int R = NB == 16 ? (G == 1 ? HWFLOW_R16_G1 : HWFLOW_R16)
                              : (NB == 32 ? HWFLOW_R32 : HWFLOW_R64);
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

// Codes of one contiguous span: out[i] = (value + offset) & 0xFF (floats rounded half to
// even first, as torch.round), returning how many values + offset lie outside [lo, hi]
// (NaN included), so the caller can reject bad operands without another pass.
// Branch-free, count-only bodies let the compiler vectorize (float min/max reductions
// would not).
template <typename V>
int32_t codes_block(const V* __restrict xs, int64_t n, uint8_t* __restrict os, int64_t offset,
                    int64_t lo, int64_t hi) {
  int32_t nbad = 0;  // int32 vectorizes better than int64; blocks are < 2^31 values
  if constexpr (std::is_floating_point_v<V>) {
    // Integer-valued floats: compare before the offset (exact), add it to the integer.
    const V vlo = static_cast<V>(lo - offset), vhi = static_cast<V>(hi - offset);
    const int32_t off = static_cast<int32_t>(offset);
    for (int64_t i = 0; i < n; ++i) {
      const V r = round_half_even(xs[i]);
      const bool ok = r >= vlo && r <= vhi;  // false for NaN
      nbad += !ok;
      os[i] = static_cast<uint8_t>((static_cast<int32_t>(ok ? r : V(0)) + off) & 0xFF);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = static_cast<int64_t>(xs[i]) + offset;
      nbad += !(v >= lo && v <= hi);
      os[i] = static_cast<uint8_t>(v);  // modulo 256: v & 0xFF
    }
  }
  return nbad;
}

template <typename V>
int64_t codes_span(const V* xs, int64_t n, uint8_t* os, int64_t offset, int64_t lo,
                   int64_t hi) {
  constexpr int64_t kBlock = 1 << 20;
  int64_t nbad = 0;
  for (int64_t i = 0; i < n; i += kBlock)
    nbad += codes_block(xs + i, std::min(kBlock, n - i), os + i, offset, lo, hi);
  return nbad;
}

template <typename V>
int64_t codes_of(const V* x, int64_t n, uint8_t* out, int64_t lo, int64_t hi) {
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<int64_t> bad(chunks, 0);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t i0 = c * kChunk, i1 = std::min(n, (c + 1) * kChunk);
      bad[c] = codes_span(x + i0, i1 - i0, out + i0, 0, lo, hi);
    }
  });
  int64_t total = 0;
  for (int64_t c = 0; c < chunks; ++c) total += bad[c];
  return total;
}

// Planes (P, H, W) of values to codes (P, H + 2 ph, W + 2 pw) with the border = pad_code.
template <typename V>
int64_t padded_codes_of(const V* x, int64_t P, int64_t H, int64_t W, uint8_t* out, int64_t ph,
                        int64_t pw, int64_t offset, int64_t lo, int64_t hi, uint8_t pad) {
  const int64_t Hp = H + 2 * ph, Wp = W + 2 * pw;
  std::vector<int64_t> bad(P, 0);
  at::parallel_for(0, P, 1, [&](int64_t begin, int64_t end) {
    // A plane's codes in one vectorized span (its rows are short), then copied into place.
    std::vector<uint8_t> plane(H * W);
    for (int64_t p = begin; p < end; ++p) {
      uint8_t* o = out + p * Hp * Wp;
      bad[p] = codes_span(x + p * H * W, H * W, plane.data(), offset, lo, hi);
      std::memset(o, pad, ph * Wp);
      std::memset(o + (ph + H) * Wp, pad, ph * Wp);
      for (int64_t h = 0; h < H; ++h) {
        uint8_t* row = o + (ph + h) * Wp;
        std::memset(row, pad, pw);
        std::memcpy(row + pw, plane.data() + h * W, W);
        std::memset(row + pw + W, pad, pw);
      }
    }
  });
  int64_t total = 0;
  for (int64_t p = 0; p < P; ++p) total += bad[p];
  return total;
}

#define HWFLOW_CODE_TYPES(CASE)                                                               \
  CASE(at::kByte, uint8_t)                                                                    \
  CASE(at::kChar, int8_t)                                                                     \
  CASE(at::kShort, int16_t)                                                                   \
  CASE(at::kInt, int32_t)                                                                     \
  CASE(at::kLong, int64_t)                                                                    \
  CASE(at::kFloat, float)                                                                     \
  CASE(at::kDouble, double)

int64_t to_codes(const at::Tensor& x, const at::Tensor& out, int64_t lo, int64_t hi) {
  TORCH_CHECK(x.is_contiguous() && out.is_contiguous() && out.scalar_type() == at::kByte &&
                  out.numel() == x.numel(),
              "to_codes: x and out must be contiguous, out uint8 of x's size");
  const int64_t n = x.numel();
  uint8_t* o = out.data_ptr<uint8_t>();
  switch (x.scalar_type()) {
#define HWFLOW_CASE(ST, T) \
  case ST: return codes_of(x.data_ptr<T>(), n, o, lo, hi);
    HWFLOW_CODE_TYPES(HWFLOW_CASE)
#undef HWFLOW_CASE
    default: TORCH_CHECK(false, "to_codes: unsupported dtype ", x.scalar_type());
  }
}

// x: (N, C, H, W) contiguous values; out: uint8 (N, C, H + 2 ph, W + 2 pw), the codes
// (x + offset) & 0xFF inside and pad_code & 0xFF on the border. Returns the number of
// values with x + offset outside [lo, hi].
int64_t padded_codes(const at::Tensor& x, const at::Tensor& out, int64_t offset, int64_t lo,
                     int64_t hi, int64_t pad_code) {
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous() && out.dim() == 4 && out.is_contiguous() &&
                  out.scalar_type() == at::kByte && out.size(0) == x.size(0) &&
                  out.size(1) == x.size(1) && out.size(2) >= x.size(2) &&
                  out.size(3) >= x.size(3) && (out.size(2) - x.size(2)) % 2 == 0 &&
                  (out.size(3) - x.size(3)) % 2 == 0,
              "padded_codes: x (N, C, H, W) and out uint8 (N, C, H + 2 ph, W + 2 pw)");
  const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const int64_t ph = (out.size(2) - H) / 2, pw = (out.size(3) - W) / 2;
  uint8_t* o = out.data_ptr<uint8_t>();
  const auto pad = static_cast<uint8_t>(pad_code & 0xFF);
  switch (x.scalar_type()) {
#define HWFLOW_CASE(ST, T) \
  case ST: return padded_codes_of(x.data_ptr<T>(), P, H, W, o, ph, pw, offset, lo, hi, pad);
    HWFLOW_CODE_TYPES(HWFLOW_CASE)
#undef HWFLOW_CASE
    default: TORCH_CHECK(false, "padded_codes: unsupported dtype ", x.scalar_type());
  }
}

// Accumulator rows (n, position) back to channels: out[n, c0 + j, l] = acc[n * L + l, j]
// - corr[j] for j < corr.numel(), subtracted in int64 and then converted to out's type.
template <typename A, typename O>
void rows_to_channels_of(const A* acc, int64_t lda, const int64_t* corr, int64_t width,
                         int64_t N, int64_t C, int64_t L, int64_t c0, O* out) {
  constexpr int64_t kBlock = 64;  // positions per block: the rows read stay in L1
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      for (int64_t l0 = 0; l0 < L; l0 += kBlock) {
        const int64_t l1 = std::min(L, l0 + kBlock);
        for (int64_t j = 0; j < width; ++j) {
          const A* a = acc + (n * L) * lda + j;
          O* o = out + (n * C + c0 + j) * L;
          const int64_t cj = corr[j];
          for (int64_t l = l0; l < l1; ++l)
            o[l] = static_cast<O>(static_cast<int64_t>(a[l * lda]) - cj);
        }
      }
    }
  });
}

// acc: int32/int64 (N * L, lda) contiguous; corr: int64 (width,); out: float32/float64/
// int64/int32 (N, C, L) contiguous with c0 + width <= C.
void rows_to_channels(const at::Tensor& acc, const at::Tensor& corr, const at::Tensor& out,
                      int64_t c0) {
  TORCH_CHECK(acc.dim() == 2 && acc.is_contiguous() && out.dim() == 3 && out.is_contiguous() &&
                  corr.scalar_type() == at::kLong && corr.is_contiguous() &&
                  acc.size(0) == out.size(0) * out.size(2) && corr.numel() <= acc.size(1) &&
                  c0 >= 0 && c0 + corr.numel() <= out.size(1),
              "rows_to_channels: acc (N * L, >= width), corr (width,), out (N, C, L)");
  const int64_t N = out.size(0), C = out.size(1), L = out.size(2), w = corr.numel();
  const int64_t lda = acc.size(1);
  const int64_t* cp = corr.data_ptr<int64_t>();
  auto run = [&](auto* a) {
    switch (out.scalar_type()) {
      case at::kFloat:
        return rows_to_channels_of(a, lda, cp, w, N, C, L, c0, out.data_ptr<float>());
      case at::kDouble:
        return rows_to_channels_of(a, lda, cp, w, N, C, L, c0, out.data_ptr<double>());
      case at::kLong:
        return rows_to_channels_of(a, lda, cp, w, N, C, L, c0, out.data_ptr<int64_t>());
      case at::kInt:  // the caller checks the values fit
        return rows_to_channels_of(a, lda, cp, w, N, C, L, c0, out.data_ptr<int32_t>());
      default: TORCH_CHECK(false, "rows_to_channels: unsupported out dtype ", out.scalar_type());
    }
  };
  if (acc.scalar_type() == at::kInt) return run(acc.data_ptr<int32_t>());
  if (acc.scalar_type() == at::kLong) return run(acc.data_ptr<int64_t>());
  TORCH_CHECK(false, "rows_to_channels: acc must be int32 or int64");
}

}  // namespace

TORCH_LIBRARY(hwflow_table_kernel, m) {
  m.def("table_accumulate(Tensor x, Tensor rows, Tensor cols, Tensor t, Tensor(a!) out, "
        "bool add, int rows_per_task, int block_bytes, int group) -> ()",
        &table_accumulate);
  m.def("to_codes(Tensor x, Tensor(a!) out, int lo, int hi) -> int", &to_codes);
  m.def("padded_codes(Tensor x, Tensor(a!) out, int offset, int lo, int hi, int pad_code) -> int",
        &padded_codes);
  m.def("rows_to_channels(Tensor acc, Tensor corr, Tensor(a!) out, int c0) -> ()",
        &rows_to_channels);
  m.def("build_tiles(Tensor table_t, Tensor codes, Tensor signs, Tensor(a!) out) -> ()",
        &build_tiles);
}
