#include "client/cpp/npy.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace convserve::client {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;

// The value text of `key` in the header dict, e.g. "'<f4'" or "(2, 3)".
absl::StatusOr<std::string> HeaderValue(const std::string& header, const std::string& key) {
  const std::string quoted = "'" + key + "'";
  size_t at = header.find(quoted);
  if (at == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("npy: header has no ", quoted, ": ", header));
  }
  at = header.find(':', at);
  if (at == std::string::npos) return absl::InvalidArgumentError("npy: malformed header");
  size_t end = at + 1;
  if (key == "shape") {
    end = header.find(')', at);
    if (end == std::string::npos) return absl::InvalidArgumentError("npy: malformed shape");
    ++end;
  } else {
    end = header.find_first_of(",}", at);
    if (end == std::string::npos) return absl::InvalidArgumentError("npy: malformed header");
  }
  return std::string(absl::StripAsciiWhitespace(header.substr(at + 1, end - at - 1)));
}

}  // namespace

absl::StatusOr<FloatArray> ParseNpy(const std::string& bytes) {
  if (bytes.size() < kMagicSize + 4 || bytes.compare(0, kMagicSize, kMagic, kMagicSize) != 0) {
    return absl::InvalidArgumentError("npy: not an .npy file (bad magic)");
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_length = 0;
  size_t header_start = 0;
  if (major == 1) {
    header_length = static_cast<unsigned char>(bytes[8]) |
                    (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return absl::InvalidArgumentError("npy: truncated header");
    for (int i = 0; i < 4; ++i) {
      header_length |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    }
    header_start = 12;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("npy: unsupported format version ", major));
  }
  if (bytes.size() < header_start + header_length) {
    return absl::InvalidArgumentError("npy: truncated header");
  }
  const std::string header = bytes.substr(header_start, header_length);
  absl::StatusOr<std::string> descr = HeaderValue(header, "descr");
  if (!descr.ok()) return descr.status();
  if (*descr != "'<f4'") {
    return absl::InvalidArgumentError(absl::StrCat("npy: expected dtype '<f4' (float32), got ",
                                                   *descr,
                                                   " (convert with array.astype(numpy.float32))"));
  }
  absl::StatusOr<std::string> order = HeaderValue(header, "fortran_order");
  if (!order.ok()) return order.status();
  if (*order != "False") {
    return absl::InvalidArgumentError(
        "npy: expected C order, got Fortran order (save numpy.ascontiguousarray(array))");
  }
  absl::StatusOr<std::string> shape_text = HeaderValue(header, "shape");
  if (!shape_text.ok()) return shape_text.status();
  FloatArray array;
  uint64_t count = 1;
  const std::string inner = shape_text->substr(1, shape_text->size() - 2);
  for (absl::string_view part : absl::StrSplit(inner, ',', absl::SkipWhitespace())) {
    int64_t dim = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &dim) || dim < 0 ||
        (dim > 0 && count > (uint64_t{1} << 40) / static_cast<uint64_t>(dim))) {
      return absl::InvalidArgumentError(absl::StrCat("npy: bad shape ", *shape_text));
    }
    array.shape.push_back(dim);
    count *= static_cast<uint64_t>(dim);
  }
  const size_t data_start = header_start + header_length;
  if (bytes.size() - data_start != count * sizeof(float)) {
    return absl::InvalidArgumentError(absl::StrCat("npy: expected ", count * sizeof(float),
                                                   " data bytes for shape ", *shape_text, ", got ",
                                                   bytes.size() - data_start));
  }
  array.values.resize(count);
  if (count > 0) std::memcpy(array.values.data(), bytes.data() + data_start, count * sizeof(float));
  return array;
}

absl::StatusOr<FloatArray> ReadNpy(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream contents;
  contents << file.rdbuf();
  absl::StatusOr<FloatArray> array = ParseNpy(contents.str());
  if (!array.ok()) {
    return absl::Status(array.status().code(), absl::StrCat(path, ": ", array.status().message()));
  }
  return array;
}

absl::Status WriteNpy(const std::string& path, const FloatArray& array) {
  std::string shape = absl::StrJoin(array.shape, ", ");
  if (array.shape.size() == 1) shape += ",";
  std::string header =
      absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (", shape, "), }");
  // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
  const size_t unpadded = kMagicSize + 4 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream file(path, std::ios::binary);
  if (!file) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  file.write(kMagic, kMagicSize);
  const char version[2] = {1, 0};
  file.write(version, 2);
  const char length[2] = {static_cast<char>(header.size() & 0xff),
                          static_cast<char>((header.size() >> 8) & 0xff)};
  file.write(length, 2);
  file.write(header.data(), static_cast<std::streamsize>(header.size()));
  file.write(reinterpret_cast<const char*>(array.values.data()),
             static_cast<std::streamsize>(array.values.size() * sizeof(float)));
  if (!file) return absl::DataLossError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

}  // namespace convserve::client
