// reference_conv.cc: the scalar reference convolution, one output at a time in double.
#include "core/reference_conv.h"

namespace convserve {

int64_t SourceIndex(PaddingMode mode, int64_t coordinate, int64_t n) {
  if (coordinate >= 0 && coordinate < n) return coordinate;
  switch (mode) {
    case PaddingMode::kZeros:
      return -1;
    case PaddingMode::kReflect:  // mirror without repeating the edge; pad <= n - 1
      return coordinate < 0 ? -coordinate : 2 * (n - 1) - coordinate;
    case PaddingMode::kReplicate:
      return coordinate < 0 ? 0 : n - 1;
    case PaddingMode::kCircular:  // pad <= n
      return coordinate < 0 ? coordinate + n : coordinate - n;
  }
  return -1;
}

void ReferenceConv(const ConvGeometry& g, const float* input, const float* weight,
                   const float* bias, float* output) {
  const int64_t in_per_group = g.in_channels_per_group();
  const int64_t out_per_group = g.out_channels_per_group();
  const bool channels_first = g.data_layout == DataLayout::kChannelsFirst;
  const bool oihw = g.weight_layout == WeightLayout::kOutInSpatial;

  auto input_at = [&](int64_t n, int64_t c, int64_t z, int64_t y, int64_t x) {
    const int64_t spatial = (z * g.input[1] + y) * g.input[2] + x;
    return channels_first ? input[(n * g.in_channels + c) * g.input_spatial_size() + spatial]
                          : input[(n * g.input_spatial_size() + spatial) * g.in_channels + c];
  };
  auto weight_at = [&](int64_t o, int64_t ci, int64_t kz, int64_t ky, int64_t kx) {
    const int64_t tap = (kz * g.kernel[1] + ky) * g.kernel[2] + kx;
    return oihw ? weight[(o * in_per_group + ci) * g.kernel_size() + tap]
                : weight[(tap * in_per_group + ci) * g.out_channels + o];
  };
  auto output_index = [&](int64_t n, int64_t o, int64_t z, int64_t y, int64_t x) {
    const int64_t spatial = (z * g.output[1] + y) * g.output[2] + x;
    return channels_first ? (n * g.out_channels + o) * g.output_spatial_size() + spatial
                          : (n * g.output_spatial_size() + spatial) * g.out_channels + o;
  };

  for (int64_t n = 0; n < g.batch; ++n) {
    for (int64_t o = 0; o < g.out_channels; ++o) {
      const int64_t first_in = (o / out_per_group) * in_per_group;
      for (int64_t oz = 0; oz < g.output[0]; ++oz) {
        for (int64_t oy = 0; oy < g.output[1]; ++oy) {
          for (int64_t ox = 0; ox < g.output[2]; ++ox) {
            double sum = bias != nullptr ? bias[o] : 0.0;
            for (int64_t ci = 0; ci < in_per_group; ++ci) {
              for (int64_t kz = 0; kz < g.kernel[0]; ++kz) {
                const int64_t z =
                    SourceIndex(g.padding_mode,
                                oz * g.stride[0] + kz * g.dilation[0] - g.pad_begin[0], g.input[0]);
                if (z < 0) continue;
                for (int64_t ky = 0; ky < g.kernel[1]; ++ky) {
                  const int64_t y = SourceIndex(
                      g.padding_mode, oy * g.stride[1] + ky * g.dilation[1] - g.pad_begin[1],
                      g.input[1]);
                  if (y < 0) continue;
                  for (int64_t kx = 0; kx < g.kernel[2]; ++kx) {
                    const int64_t x = SourceIndex(
                        g.padding_mode, ox * g.stride[2] + kx * g.dilation[2] - g.pad_begin[2],
                        g.input[2]);
                    if (x < 0) continue;
                    sum += static_cast<double>(input_at(n, first_in + ci, z, y, x)) *
                           static_cast<double>(weight_at(o, ci, kz, ky, kx));
                  }
                }
              }
            }
            output[output_index(n, o, oz, oy, ox)] =
                ApplyActivation(g.activation, g.activation_alpha, static_cast<float>(sum));
          }
        }
      }
    }
  }
}

}  // namespace convserve
