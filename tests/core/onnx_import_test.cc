// ImportOnnx(): the error paths and the graph rewrites, on models built here
// with the ONNX protobuf messages. Numeric parity with PyTorch is tested end
// to end in tests/integration/test_onnx.py.
#include "core/onnx_import.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "onnx/onnx_pb.h"

namespace convserve {
namespace {

using ::testing::HasSubstr;

onnx::TensorProto FloatTensor(const std::string& name, std::vector<int64_t> dims,
                              std::vector<float> values) {
  onnx::TensorProto tensor;
  tensor.set_name(name);
  tensor.set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t dim : dims) tensor.add_dims(dim);
  for (float value : values) tensor.add_float_data(value);
  return tensor;
}

onnx::TensorProto IntTensor(const std::string& name, std::vector<int64_t> values) {
  onnx::TensorProto tensor;
  tensor.set_name(name);
  tensor.set_data_type(onnx::TensorProto::INT64);
  tensor.add_dims(static_cast<int64_t>(values.size()));
  for (int64_t value : values) tensor.add_int64_data(value);
  return tensor;
}

void SetShape(onnx::ValueInfoProto* value, const std::string& name, std::vector<int64_t> dims) {
  value->set_name(name);
  auto* type = value->mutable_type()->mutable_tensor_type();
  type->set_elem_type(onnx::TensorProto::FLOAT);
  for (int64_t dim : dims) type->mutable_shape()->add_dim()->set_dim_value(dim);
}

// A model with input "x" (1, 2, 5, 5), the nodes `build` adds, output `output`.
class ModelBuilder {
 public:
  explicit ModelBuilder(int opset = 13) {
    model_.set_ir_version(8);
    auto* set = model_.add_opset_import();
    set->set_domain("");
    set->set_version(opset);
    graph()->set_name("g");
    SetShape(graph()->add_input(), "x", {1, 2, 5, 5});
  }
  onnx::GraphProto* graph() { return model_.mutable_graph(); }
  onnx::NodeProto* Node(const std::string& op, std::vector<std::string> inputs,
                        const std::string& output) {
    onnx::NodeProto* node = graph()->add_node();
    node->set_op_type(op);
    node->set_name("/" + output + "/" + op);
    for (const std::string& input : inputs) node->add_input(input);
    node->add_output(output);
    return node;
  }
  // Conv x -> name with a (3, 2, 3, 3) weight of `value`s and a bias.
  onnx::NodeProto* Conv(const std::string& input, const std::string& output, float value = 1.0f) {
    *graph()->add_initializer() =
        FloatTensor(output + ".w", {3, 2, 3, 3}, std::vector<float>(54, value));
    *graph()->add_initializer() = FloatTensor(output + ".b", {3}, {0.5f, -0.5f, 1.0f});
    return Node("Conv", {input, output + ".w", output + ".b"}, output);
  }
  std::string Serialize(const std::string& output) {
    onnx::ValueInfoProto* out = graph()->add_output();
    out->set_name(output);
    out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    auto* shape = out->mutable_type()->mutable_tensor_type()->mutable_shape();
    for (const char* dim : {"n", "c", "h", "w"}) shape->add_dim()->set_dim_param(dim);
    return model_.SerializeAsString();
  }

