// winograd_tile.h: the template the Winograd transform micro-kernels are made from.
//
// Include only from an ISA translation unit (compiled with -mavx2 -mfma or -mavx512f): the
// transforms are plain loops over kWinogradLanes tiles, unrolled over the constant matrices (so
// zero coefficients cost nothing) and vectorised by the compiler across tiles. The contracts
// are F32WinogradInputFn's and F32WinogradOutputFn's (ukernels.h).
#ifndef CONVSERVE_CORE_UKERNELS_WINOGRAD_TILE_H_
#define CONVSERVE_CORE_UKERNELS_WINOGRAD_TILE_H_

#include <cstddef>

#include "core/ukernels/ukernels.h"

namespace convserve {
namespace ukernels {

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

// v[(i * alpha + j) * v_stride + t] = (B^T d_t B)[i][j] with
// d_t[r][c] = tiles[t][offset + r * row_stride + c * column_stride].
template <int M>
inline void WinogradInputTile(const float* const* tiles, size_t offset, size_t row_stride,
                              size_t column_stride, float* v, size_t v_stride) {
  using W = WinogradMatrices<M>;
  constexpr int kA = W::kAlpha;
  alignas(64) float d[kA * kA][kLanes];
  for (size_t t = 0; t < kLanes; ++t) {
    const float* tile = tiles[t] + offset;
#pragma GCC unroll 8
    for (int r = 0; r < kA; ++r) {
#pragma GCC unroll 8
      for (int c = 0; c < kA; ++c) d[r * kA + c][t] = tile[r * row_stride + c * column_stride];
    }
  }
  // Columns first (B^T d), then rows ((B^T d) B).
  Lanes bd[kA][kA];  // bd[c][i] = (B^T d)[i][c]
#pragma GCC unroll 8
  for (int c = 0; c < kA; ++c) {
    Lanes column[kA];
#pragma GCC unroll 8
    for (int r = 0; r < kA; ++r) column[r] = *reinterpret_cast<const Lanes*>(d[r * kA + c]);
    ApplyMatrix(W::kBt, column, bd[c]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < kA; ++i) {
    Lanes row[kA], result[kA];
#pragma GCC unroll 8
    for (int c = 0; c < kA; ++c) row[c] = bd[c][i];
    ApplyMatrix(W::kBt, row, result);
#pragma GCC unroll 8
    for (int j = 0; j < kA; ++j) *reinterpret_cast<LanesU*>(v + (i * kA + j) * v_stride) = result[j];
  }
}

// o[(i * M + j) * kLanes + t] = clamp((A^T m_t A)[i][j] + bias, lo, hi) with
// m_t[r][c] = m[(r * alpha + c) * m_stride + t]; the clamp passes NaN through.
template <int M>
inline void WinogradOutputTile(const float* m, size_t m_stride, float bias, float lo, float hi,
                               float* o) {
  using W = WinogradMatrices<M>;
  constexpr int kA = W::kAlpha;
  Lanes am[kA][M];  // am[c][i] = (A^T m)[i][c]
#pragma GCC unroll 8
  for (int c = 0; c < kA; ++c) {
    Lanes column[kA];
#pragma GCC unroll 8
    for (int r = 0; r < kA; ++r) column[r] = *reinterpret_cast<const LanesU*>(m + (r * kA + c) * m_stride);
    ApplyMatrix(W::kAt, column, am[c]);
  }
  const Lanes vbias = bias - Lanes{};
  const Lanes vlo = lo - Lanes{};
  const Lanes vhi = hi - Lanes{};
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    Lanes row[kA], result[M];
#pragma GCC unroll 8
    for (int c = 0; c < kA; ++c) row[c] = am[c][i];
    ApplyMatrix(W::kAt, row, result);
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) {
      Lanes y = result[j] + vbias;
      y = y < vlo ? vlo : y;  // NaN compares false: kept
      y = y > vhi ? vhi : y;
      *reinterpret_cast<Lanes*>(o + (i * M + j) * kLanes) = y;
    }
  }
}

}  // namespace ukernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_UKERNELS_WINOGRAD_TILE_H_
