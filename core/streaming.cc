// streaming.cc: ConvStream, the per-layer tails and phases of a causal stack (see streaming.h).
#include "core/streaming.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/checked_math.h"
#include "core/tensor_shape.h"

namespace convserve {
namespace {

constexpr int kTime = kMaxSpatialRank - 1;  // the time axis in a ConvGeometry

// The pad_begin of `layer` along time, or why it cannot stream.
absl::StatusOr<int64_t> TimePadBegin(const ResolvedLayer& layer, const std::string& name) {
  const std::string axis = SpatialAxisNames(layer.spatial_rank).back();
  const int64_t span = layer.span[kTime];
  const auto refuse = [&](const std::string& why) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, " is not causal along the time axis ", axis,
                     " (the last spatial axis, which streams): ", why,
                     "; a streamable layer pads only before the signal, with zeros, by at least "
                     "dilation * (kernel - 1) cells (e.g. padding preset 'causal')"));
  };
  int64_t begin = 0;
  int64_t end = 0;
  switch (layer.spec.padding) {
    case PaddingPreset::kExplicit:
      begin = layer.pad_begin[kTime];
      end = layer.pad_end[kTime];
      break;
    case PaddingPreset::kValid:
      break;
    case PaddingPreset::kCausal:
      begin = span - 1;
      break;
    case PaddingPreset::kSameUpper:
    case PaddingPreset::kSameLower:
      // With a one-cell window the preset pads nothing (see PresetPads).
      if (span != 1) {
        return refuse(absl::StrCat("padding preset '",
                                   std::string(PaddingPresetName(layer.spec.padding)),
                                   "' pads by an amount that depends on the signal's length"));
      }
      break;
  }
  if (end != 0) {
    return refuse(absl::StrCat("pad_end is ", end,
                               ", so its last outputs depend on cells after the signal's end"));
  }
  if (begin < span - 1) {
    return refuse(absl::StrCat("pad_begin is ", begin, " but its window spans ", span,
                               " cells, so output t depends on inputs up to t * stride + ",
                               span - 1 - begin));
  }
  if (begin > 0 && layer.spec.padding_mode != PaddingMode::kZeros) {
    return refuse(absl::StrCat("padding_mode is '",
                               std::string(PaddingModeName(layer.spec.padding_mode)),
                               "', which fills the pads from cells of the signal"));
  }
  return begin;
}

// Copies `length` positions starting at `from` of each of `outer` rows of
// `source` (rows of `source_length` positions of `inner` values) to `dest`
// (rows of `dest_length`, starting at position `to`).
void CopyRows(const float* source, int64_t source_length, int64_t from, float* dest,
              int64_t dest_length, int64_t to, int64_t length, int64_t outer, int64_t inner) {
  if (length <= 0) return;
  for (int64_t o = 0; o < outer; ++o) {
    std::copy_n(source + (o * source_length + from) * inner, length * inner,
                dest + (o * dest_length + to) * inner);
  }
}

}  // namespace

absl::Status CheckStreamable(const ResolvedLayer& layer, const std::string& name) {
  return TimePadBegin(layer, name).status();
}

std::string ConvStream::LayerName(size_t index) const {
  return absl::StrCat(prefix_, "layers[", index, "]");
}

