// winograd_tile.h: the template the Winograd transform micro-kernels are made from.
//
// Include only from an ISA translation unit (compiled with -mavx2 -mfma or -mavx512f): the
// transforms are plain loops over kWinogradLanes tiles, unrolled over the constant matrices (so
// zero coefficients cost nothing) and vectorised by the compiler across tiles. The contracts
// are F32WinogradInputFn's and F32WinogradOutputFn's (ukernels.h).
#ifndef CONVSERVE_CORE_UKERNELS_WINOGRAD_TILE_H_
#define CONVSERVE_CORE_UKERNELS_WINOGRAD_TILE_H_

#include <immintrin.h>

#include <cstddef>

#include "core/ukernels/ukernels.h"

namespace convserve {
namespace ukernels {
// Internal linkage: each ISA unit compiles its own copy of these inline
// functions (one shared definition would let the linker pick either ISA's).
namespace {

// B^T and A^T of F(M x M, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016; the points 0, +-1, +-2 and infinity for M = 4, 0, +-1 and infinity for M = 2).
// G, which transforms the weights, is in core/fast/winograd_path.cc.
template <int M>
struct WinogradMatrices;

template <>
struct WinogradMatrices<4> {
  static constexpr int kAlpha = 6;
  static constexpr float kBt[6][6] = {
      {4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
      {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1},
  };
  static constexpr float kAt[4][6] = {
      {1, 1, 1, 1, 1, 0},
      {0, 1, -1, 2, -2, 0},
      {0, 1, 1, 4, 4, 0},
      {0, 1, -1, 8, -8, 1},
  };
};

template <>
struct WinogradMatrices<2> {
  static constexpr int kAlpha = 4;
  static constexpr float kBt[4][4] = {
      {1, 0, -1, 0},
      {0, 1, 1, 0},
      {0, -1, 1, 0},
      {0, 1, 0, -1},
  };
  static constexpr float kAt[2][4] = {
      {1, 1, 1, 0},
      {0, 1, -1, -1},
  };
};

constexpr size_t kLanes = kWinogradLanes;
// kLanes floats as one GCC vector (one zmm, or two ymm in the AVX2 unit); the
// unaligned variant for loads and stores.
typedef float Lanes __attribute__((vector_size(4 * kLanes)));
typedef float LanesU __attribute__((vector_size(4 * kLanes), aligned(4)));

// out[i] = sum_k kMatrix[i][k] * in[k] for i < kRows, k < kCols, skipping zero coefficients
// (the loops unroll over the constant matrix, so the skips cost nothing).
template <int kRows, int kCols>
inline void ApplyMatrix(const float (&matrix)[kRows][kCols], const Lanes* in, Lanes* out) {
#pragma GCC unroll 8
  for (int i = 0; i < kRows; ++i) {
    Lanes acc = {};
#pragma GCC unroll 8
    for (int k = 0; k < kCols; ++k) {
      if (matrix[i][k] == 0) continue;
      if (matrix[i][k] == 1) {
        acc += in[k];
      } else if (matrix[i][k] == -1) {
        acc -= in[k];
      } else {
        acc += matrix[i][k] * in[k];
      }
    }
    out[i] = acc;
  }
}

// out[c][l] = in[l][c] for l, c < 8.
inline void Transpose8x8(const __m256 (&r)[8], __m256 (&out)[8]) {
  __m256 t[8], u[8];
#pragma GCC unroll 4
  for (int l = 0; l < 8; l += 2) {
    t[l] = _mm256_unpacklo_ps(r[l], r[l + 1]);
    t[l + 1] = _mm256_unpackhi_ps(r[l], r[l + 1]);
  }
#pragma GCC unroll 2
  for (int l = 0; l < 8; l += 4) {
    u[l] = _mm256_shuffle_ps(t[l], t[l + 2], 0x44);
    u[l + 1] = _mm256_shuffle_ps(t[l], t[l + 2], 0xEE);
    u[l + 2] = _mm256_shuffle_ps(t[l + 1], t[l + 3], 0x44);
    u[l + 3] = _mm256_shuffle_ps(t[l + 1], t[l + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    out[c] = _mm256_permute2f128_ps(u[c], u[c + 4], 0x20);
    out[c + 4] = _mm256_permute2f128_ps(u[c], u[c + 4], 0x31);
  }
}

// columns[c][l] = rows[l][offset + c] for l, c < 8.
inline void Transpose8x8(const float* const* rows, size_t offset, __m256 (&columns)[8]) {
  __m256 r[8];
#pragma GCC unroll 8
  for (int l = 0; l < 8; ++l) r[l] = _mm256_loadu_ps(rows[l] + offset);
  Transpose8x8(r, columns);
}

// v[(i * alpha + j) * v_stride + t] = (B^T d_t B)[i][j] with
// d_t[r][c] = tiles[t][offset + r * row_stride + c]; each tile row is read as 8 floats.
template <int M>
inline void WinogradInputTile(const float* const* tiles, size_t offset, size_t row_stride, float* v,
                              size_t v_stride) {
  using W = WinogradMatrices<M>;
  constexpr int kA = W::kAlpha;
  static_assert(kA <= 8 && kLanes == 16, "one ymm per tile row, two transposes per row");
  // Rows first (d B), then columns (B^T (d B)): db[r][j] = (d B)[r][j]. Each
  // tile row is transposed 8 tiles at a time into the lanes.
  Lanes db[kA][kA];
#pragma GCC unroll 8
  for (int r = 0; r < kA; ++r) {
    __m256 low[8], high[8];
    Transpose8x8(tiles, offset + r * row_stride, low);
    Transpose8x8(tiles + 8, offset + r * row_stride, high);
    Lanes row[kA];
#pragma GCC unroll 8
    for (int c = 0; c < kA; ++c) {
      row[c] = __builtin_shufflevector(low[c], high[c], 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                       13, 14, 15);
    }
    ApplyMatrix(W::kBt, row, db[r]);
  }
#pragma GCC unroll 8
  for (int j = 0; j < kA; ++j) {
    Lanes column[kA], result[kA];
#pragma GCC unroll 8
    for (int r = 0; r < kA; ++r) column[r] = db[r][j];
    ApplyMatrix(W::kBt, column, result);
#pragma GCC unroll 8
    for (int i = 0; i < kA; ++i) {
      *reinterpret_cast<LanesU*>(v + (i * kA + j) * v_stride) = result[i];
    }
  }
}

// o[(i * M + j) * kLanes + t] = clamp((A^T m_t A)[i][j] + bias, lo, hi) with
// m_t[r][c] = m[(r * alpha + c) * m_stride + t]; the clamp passes NaN through.
// With `tiles` (M = 4 only), the values go to tiles[t][i * row_stride + j] instead.
template <int M>
inline void WinogradOutputTile(const float* m, size_t m_stride, float bias, float lo, float hi,
                               float* o, float* const* tiles, size_t row_stride) {
  using W = WinogradMatrices<M>;
  constexpr int kA = W::kAlpha;
  Lanes am[kA][M];  // am[c][i] = (A^T m)[i][c]
#pragma GCC unroll 8
  for (int c = 0; c < kA; ++c) {
    Lanes column[kA];
#pragma GCC unroll 8
    for (int r = 0; r < kA; ++r) {
      column[r] = *reinterpret_cast<const LanesU*>(m + (r * kA + c) * m_stride);
    }
    ApplyMatrix(W::kAt, column, am[c]);
  }
  const Lanes vbias = bias - Lanes{};
  const Lanes vlo = lo - Lanes{};
  const Lanes vhi = hi - Lanes{};
  Lanes y[M * M];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    Lanes row[kA], result[M];
#pragma GCC unroll 8
    for (int c = 0; c < kA; ++c) row[c] = am[c][i];
    ApplyMatrix(W::kAt, row, result);
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) {
      Lanes v = result[j] + vbias;
      v = v < vlo ? vlo : v;  // NaN compares false: kept
      y[i * M + j] = v > vhi ? vhi : v;
    }
  }
  if constexpr (M == 4) {
    if (tiles != nullptr) {
      // Values 8 at a time (two output rows of 4), transposed 8 tiles at a time.
#pragma GCC unroll 2
      for (int half = 0; half < 2; ++half) {
#pragma GCC unroll 2
        for (int p0 = 0; p0 < 16; p0 += 8) {
          __m256 in[8], out[8];
#pragma GCC unroll 8
          for (int p = 0; p < 8; ++p) {
            in[p] =
                half == 0
                    ? __builtin_shufflevector(y[p0 + p], y[p0 + p], 0, 1, 2, 3, 4, 5, 6, 7)
                    : __builtin_shufflevector(y[p0 + p], y[p0 + p], 8, 9, 10, 11, 12, 13, 14, 15);
          }
          Transpose8x8(in, out);
#pragma GCC unroll 8
          for (int l = 0; l < 8; ++l) {
            float* dst = tiles[half * 8 + l] + (p0 / 4) * row_stride;
            _mm_storeu_ps(dst, _mm256_castps256_ps128(out[l]));
            _mm_storeu_ps(dst + row_stride, _mm256_extractf128_ps(out[l], 1));
          }
        }
      }
      return;
    }
  }
#pragma GCC unroll 16
  for (int p = 0; p < M * M; ++p) *reinterpret_cast<LanesU*>(o + p * kLanes) = y[p];
}

}  // namespace
}  // namespace ukernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_UKERNELS_WINOGRAD_TILE_H_
