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

// v[(i * alpha + j) * v_stride + t] = (B^T d_t B)[i][j] with d_t[r][c] = d[(r * alpha + c) * kLanes + t].
template <int M>
inline void WinogradInputTile(const float* d, float* v, size_t v_stride) {
  using W = WinogradMatrices<M>;
  constexpr int kA = W::kAlpha;
  float tmp[kA][kA][kLanes];
#pragma GCC unroll 8
  for (int i = 0; i < kA; ++i) {
#pragma GCC unroll 8
    for (int c = 0; c < kA; ++c) {
      float acc[kLanes] = {};
#pragma GCC unroll 8
      for (int k = 0; k < kA; ++k) {
        if (W::kBt[i][k] == 0) continue;
        const float coef = W::kBt[i][k];
        const float* row = d + (k * kA + c) * kLanes;
        for (size_t t = 0; t < kLanes; ++t) acc[t] += coef * row[t];
      }
      for (size_t t = 0; t < kLanes; ++t) tmp[i][c][t] = acc[t];
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < kA; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < kA; ++j) {
      float acc[kLanes] = {};
#pragma GCC unroll 8
      for (int k = 0; k < kA; ++k) {
        if (W::kBt[j][k] == 0) continue;
        const float coef = W::kBt[j][k];
        for (size_t t = 0; t < kLanes; ++t) acc[t] += coef * tmp[i][k][t];
      }
      float* out = v + (i * kA + j) * v_stride;
      for (size_t t = 0; t < kLanes; ++t) out[t] = acc[t];
    }
  }
}

// o[(i * M + j) * kLanes + t] = (A^T m_t A)[i][j] with m_t[r][c] = m[(r * alpha + c) * m_stride + t].
template <int M>
inline void WinogradOutputTile(const float* m, size_t m_stride, float* o) {
  using W = WinogradMatrices<M>;
  constexpr int kA = W::kAlpha;
  float tmp[M][kA][kLanes];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
#pragma GCC unroll 8
    for (int c = 0; c < kA; ++c) {
      float acc[kLanes] = {};
#pragma GCC unroll 8
      for (int k = 0; k < kA; ++k) {
        if (W::kAt[i][k] == 0) continue;
        const float coef = W::kAt[i][k];
        const float* row = m + (k * kA + c) * m_stride;
        for (size_t t = 0; t < kLanes; ++t) acc[t] += coef * row[t];
      }
      for (size_t t = 0; t < kLanes; ++t) tmp[i][c][t] = acc[t];
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) {
      float acc[kLanes] = {};
#pragma GCC unroll 8
      for (int k = 0; k < kA; ++k) {
        if (W::kAt[j][k] == 0) continue;
        const float coef = W::kAt[j][k];
        for (size_t t = 0; t < kLanes; ++t) acc[t] += coef * tmp[i][k][t];
      }
      float* out = o + (i * M + j) * kLanes;
      for (size_t t = 0; t < kLanes; ++t) out[t] = acc[t];
    }
  }
}

}  // namespace ukernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_UKERNELS_WINOGRAD_TILE_H_
