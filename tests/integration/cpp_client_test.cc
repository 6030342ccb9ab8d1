// Every RPC through the C++ client library against the real server binary,
// started once for the suite on a free loopback port.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cpp/convserve_client.h"
#include "client/cpp/npy.h"

extern char** environ;

namespace convserve::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ServerEnvironment {
 public:
  // Starts the server on first use.
  static ServerEnvironment& Get() {
    started_ = true;
    static ServerEnvironment* environment = new ServerEnvironment();
    return *environment;
  }
  static bool Started() { return started_; }

  const std::string& target() const { return target_; }

  // Stops the server (SIGTERM) and returns its exit status.
  int Stop() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  ServerEnvironment() {
    char directory_template[] = "/tmp/convserve_cpp_test_XXXXXX";
    directory_ = mkdtemp(directory_template);
    const std::string port_file = directory_ + "/port";
    std::vector<std::string> arguments = {CONVSERVE_SERVER_BINARY,    "--listen=127.0.0.1:0",
                                          "--port_file=" + port_file, "--compute_threads=2",
                                          "--drain_grace_ms=0",       "--log_level=warn"};
    std::vector<char*> argv;
    for (std::string& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
      ADD_FAILURE() << "cannot start " << CONVSERVE_SERVER_BINARY;
      return;
    }
    for (int attempt = 0; attempt < 1500; ++attempt) {
      std::ifstream file(port_file);
      int port = 0;
      if (file >> port && port > 0) {
        target_ = absl::StrCat("127.0.0.1:", port);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "server did not report its port within 30 s";
  }

  static inline bool started_ = false;
  std::string directory_;
  std::string target_;
  pid_t pid_ = -1;
};

class CppClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(ServerEnvironment::Get().target().empty());
    client_ = Client::Connect(ServerEnvironment::Get().target());
    client_->set_timeout(std::chrono::seconds(60));
  }

  static v1::ConvLayer Layer(const LayerArgs& args) {
    absl::StatusOr<v1::ConvLayer> layer = MakeLayer(args);
    EXPECT_TRUE(layer.ok()) << layer.status();
    return layer.ok() ? *layer : v1::ConvLayer();
  }

  std::unique_ptr<Client> client_;
};

TEST_F(CppClientTest, HealthIsServing) {
  absl::StatusOr<std::string> status = client_->Health();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, "SERVING");
  status = client_->Health("convserve.v1.ConvService");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, "SERVING");
}

TEST_F(CppClientTest, ConvReproducesReferenceTable) {
  const FloatArray input{{1, 1, 9}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
  struct Case {
    int k, s;
    std::string padding;
    std::vector<float> expected;
  };
  const std::vector<Case> cases = {
      {5, 1, "valid", {15, 20, 25, 30, 35}},
      {5, 1, "same_upper", {6, 10, 15, 20, 25, 30, 35, 30, 24}},
      {5, 2, "valid", {15, 25, 35}},
      {5, 2, "same_upper", {6, 15, 25, 35, 24}},
      {6, 1, "valid", {21, 27, 33, 39}},
      {6, 1, "same_upper", {10, 15, 21, 27, 33, 39, 35, 30, 24}},
      {6, 2, "valid", {21, 33}},
      {6, 2, "same_upper", {10, 21, 33, 35, 24}},
  };
  for (const Case& c : cases) {
    const FloatArray weight{{1, 1, c.k}, std::vector<float>(c.k, 1.0f)};
    LayerArgs args;
    args.input_shape = input.shape;
    args.weight_shape = weight.shape;
    args.stride = {c.s};
    args.padding = c.padding;
    absl::StatusOr<ConvResult> result = client_->Conv(Layer(args), input, weight, nullptr);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->output.values, c.expected) << "k=" << c.k << " s=" << c.s << " " << c.padding;
    EXPECT_THAT(result->output.shape, ElementsAre(1, 1, static_cast<int64_t>(c.expected.size())));
    EXPECT_GT(result->compute_time_ns, 0);
    EXPECT_FALSE(result->kernel.empty());
  }
}