 private:
  onnx::ModelProto model_;
};

void AddInts(onnx::NodeProto* node, const std::string& name, std::vector<int64_t> values) {
  auto* attribute = node->add_attribute();
  attribute->set_name(name);
  attribute->set_type(onnx::AttributeProto::INTS);
  for (int64_t value : values) attribute->add_ints(value);
}

void AddString(onnx::NodeProto* node, const std::string& name, const std::string& value) {
  auto* attribute = node->add_attribute();
  attribute->set_name(name);
  attribute->set_type(onnx::AttributeProto::STRING);
  attribute->set_s(value);
}

void AddFloat(onnx::NodeProto* node, const std::string& name, float value) {
  auto* attribute = node->add_attribute();
  attribute->set_name(name);
  attribute->set_type(onnx::AttributeProto::FLOAT);
  attribute->set_f(value);
}

TEST(OnnxImportTest, ImportsAConvReluStack) {
  ModelBuilder builder;
  AddInts(builder.Conv("x", "c1"), "pads", {1, 1, 1, 1});
  builder.Node("Relu", {"c1"}, "r1");
  builder.Conv("r1", "c2")->set_op_type("Conv");
  // c2 has 2 input channels in its weight but c1 gives 3: use a 3-channel weight.
  builder.graph()->mutable_initializer(2)->CopyFrom(
      FloatTensor("c2.w", {2, 3, 1, 1}, std::vector<float>(6, 2.0f)));
  builder.graph()->mutable_initializer(3)->CopyFrom(FloatTensor("c2.b", {2}, {0.0f, 1.0f}));
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("c2"), {});
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ(model->layers.size(), 2u);
  const ConvSpec& first = model->layers[0].spec;
  EXPECT_EQ(first.spatial_rank, 2);
  EXPECT_EQ(first.in_channels, 2);
  EXPECT_EQ(first.out_channels, 3);
  EXPECT_EQ(first.pad_begin, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(first.activation, Activation::kRelu);
  EXPECT_EQ(model->layers[1].spec.activation, Activation::kNone);
  EXPECT_EQ(model->layers[1].weight, std::vector<float>(6, 2.0f));
  EXPECT_EQ(model->input_shape, (std::vector<int64_t>{1, 2, 5, 5}));
}

TEST(OnnxImportTest, ListsEveryUnsupportedNodeByTypeAndName) {
  ModelBuilder builder;
  builder.Conv("x", "c1");
  builder.Node("MaxPool", {"c1"}, "p")->set_name("/maxpool/MaxPool");
  AddInts(builder.graph()->mutable_node(1), "kernel_shape", {2, 2});
  builder.Node("GlobalAveragePool", {"p"}, "g")->set_name("/gap/Pool");
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("g"), {});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(),
              HasSubstr("model.onnx: unsupported nodes: MaxPool (/maxpool/MaxPool), "
                        "GlobalAveragePool (/gap/Pool)"));
}

TEST(OnnxImportTest, CapsTheUnsupportedListAndEscapesNames) {
  ModelBuilder builder;
  std::string previous = "x";
  for (int i = 0; i < 300; ++i) {
    const std::string output = "n" + std::to_string(i);
    builder.Node("Abs", {previous}, output)->set_name("abs\n" + std::to_string(i));
    previous = output;
  }
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize(previous), {});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LE(model.status().message().size(), kMaxImportMessageBytes);
  EXPECT_THAT(model.status().message(), HasSubstr("Abs (abs\\n0), Abs (abs\\n1)"));
  EXPECT_THAT(model.status().message(), HasSubstr("(cut: "));
}

TEST(OnnxImportTest, NamesTheNodeAndAttributeOfABadValue) {
  ModelBuilder builder;
  AddString(builder.Conv("x", "c1"), "auto_pad", "SAME_MIDDLE");
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("c1"), {});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  // ONNX's checker does not know auto_pad's values; the importer does.
  EXPECT_THAT(model.status().message(),
              HasSubstr("node Conv (/c1/Conv): attribute auto_pad: expected NOTSET, VALID, "
                        "SAME_UPPER or SAME_LOWER, got 'SAME_MIDDLE'"));
}

TEST(OnnxImportTest, RefusesAClipThatIsNotRelu6) {
  ModelBuilder builder;
  builder.Conv("x", "c1");
  *builder.graph()->add_initializer() = FloatTensor("lo", {}, {0.0f});
  *builder.graph()->add_initializer() = FloatTensor("hi", {}, {4.0f});
  builder.Node("Clip", {"c1", "lo", "hi"}, "y");
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("y"), {});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(),
              HasSubstr("node Clip (/y/Clip): min, max: expected 0 and 6 (relu6) or 0 and none "
                        "(relu), got 0 and 4"));
}

TEST(OnnxImportTest, RefusesAStrideListOfTheWrongLength) {
  ModelBuilder builder;
  AddInts(builder.Conv("x", "c1"), "strides", {1, 2, 1});
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("c1"), {});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("strides"));
}