absl::StatusOr<ConvStream> ConvStream::Create(std::vector<const ConvOperator*> layers,
                                              const std::vector<int64_t>& chunk_shape,
                                              const std::string& prefix) {
  if (layers.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "layers: expected at least one"));
  }
  ConvStream stream;
  stream.prefix_ = prefix;
  const ConvSpec& first = layers[0]->spec();
  const int rank = first.spatial_rank;
  if (static_cast<int>(chunk_shape.size()) != rank + 2) {
    return absl::InvalidArgumentError(absl::StrCat("chunk.shape: expected ", rank + 2,
                                                   " dimensions for the ", rank, "-D model, got ",
                                                   ShapeToString(chunk_shape)));
  }
  stream.time_axis_ = first.data_layout == DataLayout::kChannelsFirst ? rank + 1 : rank;
  stream.chunk_shape_ = chunk_shape;
  std::vector<int64_t> shape = chunk_shape;
  int64_t state = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const ResolvedLayer& resolved = layers[i]->layer();
    const std::string name = stream.LayerName(i);
    if (resolved.spec.spatial_rank != rank || resolved.spec.data_layout != first.data_layout) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": expected the rank and data layout of layers[0]"));
    }
    absl::StatusOr<int64_t> pad_begin = TimePadBegin(resolved, name);
    if (!pad_begin.ok()) return pad_begin.status();
    Layer layer;
    layer.op = layers[i];
    layer.span = resolved.span[kTime];
    layer.stride = resolved.stride[kTime];
    layer.pad_begin = *pad_begin;
    layer.input_shape = shape;
    // One window's worth of time (or the chunk's, to show it in messages)
    // checks everything but the time extent.
    layer.input_shape[stream.time_axis_] =
        i == 0 ? std::max(layer.span, chunk_shape[stream.time_axis_]) : layer.span;
    absl::StatusOr<ConvGeometry> probe = ResolveGeometry(resolved, layer.input_shape);
    if (!probe.ok()) {
      absl::string_view message = probe.status().message();
      if (i > 0) {
        return absl::Status(probe.status().code(),
                            absl::StrCat(name, " on the previous layer's output: ", message));
      }
      absl::ConsumePrefix(&message, "input: ");  // the chunk is the first layer's input
      return absl::Status(probe.status().code(), absl::StrCat("chunk: ", message));
    }
    layer.input_shape[stream.time_axis_] = layer.span;
    layer.output_shape = OutputShape(*probe);
    const std::vector<int64_t>& output_shape = layer.output_shape;
    const auto split = [&](const std::vector<int64_t>& dims, int64_t* outer, int64_t* inner) {
      *outer = 1;
      *inner = 1;
      for (int d = 0; d < static_cast<int>(dims.size()); ++d) {
        if (d < stream.time_axis_) *outer *= dims[d];
        if (d > stream.time_axis_) *inner *= dims[d];
      }
    };
    // Both products divide an element count ResolveGeometry() checked.
    split(layer.input_shape, &layer.outer, &layer.inner);
    split(output_shape, &layer.out_outer, &layer.out_inner);
    layer.tail_length = layer.pad_begin;  // zeros before the signal: `tail` stays empty
    std::optional<int64_t> tail =
        CheckedProduct({layer.outer, std::max(layer.pad_begin, layer.span - 1), layer.inner});
    std::optional<int64_t> total = tail ? CheckedAdd(state, *tail) : std::nullopt;
    if (!total) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": the cells its pad_begin holds overflow 64 bits"));
    }
    state = *total;
    shape = output_shape;
    stream.layers_.push_back(std::move(layer));
  }
  stream.max_state_elements_ = state;
  return stream;
}

absl::Status ConvStream::CheckChunkShape(const std::string& field,
                                         const std::vector<int64_t>& shape) const {
  bool same = shape.size() == chunk_shape_.size();
  for (size_t d = 0; same && d < shape.size(); ++d) {
    same = static_cast<int>(d) == time_axis_ ? shape[d] >= 1 : shape[d] == chunk_shape_[d];
  }
  if (same) return absl::OkStatus();
  std::vector<int64_t> expected = chunk_shape_;
  std::string shown = ShapeToString(expected);
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": expected the stream's shape ", shown, " with any time extent >= 1 on axis ",
      time_axis_, " (the last spatial axis), got ", ShapeToString(shape)));
}

absl::StatusOr<ConvGeometry> ConvStream::PieceGeometry(const Layer& layer, int64_t length) const {
  std::vector<int64_t> shape = layer.input_shape;
  shape[time_axis_] = length;
  absl::StatusOr<ConvGeometry> geometry = ResolveGeometry(layer.op->layer(), shape);
  if (!geometry.ok()) return geometry;
  // The pads along time are cells of the tail; the run itself pads nothing
  // there, which only makes the output (already checked) shorter.
  geometry->pad_begin[kTime] = 0;
  geometry->pad_end[kTime] = 0;
  geometry->output[kTime] = (length - layer.span) / layer.stride + 1;
  return geometry;
}

