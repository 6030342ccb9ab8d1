// npy.h: reading and writing float32 C-order .npy files (NumPy format 1.0-3.0).
#ifndef CONVSERVE_CLIENT_CPP_NPY_H_
#define CONVSERVE_CLIENT_CPP_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace convserve::client {

// A float32 tensor held by the client.
struct FloatArray {
  std::vector<int64_t> shape;
  std::vector<float> values;  // row-major
};

// Reads `path`; only little-endian float32 ('<f4'), C order, is accepted
// (INVALID_ARGUMENT naming what the file holds otherwise).
absl::StatusOr<FloatArray> ReadNpy(const std::string& path);

// Parses the bytes of an .npy file (ReadNpy without the file).
absl::StatusOr<FloatArray> ParseNpy(const std::string& bytes);

// Writes `array` as a version 1.0 .npy file.
absl::Status WriteNpy(const std::string& path, const FloatArray& array);

}  // namespace convserve::client

#endif  // CONVSERVE_CLIENT_CPP_NPY_H_
