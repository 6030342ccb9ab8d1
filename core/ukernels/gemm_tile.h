// gemm_tile.h: the template the direct 1x1 GEMM micro-kernels are made from.
//
// Include only from an ISA translation unit, which supplies `V`, a traits type over its vector
// register (ymm.h, zmm.h) with the members igemm_tile.h lists plus
//   Reg LoadFirst(const float*, size_t lanes);  // the other lanes read as 0, not loaded
// The contract is F32GemmFn's (ukernels.h).
#ifndef CONVSERVE_CORE_UKERNELS_GEMM_TILE_H_
#define CONVSERVE_CORE_UKERNELS_GEMM_TILE_H_

#include <cstddef>

namespace convserve {
namespace ukernels {

// acc[i][j] += sum_k a[k * MR + i] * b[k * b_stride + j]; with kPartial only
// the first nc columns of b are loaded, and only the last vector is partial
// (REQUIRES: kLanes * (NV - 1) < nc), so one lane mask is live.
template <typename V, int MR, int NV, bool kPartial>
inline void GemmAccumulate(size_t nc, size_t kc, const float* a, const float* b, size_t b_stride,
                           typename V::Reg (&acc)[MR][NV]) {
  using Reg = typename V::Reg;
  constexpr int kLanes = V::kLanes;
  for (size_t k = 0; k < kc; ++k) {
    Reg vb[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      if (kPartial && j == NV - 1) {
        vb[j] = V::LoadFirst(b + kLanes * j, nc - kLanes * j);
      } else {
        vb[j] = V::Load(b + kLanes * j);
      }
    }
    b += b_stride;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const Reg va = V::Broadcast(a + i);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = V::Fma(va, vb[j], acc[i][j]);
    }
    a += MR;
  }
}

// Direct GEMM tile for a 1x1, stride-1 layer on channels-first tensors, where
// input and output rows are contiguous pixel runs (no reorder, no
// indirection): for rows i < mr (output channels), columns j < nc (pixels),
//   c[i * c_stride + j] = clamp(bias[i] + sum_{k < kc} a[k * MR + i] * b[k * b_stride + j])
// `a` holds the packed weights of MR output channels (zero-padded rows),
// `bias` MR values. Columns past nc are neither loaded nor stored, so the
// tile may end a tensor.
// One tile with or without partial columns, as separate functions: sharing
// one body made GCC keep the lane masks in registers on the full path too,
// which with 16 ymm registers spills accumulators to memory in the inner loop.
template <typename V, int MR, int NV, bool kPartial>
__attribute__((noinline)) void GemmTileBody(size_t mr, size_t nc, size_t kc, const float* a,
                                            const float* bias, const float* b, size_t b_stride,
                                            float* c, size_t c_stride, float lo, float hi) {
  using Reg = typename V::Reg;
  constexpr int kLanes = V::kLanes;
  Reg acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    const Reg row_bias = V::Broadcast(bias + i);
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = row_bias;
  }
  GemmAccumulate<V, MR, NV, kPartial>(nc, kc, a, b, b_stride, acc);
  const Reg vlo = V::Splat(lo);
  const Reg vhi = V::Splat(hi);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    if (static_cast<size_t>(i) >= mr) break;
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      const size_t first = static_cast<size_t>(kLanes * j);
      const Reg v = V::Clamp(acc[i][j], vlo, vhi);
      if (!kPartial || j < NV - 1) {
        V::Store(c + i * c_stride + first, v);
      } else {
        V::StoreFirst(c + i * c_stride + first, v, nc - first);
      }
    }
  }
}

template <typename V, int MR, int NV>
void GemmTile(size_t mr, size_t nc, size_t kc, const float* a, const float* bias, const float* b,
              size_t b_stride, float* c, size_t c_stride, float lo, float hi) {
  if constexpr (NV > 1) {
    if (nc <= static_cast<size_t>(V::kLanes * (NV - 1))) {
      return GemmTile<V, MR, NV - 1>(mr, nc, kc, a, bias, b, b_stride, c, c_stride, lo, hi);
    }
  }
  if (nc == static_cast<size_t>(V::kLanes * NV)) {
    GemmTileBody<V, MR, NV, false>(mr, nc, kc, a, bias, b, b_stride, c, c_stride, lo, hi);
  } else {
    GemmTileBody<V, MR, NV, true>(mr, nc, kc, a, bias, b, b_stride, c, c_stride, lo, hi);
  }
}

}  // namespace ukernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_UKERNELS_GEMM_TILE_H_
