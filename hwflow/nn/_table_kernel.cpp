// Compiled accumulation loop of hwflow.nn.kernels (see that module for the contract).
//
// out[m, n] = sum_k T[k, xb[m, k], n], with T the per-weight table that Python builds:
// laid out (NT, K, 256, NB) so one tile of NB output columns over a block of K is a
// contiguous run that stays in L2 while every row of an M block reads it. Accumulators
// are a fixed-size local array the compiler keeps in vector registers.
// Registered as a plain torch op (no pybind11) to keep the JIT build light.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace {

constexpr int64_t kRowsPerTask = 256;        // rows of x per parallel task
constexpr int64_t kTileBytesTarget = 512 << 10;  // K block of one T tile: half of L2

// 16 lanes per vector; GCC/Clang vector extensions lower these to the widest SIMD the
// target has (AVX-512, AVX2, NEON) without intrinsics.
template <typename T>
struct Vec16 {
  typedef T type __attribute__((vector_size(16 * sizeof(T))));
};

// acc[r] += T-row of x byte `code` at k, for R rows x NB columns held in registers.
template <typename TV, typename ACC, int NB, int R>
inline void accumulate_rows(const uint8_t* const* xr, const TV* tk, int64_t kb, ACC* const* o,
                            bool first) {
  typedef typename Vec16<TV>::type tv_t;
  typedef typename Vec16<ACC>::type acc_t;
  constexpr int NV = NB / 16;
  acc_t acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      if (first) {
        acc[r][v] = acc_t{};
      } else {
        std::memcpy(&acc[r][v], o[r] + 16 * v, sizeof(acc_t));
      }
    }
  for (int64_t k = 0; k < kb; ++k) {
    const TV* base = tk + k * 256 * NB;
    for (int r = 0; r < R; ++r) {
      const TV* row = base + static_cast<int64_t>(xr[r][k]) * NB;
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

template <typename TV, typename ACC, int NB>
void accumulate(const uint8_t* xb, int64_t ldx, int64_t M, int64_t K, const TV* T, int64_t NT,
                ACC* out, int64_t ldo, bool add_to_out) {
  // Rows per register block: enough independent chains to hide load latency while
  // R * NB / 16 accumulators still fit the vector register file.
  constexpr int R = NB == 16 ? 4 : (NB == 32 ? 2 : 1);
  const int64_t row_bytes = 256 * NB * static_cast<int64_t>(sizeof(TV));
  const int64_t KB = std::max<int64_t>(1, kTileBytesTarget / row_bytes);
  const int64_t n_mblocks = (M + kRowsPerTask - 1) / kRowsPerTask;
  at::parallel_for(0, n_mblocks * NT, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t nt = task % NT;
      const int64_t m0 = (task / NT) * kRowsPerTask;
      const int64_t m1 = std::min(M, m0 + kRowsPerTask);
      const TV* tile = T + nt * K * 256 * NB;
      for (int64_t k0 = 0; k0 < K; k0 += KB) {
        const int64_t kb = std::min(KB, K - k0);
        const TV* tk = tile + k0 * 256 * NB;
        int64_t m = m0;
        for (; m + R <= m1; m += R) {
          const uint8_t* xr[R];
          ACC* o[R];
          for (int r = 0; r < R; ++r) {
            xr[r] = xb + (m + r) * ldx + k0;
            o[r] = out + (m + r) * ldo + nt * NB;
          }
          accumulate_rows<TV, ACC, NB, R>(xr, tk, kb, o, k0 == 0 && !add_to_out);
        }
        for (; m < m1; ++m) {
          const uint8_t* xr[1] = {xb + m * ldx + k0};
          ACC* o[1] = {out + m * ldo + nt * NB};
          accumulate_rows<TV, ACC, NB, 1>(xr, tk, kb, o, k0 == 0 && !add_to_out);
        }
      }
    }
  });
}

template <typename TV, typename ACC>
void dispatch_nb(const at::Tensor& xb, const at::Tensor& t, const at::Tensor& out, bool add) {
  const int64_t M = xb.size(0), K = xb.size(1), NT = t.size(0), NB = t.size(3);
  const uint8_t* x = xb.data_ptr<uint8_t>();
  const TV* tp = t.data_ptr<TV>();
  ACC* o = out.data_ptr<ACC>();
  const int64_t ldo = out.size(1), ldx = xb.stride(0);
  switch (NB) {
    case 16: return accumulate<TV, ACC, 16>(x, ldx, M, K, tp, NT, o, ldo, add);
    case 32: return accumulate<TV, ACC, 32>(x, ldx, M, K, tp, NT, o, ldo, add);
    case 64: return accumulate<TV, ACC, 64>(x, ldx, M, K, tp, NT, o, ldo, add);
    default: TORCH_CHECK(false, "table kernel: tile width must be 16, 32 or 64, got ", NB);
  }
}

// xb: uint8 (M, K), unit column stride; t: int16/int32 (NT, K, 256, NB);
// out: int32/int64 (M, NT * NB), overwritten, or added to when `add` is true.
void table_accumulate(const at::Tensor& xb, const at::Tensor& t, const at::Tensor& out,
                      bool add) {
  TORCH_CHECK(xb.scalar_type() == at::kByte && xb.dim() == 2 && xb.stride(1) == 1,
              "table kernel: xb must be uint8 (M, K) with unit column stride");
  TORCH_CHECK(t.dim() == 4 && t.is_contiguous() && t.size(1) == xb.size(1) && t.size(2) == 256,
              "table kernel: t must be contiguous (NT, K, 256, NB)");
  TORCH_CHECK(out.dim() == 2 && out.is_contiguous() && out.size(0) == xb.size(0) &&
                  out.size(1) == t.size(0) * t.size(3),
              "table kernel: out must be contiguous (M, NT * NB)");
  if (xb.size(0) == 0 || xb.size(1) == 0 || t.size(0) == 0) return;
  const auto tv = t.scalar_type();
  const auto acc = out.scalar_type();
  if (tv == at::kShort && acc == at::kInt) return dispatch_nb<int16_t, int32_t>(xb, t, out, add);
  if (tv == at::kInt && acc == at::kInt) return dispatch_nb<int32_t, int32_t>(xb, t, out, add);
  if (tv == at::kInt && acc == at::kLong) return dispatch_nb<int32_t, int64_t>(xb, t, out, add);
  TORCH_CHECK(false, "table kernel: unsupported dtypes ", tv, " -> ", acc);
}

}  // namespace

TORCH_LIBRARY(hwflow_table_kernel, m) {
  m.def("table_accumulate(Tensor xb, Tensor t, Tensor(a!) out, bool add) -> ()", &table_accumulate);
}
