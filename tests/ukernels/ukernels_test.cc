// ukernels_test.cc: every micro-kernel (core/ukernels/) on every ISA tier this CPU runs, against
// the testers' double-precision references: every sub-tile (mr x nc), kc of 1, small and not a
// multiple of the vector width, several taps, a_offset, zero pointers, strides wider than the
// result, the clamp (relu6-like bounds) and NaN passing through it.
//
// Tiers the CPU lacks are skipped (GTEST_SKIP); CONVSERVE_MAX_ISA=avx2 skips the AVX-512F ones.
#include "core/ukernels/ukernels.h"

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

#include "core/fast/fast_conv.h"
#include "gtest/gtest.h"
#include "tests/ukernels/dwconv_microkernel_tester.h"
#include "tests/ukernels/gemm_microkernel_tester.h"
#include "tests/ukernels/transpose_microkernel_tester.h"
#include "tests/ukernels/ukernel_test_util.h"

namespace convserve {
namespace ukernels {
namespace testing {
namespace {

using kernels::Isa;

// Whether this process may run `isa`'s kernels: the CPU has it and CONVSERVE_MAX_ISA does not cap
// it away.
bool MayRun(Isa isa) {
  if (!kernels::CpuHasAvx2Fma()) return false;
  return isa == Isa::kAvx2Fma || kernels::BestIsa() == Isa::kAvx512f;
}

#define SKIP_UNLESS_MAY_RUN(isa) \
  if (!MayRun(isa)) GTEST_SKIP() << "CPU (or CONVSERVE_MAX_ISA) without this ISA"

// kc values: 1, small, around and off multiples of 8 and 16.
const std::vector<size_t> kKcValues = {1, 2, 3, 5, 8, 13, 16, 17, 31};

// Clamps the operator passes (none, relu, relu6) and a tight two-sided one.
struct Clamp {
  float lo;
  float hi;
};
const std::vector<Clamp> kClamps = {{-kInf, kInf}, {0.0f, kInf}, {0.0f, 6.0f}, {-0.5f, 0.25f}};

// --- GEMM tiles (indirect and direct) ------------------------------------------------------

// A GEMM micro-kernel and its tile; Fn is F32IgemmFn or F32GemmFn.
template <typename Fn>
struct TileKernel {
  const char* name;
  Fn fn;
  size_t mr;
  size_t nr;
  Isa isa;
};
template <typename Fn>
void PrintTo(const TileKernel<Fn>& kernel, std::ostream* os) {
  *os << kernel.name;
}
template <typename Fn>
std::string KernelName(const ::testing::TestParamInfo<TileKernel<Fn>>& info) {
  return info.param.name;
}

template <typename Fn>
class TileKernelTest : public ::testing::TestWithParam<TileKernel<Fn>> {
 protected:
  void SetUp() override { SKIP_UNLESS_MAY_RUN(this->GetParam().isa); }
  GemmMicrokernelTester Tester() const {
    return GemmMicrokernelTester().mr(this->GetParam().mr).nr(this->GetParam().nr).iterations(2);
  }
  // Every m x n sub-tile with every kc value, one tap.
  void TestEverySubtileAndKc() const {
    const TileKernel<Fn>& kernel = this->GetParam();
    for (size_t m = 1; m <= kernel.mr; ++m) {
      for (size_t n = 1; n <= kernel.nr; ++n) {
        for (size_t k : kKcValues) {
          Tester().m(m).n(n).k(k).Test(kernel.fn);
          if (::testing::Test::HasFailure()) return;
        }
      }
    }
  }
};

// --- Indirect GEMM ---------------------------------------------------------------------------

using IgemmKernel = TileKernel<F32IgemmFn>;
class IgemmUkernelTest : public TileKernelTest<F32IgemmFn> {};

TEST_P(IgemmUkernelTest, EverySubtileAndKc) { TestEverySubtileAndKc(); }

TEST_P(IgemmUkernelTest, Taps) {
  const IgemmKernel& kernel = GetParam();
  for (size_t ks = 1; ks <= 7; ++ks) {
    for (size_t m : {size_t{1}, kernel.mr - 1, kernel.mr}) {
      for (size_t n : {size_t{1}, kernel.nr / 2 + 1, kernel.nr}) {
        for (size_t k : {1, 7, 16}) {
          if (m == 0) continue;
          Tester().m(m).n(n).k(k).ks(ks).Test(kernel.fn);
          if (HasFailure()) return;
        }
      }
    }
  }
}

// Non-zero pointers are read at pointer + a_offset; `zero` is read as is (its tail past kc holds
// NaN, which an offset read would pick up).
TEST_P(IgemmUkernelTest, AOffsetAndZeroPointers) {
  const IgemmKernel& kernel = GetParam();
  for (size_t a_offset : {5, 67}) {
    for (size_t m : {kernel.mr, kernel.mr / 2 + 1}) {
      for (size_t k : {3, 17}) {
        Tester().m(m).n(kernel.nr).k(k).ks(3).a_offset(a_offset).Test(kernel.fn);
        for (size_t zero_index = 0; zero_index < m; ++zero_index) {
          Tester()
              .m(m)
              .n(kernel.nr)
              .k(k)
              .ks(3)
              .a_offset(a_offset)
              .zero_index(zero_index)
              .Test(kernel.fn);
        }
        for (size_t zero_tap = 0; zero_tap < 3; ++zero_tap) {
          Tester()
              .m(m)
              .n(kernel.nr - 1)
              .k(k)
              .ks(3)
              .a_offset(a_offset)
              .zero_tap(zero_tap)
              .Test(kernel.fn);
        }
        if (HasFailure()) return;
      }
    }
  }
}

// Rows of c and tap groups of the indirection wider than the tile: nothing outside m x nc moves.
TEST_P(IgemmUkernelTest, WideStrides) {
  const IgemmKernel& kernel = GetParam();
  for (size_t m = 1; m <= kernel.mr; ++m) {
    for (size_t n : {size_t{1}, kernel.nr - 1, kernel.nr}) {
      Tester()
          .m(m)
          .n(n)
          .k(13)
          .ks(2)
          .c_stride(kernel.nr + 7)
          .indirection_stride(kernel.mr + 3)
          .Test(kernel.fn);
      Tester().m(m).n(n).k(5).c_stride(n + 1).Test(kernel.fn);
      if (HasFailure()) return;
    }
  }
}

TEST_P(IgemmUkernelTest, Clamp) {
  const IgemmKernel& kernel = GetParam();
  for (const Clamp& clamp : kClamps) {
    for (size_t m : {size_t{1}, kernel.mr}) {
      for (size_t n : {size_t{1}, kernel.nr - 1, kernel.nr}) {
        Tester().m(m).n(n).k(16).ks(3).input_scale(4.0f).min(clamp.lo).max(clamp.hi).Test(
            kernel.fn);
        if (HasFailure()) return;
      }
    }
  }
}

TEST_P(IgemmUkernelTest, NanPassesThroughClamp) {
  const IgemmKernel& kernel = GetParam();
  for (const Clamp& clamp : kClamps) {
    for (size_t m : {size_t{1}, kernel.mr}) {
      Tester()
          .m(m)
          .n(kernel.nr)
          .k(9)
          .ks(2)
          .min(clamp.lo)
          .max(clamp.hi)
          .nan_input(true)
          .iterations(8)
          .Test(kernel.fn);
      Tester()
          .m(m)
          .n(kernel.nr - 1)
          .k(9)
          .ks(2)
          .zero_index(0)
          .a_offset(3)
          .min(clamp.lo)
          .max(clamp.hi)
          .nan_input(true)
          .iterations(8)
          .Test(kernel.fn);
      if (HasFailure()) return;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Tiles, IgemmUkernelTest,
    ::testing::Values(
        IgemmKernel{"f32_igemm_6x16_avx2_fma", f32_igemm_6x16_avx2_fma, 6, 16, Isa::kAvx2Fma},
        IgemmKernel{"f32_igemm_12x8_avx2_fma", f32_igemm_12x8_avx2_fma, 12, 8, Isa::kAvx2Fma},
        IgemmKernel{"f32_igemm_8x32_avx512f", f32_igemm_8x32_avx512f, 8, 32, Isa::kAvx512f},
        IgemmKernel{"f32_igemm_16x16_avx512f", f32_igemm_16x16_avx512f, 16, 16, Isa::kAvx512f}),
    KernelName<F32IgemmFn>);

// --- Direct 1x1 GEMM -------------------------------------------------------------------------

using GemmKernel = TileKernel<F32GemmFn>;
class GemmUkernelTest : public TileKernelTest<F32GemmFn> {};

TEST_P(GemmUkernelTest, EverySubtileAndKc) { TestEverySubtileAndKc(); }

// Rows of b and c wider than the tile (b as an image's input rows, c as its output rows).
TEST_P(GemmUkernelTest, WideStrides) {
  const GemmKernel& kernel = GetParam();
  for (size_t m = 1; m <= kernel.mr; ++m) {
    for (size_t n = 1; n <= kernel.nr; ++n) {
      Tester().m(m).n(n).k(7).b_stride(n + 5).c_stride(kernel.nr + 3).Test(kernel.fn);
      if (HasFailure()) return;
    }
  }
}

TEST_P(GemmUkernelTest, Clamp) {
  const GemmKernel& kernel = GetParam();
  for (const Clamp& clamp : kClamps) {
    for (size_t m : {size_t{1}, kernel.mr}) {
      for (size_t n : {size_t{1}, kernel.nr / 2, kernel.nr - 1, kernel.nr}) {
        Tester().m(m).n(n).k(48).input_scale(4.0f).min(clamp.lo).max(clamp.hi).Test(kernel.fn);
        if (HasFailure()) return;
      }
    }
  }
}

TEST_P(GemmUkernelTest, NanPassesThroughClamp) {
  const GemmKernel& kernel = GetParam();
  for (const Clamp& clamp : kClamps) {
    for (size_t m : {size_t{1}, kernel.mr}) {
      for (size_t n : {size_t{3}, kernel.nr}) {
        Tester().m(m).n(n).k(9).min(clamp.lo).max(clamp.hi).nan_input(true).iterations(8).Test(
            kernel.fn);
        if (HasFailure()) return;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tiles, GemmUkernelTest,
                         ::testing::Values(GemmKernel{"f32_gemm_6x16_avx2_fma",
                                                      f32_gemm_6x16_avx2_fma, 6, 16, Isa::kAvx2Fma},
                                           GemmKernel{"f32_gemm_12x32_avx512f",
                                                      f32_gemm_12x32_avx512f, 12, 32,
                                                      Isa::kAvx512f}),
                         KernelName<F32GemmFn>);

// --- Depthwise -------------------------------------------------------------------------------

// Channels around the 8- and 16-lane steps, pixels around the 4- (ymm) and 8-pixel (zmm) tiles.
constexpr size_t kMaxChannels = 40;
const std::vector<size_t> kPixels = {1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17};

// The depthwise kernels of one ISA tier: the indirection one and the rows one.
struct DwconvKernels {
  const char* name;
  F32DwconvFn indirect;
  F32DwconvRowsFn rows;
  Isa isa;
};
const DwconvKernels kDwconvTiers[] = {
    {"avx2_fma", f32_dwconv_nhwc_avx2_fma, f32_dwconv_rows_nhwc_avx2_fma, Isa::kAvx2Fma},
    {"avx512f", f32_dwconv_nhwc_avx512f, f32_dwconv_rows_nhwc_avx512f, Isa::kAvx512f},
};

// The tiers this CPU (and CONVSERVE_MAX_ISA) allows.
std::vector<DwconvKernels> RunnableDwconvTiers() {
  std::vector<DwconvKernels> tiers;
  for (const DwconvKernels& k : kDwconvTiers) {
    if (MayRun(k.isa)) tiers.push_back(k);
  }
  return tiers;
}

TEST(F32DwconvNhwc, ChannelsPixelsTaps) {
  for (const DwconvKernels& k : RunnableDwconvTiers()) {
    SCOPED_TRACE(k.name);
    for (size_t channels = 1; channels <= kMaxChannels; ++channels) {
      for (size_t pixels : kPixels) {
        for (size_t taps : {1, 2, 3, 9}) {
          DwconvMicrokernelTester().channels(channels).pixels(pixels).rows(taps).Test(k.indirect);
          if (HasFailure()) return;
        }
      }
    }
  }
}

TEST(F32DwconvNhwc, ZeroPointersAndOutStride) {
  for (const DwconvKernels& k : RunnableDwconvTiers()) {
    SCOPED_TRACE(k.name);
    for (size_t channels : {1, 7, 8, 17, 32, 37}) {
      for (size_t pixels : {1, 5, 9}) {
        for (size_t zero_index = 0; zero_index < pixels; ++zero_index) {
          DwconvMicrokernelTester()
              .channels(channels)
              .pixels(pixels)
              .rows(9)
              .zero_index(zero_index)
              .out_stride(channels + 5)
              .Test(k.indirect);
        }
        if (HasFailure()) return;
      }
    }
  }
}

TEST(F32DwconvNhwc, ClampAndNan) {
  for (const DwconvKernels& k : RunnableDwconvTiers()) {
    SCOPED_TRACE(k.name);
    for (const Clamp& clamp : kClamps) {
      for (size_t channels : {1, 9, 16, 23}) {
        DwconvMicrokernelTester tester;
        tester.channels(channels).pixels(6).rows(25).input_scale(4.0f).min(clamp.lo).max(clamp.hi);
        tester.Test(k.indirect);
        tester.nan_input(true).iterations(8).Test(k.indirect);
        if (HasFailure()) return;
      }
    }
  }
}

TEST(F32DwconvRowsNhwc, ChannelsPixelsRowsKw) {
  for (const DwconvKernels& k : RunnableDwconvTiers()) {
    SCOPED_TRACE(k.name);
    for (size_t channels = 1; channels <= kMaxChannels; ++channels) {
      for (size_t pixels : kPixels) {
        for (size_t rows : {1, 2, 3}) {
          for (size_t kw : {1, 2, 3, 5}) {  // 3 runs the kernel's fixed-kw loop.
            DwconvMicrokernelTester().channels(channels).pixels(pixels).rows(rows).kw(kw).Test(
                k.rows);
            if (HasFailure()) return;
          }
        }
      }
    }
  }
}

// Strided and dilated rows (steps of several pixels), steps that are not whole pixels, a row of
// zero padding and an output stride wider than the channels.
TEST(F32DwconvRowsNhwc, StepsZeroRowAndOutStride) {
  for (const DwconvKernels& k : RunnableDwconvTiers()) {
    SCOPED_TRACE(k.name);
    for (size_t channels : {1, 7, 8, 17, 32, 37}) {
      for (size_t kw : {2, 3}) {
        for (size_t pixel_step : {2 * channels, channels + 3}) {
          for (size_t tap_step : {channels, 2 * channels, channels + 1}) {
            for (size_t zero_row : {size_t{0}, size_t{2}, DwconvMicrokernelTester::kNone}) {
              DwconvMicrokernelTester()
                  .channels(channels)
                  .pixels(7)
                  .rows(3)
                  .kw(kw)
                  .pixel_step(pixel_step)
                  .tap_step(tap_step)
                  .zero_index(zero_row)
                  .out_stride(channels + 4)
                  .Test(k.rows);
            }
            if (HasFailure()) return;
          }
        }
      }
    }
  }
}

TEST(F32DwconvRowsNhwc, ClampAndNan) {
  for (const DwconvKernels& k : RunnableDwconvTiers()) {
    SCOPED_TRACE(k.name);
    for (const Clamp& clamp : kClamps) {
      for (size_t channels : {1, 9, 16, 23}) {
        for (size_t kw : {3, 5}) {
          DwconvMicrokernelTester tester;
          tester.channels(channels).pixels(6).rows(5).kw(kw).input_scale(4.0f).min(clamp.lo).max(
              clamp.hi);
          tester.Test(k.rows);
          tester.nan_input(true).iterations(8).Test(k.rows);
          if (HasFailure()) return;
        }
      }
    }
  }
}

// --- Transpose -------------------------------------------------------------------------------

TEST(F32Transpose8x8Avx2, EveryShapeUpTo20x20) {
  SKIP_UNLESS_MAY_RUN(Isa::kAvx2Fma);
  for (size_t rows = 1; rows <= 20; ++rows) {
    for (size_t cols = 1; cols <= 20; ++cols) {
      TransposeMicrokernelTester().rows(rows).cols(cols).Test(f32_transpose_8x8_avx2);
      if (HasFailure()) return;
    }
  }
}

TEST(F32Transpose8x8Avx2, WideStrides) {
  SKIP_UNLESS_MAY_RUN(Isa::kAvx2Fma);
  for (size_t rows : {1, 7, 8, 9, 16, 23}) {
    for (size_t cols : {1, 7, 8, 9, 16, 23}) {
      TransposeMicrokernelTester()
          .rows(rows)
          .cols(cols)
          .src_stride(cols + 5)
          .dst_stride(rows + 3)
          .Test(f32_transpose_8x8_avx2);
      if (HasFailure()) return;
    }
  }
}

}  // namespace
}  // namespace testing
}  // namespace ukernels
}  // namespace convserve
