// onnx_const_eval.cc: the constant ops, each following the ONNX operator
// specification of opsets 9-17.
#include "core/onnx_const_eval.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace convserve {
namespace {

using onnx::TensorProto;

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

std::string Dims(const std::vector<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

// Product of `dims`, or an error if a dim is negative or the product exceeds
// `limit`.
absl::StatusOr<int64_t> CountElements(const std::vector<int64_t>& dims, int64_t limit,
                                      const std::string& what) {
  int64_t count = 1;
  for (int64_t dim : dims) {
    if (dim < 0) return Invalid(absl::StrCat(what, ": expected dims >= 0, got ", Dims(dims)));
    if (dim != 0 && count > limit / dim) {
      return Invalid(
          absl::StrCat(what, ": shape ", Dims(dims), " has more than ", limit, " elements"));
    }
    count *= dim;
  }
  if (count > limit) {
    return Invalid(
        absl::StrCat(what, ": shape ", Dims(dims), " has more than ", limit, " elements"));
  }
  return count;
}

int ElementBytes(int32_t type) {
  switch (type) {
    case TensorProto::FLOAT:
    case TensorProto::INT32:
    case TensorProto::UINT32:
      return 4;
    case TensorProto::DOUBLE:
    case TensorProto::INT64:
    case TensorProto::UINT64:
      return 8;
    case TensorProto::INT16:
    case TensorProto::UINT16:
    case TensorProto::FLOAT16:
    case TensorProto::BFLOAT16:
      return 2;
    case TensorProto::INT8:
    case TensorProto::UINT8:
    case TensorProto::BOOL:
      return 1;
    default:
      return 0;
  }
}

bool IsRealType(int32_t type) { return type == TensorProto::FLOAT || type == TensorProto::DOUBLE; }

bool IsSupportedType(int32_t type) {
  switch (type) {
    case TensorProto::FLOAT:
    case TensorProto::DOUBLE:
    case TensorProto::INT64:
    case TensorProto::INT32:
    case TensorProto::INT16:
    case TensorProto::INT8:
    case TensorProto::UINT8:
    case TensorProto::UINT16:
    case TensorProto::BOOL:
      return true;
    default:
      return false;
  }
}

// A value converted to `type` as Cast does (round-trip through the type).
double CastReal(double value, int32_t type) {
  return type == TensorProto::FLOAT ? static_cast<double>(static_cast<float>(value)) : value;
}

absl::StatusOr<int64_t> CastInteger(double value, int32_t type, const std::string& what) {
  if (type == TensorProto::BOOL) return value != 0.0 ? 1 : 0;
  if (!std::isfinite(value) || std::fabs(value) >= 9.2e18) {
    return Invalid(absl::StrCat(what, ": cannot convert ", value, " to ", TensorTypeName(type)));
  }
  return static_cast<int64_t>(value);
}

int64_t WrapInteger(int64_t value, int32_t type) {
  switch (type) {
    case TensorProto::INT32:
      return static_cast<int32_t>(value);
    case TensorProto::INT16:
      return static_cast<int16_t>(value);
    case TensorProto::INT8:
      return static_cast<int8_t>(value);
    case TensorProto::UINT8:
      return static_cast<uint8_t>(value);
    case TensorProto::UINT16:
      return static_cast<uint16_t>(value);
    case TensorProto::BOOL:
      return value != 0 ? 1 : 0;
    default:
      return value;
  }
}

// An empty tensor of `type` and `dims`, its storage sized.
ConstTensor Make(int32_t type, std::vector<int64_t> dims, int64_t count) {
  ConstTensor out;
  out.type = type;
  out.dims = std::move(dims);
  if (out.is_real()) {
    out.reals.resize(static_cast<size_t>(count));
  } else {
    out.ints.resize(static_cast<size_t>(count));
  }
  return out;
}

// `in` with its elements picked: out[i] = in[source[i]], shaped `dims`.
ConstTensor Pick(const ConstTensor& in, std::vector<int64_t> dims,
                 const std::vector<int64_t>& source) {
  ConstTensor out = Make(in.type, std::move(dims), static_cast<int64_t>(source.size()));
  for (size_t i = 0; i < source.size(); ++i) {
    if (in.is_real()) {
      out.reals[i] = in.reals[static_cast<size_t>(source[i])];
    } else {
      out.ints[i] = in.ints[static_cast<size_t>(source[i])];
    }
  }
  return out;
}

std::vector<int64_t> Strides(const std::vector<int64_t>& dims) {
  std::vector<int64_t> strides(dims.size(), 1);
  for (size_t i = dims.size(); i-- > 1;) strides[i - 1] = strides[i] * dims[i];
  return strides;
}

// Calls f(index) for every multi-index of `dims`, row-major.
template <typename F>
void ForEachIndex(const std::vector<int64_t>& dims, F f) {
  for (int64_t dim : dims) {
    if (dim == 0) return;
  }
  std::vector<int64_t> index(dims.size(), 0);
  while (true) {
    f(index);
    size_t axis = dims.size();
    while (axis > 0) {
      --axis;
      if (++index[axis] < dims[axis]) break;
      index[axis] = 0;
      if (axis == 0) return;
    }
    if (dims.empty()) return;
  }
}

// An axis in [-rank, rank) as [0, rank).
absl::StatusOr<int64_t> NormalizeAxis(int64_t axis, int64_t rank, const std::string& what) {
  if (axis < -rank || axis >= rank) {
    return Invalid(
        absl::StrCat(what, ": expected an axis in [", -rank, ", ", rank - 1, "], got ", axis));
  }
  return axis < 0 ? axis + rank : axis;
}

std::vector<int64_t> Integers(const ConstTensor& tensor) {
  std::vector<int64_t> values(static_cast<size_t>(tensor.size()));
  for (int64_t i = 0; i < tensor.size(); ++i) values[static_cast<size_t>(i)] = tensor.integer(i);
  return values;
}

absl::StatusOr<std::vector<int64_t>> IntegerInput(const ConstTensor* tensor,
                                                  const std::string& what) {
  if (tensor->is_real()) {
    return Invalid(
        absl::StrCat(what, ": expected an integer tensor, got ", TensorTypeName(tensor->type)));
  }
  if (tensor->dims.size() > 1) {
    return Invalid(absl::StrCat(what, ": expected a 1-D tensor, got shape ", Dims(tensor->dims)));
  }
  return Integers(*tensor);
}

int64_t IntAttribute(const onnx::NodeProto& node, const std::string& name, int64_t fallback) {
  const onnx::AttributeProto* attribute = FindAttribute(node, name);
  return attribute != nullptr ? attribute->i() : fallback;
}

const std::vector<int64_t>* IntsAttribute(const onnx::NodeProto& node, const std::string& name,
                                          std::vector<int64_t>* storage) {
  const onnx::AttributeProto* attribute = FindAttribute(node, name);
  if (attribute == nullptr) return nullptr;
  storage->assign(attribute->ints().begin(), attribute->ints().end());
  return storage;
}

absl::Status NeedInputs(const std::vector<const ConstTensor*>& inputs, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    if (i >= inputs.size() || inputs[i] == nullptr) {
      return Invalid(absl::StrCat("input ", i, ": expected a tensor, got none"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ConstTensor> Constant(const onnx::NodeProto& node) {
  for (const onnx::AttributeProto& attribute : node.attribute()) {
    const std::string& name = attribute.name();
    if (name == "value") return DecodeTensor(attribute.t(), "attribute value");
    if (name == "value_float" || name == "value_floats") {
      std::vector<double> values;
      if (name == "value_float") {
        values.push_back(attribute.f());
      } else {
        values.assign(attribute.floats().begin(), attribute.floats().end());
      }
      ConstTensor out = Make(TensorProto::FLOAT, {}, 0);
      if (name == "value_floats") out.dims = {static_cast<int64_t>(values.size())};
      out.reals = std::move(values);
      return out;
    }
    if (name == "value_int" || name == "value_ints") {
      ConstTensor out = Make(TensorProto::INT64, {}, 0);
      if (name == "value_int") {
        out.ints.push_back(attribute.i());
      } else {
        out.ints.assign(attribute.ints().begin(), attribute.ints().end());
        out.dims = {static_cast<int64_t>(out.ints.size())};
      }
      return out;
    }
  }
  return Invalid(
      "attributes: expected one of value, value_float(s), value_int(s) (sparse and string "
      "constants are not supported)");
}

absl::StatusOr<ConstTensor> ConstantOfShape(const onnx::NodeProto& node, const ConstTensor& shape) {
  absl::StatusOr<std::vector<int64_t>> dims = IntegerInput(&shape, "input 0 (shape)");
  if (!dims.ok()) return dims.status();
  absl::StatusOr<int64_t> count = CountElements(*dims, kMaxFoldedElements, "output");
  if (!count.ok()) return count.status();
  ConstTensor fill = Make(TensorProto::FLOAT, {}, 1);  // default: float 0
  if (const onnx::AttributeProto* value = FindAttribute(node, "value")) {
    absl::StatusOr<ConstTensor> decoded = DecodeTensor(value->t(), "attribute value");
    if (!decoded.ok()) return decoded.status();
    if (decoded->size() != 1) {
      return Invalid(absl::StrCat("attribute value: expected one element, got ", decoded->size()));
    }
    fill = *std::move(decoded);
  }
  return Pick(fill, *std::move(dims), std::vector<int64_t>(static_cast<size_t>(*count), 0));
}

absl::StatusOr<ConstTensor> Concat(const onnx::NodeProto& node,
                                   const std::vector<const ConstTensor*>& inputs) {
  if (inputs.empty()) return Invalid("inputs: expected at least one, got none");
  const ConstTensor& first = *inputs[0];
  const int64_t rank = static_cast<int64_t>(first.dims.size());
  if (rank == 0) return Invalid("input 0: expected rank >= 1, got a scalar");
  absl::StatusOr<int64_t> axis =
      NormalizeAxis(IntAttribute(node, "axis", 0), rank, "attribute axis");
  if (!axis.ok()) return axis.status();
  std::vector<int64_t> dims = first.dims;
  dims[*axis] = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ConstTensor& in = *inputs[i];
    std::vector<int64_t> expected = first.dims;
    expected[*axis] = in.dims.size() == first.dims.size() ? in.dims[*axis] : 0;
    if (in.type != first.type || in.dims != expected) {
      return Invalid(absl::StrCat("input ", i, ": expected ", TensorTypeName(first.type),
                                  " of shape ", Dims(first.dims), " but for axis ", *axis, ", got ",
                                  TensorTypeName(in.type), " of shape ", Dims(in.dims)));
    }
    dims[*axis] += in.dims[*axis];
  }
  absl::StatusOr<int64_t> count = CountElements(dims, kMaxFoldedElements, "output");
  if (!count.ok()) return count.status();
  ConstTensor out = Make(first.type, dims, 0);
  // Outer blocks (axes before `axis`), each the inputs' slabs in turn.
  int64_t outer = 1;
  for (int64_t a = 0; a < *axis; ++a) outer *= dims[a];
  for (int64_t block = 0; block < outer; ++block) {
    for (const ConstTensor* in : inputs) {
      const int64_t slab = outer == 0 ? 0 : in->size() / outer;
      for (int64_t i = block * slab; i < (block + 1) * slab; ++i) {
        if (out.is_real()) {
          out.reals.push_back(in->reals[static_cast<size_t>(i)]);
        } else {
          out.ints.push_back(in->ints[static_cast<size_t>(i)]);
        }
      }
    }
  }
  return out;
}

absl::StatusOr<ConstTensor> Reshape(const onnx::NodeProto& node, const ConstTensor& data,
                                    const ConstTensor& shape_tensor) {
  absl::StatusOr<std::vector<int64_t>> shape = IntegerInput(&shape_tensor, "input 1 (shape)");
  if (!shape.ok()) return shape.status();
  const bool allow_zero = IntAttribute(node, "allowzero", 0) != 0;
  int infer = -1;
  int64_t known = 1;
  std::vector<int64_t> dims = *shape;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == 0 && !allow_zero) {
      if (i >= data.dims.size()) {
        return Invalid(absl::StrCat("input 1 (shape): 0 at axis ", i, " copies an axis input 0 ",
                                    Dims(data.dims), " does not have"));
      }
      dims[i] = data.dims[i];
    }
    if (dims[i] == -1) {
      if (infer >= 0) return Invalid("input 1 (shape): expected at most one -1, got two");
      infer = static_cast<int>(i);
      continue;
    }
    if (dims[i] < 0)
      return Invalid(absl::StrCat("input 1 (shape): expected dims >= -1, got ", Dims(*shape)));
    if (dims[i] != 0 && known > kMaxFoldedElements / dims[i]) {
      return Invalid(absl::StrCat("input 1 (shape): ", Dims(*shape), " does not match ",
                                  data.size(), " elements"));
    }
    known *= dims[i];
  }
  if (infer >= 0) {
    if (known == 0 || data.size() % known != 0) {
      return Invalid(absl::StrCat("input 1 (shape): ", Dims(*shape), " does not divide ",
                                  data.size(), " elements"));
    }
    dims[infer] = data.size() / known;
    known = data.size();
  }
  if (known != data.size()) {
    return Invalid(absl::StrCat("input 1 (shape): expected a shape of ", data.size(),
                                " elements (input 0 is ", Dims(data.dims), "), got ",
                                Dims(*shape)));
  }
  ConstTensor out = data;
  out.dims = std::move(dims);
  return out;
}

absl::StatusOr<ConstTensor> Slice(const onnx::NodeProto& node,
                                  const std::vector<const ConstTensor*>& inputs, int opset) {
  const ConstTensor& data = *inputs[0];
  const int64_t rank = static_cast<int64_t>(data.dims.size());
  std::vector<int64_t> starts, ends, axes, steps;
  if (opset < 10) {
    std::vector<int64_t> storage;
    if (IntsAttribute(node, "starts", &starts) == nullptr ||
        IntsAttribute(node, "ends", &ends) == nullptr) {
      return Invalid("attributes starts, ends: expected both, got fewer");
    }
    if (IntsAttribute(node, "axes", &storage) != nullptr) axes = storage;
  } else {
    absl::Status present = NeedInputs(inputs, 3);
    if (!present.ok()) return present;
    absl::StatusOr<std::vector<int64_t>> s = IntegerInput(inputs[1], "input 1 (starts)");
    if (!s.ok()) return s.status();
    absl::StatusOr<std::vector<int64_t>> e = IntegerInput(inputs[2], "input 2 (ends)");
    if (!e.ok()) return e.status();
    starts = *s;
    ends = *e;
    if (inputs.size() > 3 && inputs[3] != nullptr) {
      absl::StatusOr<std::vector<int64_t>> a = IntegerInput(inputs[3], "input 3 (axes)");
      if (!a.ok()) return a.status();
      axes = *a;
    }
    if (inputs.size() > 4 && inputs[4] != nullptr) {
      absl::StatusOr<std::vector<int64_t>> st = IntegerInput(inputs[4], "input 4 (steps)");
      if (!st.ok()) return st.status();
      steps = *st;
    }
  }
  if (axes.empty()) {
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() ||
      steps.size() != starts.size()) {
    return Invalid(absl::StrCat("starts, ends, axes, steps: expected equal lengths, got ",
                                starts.size(), ", ", ends.size(), ", ", axes.size(), ", ",
                                steps.size()));
  }
  std::vector<int64_t> begin(rank, 0), step(rank, 1), dims = data.dims;
  std::vector<bool> seen(rank, false);
  for (size_t i = 0; i < starts.size(); ++i) {
    absl::StatusOr<int64_t> axis = NormalizeAxis(axes[i], rank, "axes");
    if (!axis.ok()) return axis.status();
    if (seen[*axis]) return Invalid(absl::StrCat("axes: axis ", *axis, " given twice"));
    seen[*axis] = true;
    const int64_t n = data.dims[*axis];
    const int64_t s = steps[i];
    if (s == 0) return Invalid("steps: expected nonzero steps, got 0");
    // ONNX: negative indices count from the end, then clamp to [0, n] for a
    // positive step and [-1, n - 1] for a negative one.
    auto clamp = [&](int64_t v) {
      if (v < 0) v = v < -n ? (s > 0 ? 0 : -1) : v + n;
      if (s > 0) return std::min(std::max<int64_t>(v, 0), n);
      return std::min(std::max<int64_t>(v, -1), n - 1);
    };
    const int64_t first = clamp(starts[i]);
    const int64_t last = clamp(ends[i]);
    int64_t count = 0;
    // ceil(distance / |s|), without overflow for any s.
    if (s > 0 && last > first) count = (last - first - 1) / s + 1;
    if (s < 0 && first > last) {
      count = s == std::numeric_limits<int64_t>::min() ? 1 : (first - last - 1) / -s + 1;
    }
    begin[*axis] = first;
    step[*axis] = s;
    dims[*axis] = count;
  }
  absl::StatusOr<int64_t> count = CountElements(dims, kMaxFoldedElements, "output");
  if (!count.ok()) return count.status();
  const std::vector<int64_t> strides = Strides(data.dims);
  std::vector<int64_t> source;
  source.reserve(static_cast<size_t>(*count));
  ForEachIndex(dims, [&](const std::vector<int64_t>& index) {
    int64_t offset = 0;
    for (int64_t a = 0; a < rank; ++a) offset += (begin[a] + index[a] * step[a]) * strides[a];
    source.push_back(offset);
  });
  return Pick(data, dims, source);
}

absl::StatusOr<ConstTensor> Transpose(const onnx::NodeProto& node, const ConstTensor& data) {
  const int64_t rank = static_cast<int64_t>(data.dims.size());
  std::vector<int64_t> perm;
  if (IntsAttribute(node, "perm", &perm) == nullptr) {
    for (int64_t a = rank - 1; a >= 0; --a) perm.push_back(a);
  }
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t a = 0; a < rank; ++a) {
    if (static_cast<int64_t>(sorted.size()) != rank || sorted[a] != a) {
      return Invalid(absl::StrCat("attribute perm: expected a permutation of 0..", rank - 1,
                                  ", got ", Dims(perm)));
    }
  }
  std::vector<int64_t> dims(rank);
  for (int64_t a = 0; a < rank; ++a) dims[a] = data.dims[perm[a]];
  const std::vector<int64_t> strides = Strides(data.dims);
  std::vector<int64_t> source;
  ForEachIndex(dims, [&](const std::vector<int64_t>& index) {
    int64_t offset = 0;
    for (int64_t a = 0; a < rank; ++a) offset += index[a] * strides[perm[a]];
    source.push_back(offset);
  });
  return Pick(data, dims, source);
}

absl::StatusOr<ConstTensor> Cast(const onnx::NodeProto& node, const ConstTensor& data) {
  const int32_t to = static_cast<int32_t>(IntAttribute(node, "to", TensorProto::UNDEFINED));
  if (!IsSupportedType(to)) {
    return Invalid(absl::StrCat("attribute to: expected a numeric type, got ", TensorTypeName(to)));
  }
  ConstTensor out = Make(to, data.dims, data.size());
  for (int64_t i = 0; i < data.size(); ++i) {
    if (out.is_real()) {
      out.reals[i] = CastReal(data.real(i), to);
    } else if (data.is_real()) {
      absl::StatusOr<int64_t> value = CastInteger(data.reals[i], to, "input 0");
      if (!value.ok()) return value.status();
      out.ints[i] = WrapInteger(*value, to);
    } else {
      out.ints[i] = WrapInteger(data.ints[i], to);
    }
  }
  return out;
}

absl::StatusOr<ConstTensor> Gather(const onnx::NodeProto& node, const ConstTensor& data,
                                   const ConstTensor& indices) {
  const int64_t rank = static_cast<int64_t>(data.dims.size());
  if (rank == 0) return Invalid("input 0: expected rank >= 1, got a scalar");
  if (indices.is_real()) {
    return Invalid(absl::StrCat("input 1 (indices): expected an integer tensor, got ",
                                TensorTypeName(indices.type)));
  }
  absl::StatusOr<int64_t> axis =
      NormalizeAxis(IntAttribute(node, "axis", 0), rank, "attribute axis");
  if (!axis.ok()) return axis.status();
  const int64_t n = data.dims[*axis];
  std::vector<int64_t> dims(data.dims.begin(), data.dims.begin() + *axis);
  dims.insert(dims.end(), indices.dims.begin(), indices.dims.end());
  dims.insert(dims.end(), data.dims.begin() + *axis + 1, data.dims.end());
  absl::StatusOr<int64_t> count = CountElements(dims, kMaxFoldedElements, "output");
  if (!count.ok()) return count.status();
  for (int64_t index : indices.ints) {
    if (index < -n || index >= n) {
      return Invalid(absl::StrCat("input 1 (indices): expected indices in [", -n, ", ", n - 1,
                                  "], got ", index));
    }
  }
  const std::vector<int64_t> strides = Strides(data.dims);
  const size_t index_rank = indices.dims.size();
  std::vector<int64_t> source;
  ForEachIndex(dims, [&](const std::vector<int64_t>& out_index) {
    int64_t offset = 0;
    for (int64_t a = 0; a < *axis; ++a) offset += out_index[a] * strides[a];
    int64_t flat = 0;
    for (size_t j = 0; j < index_rank; ++j) {
      flat = flat * indices.dims[j] + out_index[*axis + j];
    }
    int64_t index = indices.ints[static_cast<size_t>(flat)];
    if (index < 0) index += n;
    offset += index * strides[*axis];
    for (int64_t a = *axis + 1; a < rank; ++a) {
      offset += out_index[a - 1 + index_rank] * strides[a];
    }
    source.push_back(offset);
  });
  return Pick(data, dims, source);
}

// The axes of Unsqueeze / Squeeze: an attribute before opset 13, an input after.
absl::StatusOr<std::vector<int64_t>> AxesOf(const onnx::NodeProto& node,
                                            const std::vector<const ConstTensor*>& inputs,
                                            int opset, bool* given) {
  std::vector<int64_t> axes;
  *given = true;
  if (opset < 13) {
    if (IntsAttribute(node, "axes", &axes) == nullptr) *given = false;
    return axes;
  }
  if (inputs.size() < 2 || inputs[1] == nullptr) {
    *given = false;
    return axes;
  }
  return IntegerInput(inputs[1], "input 1 (axes)");
}

absl::StatusOr<ConstTensor> Unsqueeze(const onnx::NodeProto& node,
                                      const std::vector<const ConstTensor*>& inputs, int opset) {
  bool given = false;
  absl::StatusOr<std::vector<int64_t>> axes = AxesOf(node, inputs, opset, &given);
  if (!axes.ok()) return axes.status();
  if (!given) return Invalid("axes: expected the axes to insert, got none");
  const ConstTensor& data = *inputs[0];
  const int64_t rank = static_cast<int64_t>(data.dims.size() + axes->size());
  std::vector<bool> inserted(rank, false);
  for (int64_t axis : *axes) {
    absl::StatusOr<int64_t> a = NormalizeAxis(axis, rank, "axes");
    if (!a.ok()) return a.status();
    if (inserted[*a]) return Invalid(absl::StrCat("axes: axis ", *a, " given twice"));
    inserted[*a] = true;
  }
  ConstTensor out = data;
  out.dims.clear();
  size_t next = 0;
  for (int64_t a = 0; a < rank; ++a) out.dims.push_back(inserted[a] ? 1 : data.dims[next++]);
  return out;
}

absl::StatusOr<ConstTensor> Squeeze(const onnx::NodeProto& node,
                                    const std::vector<const ConstTensor*>& inputs, int opset) {
  bool given = false;
  absl::StatusOr<std::vector<int64_t>> axes = AxesOf(node, inputs, opset, &given);
  if (!axes.ok()) return axes.status();
  const ConstTensor& data = *inputs[0];
  const int64_t rank = static_cast<int64_t>(data.dims.size());
  std::vector<bool> removed(rank, false);
  for (int64_t axis : *axes) {
    absl::StatusOr<int64_t> a = NormalizeAxis(axis, rank, "axes");
    if (!a.ok()) return a.status();
    if (data.dims[*a] != 1) {
      return Invalid(absl::StrCat("axes: axis ", *a, " of ", Dims(data.dims), " is not 1"));
    }
    removed[*a] = true;
  }
  ConstTensor out = data;
  out.dims.clear();
  for (int64_t a = 0; a < rank; ++a) {
    const bool drop = given ? removed[a] : data.dims[a] == 1;
    if (!drop) out.dims.push_back(data.dims[a]);
  }
  return out;
}

// Add, Sub, Mul, Div with multidirectional (numpy) broadcasting.
absl::StatusOr<ConstTensor> Arithmetic(const onnx::NodeProto& node, const ConstTensor& a,
                                       const ConstTensor& b) {
  if (a.type != b.type) {
    return Invalid(absl::StrCat("inputs: expected equal types, got ", TensorTypeName(a.type),
                                " and ", TensorTypeName(b.type)));
  }
  const size_t rank = std::max(a.dims.size(), b.dims.size());
  std::vector<int64_t> da(rank, 1), db(rank, 1), dims(rank);
  std::copy(a.dims.begin(), a.dims.end(), da.begin() + (rank - a.dims.size()));
  std::copy(b.dims.begin(), b.dims.end(), db.begin() + (rank - b.dims.size()));
  for (size_t i = 0; i < rank; ++i) {
    if (da[i] != db[i] && da[i] != 1 && db[i] != 1) {
      return Invalid(absl::StrCat("inputs: shapes ", Dims(a.dims), " and ", Dims(b.dims),
                                  " do not broadcast"));
    }
    dims[i] = da[i] == 1 ? db[i] : da[i];
  }
  absl::StatusOr<int64_t> count = CountElements(dims, kMaxFoldedElements, "output");
  if (!count.ok()) return count.status();
  const std::vector<int64_t> sa = Strides(da), sb = Strides(db);
  ConstTensor out = Make(a.type, dims, 0);
  const std::string& op = node.op_type();
  absl::Status status;
  ForEachIndex(dims, [&](const std::vector<int64_t>& index) {
    int64_t ia = 0, ib = 0;
    for (size_t i = 0; i < rank; ++i) {
      ia += (da[i] == 1 ? 0 : index[i]) * sa[i];
      ib += (db[i] == 1 ? 0 : index[i]) * sb[i];
    }
    if (out.is_real()) {
      const double x = a.reals[ia], y = b.reals[ib];
      const double r = op == "Add" ? x + y : op == "Sub" ? x - y : op == "Mul" ? x * y : x / y;
      out.reals.push_back(CastReal(r, out.type));
    } else {
      const int64_t x = a.ints[ia], y = b.ints[ib];
      if (op == "Div" && (y == 0 || (y == -1 && x == std::numeric_limits<int64_t>::min()))) {
        status = Invalid("input 1: integer division by zero");
        out.ints.push_back(0);
        return;
      }
      // Wrapping arithmetic, as the integer types do.
      const uint64_t ux = static_cast<uint64_t>(x), uy = static_cast<uint64_t>(y);
      const int64_t r = op == "Add"   ? static_cast<int64_t>(ux + uy)
                        : op == "Sub" ? static_cast<int64_t>(ux - uy)
                        : op == "Mul" ? static_cast<int64_t>(ux * uy)
                                      : x / y;
      out.ints.push_back(WrapInteger(r, out.type));
    }
  });
  if (!status.ok()) return status;
  return out;
}

}  // namespace

bool ConstTensor::is_real() const { return IsRealType(type); }

double ConstTensor::real(int64_t i) const {
  return is_real() ? reals[static_cast<size_t>(i)]
                   : static_cast<double>(ints[static_cast<size_t>(i)]);
}

int64_t ConstTensor::integer(int64_t i) const {
  if (!is_real()) return ints[static_cast<size_t>(i)];
  const double value = reals[static_cast<size_t>(i)];
  if (!(std::fabs(value) < 9.2e18)) return 0;
  return static_cast<int64_t>(value);
}

std::string TensorTypeName(int32_t type) {
  if (onnx::TensorProto_DataType_IsValid(type)) {
    return onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(type));
  }
  return absl::StrCat("type ", type);
}