// libonnx's shape inference divides by strides unchecked (SIGFPE): refused
// before it runs, for any window op, even one that would be unsupported.
TEST(OnnxImportTest, RefusesZeroStridesBeforeShapeInference) {
  ModelBuilder builder;
  AddInts(builder.Conv("x", "c1"), "strides", {0, 1});
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("c1"), {});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      model.status().message(),
      HasSubstr("node Conv (/c1/Conv): attribute strides: expected values >= 1, got [0, 1]"));
  ModelBuilder pool;
  onnx::NodeProto* node = pool.Node("MaxPool", {"x"}, "p");
  AddInts(node, "kernel_shape", {2, 2});
  AddInts(node, "strides", {1, 0});
  model = ImportOnnx(pool.Serialize("p"), {});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("attribute strides: expected values >= 1"));
}

TEST(OnnxImportTest, FoldsABatchNormalizationInDouble) {
  ModelBuilder builder;
  builder.Conv("x", "c1", 2.0f);
  *builder.graph()->add_initializer() = FloatTensor("s", {3}, {1.0f, 2.0f, 0.5f});
  *builder.graph()->add_initializer() = FloatTensor("beta", {3}, {0.0f, 1.0f, -1.0f});
  *builder.graph()->add_initializer() = FloatTensor("mean", {3}, {0.5f, 0.0f, 1.0f});
  *builder.graph()->add_initializer() = FloatTensor("var", {3}, {4.0f, 1.0f, 0.25f});
  AddFloat(builder.Node("BatchNormalization", {"c1", "s", "beta", "mean", "var"}, "bn"), "epsilon",
           0.0f);
  builder.Node("Relu", {"bn"}, "y");
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("y"), {});
  ASSERT_TRUE(model.ok()) << model.status();
  const ImportedLayer& layer = model->layers[0];
  EXPECT_EQ(layer.spec.activation, Activation::kRelu);
  EXPECT_EQ(layer.weight[0], 1.0f);                                // 2 * 1 / sqrt(4)
  EXPECT_EQ(layer.weight[18], 4.0f);                               // 2 * 2 / sqrt(1)
  EXPECT_EQ(layer.weight[36], 2.0f);                               // 2 * 0.5 / sqrt(0.25)
  EXPECT_EQ(layer.bias, (std::vector<float>{0.0f, 0.0f, -1.0f}));  // (b - mean) * f + beta
}

TEST(OnnxImportTest, MergesAReflectPadComputedByConstantNodes) {
  ModelBuilder builder;
  // pads computed the way exporters do: Concat of constants, then Cast.
  *builder.graph()->add_initializer() = IntTensor("zeros", {0, 0, 1, 2});
  *builder.graph()->add_initializer() = IntTensor("ends", {0, 0, 1, 0});
  AddInts(builder.Node("Concat", {"zeros", "ends"}, "pads64"), "axis", {});
  builder.graph()->mutable_node(0)->mutable_attribute(0)->set_type(onnx::AttributeProto::INT);
  builder.graph()->mutable_node(0)->mutable_attribute(0)->set_i(0);
  auto* cast = builder.Node("Cast", {"pads64"}, "pads");
  auto* to = cast->add_attribute();
  to->set_name("to");
  to->set_type(onnx::AttributeProto::INT);
  to->set_i(onnx::TensorProto::INT64);
  AddString(builder.Node("Pad", {"x", "pads"}, "padded"), "mode", "reflect");
  builder.Conv("padded", "c1");
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("c1"), {});
  ASSERT_TRUE(model.ok()) << model.status();
  const ConvSpec& spec = model->layers[0].spec;
  EXPECT_EQ(spec.padding_mode, PaddingMode::kReflect);
  EXPECT_EQ(spec.pad_begin, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(spec.pad_end, (std::vector<int64_t>{1, 0}));
}

