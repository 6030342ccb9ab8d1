// limits.h: the per-request limits and the arithmetic that checks a request against them.
//
// The limits are --max_elements (per tensor), --max_macs (per request) and
// --max_message_bytes (per response). The sizes checked come from the core: element and
// multiply-accumulate counts of a ConvGeometry that ResolveGeometry() has already checked for
// overflow. Stateless: safe to call from any thread.
#ifndef CONVSERVE_SERVER_LIMITS_H_
#define CONVSERVE_SERVER_LIMITS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/conv_spec.h"

namespace convserve {

// Room for everything in a response besides the output payload (shape,
// field tags, timings, kernel name).
inline constexpr int64_t kResponseOverheadBytes = 4096;

// Limits on the size of one request. Each is named in the error a request
// above it gets.
struct RequestLimits {
  int64_t max_message_bytes = 256 << 20;    // --max_message_bytes
  int64_t max_elements = int64_t{1} << 28;  // --max_elements: per tensor.
  int64_t max_macs = int64_t{1} << 40;      // --max_macs: per request.
};

// Checks a resolved layer's input, output and weight against
// limits.max_elements and its multiply-accumulates against limits.max_macs:
// RESOURCE_EXHAUSTED naming the tensor (prefixed by `field`, e.g.
// "layers[1].") or the layer otherwise. REQUIRES: `geometry` comes from
// ResolveGeometry() (its counts do not overflow).
absl::Status CheckLimits(const std::string& field, const ConvGeometry& geometry,
                         const RequestLimits& limits);

// Checks that a float32 response of `output_shape` fits in one message of
// limits.max_message_bytes, kResponseOverheadBytes left for the rest of the
// response: RESOURCE_EXHAUSTED naming the sizes otherwise (an overflowing
// shape included).
absl::Status CheckResponseSize(const std::vector<int64_t>& output_shape,
                               const RequestLimits& limits);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_LIMITS_H_