TEST_F(CppClientTest, ConvWithBiasActivationAndChannelsLast) {
  // x = 1..9 channels_last, kernel of ones (hwio), bias -20, relu.
  const FloatArray input{{1, 9, 1}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
  const FloatArray weight{{5, 1, 1}, std::vector<float>(5, 1.0f)};
  const FloatArray bias{{1}, {-20}};
  LayerArgs args;
  args.input_shape = input.shape;
  args.weight_shape = weight.shape;
  args.bias = true;
  args.data_format = "channels_last";
  args.weight_format = "hwio";
  args.activation = "relu";
  absl::StatusOr<ConvResult> result = client_->Conv(Layer(args), input, weight, &bias);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->output.shape, ElementsAre(1, 5, 1));
  EXPECT_EQ(result->output.values, (std::vector<float>{0, 0, 5, 10, 15}));
}

TEST_F(CppClientTest, ValidateShapeReport) {
  LayerArgs args;
  args.input_shape = {1, 3, 224, 224};
  args.weight_shape = {64, 3, 7, 7};
  args.bias = true;
  args.stride = {2};
  args.padding = "3";
  absl::StatusOr<v1::ShapeReport> report = client_->ValidateShape(Layer(args), args.input_shape);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->output_shape(), ElementsAre(1, 64, 112, 112));
  EXPECT_EQ(report->parameters(), 64 * 3 * 49 + 64);
  ASSERT_EQ(report->axes_size(), 2);
  EXPECT_EQ(report->axes(0).padded(), 230);
  EXPECT_EQ(report->axes(0).unread_cells(), 1);
  ASSERT_EQ(report->frameworks_size(), 3);
  const std::string text = FormatReport(*report);
  EXPECT_THAT(text, HasSubstr("output  [1, 64, 112, 112]"));
  EXPECT_THAT(text, HasSubstr("PyTorch  accepts"));
  EXPECT_THAT(text, HasSubstr("ONNX"));
}

TEST_F(CppClientTest, ValidateShapeInvalidIsInvalidArgument) {
  LayerArgs args;
  args.input_shape = {3, 224, 224};
  args.weight_shape = {64, 3, 7, 7};
  absl::StatusOr<v1::ShapeReport> report = client_->ValidateShape(Layer(args), args.input_shape);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(report.status().message()), HasSubstr("[3, 224, 224]"));
}

TEST_F(CppClientTest, ConvPayloadSizeMismatchIsInvalidArgument) {
  const FloatArray input{{1, 1, 9}, {1, 2, 3, 4, 5, 6, 7, 8}};  // one value short
  const FloatArray weight{{1, 1, 3}, {1, 1, 1}};
  LayerArgs args;
  args.input_shape = input.shape;
  args.weight_shape = weight.shape;
  absl::StatusOr<ConvResult> result = client_->Conv(Layer(args), input, weight, nullptr);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("expected 36 bytes"));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("got 32"));
}

TEST_F(CppClientTest, ModelsLoadRunListUnload) {
  v1::LoadModelRequest request;
  request.set_name("cpp-model");
  LayerArgs first;
  first.input_shape = {1, 1, 9};
  first.weight_shape = {2, 1, 3};
  first.padding = "same";
  v1::ModelLayer* layer = request.add_layers();
  *layer->mutable_layer() = Layer(first);
  ToProto(FloatArray{{2, 1, 3}, {1, 1, 1, 0, 1, 0}}, layer->mutable_weight());
  LayerArgs second;
  second.input_shape = {1, 2, 9};
  second.weight_shape = {1, 2, 1};
  second.bias = true;
  layer = request.add_layers();
  *layer->mutable_layer() = Layer(second);
  ToProto(FloatArray{{1, 2, 1}, {1, -1}}, layer->mutable_weight());
  ToProto(FloatArray{{1}, {0.5f}}, layer->mutable_bias());

  absl::StatusOr<v1::ModelInfo> info = client_->LoadModel(request);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->name(), "cpp-model");
  EXPECT_EQ(info->layers_size(), 2);
  EXPECT_EQ(info->parameters(), 6 + 2 + 1);

  absl::StatusOr<std::vector<v1::ModelInfo>> models = client_->ListModels();
  ASSERT_TRUE(models.ok()) << models.status();
  ASSERT_EQ(models->size(), 1u);
  EXPECT_EQ((*models)[0].name(), "cpp-model");

  // Layer 1: channel 0 = 3-window sums, channel 1 = the input itself;
  // layer 2: their difference + 0.5.
  const FloatArray input{{1, 1, 9}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
  absl::StatusOr<ConvResult> result = client_->RunModel("cpp-model", input);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->output.shape, ElementsAre(1, 1, 9));
  EXPECT_EQ(result->output.values,
            (std::vector<float>{2.5, 4.5, 6.5, 8.5, 10.5, 12.5, 14.5, 16.5, 8.5}));

  ASSERT_TRUE(client_->UnloadModel("cpp-model").ok());
  result = client_->RunModel("cpp-model", input);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->UnloadModel("cpp-model").code(), absl::StatusCode::kNotFound);
}