absl::StatusOr<StreamChunkPlan> ConvStream::PlanChunk(int64_t length) const {
  StreamChunkPlan plan;
  int64_t cells = length;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& layer = layers_[i];
    std::optional<int64_t> piece = CheckedAdd(std::max(layer.pad_begin, layer.span - 1), cells);
    if (!piece) {
      return absl::InvalidArgumentError(absl::StrCat(LayerName(i), ": chunk too long"));
    }
    if (*piece < layer.span) break;
    absl::StatusOr<ConvGeometry> geometry = PieceGeometry(layer, *piece);
    if (!geometry.ok()) {
      return absl::Status(geometry.status().code(),
                          absl::StrCat(LayerName(i), ": ", geometry.status().message()));
    }
    std::optional<int64_t> work = CheckedAdd(plan.work_elements, geometry->input_elements());
    if (work) work = CheckedAdd(*work, geometry->output_elements());
    if (!work) {
      return absl::InvalidArgumentError(absl::StrCat(LayerName(i), ": chunk too long"));
    }
    plan.work_elements = *work;
    cells = geometry->output[kTime];
    plan.geometries.push_back(*geometry);
  }
  return plan;
}

absl::Status ConvStream::Push(const std::vector<int64_t>& shape, absl::Span<const float> values,
                              std::vector<float>* output, std::vector<int64_t>* output_shape,
                              const StopToken& stop) {
  if (broken_) {
    return absl::FailedPreconditionError(
        "the stream failed on an earlier chunk and cannot continue");
  }
  absl::Status shape_ok = CheckChunkShape("chunk.shape", shape);
  if (!shape_ok.ok()) return shape_ok;
  const int64_t length = shape[time_axis_];
  const Layer& front = layers_.front();
  if (static_cast<int64_t>(values.size()) != front.outer * length * front.inner) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk: expected ", front.outer * length * front.inner, " values, got ", values.size()));
  }
  broken_ = true;  // until this chunk has gone through every layer
  samples_in_ += length;
  std::vector<float> current;  // the previous layer's output
  const float* in = values.data();
  int64_t in_length = length;
  for (Layer& layer : layers_) {
    const int64_t drop = std::min(layer.skip, in_length);
    layer.skip -= drop;
    const int64_t fresh = in_length - drop;
    const int64_t piece = layer.tail_length + fresh;
    // [tail | fresh cells], as (outer, piece, inner).
    std::vector<float> buffer(static_cast<size_t>(layer.outer * piece * layer.inner));
    if (!layer.tail.empty()) {
      CopyRows(layer.tail.data(), layer.tail_length, 0, buffer.data(), piece, 0, layer.tail_length,
               layer.outer, layer.inner);
    }  // else the tail is pad_begin zeros, as `buffer` was made
    CopyRows(in, in_length, drop, buffer.data(), piece, layer.tail_length, fresh, layer.outer,
             layer.inner);
    std::vector<float> out;
    int64_t out_length = 0;
    int64_t consumed = 0;
    if (piece >= layer.span) {
      absl::StatusOr<ConvGeometry> geometry = PieceGeometry(layer, piece);
      if (!geometry.ok()) return geometry.status();
      out_length = geometry->output[kTime];
      out.resize(static_cast<size_t>(geometry->output_elements()));
      absl::Status run = layer.op->Run(*geometry, buffer.data(), out.data(), stop);
      if (!run.ok()) return run;
      consumed = out_length * layer.stride;
    }
    if (consumed <= piece) {
      layer.tail.resize(static_cast<size_t>(layer.outer * (piece - consumed) * layer.inner));
      CopyRows(buffer.data(), piece, consumed, layer.tail.data(), piece - consumed, 0,
               piece - consumed, layer.outer, layer.inner);
      layer.tail_length = piece - consumed;
    } else {  // the next window starts after cells not received yet
      layer.skip = consumed - piece;
      layer.tail.clear();
      layer.tail_length = 0;
    }
    current = std::move(out);
    in = current.data();
    in_length = out_length;
  }
  const Layer& back = layers_.back();
  *output_shape = back.output_shape;
  (*output_shape)[time_axis_] = in_length;
  *output = std::move(current);
  samples_out_ += in_length;
  broken_ = false;
  return absl::OkStatus();
}

}  // namespace convserve
