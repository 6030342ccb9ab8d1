// streaming.h: a stack of causal convolution layers run over an endless signal, chunk by chunk.
//
// A ConvStream takes the signal in chunks along its last spatial axis (the
// time axis: L of a 1-D layer, W of a 2-D or 3-D one) and returns, for each
// chunk, every output sample that the samples received so far determine. The
// other axes (batch, channels, the other spatial axes) are the same in every
// chunk. The concatenation of the outputs equals the stack run once over the
// concatenated chunks, whatever the chunk sizes (one sample included).
//
// How: each layer keeps the tail of its input that its next outputs still
// need (fewer cells than its window spans along time; its pad_begin zeros
// before the first chunk) and runs its packed operator on [tail | new cells]
// with no padding along time; a layer with stride s along time starts its next
// window s cells after the last one, skipping input cells that no window
// covers (the phase). Bitwise equal to the whole-signal run whenever the
// kernel computes each output cell the same way wherever it lies, which the
// tests check.
//
// Only causal layers stream: along time, pads (pad_begin, 0) with zero
// padding and pad_begin >= span - 1 (output t depends on inputs <= t * stride
// only), e.g. the "causal" preset. CheckStreamable() says why a layer is not.
//
// Not thread-safe: one Push() at a time (the server runs one chunk per stream
// at a time, in order). The operators are only read and must outlive the
// stream.
#ifndef CONVSERVE_CORE_STREAMING_H_
#define CONVSERVE_CORE_STREAMING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/conv.h"
#include "core/geometry.h"
#include "core/stop_token.h"

namespace convserve {

// OK if `layer` can stream along its last spatial axis; otherwise
// FAILED_PRECONDITION naming `name` (e.g. "layers[2]"), the axis and why:
// padding after the signal's end, pads that depend on the signal's length
// (same_upper/same_lower with a window wider than one cell), a padding mode
// other than zeros padding the time axis, or pad_begin < span - 1 (the
// output would depend on later inputs).
absl::Status CheckStreamable(const ResolvedLayer& layer, const std::string& name);

// What a chunk of a given length costs at most, whatever the stream's state.
struct StreamChunkPlan {
  // The geometry each layer runs at most (the largest tail plus the chunk's
  // cells); fewer entries than layers when the chunk is too short for the
  // later layers to run at all. For checking the server's limits.
  std::vector<ConvGeometry> geometries;
  // Floats Push() allocates at most for the chunk: every layer's input
  // (tail and cells) and output.
  int64_t work_elements = 0;
};

class ConvStream {
 public:
  // A stream through `layers` (applied in order; each must have passed
  // CheckStreamable, have the previous one's out_channels as in_channels and
  // the same data layout and rank), whose chunks have shape `chunk_shape`
  // (in the layers' data layout) but for the time axis, whose extent here is
  // ignored. INVALID_ARGUMENT / FAILED_PRECONDITION naming the layer
  // (prefixed `prefix`, e.g. "model 'x' ") otherwise.
  static absl::StatusOr<ConvStream> Create(std::vector<const ConvOperator*> layers,
                                           const std::vector<int64_t>& chunk_shape,
                                           const std::string& prefix = "");

  ConvStream(ConvStream&&) = default;
  ConvStream& operator=(ConvStream&&) = default;

  // The index of the time axis in a chunk's shape.
  int time_axis() const { return time_axis_; }

  // The most the tails hold together, in floats (what a stream keeps
  // between chunks).
  int64_t max_state_elements() const { return max_state_elements_; }

  // INVALID_ARGUMENT naming `field` unless `shape` is the stream's chunk
  // shape with a time extent >= 1.
  absl::Status CheckChunkShape(const std::string& field, const std::vector<int64_t>& shape) const;

  // The most a chunk of `length` time cells costs (see StreamChunkPlan);
  // INVALID_ARGUMENT if its sizes overflow. REQUIRES: length >= 0.
  absl::StatusOr<StreamChunkPlan> PlanChunk(int64_t length) const;

  // Feeds the next chunk (`values` in the stream's layout, shape
  // `shape` as CheckChunkShape() accepts) and sets `output` /
  // `output_shape` to the output samples it completes: the last layer's
  // output shape with a time extent of zero or more. Errors: the shape's
  // (INVALID_ARGUMENT), the operators' (CANCELLED when `stop` stopped a
  // run). After an error other than the shape's the stream is broken:
  // every later Push() fails with FAILED_PRECONDITION.
  absl::Status Push(const std::vector<int64_t>& shape, absl::Span<const float> values,
                    std::vector<float>* output, std::vector<int64_t>* output_shape,
                    const StopToken& stop = StopToken());

  // Time cells received and produced so far.
  int64_t samples_in() const { return samples_in_; }
  int64_t samples_out() const { return samples_out_; }

 private:
  // One layer's state. Its input is viewed as (outer, time, inner): outer =
  // batch (and channels and the other spatial axes, channels_first), inner =
  // channels (channels_last) or 1.
  struct Layer {
    const ConvOperator* op = nullptr;
    std::vector<int64_t> input_shape;   // of a piece; the time extent varies
    std::vector<int64_t> output_shape;  // of a piece's output; the same
    int64_t outer = 1;
    int64_t inner = 1;  // input cells per (outer, time) position
    int64_t out_outer = 1;
    int64_t out_inner = 1;
    int64_t span = 1;         // along time
    int64_t stride = 1;       // along time
    int64_t pad_begin = 0;    // along time
    std::vector<float> tail;  // (outer, tail_length, inner)
    int64_t tail_length = 0;
    int64_t skip = 0;  // input cells to drop before the next window starts
  };

  ConvStream() = default;

  // The geometry layer `layer` runs on a piece of `length` >= span time cells.
  absl::StatusOr<ConvGeometry> PieceGeometry(const Layer& layer, int64_t length) const;
  std::string LayerName(size_t index) const;

  std::vector<Layer> layers_;
  std::vector<int64_t> chunk_shape_;
  std::string prefix_;
  int time_axis_ = 0;
  int64_t max_state_elements_ = 0;
  int64_t samples_in_ = 0;
  int64_t samples_out_ = 0;
  bool broken_ = false;
};

}  // namespace convserve

#endif  // CONVSERVE_CORE_STREAMING_H_
