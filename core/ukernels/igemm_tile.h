// igemm_tile.h: the one template every indirect-GEMM micro-kernel is made from.
//
// Include only from an ISA translation unit, which supplies `V`, a traits type over its vector
// register (ymm.h, zmm.h):
//   using Reg; static constexpr int kLanes;
//   Reg Load(const float*); Reg Broadcast(const float*); Reg Splat(float);
//   Reg Fma(Reg a, Reg b, Reg acc);  // a * b + acc
//   Reg Clamp(Reg v, Reg lo, Reg hi);  // NaN-preserving
//   void Store(float*, Reg); void StoreFirst(float*, Reg, size_t lanes);
// The contract is F32IgemmFn's (ukernels.h).
#ifndef CONVSERVE_CORE_UKERNELS_IGEMM_TILE_H_
#define CONVSERVE_CORE_UKERNELS_IGEMM_TILE_H_

#include <cstddef>

namespace convserve {
namespace ukernels {

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

// kByRows[mr] runs a tile of mr rows (1 <= mr <= max of Rows). Hidden: the
// table never leaves the library, so position-independent code addresses it
// directly instead of loading its address from the GOT on every call.
template <typename V, int NV, int... Rows>
struct __attribute__((visibility("hidden"))) IgemmTiles {
  static constexpr IgemmTileFn kByRows[] = {nullptr, &IgemmTile<V, Rows, NV>...};
};

}  // namespace ukernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_UKERNELS_IGEMM_TILE_H_
