// layer_set.h: reads a benchmark layer set (bench/layers.json, BENCH-14).
//
// The file is flat JSON: {"name": ..., "layers": [{"name": "...", "n": 1,
// "c": 3, "spatial": [224, 224], ...}, ...]}. A small parser for that subset
// (objects, arrays, strings, numbers) keeps the benchmark free of a JSON
// dependency.
#ifndef CONVSERVE_BENCH_LAYER_SET_H_
#define CONVSERVE_BENCH_LAYER_SET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace convserve {
namespace bench {

// One layer as layers.json states it: symmetric padding on every spatial
// axis, bias on, no activation.
struct BenchLayer {
  std::string name;
  int64_t batch = 1;
  int64_t in_channels = 1;
  int64_t out_channels = 1;
  std::vector<int64_t> spatial;
  std::vector<int64_t> kernel;
  int64_t stride = 1;
  int64_t pad = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
};

absl::StatusOr<std::vector<BenchLayer>> ReadLayerSet(const std::string& path);

}  // namespace bench
}  // namespace convserve

#endif  // CONVSERVE_BENCH_LAYER_SET_H_
