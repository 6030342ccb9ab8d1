// Tests of core/half.h: the scalar conversions against IEEE arithmetic done
// independently (in double), and every vector ISA against the scalar ones,
// over every float16 value and the float32 values around each of them.
// (tests/python/test_core_parity.py checks the same against numpy and torch.)
#include "core/half.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace convserve {
namespace {

uint32_t Bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

float FromBits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// The value of float16 `bits` from its fields (IEEE 754 binary16), in double.
double Float16Value(uint16_t bits) {
  const int exponent = (bits >> 10) & 0x1f;
  const int mantissa = bits & 0x3ff;
  const double sign = (bits & 0x8000) ? -1.0 : 1.0;
  if (exponent == 0x1f) {
    return mantissa == 0 ? sign * std::numeric_limits<double>::infinity()
                         : std::numeric_limits<double>::quiet_NaN();
  }
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

TEST(HalfTest, DecodesEveryFloat16Exactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double expected = Float16Value(static_cast<uint16_t>(h));
    const float got = Float16ToFloat32(static_cast<uint16_t>(h));
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << std::hex << h;
    } else {
      EXPECT_EQ(static_cast<double>(got), expected) << std::hex << h;
      EXPECT_EQ(std::signbit(got), (h & 0x8000) != 0) << std::hex << h;
    }
  }
}

// Every pair of adjacent finite float16 values (a, b) of the same sign: a
// and b encode to themselves, the points just inside the midpoint to the
// nearer one, the midpoint itself to the one with an even mantissa.
TEST(HalfTest, EncodesFloat16NeighbourhoodsToNearestEven) {
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    for (uint32_t sign : {0u, 0x8000u}) {
      const uint16_t low = static_cast<uint16_t>(h | sign);
      const uint16_t high = static_cast<uint16_t>((h + 1) | sign);  // 0x7c00: infinity
      const float a = Float16ToFloat32(low);
      const double b = h + 1 == 0x7c00 ? (sign ? -65536.0 : 65536.0)  // the "next" past 65504
                                       : Float16Value(high);
      const float mid = static_cast<float>((a + b) / 2);  // exact: 12 significant bits
      ASSERT_EQ(static_cast<double>(mid), (a + b) / 2);
      EXPECT_EQ(Float32ToFloat16(a), low) << std::hex << low;
      EXPECT_EQ(Float32ToFloat16(std::nextafter(mid, a)), low) << std::hex << low;
      EXPECT_EQ(Float32ToFloat16(std::nextafter(mid, static_cast<float>(b))), high)
          << std::hex << low;
      EXPECT_EQ(Float32ToFloat16(mid), (low & 1) ? high : low) << std::hex << low;
    }
  }
}

TEST(HalfTest, EncodesSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(Float32ToFloat16(inf), 0x7c00);
  EXPECT_EQ(Float32ToFloat16(-inf), 0xfc00);
  EXPECT_EQ(Float32ToFloat16(65519.996f), 0x7bff);
  EXPECT_EQ(Float32ToFloat16(65520.0f), 0x7c00);  // overflow: infinity
  EXPECT_EQ(Float32ToFloat16(1e30f), 0x7c00);
  EXPECT_EQ(Float32ToFloat16(-0.0f), 0x8000);
  EXPECT_EQ(Float32ToFloat16(0x1p-25f), 0x0000);  // tie between 0 and 2^-24
  EXPECT_EQ(Float32ToFloat16(std::nextafter(0x1p-25f, 1.0f)), 0x0001);
  EXPECT_EQ(Float32ToFloat16(std::numeric_limits<float>::denorm_min()), 0x0000);
  const uint16_t nan = Float32ToFloat16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7e00, 0x7e00);
  EXPECT_EQ(Float32ToFloat16(FromBits(0xff800001u)) & 0xfe00, 0xfe00);  // signalling: quiet

  EXPECT_EQ(Float32ToBfloat16(inf), 0x7f80);
  EXPECT_EQ(Float32ToBfloat16(std::numeric_limits<float>::max()), 0x7f80);  // rounds up
  EXPECT_EQ(Float32ToBfloat16(FromBits(0x7f7f7fffu)), 0x7f7f);
  EXPECT_EQ(Float32ToBfloat16(FromBits(0x3f808000u)), 0x3f80);  // tie, even below
  EXPECT_EQ(Float32ToBfloat16(FromBits(0x3f818000u)), 0x3f82);  // tie, even above
  EXPECT_EQ(Float32ToBfloat16(FromBits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(Float32ToBfloat16(FromBits(0x00008000u)), 0x0000);  // subnormal tie
  EXPECT_EQ(Float32ToBfloat16(FromBits(0x00018000u)), 0x0002);
  EXPECT_EQ(Float32ToBfloat16(FromBits(0x7f800001u)), 0x7fc0);  // signalling: quiet
  EXPECT_EQ(Float32ToBfloat16(FromBits(0xffffffffu)), 0xffff);
  for (uint32_t h = 0; h < 65536; ++h) {
    const float value = Bfloat16ToFloat32(static_cast<uint16_t>(h));
    EXPECT_EQ(Bits(value), h << 16);
    if (!std::isnan(value)) {
      EXPECT_EQ(Float32ToBfloat16(value), h);
    }
  }
}

// Inputs for the ISA comparisons: every float16 / bfloat16 value's float32,
// the float32 values one ulp either side, the midpoints to the next value
// and their neighbours, and special values; an odd count leaves a remainder.
std::vector<float> SweepValues(HalfType type) {
  std::vector<float> values;
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint32_t bits =
        type == HalfType::kFloat16 ? Bits(Float16ToFloat32(static_cast<uint16_t>(h))) : h << 16;
    for (int delta : {-1, 0, 1}) values.push_back(FromBits(bits + delta));
    if (type == HalfType::kBfloat16) {
      for (uint32_t low : {0x7fffu, 0x8000u, 0x8001u}) values.push_back(FromBits(bits | low));
    } else if ((h & 0x7fff) < 0x7c00) {
      const float a = FromBits(bits);
      const float b = Float16ToFloat32(static_cast<uint16_t>(h + 1));
      const float mid = (h & 0x7fff) == 0x7bff ? (a > 0 ? 65520.0f : -65520.0f)
                                               : static_cast<float>((double{a} + b) / 2);
      for (float v : {std::nextafter(mid, a), mid, std::nextafter(mid, b)}) values.push_back(v);
    }
  }
  values.push_back(std::numeric_limits<float>::max());
  values.push_back(FromBits(0x7fc00001u));
  if (values.size() % 2 == 0) values.push_back(1.0f);
  return values;
}

