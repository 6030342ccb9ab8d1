// igemm_tile.h: the one template every indirect-GEMM micro-kernel is made
// from. Include only from an ISA translation unit, which supplies `V`, a
// traits type over its vector register:
//   using Reg; static constexpr int kLanes;
//   Reg Load(const float*); Reg Broadcast(const float*); Reg Splat(float);
//   Reg Fma(Reg a, Reg b, Reg acc);  // a * b + acc
//   Reg Clamp(Reg v, Reg lo, Reg hi);  // NaN-preserving
//   void Store(float*, Reg); void StoreFirst(float*, Reg, size_t lanes);
// The contract is F32IgemmFn's (micro_kernels.h).
// (FmaPeakProbe below is the benchmark's peak-FMA loop, on the same traits.)
#ifndef CONVSERVE_CORE_KERNELS_IGEMM_TILE_H_
#define CONVSERVE_CORE_KERNELS_IGEMM_TILE_H_

#include <cstddef>

namespace convserve {
namespace kernels {

// MR rows (pixels) x NV vectors (channels), fixed at compile time so that the
// accumulators live in registers.
template <typename V, int MR, int NV>
void IgemmTile(size_t nc, size_t taps, size_t kc, const float* const* indirection,
               size_t indirection_stride, size_t a_offset, const float* zero, const float* packed,
               float* c, size_t c_stride, float lo, float hi) {
  using Reg = typename V::Reg;
  constexpr int kLanes = V::kLanes;
  Reg acc[MR][NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    const Reg bias = V::Load(packed + kLanes * j);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) acc[i][j] = bias;
  }
  const float* w = packed + kLanes * NV;
  for (size_t t = 0; t < taps; ++t) {
    const float* a[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const float* p = indirection[i];
      a[i] = p == zero ? p : p + a_offset;
    }
    indirection += indirection_stride;
    for (size_t k = 0; k < kc; ++k) {
      Reg b[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) b[j] = V::Load(w + kLanes * j);
      w += kLanes * NV;
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const Reg va = V::Broadcast(a[i] + k);
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[i][j] = V::Fma(va, b[j], acc[i][j]);
      }
    }
  }
  const Reg vlo = V::Splat(lo);
  const Reg vhi = V::Splat(hi);
  if (nc == static_cast<size_t>(kLanes * NV)) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j)
        V::Store(c + i * c_stride + kLanes * j, V::Clamp(acc[i][j], vlo, vhi));
    }
    return;
  }
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    const size_t first = static_cast<size_t>(kLanes * j);
    if (first >= nc) break;
    const size_t lanes = nc - first < static_cast<size_t>(kLanes) ? nc - first : kLanes;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      V::StoreFirst(c + i * c_stride + first, V::Clamp(acc[i][j], vlo, vhi), lanes);
    }
  }
}

using IgemmTileFn = void (*)(size_t, size_t, size_t, const float* const*, size_t, size_t,
                             const float*, const float*, float*, size_t, float, float);

// kByRows[mr] runs a tile of mr rows (1 <= mr <= max of Rows).
template <typename V, int NV, int... Rows>
struct IgemmTiles {
  static constexpr IgemmTileFn kByRows[] = {nullptr, &IgemmTile<V, Rows, NV>...};
};

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
// tile may end a tensor. Needs V::LoadFirst(p, lanes) besides the above.
// One tile with or without partial columns, as separate functions: sharing
// one body made GCC keep the lane masks in registers on the full path too,
// spilling accumulators (half speed with 16 ymm registers).
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

// Peak-FMA probe: `iterations` rounds of 12 independent FMA chains. Returns
// a value that depends on every chain so the loop cannot be removed.
template <typename V>
float FmaPeakProbe(size_t iterations) {
  using Reg = typename V::Reg;
  Reg acc[12];
  const Reg x = V::Splat(0.999999f);
  const Reg y = V::Splat(1e-7f);
  for (int i = 0; i < 12; ++i) acc[i] = V::Splat(static_cast<float>(i));
  for (size_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = V::Fma(acc[i], x, y);
  }
  float sum = 0.0f;
  for (int i = 0; i < 12; ++i) {
    float lanes[V::kLanes];
    V::Store(lanes, acc[i]);
    sum += lanes[0];
  }
  return sum;
}

}  // namespace kernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_KERNELS_IGEMM_TILE_H_