bool HasExternalData(const onnx::TensorProto& tensor) {
  return tensor.data_location() == TensorProto::EXTERNAL || tensor.external_data_size() > 0;
}

const onnx::AttributeProto* FindAttribute(const onnx::NodeProto& node, const std::string& name) {
  for (const onnx::AttributeProto& attribute : node.attribute()) {
    if (attribute.name() == name) return &attribute;
  }
  return nullptr;
}

namespace {

// The element count of `tensor` (checked) and whether its values are in
// raw_data; refuses external data, segments and types not listed.
absl::StatusOr<int64_t> CheckTensorStorage(const TensorProto& tensor, const std::string& what,
                                           int64_t typed_values) {
  if (HasExternalData(tensor)) {
    return Invalid(absl::StrCat(what,
                                ": external data is not supported (the values must be in "
                                "the model file)"));
  }
  if (tensor.has_segment())
    return Invalid(absl::StrCat(what, ": segmented tensors are not supported"));
  if (!IsSupportedType(tensor.data_type())) {
    return Invalid(absl::StrCat(what, ": expected a FLOAT, DOUBLE or integer tensor, got ",
                                TensorTypeName(tensor.data_type())));
  }
  std::vector<int64_t> dims(tensor.dims().begin(), tensor.dims().end());
  absl::StatusOr<int64_t> count =
      CountElements(dims, std::numeric_limits<int64_t>::max() / 8, what);
  if (!count.ok()) return count.status();
  if (tensor.has_raw_data()) {
    const int64_t bytes = static_cast<int64_t>(tensor.raw_data().size());
    if (bytes != *count * ElementBytes(tensor.data_type())) {
      return Invalid(absl::StrCat(what, ": expected ", *count * ElementBytes(tensor.data_type()),
                                  " bytes of raw_data for shape ", Dims(dims), " ",
                                  TensorTypeName(tensor.data_type()), ", got ", bytes));
    }
  } else if (typed_values != *count) {
    return Invalid(absl::StrCat(what, ": expected ", *count, " values for shape ", Dims(dims),
                                ", got ", typed_values));
  }
  return *count;
}

int64_t TypedValues(const TensorProto& tensor) {
  switch (tensor.data_type()) {
    case TensorProto::FLOAT:
      return tensor.float_data_size();
    case TensorProto::DOUBLE:
      return tensor.double_data_size();
    case TensorProto::INT64:
      return tensor.int64_data_size();
    default:
      return tensor.int32_data_size();
  }
}

template <typename T>
T ReadRaw(const std::string& raw, int64_t i) {
  T value;
  std::memcpy(&value, raw.data() + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
  return value;
}

int64_t RawInteger(const std::string& raw, int32_t type, int64_t i) {
  switch (type) {
    case TensorProto::INT64:
      return ReadRaw<int64_t>(raw, i);
    case TensorProto::INT32:
      return ReadRaw<int32_t>(raw, i);
    case TensorProto::INT16:
      return ReadRaw<int16_t>(raw, i);
    case TensorProto::UINT16:
      return ReadRaw<uint16_t>(raw, i);
    case TensorProto::INT8:
      return ReadRaw<int8_t>(raw, i);
    default:  // UINT8, BOOL
      return ReadRaw<uint8_t>(raw, i);
  }
}

}  // namespace

absl::StatusOr<ConstTensor> DecodeTensor(const TensorProto& tensor, const std::string& what) {
  absl::StatusOr<int64_t> count = CheckTensorStorage(tensor, what, TypedValues(tensor));
  if (!count.ok()) return count.status();
  if (*count > kMaxFoldedElements) {
    return Invalid(absl::StrCat(what, ": ", *count, " elements, more than the ", kMaxFoldedElements,
                                " a constant computation may use"));
  }
  const int32_t type = tensor.data_type();
  ConstTensor out = Make(type, {tensor.dims().begin(), tensor.dims().end()}, *count);
  const bool raw = tensor.has_raw_data();
  for (int64_t i = 0; i < *count; ++i) {
    if (type == TensorProto::FLOAT) {
      out.reals[i] = raw ? ReadRaw<float>(tensor.raw_data(), i) : tensor.float_data(i);
    } else if (type == TensorProto::DOUBLE) {
      out.reals[i] = raw ? ReadRaw<double>(tensor.raw_data(), i) : tensor.double_data(i);
    } else if (raw) {
      out.ints[i] = RawInteger(tensor.raw_data(), type, i);
    } else {
      out.ints[i] = WrapInteger(
          type == TensorProto::INT64 ? tensor.int64_data(i) : tensor.int32_data(i), type);
    }
  }
  return out;
}

absl::StatusOr<std::vector<float>> DecodeFloats(const TensorProto& tensor,
                                                const std::string& what) {
  absl::StatusOr<int64_t> count = CheckTensorStorage(tensor, what, TypedValues(tensor));
  if (!count.ok()) return count.status();
  if (tensor.data_type() != TensorProto::FLOAT) {
    return Invalid(
        absl::StrCat(what, ": expected a FLOAT tensor, got ", TensorTypeName(tensor.data_type())));
  }
  std::vector<float> values(static_cast<size_t>(*count));
  if (tensor.has_raw_data()) {
    if (*count > 0) std::memcpy(values.data(), tensor.raw_data().data(), values.size() * 4);
  } else {
    std::copy(tensor.float_data().begin(), tensor.float_data().end(), values.begin());
  }
  return values;
}

bool IsFoldableOp(const std::string& op) {
  static const char* const kOps[] = {
      "Constant", "ConstantOfShape", "Identity", "Concat", "Reshape", "Slice", "Transpose", "Cast",
      "Gather",   "Unsqueeze",       "Squeeze",  "Shape",  "Add",     "Sub",   "Mul",       "Div"};
  for (const char* known : kOps) {
    if (op == known) return true;
  }
  return false;
}

absl::StatusOr<ConstTensor> ShapeOf(const onnx::NodeProto& node, const std::vector<int64_t>& dims) {
  const int64_t rank = static_cast<int64_t>(dims.size());
  auto clamp = [rank](int64_t v) {
    if (v < 0) v += rank;
    return std::min(std::max<int64_t>(v, 0), rank);
  };
  const int64_t start = clamp(IntAttribute(node, "start", 0));
  const int64_t end = clamp(IntAttribute(node, "end", rank));
  ConstTensor out = Make(TensorProto::INT64, {std::max<int64_t>(end - start, 0)}, 0);
  for (int64_t a = start; a < end; ++a) out.ints.push_back(dims[a]);
  return out;
}

absl::StatusOr<ConstTensor> EvaluateNode(const onnx::NodeProto& node,
                                         const std::vector<const ConstTensor*>& inputs, int opset) {
  const std::string& op = node.op_type();
  if (op == "Constant") return Constant(node);
  absl::Status present = NeedInputs(inputs, op == "Reshape" || op == "Gather" || op == "Add" ||
                                                    op == "Sub" || op == "Mul" || op == "Div"
                                                ? 2
                                                : 1);
  if (!present.ok()) return present;
  if (op == "ConstantOfShape") return ConstantOfShape(node, *inputs[0]);
  if (op == "Identity") return *inputs[0];
  if (op == "Concat") {
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i] == nullptr) return Invalid(absl::StrCat("input ", i, ": expected a tensor"));
    }
    return Concat(node, inputs);
  }
  if (op == "Reshape") return Reshape(node, *inputs[0], *inputs[1]);
  if (op == "Slice") return Slice(node, inputs, opset);
  if (op == "Transpose") return Transpose(node, *inputs[0]);
  if (op == "Cast") return Cast(node, *inputs[0]);
  if (op == "Gather") return Gather(node, *inputs[0], *inputs[1]);
  if (op == "Unsqueeze") return Unsqueeze(node, inputs, opset);
  if (op == "Squeeze") return Squeeze(node, inputs, opset);
  if (op == "Shape") return ShapeOf(node, inputs[0]->dims);
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") {
    return Arithmetic(node, *inputs[0], *inputs[1]);
  }
  return absl::InvalidArgumentError(absl::StrCat("op ", op, " cannot be evaluated at load"));
}

}  // namespace convserve