TEST(OnnxImportTest, RefusesAPadWithANonzeroConstant) {
  ModelBuilder builder;
  *builder.graph()->add_initializer() = IntTensor("pads", {0, 0, 1, 1, 0, 0, 1, 1});
  *builder.graph()->add_initializer() = FloatTensor("value", {}, {2.0f});
  builder.Node("Pad", {"x", "pads", "value"}, "padded");
  builder.Conv("padded", "c1");
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("c1"), {});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(),
              HasSubstr("node Pad (/padded/Pad): constant value: expected 0 (a Conv pads with "
                        "zeros), got 2"));
}

TEST(OnnxImportTest, ImportsABranchAsAGraph) {
  // y = c1 + relu(c1): the Relu reads a tensor the Add reads too, so it is a
  // step of its own, not fused into the Conv.
  ModelBuilder builder;
  builder.Conv("x", "c1");
  builder.Node("Relu", {"c1"}, "a");
  builder.Node("Add", {"c1", "a"}, "s");
  builder.Node("Relu", {"s"}, "y");
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("y"), {});
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ(model->layers.size(), 1u);
  EXPECT_EQ(model->layers[0].spec.activation, Activation::kNone);
  const std::vector<GraphStep>& steps = model->graph.steps;
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0].op, StepOp::kConv);
  EXPECT_EQ(steps[1].op, StepOp::kActivation);
  EXPECT_EQ(steps[1].activation, Activation::kRelu);
  EXPECT_EQ(steps[1].inputs, (std::vector<int>{1}));
  EXPECT_EQ(steps[2].op, StepOp::kAdd);
  EXPECT_EQ(steps[2].inputs, (std::vector<int>{1, 2}));
  EXPECT_EQ(steps[2].activation, Activation::kRelu);  // the Relu after the sum, fused
  EXPECT_EQ(steps[2].name, "/s/Add");
}

TEST(OnnxImportTest, ImportsAChannelConcatOfTheInputAndAConv) {
  ModelBuilder builder;
  builder.Conv("x", "c1");
  AddInts(builder.graph()->mutable_node(0), "pads", {1, 1, 1, 1});
  onnx::NodeProto* cat = builder.Node("Concat", {"x", "c1"}, "y");
  auto* axis = cat->add_attribute();
  axis->set_name("axis");
  axis->set_type(onnx::AttributeProto::INT);
  axis->set_i(-3);  // the channel axis of a 4-D tensor, counted from the end
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("y"), {});
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ(model->graph.steps.size(), 2u);
  EXPECT_EQ(model->graph.steps[1].op, StepOp::kConcat);
  EXPECT_EQ(model->graph.steps[1].inputs, (std::vector<int>{0, 1}));
}

TEST(OnnxImportTest, RefusesALayerReadingTheWrongChannelCount) {
  // c2's weight expects 2 channels; the Add of two 3-channel Convs gives 3.
  ModelBuilder builder;
  builder.Conv("x", "c1");
  builder.Conv("x", "c0");
  builder.Node("Add", {"c1", "c0"}, "s");
  builder.Conv("s", "c2");
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("c2"), {});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(),
              HasSubstr("node Conv (/c2/Conv): input 0: expected (N, 2, *2 spatial dims) from W, "
                        "it reads the output of Add (/s/Add): 2-D with 3 channels"));
}

TEST(OnnxImportTest, RefusesGarbageAndTruncatedBytes) {
  for (const std::string& bytes :
       {std::string("\xff\xff\xff\xff\xff", 5), std::string("not a model at all")}) {
    absl::StatusOr<ImportedModel> model = ImportOnnx(bytes, {});
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(model.status().message(), HasSubstr("model.onnx: "));
  }
  ModelBuilder builder;
  builder.Conv("x", "c1");
  const std::string whole = builder.Serialize("c1");
  for (size_t size : {whole.size() / 3, whole.size() / 2, whole.size() - 1}) {
    absl::StatusOr<ImportedModel> model = ImportOnnx(whole.substr(0, size), {});
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument) << size;
  }
  EXPECT_THAT(ImportOnnx("", {}).status().message(),
              HasSubstr("expected an ONNX model, got 0 bytes"));
}