class HalfIsaTest : public ::testing::TestWithParam<HalfIsa> {};

TEST_P(HalfIsaTest, MatchesScalarBitForBit) {
  for (HalfType type : {HalfType::kFloat16, HalfType::kBfloat16}) {
    SCOPED_TRACE(HalfTypeName(type));
    const std::vector<float> values = SweepValues(type);
    std::vector<uint16_t> expected(values.size()), got(values.size());
    FloatToHalf(HalfIsa::kScalar, type, values.data(), values.size(), expected.data());
    FloatToHalf(GetParam(), type, values.data(), values.size(), got.data());
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_EQ(got[i], expected[i]) << "float32 bits " << std::hex << Bits(values[i]);
    }
    // In place, over every offset of the remainder.
    for (size_t count : {values.size(), size_t{1}, size_t{15}, size_t{17}, size_t{33}}) {
      std::vector<float> buffer(values.begin(), values.begin() + count);
      FloatToHalf(GetParam(), type, buffer.data(), count,
                  reinterpret_cast<uint16_t*>(buffer.data()));
      ASSERT_EQ(std::memcmp(buffer.data(), expected.data(), count * sizeof(uint16_t)), 0) << count;
    }
    std::vector<uint16_t> all(65537);
    for (uint32_t h = 0; h < all.size(); ++h) all[h] = static_cast<uint16_t>(h);
    std::vector<float> decoded(all.size()), reference(all.size());
    HalfToFloat(HalfIsa::kScalar, type, all.data(), all.size(), reference.data());
    HalfToFloat(GetParam(), type, all.data(), all.size(), decoded.data());
    for (size_t h = 0; h < all.size(); ++h) {
      if (std::isnan(reference[h])) {
        ASSERT_TRUE(std::isnan(decoded[h])) << std::hex << h;  // F16C makes signalling NaN quiet
      } else {
        ASSERT_EQ(Bits(decoded[h]), Bits(reference[h])) << std::hex << h;
      }
    }
  }
}

std::vector<HalfIsa> VectorIsas() {
  std::vector<HalfIsa> isas;
  for (HalfIsa isa : SupportedHalfIsas()) {
    if (isa != HalfIsa::kScalar) isas.push_back(isa);
  }
  return isas;
}

INSTANTIATE_TEST_SUITE_P(Supported, HalfIsaTest, ::testing::ValuesIn(VectorIsas()),
                         [](const ::testing::TestParamInfo<HalfIsa>& info) {
                           return std::string(HalfIsaName(info.param));
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(HalfIsaTest);

TEST(HalfTest, BestIsaIsSupported) {
  const std::vector<HalfIsa> isas = SupportedHalfIsas();
  EXPECT_NE(std::find(isas.begin(), isas.end(), BestHalfIsa()), isas.end());
}

}  // namespace
}  // namespace convserve
