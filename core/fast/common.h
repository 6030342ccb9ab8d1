// common.h: what the fast operator's paths share: block-size constants, the weight accessor, the
// activation epilogue and the per-thread scratch.
//
// Internal to core/fast/: include only from its sources.
#ifndef CONVSERVE_CORE_FAST_COMMON_H_
#define CONVSERVE_CORE_FAST_COMMON_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <vector>

#include "absl/types/span.h"
#include "core/geometry.h"

namespace convserve {
namespace kernels {

// Output pixels per work item of the depthwise path: enough to amortise the
// task, few enough that batch 1 still splits over every thread.
constexpr int64_t kDepthwisePixelBlock = 128;
// Output pixels per work item of the GEMM path (rounded up to whole tiles):
// the item's input rows stay in L2 while every channel block of the item
// streams over them.
constexpr int64_t kPixelBlock = 96;
// Widest channel range one work item of the GEMM path covers on a
// channels-first output: bounds the per-thread block that is transposed into
// place (pixel block x this many floats).
constexpr int64_t kMaxBlockChannels = 512;
// Work items per thread the GEMM paths aim for, so that uneven items still
// balance across threads.
constexpr int64_t kItemsPerThread = 4;

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Allocates on 64-byte (cache line, zmm) boundaries, so that packed weights
// read with whole-vector loads never straddle two cache lines (a split load
// costs about two).
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}  // NOLINT: rebinding converts implicitly.
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, size_t) { ::operator delete(p, kAlignment); }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const CacheLineAllocator<U>&) const {
    return false;
  }
};

// Packed weights: each path lays out its blocks in multiples of 16 floats, so
// every block and vector starts on a cache line.
using PackedFloats = std::vector<float, CacheLineAllocator<float>>;

// weight(oc, ic, tap) in the layer's weight layout, `taps` taps per channel pair.
// REQUIRES: weight holds layer.weight_elements() values.
inline float WeightAt(const ResolvedLayer& layer, absl::Span<const float> weight, int64_t taps,
                      int64_t oc, int64_t ic, int64_t tap) {
  const int64_t in_per_group = layer.in_channels_per_group();
  if (layer.spec.weight_layout == WeightLayout::kOutInSpatial) {
    return weight[(oc * in_per_group + ic) * taps + tap];
  }
  return weight[(tap * in_per_group + ic) * layer.spec.out_channels + oc];
}

// What the micro-kernels apply while storing (a clamp); the other activations
// run over each finished tile with the shared scalar formula, so every path
// agrees with the reference bit for bit on the nonlinearity.
struct Epilogue {
  float lo;
  float hi;
  bool per_element;  // ApplyActivation() after the clamp-free store.
};

inline Epilogue EpilogueOf(Activation activation) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  switch (activation) {
    case Activation::kNone:
      return {-kInf, kInf, false};
    case Activation::kRelu:
      return {0.0f, kInf, false};
    case Activation::kRelu6:
      return {0.0f, 6.0f, false};
    default:
      return {-kInf, kInf, true};
  }
}

// The activations the micro-kernels do not apply, over a stored tile of
// `rows` x `columns` values `stride` apart.
inline void ActivateTile(const ConvGeometry& g, int64_t rows, int64_t columns, float* tile,
                         int64_t stride) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < columns; ++j) {
      float& v = tile[i * stride + j];
      v = ApplyActivation(g.activation, g.activation_alpha, v);
    }
  }
}

// Per-thread scratch, grown on demand and kept for the thread's life: one
// work item's indirection pointers and one block of floats (a channels-first
// output block before its transpose, or a strided 1x1 layer's input panel).
// Both are bounded by the work item, not by the input size. Every path shares
// the calling thread's one instance.
struct Workspace {
  std::vector<const float*> indirection;
  std::vector<float> block;
  std::vector<int64_t> offsets;  // Strided 1x1 layers: a panel pixel's input offset.
};

// The calling thread's workspace. Thread-safety: each thread gets its own; a
// work item must not hold it across a nested parallel call.
inline Workspace& ThreadWorkspace() {
  thread_local Workspace workspace;
  return workspace;
}

}  // namespace kernels
}  // namespace convserve

#endif  // CONVSERVE_CORE_FAST_COMMON_H_