TEST(CppClientOfflineTest, HalfTensorsRoundToNearestEvenAndBack) {
  // 1 + 2^-11 and 1 + 2^-8 are ties (to 1 in float16 and bfloat16), 70000
  // overflows float16 to infinity.
  const FloatArray values{{5}, {1.0f + 0x1p-11f, 1.0f + 0x1p-8f, -2.5f, 70000.0f, 0.0f}};
  v1::Tensor tensor;
  ToProto(values, &tensor, v1::ELEMENT_TYPE_FLOAT16);
  EXPECT_EQ(tensor.element_type(), v1::ELEMENT_TYPE_FLOAT16);
  EXPECT_EQ(tensor.data().size(), 10u);
  absl::StatusOr<FloatArray> back = FromProto(tensor);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_THAT(back->values, ElementsAre(1.0f, 1.0f + 0x1p-8f, -2.5f, INFINITY, 0.0f));

  tensor.Clear();
  ToProto(values, &tensor, v1::ELEMENT_TYPE_BFLOAT16);
  back = FromProto(tensor);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_THAT(back->values, ElementsAre(1.0f, 1.0f, -2.5f, 70144.0f, 0.0f));

  tensor.mutable_data()->pop_back();
  EXPECT_EQ(FromProto(tensor).status().code(), absl::StatusCode::kInternal);
}

