// dwconv_microkernel_tester.cc: the checks of DwconvMicrokernelTester (packing, reference,
// compare).
#include "tests/ukernels/dwconv_microkernel_tester.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/ukernels/ukernel_test_util.h"

namespace convserve {
namespace ukernels {
namespace testing {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The kernels' weight layout: bias for every channel, then [tap][channel], channels padded to
// kDwconvChannelPad with zeros.
struct PackedWeights {
  size_t padded = 0;
  std::vector<float> packed;
};

PackedWeights Pack(std::mt19937* rng, size_t channels, size_t taps) {
  PackedWeights w;
  w.padded = (channels + kDwconvChannelPad - 1) / kDwconvChannelPad * kDwconvChannelPad;
  w.packed.assign((1 + taps) * w.padded, 0.0f);
  for (size_t t = 0; t <= taps; ++t) {
    const std::vector<float> values = RandomFloats(rng, channels);
    std::copy(values.begin(), values.end(), w.packed.begin() + t * w.padded);
  }
  return w;
}

// Checks `out` against the reference that reads tap t of pixel p at inputs[p * taps + t].
void ExpectOutput(const std::vector<float>& out, const std::vector<const float*>& inputs,
                  const PackedWeights& w, size_t pixels, size_t channels, size_t taps,
                  size_t out_stride, float lo, float hi) {
  std::vector<double> expected(pixels * channels), bound(pixels * channels);
  for (size_t p = 0; p < pixels; ++p) {
    for (size_t ch = 0; ch < channels; ++ch) {
      double acc = w.packed[ch], magnitude = std::fabs(acc);
      for (size_t t = 0; t < taps; ++t) {
        const double product =
            static_cast<double>(inputs[p * taps + t][ch]) * w.packed[(1 + t) * w.padded + ch];
        acc += product;
        magnitude += std::fabs(product);
      }
      expected[p * channels + ch] = ClampReference(acc, lo, hi);
      bound[p * channels + ch] = RoundingBound(taps, magnitude);
    }
  }
  ExpectResult(out, pixels, channels, out_stride, expected, bound);
}

}  // namespace

void DwconvMicrokernelTester::Test(F32DwconvFn dwconv) const {
  ASSERT_TRUE(channels_ >= 1 && taps() >= 1 && out_stride() >= channels_);
  const size_t taps = this->taps();
  SCOPED_TRACE("dwconv channels " + std::to_string(channels_) + " pixels " +
               std::to_string(pixels_) + " taps " + std::to_string(taps) + " zero_index " +
               (zero_index_ == kNone ? std::string("none") : std::to_string(zero_index_)) +
               " out_stride " + std::to_string(out_stride()) + " clamp [" + std::to_string(min_) +
               ", " + std::to_string(max_) + "] nan_input " + std::to_string(nan_input_));
  std::mt19937 rng(seed_);
  for (size_t iteration = 0; iteration < iterations_; ++iteration) {
    const PackedWeights w = Pack(&rng, channels_, taps);
    // One run of `channels` floats per (pixel, tap), back to back, so that a read past a run's
    // last channel reads the next run (or, for the last, leaves the buffer).
    std::vector<float> input = RandomFloats(&rng, pixels_ * taps * channels_, input_scale_);
    const std::vector<float> zero(channels_, 0.0f);
    if (nan_input_ && !(pixels_ == 1 && zero_index_ == 0)) {
      size_t p = rng() % pixels_;
      if (p == zero_index_) p = (p + 1) % pixels_;
      input[(p * taps + rng() % taps) * channels_ + rng() % channels_] = kNaN;
    }
    std::vector<const float*> indirection(pixels_ * taps);
    for (size_t p = 0; p < pixels_; ++p) {
      for (size_t t = 0; t < taps; ++t) {
        indirection[p * taps + t] =
            p == zero_index_ ? zero.data() : input.data() + (p * taps + t) * channels_;
      }
    }
    std::vector<float> out(pixels_ * out_stride() + 16, kSentinel);

    dwconv(pixels_, channels_, taps, indirection.data(), w.packed.data(), out.data(), out_stride(),
           min_, max_);

    ExpectOutput(out, indirection, w, pixels_, channels_, taps, out_stride(), min_, max_);
    if (::testing::Test::HasFailure()) return;
  }
}

void DwconvMicrokernelTester::Test(F32DwconvRowsFn dwconv) const {
  ASSERT_TRUE(channels_ >= 1 && taps() >= 1 && out_stride() >= channels_);
  const size_t taps = this->taps();
  SCOPED_TRACE("dwconv rows channels " + std::to_string(channels_) + " pixels " +
               std::to_string(pixels_) + " rows " + std::to_string(rows_) + " kw " +
               std::to_string(kw_) + " pixel_step " + std::to_string(pixel_step()) + " tap_step " +
               std::to_string(tap_step()) + " zero row " +
               (zero_index_ == kNone ? std::string("none") : std::to_string(zero_index_)) +
               " out_stride " + std::to_string(out_stride()) + " clamp [" + std::to_string(min_) +
               ", " + std::to_string(max_) + "] nan_input " + std::to_string(nan_input_));
  std::mt19937 rng(seed_);
  // Floats one input row must hold for every pixel's taps, exactly.
  const size_t row_floats = (pixels_ - 1) * pixel_step() + (kw_ - 1) * tap_step() + channels_;
  for (size_t iteration = 0; iteration < iterations_; ++iteration) {
    const PackedWeights w = Pack(&rng, channels_, taps);
    std::vector<std::vector<float>> input_rows(rows_);
    for (std::vector<float>& row : input_rows) {
      row = RandomFloats(&rng, row_floats, input_scale_);
    }
    const std::vector<float> zero_row(row_floats, 0.0f);
    if (nan_input_ && !(rows_ == 1 && zero_index_ == 0)) {
      size_t r = rng() % rows_;
      if (r == zero_index_) r = (r + 1) % rows_;
      input_rows[r][(rng() % pixels_) * pixel_step() + (rng() % kw_) * tap_step() +
                    rng() % channels_] = kNaN;
    }
    std::vector<const float*> row_inputs(rows_);
    for (size_t r = 0; r < rows_; ++r) {
      row_inputs[r] = r == zero_index_ ? zero_row.data() : input_rows[r].data();
    }
    std::vector<const float*> inputs(pixels_ * taps);
    for (size_t p = 0; p < pixels_; ++p) {
      for (size_t r = 0; r < rows_; ++r) {
        for (size_t k = 0; k < kw_; ++k) {
          inputs[p * taps + r * kw_ + k] = row_inputs[r] + p * pixel_step() + k * tap_step();
        }
      }
    }
    std::vector<float> out(pixels_ * out_stride() + 16, kSentinel);

    dwconv(pixels_, channels_, rows_, kw_, row_inputs.data(), pixel_step(), tap_step(),
           w.packed.data(), out.data(), out_stride(), min_, max_);

    ExpectOutput(out, inputs, w, pixels_, channels_, taps, out_stride(), min_, max_);
    if (::testing::Test::HasFailure()) return;
  }
}

}  // namespace testing
}  // namespace ukernels
}  // namespace convserve