TEST(OnnxImportTest, RefusesAModelAboveTheLimitBeforeParsing) {
  OnnxImportOptions options;
  options.max_bytes = 10;
  options.source = "big.onnx";
  absl::StatusOr<ImportedModel> model = ImportOnnx(std::string(11, '\0'), options);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(model.status().message(),
              HasSubstr("big.onnx: 11 bytes, more than the limit of 10 bytes"));
}

TEST(OnnxImportTest, RefusesExternalData) {
  ModelBuilder builder;
  builder.Conv("x", "c1");
  onnx::TensorProto* weight = builder.graph()->mutable_initializer(0);
  weight->clear_float_data();
  weight->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* entry = weight->add_external_data();
  entry->set_key("location");
  entry->set_value("../../etc/passwd");
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("c1"), {});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(),
              HasSubstr("initializer 'c1.w': external data is not supported"));
}

TEST(OnnxImportTest, RefusesOpsetsOutside9To17) {
  for (int opset : {8, 18}) {
    ModelBuilder builder(opset);
    builder.Conv("x", "c1");
    absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("c1"), {});
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(
        model.status().message(),
        HasSubstr("expected a default-domain opset in 9..17, got " + std::to_string(opset)));
  }
}

TEST(OnnxImportTest, ReportsTheCheckersVerdict) {
  ModelBuilder builder;
  builder.Conv("x", "c1");
  builder.Node("Relu", {"nowhere"}, "y");
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("y"), {});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("ONNX's checker refused the model"));
}

TEST(OnnxImportTest, RefusesAHugeConstantOfShape) {
  ModelBuilder builder;
  *builder.graph()->add_initializer() = IntTensor("shape", {1 << 20, 1 << 20});
  builder.Node("ConstantOfShape", {"shape"}, "big");
  builder.Conv("x", "c1");
  builder.Node("Add", {"c1", "big"}, "y");
  absl::StatusOr<ImportedModel> model = ImportOnnx(builder.Serialize("y"), {});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("ConstantOfShape"));
  EXPECT_THAT(model.status().message(), HasSubstr("elements"));
}

// Every byte of a valid model (with a reflect Pad computed by constant nodes
// and a BatchNormalization) flipped in turn, and random prefixes: an error or
// a model, never a crash (run under the sanitizers in the sanitized build).
TEST(OnnxImportTest, SurvivesEveryByteOfAModelCorrupted) {
  ModelBuilder builder;
  *builder.graph()->add_initializer() = IntTensor("pads", {0, 0, 1, 1, 0, 0, 1, 1});
  AddString(builder.Node("Pad", {"x", "pads"}, "padded"), "mode", "reflect");
  builder.Conv("padded", "c1");
  *builder.graph()->add_initializer() = FloatTensor("s", {3}, {1.0f, 2.0f, 0.5f});
  *builder.graph()->add_initializer() = FloatTensor("beta", {3}, {0.0f, 1.0f, -1.0f});
  *builder.graph()->add_initializer() = FloatTensor("mean", {3}, {0.5f, 0.0f, 1.0f});
  *builder.graph()->add_initializer() = FloatTensor("var", {3}, {4.0f, 1.0f, 0.25f});
  builder.Node("BatchNormalization", {"c1", "s", "beta", "mean", "var"}, "bn");
  builder.Node("Relu", {"bn"}, "y");
  const std::string whole = builder.Serialize("y");
  ASSERT_TRUE(ImportOnnx(whole, {}).ok()) << ImportOnnx(whole, {}).status();
  int refused = 0;
  for (size_t i = 0; i < whole.size(); ++i) {
    for (unsigned char flip : {0x01, 0x80, 0xff}) {
      std::string corrupted = whole;
      corrupted[i] = static_cast<char>(corrupted[i] ^ flip);
      absl::StatusOr<ImportedModel> model = ImportOnnx(corrupted, {});
      if (!model.ok()) {
        ++refused;
        EXPECT_THAT(model.status().message(), HasSubstr("model.onnx: "));
        EXPECT_LE(model.status().message().size(), kMaxImportMessageBytes);
      }
    }
    if (!ImportOnnx(whole.substr(0, i), {}).ok()) ++refused;
  }
  EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace convserve