TEST_F(CppClientTest, StreamModelEqualsTheWholeSignal) {
  // y[t] = x[t] + x[t - 1] (causal, x[-1] = 0), then every other cell.
  v1::LoadModelRequest request;
  request.set_name("cpp-stream");
  LayerArgs sum;
  sum.input_shape = {1, 1, 9};
  sum.weight_shape = {1, 1, 2};
  sum.padding = "causal";
  v1::ModelLayer* layer = request.add_layers();
  *layer->mutable_layer() = Layer(sum);
  ToProto(FloatArray{{1, 1, 2}, {1, 1}}, layer->mutable_weight());
  LayerArgs pick;
  pick.input_shape = {1, 1, 9};
  pick.weight_shape = {1, 1, 1};
  pick.stride = {2};
  layer = request.add_layers();
  *layer->mutable_layer() = Layer(pick);
  ToProto(FloatArray{{1, 1, 1}, {1}}, layer->mutable_weight());
  ASSERT_TRUE(client_->LoadModel(request).ok());

  std::unique_ptr<ModelStream> stream = client_->StreamModel("cpp-stream");
  std::vector<float> streamed;
  std::vector<int64_t> lengths;
  float next = 1;
  for (int64_t length : {1, 1, 3, 4}) {
    FloatArray chunk{{1, 1, length}, {}};
    for (int64_t i = 0; i < length; ++i) chunk.values.push_back(next++);
    absl::StatusOr<FloatArray> output = stream->Push(chunk);
    ASSERT_TRUE(output.ok()) << output.status();
    EXPECT_EQ(output->shape.size(), 3u);
    lengths.push_back(output->shape[2]);
    streamed.insert(streamed.end(), output->values.begin(), output->values.end());
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_THAT(lengths, ElementsAre(1, 0, 2, 2));  // cells 0 | - | 2, 4 | 6, 8
  EXPECT_EQ(streamed, (std::vector<float>{1, 5, 9, 13, 17}));

  // An unknown model: refused, with the request ID.
  stream = client_->StreamModel("no-such-model");
  absl::StatusOr<FloatArray> output = stream->Push(FloatArray{{1, 1, 1}, {1}});
  ASSERT_FALSE(output.ok());
  EXPECT_EQ(output.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(RequestIdOf(output.status()), ::testing::MatchesRegex("[0-9a-f]{32}"));
}

TEST_F(CppClientTest, FailuresNameTheirRequestId) {
  // A new ID per call, named in the message and carried as the payload.
  absl::Status first = client_->UnloadModel("no-such-model");
  absl::Status second = client_->UnloadModel("no-such-model");
  ASSERT_EQ(first.code(), absl::StatusCode::kNotFound);
  const std::string id = RequestIdOf(first);
  EXPECT_THAT(id, ::testing::MatchesRegex("[0-9a-f]{32}"));
  EXPECT_THAT(std::string(first.message()), ::testing::EndsWith(" [request_id=" + id + "]"));
  EXPECT_NE(RequestIdOf(second), id);
  EXPECT_EQ(RequestIdOf(absl::NotFoundError("not from a call")), "");

  // The caller's own ID, as the server answered it.
  client_->set_request_id("cpp-client/call 7");
  absl::Status named = client_->UnloadModel("no-such-model");
  EXPECT_EQ(RequestIdOf(named), "cpp-client/call 7");
  EXPECT_THAT(std::string(named.message()), HasSubstr(" [request_id=cpp-client/call 7]"));
}

TEST_F(CppClientTest, AnInvalidRequestIdIsRefusedUnderAServerMadeOne) {
  client_->set_request_id(std::string(129, 'r'));
  absl::StatusOr<std::vector<v1::ModelInfo>> models = client_->ListModels();
  ASSERT_FALSE(models.ok());
  EXPECT_EQ(models.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(models.status().message()),
              HasSubstr("metadata x-request-id: expected 1 to 128 printable ASCII characters, "
                        "got 129 characters"));
  // The ID the server answered with (and logged), not the refused one.
  EXPECT_THAT(RequestIdOf(models.status()), ::testing::MatchesRegex("[0-9a-f]{32}"));
}

TEST(CppClientOfflineTest, AFailureWithNoServerNamesTheIdSent) {
  std::unique_ptr<Client> client = Client::Connect("127.0.0.1:1");  // nothing listens on port 1
  client->set_timeout(std::chrono::seconds(5));
  client->set_request_id("offline-1");
  absl::StatusOr<std::string> health = client->Health();
  ASSERT_FALSE(health.ok());
  EXPECT_EQ(health.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(RequestIdOf(health.status()), "offline-1");
}

TEST_F(CppClientTest, MakeLayerRejectsBadNames) {
  LayerArgs args;
  args.input_shape = {1, 1, 9};
  args.weight_shape = {1, 1, 3};
  args.padding = "sideways";
  EXPECT_EQ(MakeLayer(args).status().code(), absl::StatusCode::kInvalidArgument);
  args.padding = "1:2";
  args.activation = "softmax";
  EXPECT_THAT(std::string(MakeLayer(args).status().message()), HasSubstr("activation"));
  args.activation = "gelu";
  absl::StatusOr<v1::ConvLayer> layer = MakeLayer(args);
  ASSERT_TRUE(layer.ok());
  EXPECT_THAT(layer->pad_begin(), ElementsAre(1));
  EXPECT_THAT(layer->pad_end(), ElementsAre(2));
  EXPECT_EQ(layer->activation(), v1::ACTIVATION_GELU);
}

TEST(NpyTest, RoundTrip) {
  char path_template[] = "/tmp/convserve_npy_XXXXXX";
  const int fd = mkstemp(path_template);
  ASSERT_GE(fd, 0);
  close(fd);
  const FloatArray array{{2, 3}, {1, 2, 3, 4.5f, -5, 6}};
  ASSERT_TRUE(WriteNpy(path_template, array).ok());
  absl::StatusOr<FloatArray> read = ReadNpy(path_template);
  std::remove(path_template);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->shape, array.shape);
  EXPECT_EQ(read->values, array.values);
}

TEST(NpyTest, RejectsOtherDtypesAndTruncation) {
  std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string file = std::string("\x93NUMPY\x01\x00", 8);
  file.push_back(static_cast<char>(header.size()));
  file.push_back('\0');
  file += header + std::string(16, '\0');
  EXPECT_THAT(std::string(ParseNpy(file).status().message()), HasSubstr("'<f4'"));
  EXPECT_FALSE(ParseNpy("\x93NUMPY").ok());
  EXPECT_FALSE(ParseNpy("not numpy at all").ok());
}

// Stops the server (if a test started it) when the test process ends; the
// server must exit 0 on SIGTERM.
class StopServer : public ::testing::Environment {
 public:
  void TearDown() override {
    if (!ServerEnvironment::Started()) return;
    EXPECT_EQ(ServerEnvironment::Get().Stop(), 0) << "server exit status after SIGTERM";
  }
};
::testing::Environment* const kStopServer = ::testing::AddGlobalTestEnvironment(new StopServer);

}  // namespace
}  // namespace convserve::client
