// convctl: command-line client of a ConvServe server.
//
//   convctl health                                   exit 0 iff SERVING
//   convctl shape --input_shape=1,3,224,224 --weight_shape=64,3,7,7 --stride=2 --padding=3
//   convctl conv --input=x.npy --weight=w.npy [--bias=b.npy] --output=y.npy --padding=same
//   convctl models
//   convctl service_config                           the channel's gRPC service config
//
// Several replicas: --target=ipv4:10.0.0.1:50051,10.0.0.2:50051 or
// dns:///name:port, calls spread round-robin (--lb_policy), optionally
// retried on another replica when one fails (--retries); --repeat=N sends the
// command's call N times over one channel (a smoke test of a deployment).
//
// TLS: --tls_ca_file (the CA of the server's certificate), --tls_cert_file and
// --tls_key_file (a client certificate, for mutual TLS), --tls_server_name.
//
// Layer flags (shape and conv) follow the Python client: channel counts and
// kernel come from the shapes; --padding is valid, same, same_lower, causal,
// P, P1,P2 or B1:E1,B2:E2.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cpp/convserve_client.h"
#include "client/cpp/npy.h"

ABSL_FLAG(std::string, target, "",
          "Server address, host:port, or several replicas: ipv4:H1:P1,H2:P2 or "
          "dns:///name:port (any gRPC target). Default: $CONVSERVE_TARGET, or localhost:50051.");
ABSL_FLAG(std::string, lb_policy, "round_robin",
          "How calls spread over the target's addresses: round_robin or pick_first.");
ABSL_FLAG(bool, retries, false,
          "Retry Conv, ValidateShape and RunModel on UNAVAILABLE (a replica died or drains), "
          "up to 4 attempts, on the next replica.");
ABSL_FLAG(int, repeat, 1,
          "Send the command's call this many times over one channel; print its output once, "
          "then a summary on stderr; exit 0 iff every call succeeded.");
ABSL_FLAG(int, timeout_s, 60, "Deadline of each call, in seconds.");
ABSL_FLAG(std::string, request_id, "",
          "x-request-id sent with every call (the server logs the call under it); empty: a "
          "new one per call. A failure prints the call's ID.");
ABSL_FLAG(std::string, auth_token_file, "",
          "File whose first line is the server's bearer token (servers run with "
          "--auth_token_file). Default: the token in $CONVSERVE_TOKEN, if set.");
ABSL_FLAG(std::string, tls_ca_file, "",
          "Connect over TLS, trusting this PEM CA for the server's certificate (any --tls_* "
          "flag turns TLS on; without this one, gRPC's default roots).");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM client certificate, for servers that require one (--tls_client_ca_file); needs "
          "--tls_key_file.");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the server's certificate must carry, if not the --target host.");
ABSL_FLAG(std::string, input_shape, "", "shape: input shape, e.g. 1,3,224,224.");
ABSL_FLAG(std::string, weight_shape, "", "shape: weight shape, e.g. 64,3,7,7.");
ABSL_FLAG(bool, with_bias, false, "shape: the layer has a bias.");
ABSL_FLAG(std::string, enforce, "", "shape: also refuse what pytorch, keras or onnx refuses.");
ABSL_FLAG(std::string, input, "", "conv: input .npy (float32).");
ABSL_FLAG(std::string, weight, "", "conv: weight .npy (float32).");
ABSL_FLAG(std::string, bias, "", "conv: bias .npy (float32), optional.");
ABSL_FLAG(std::string, output, "", "conv: output .npy to write.");
ABSL_FLAG(std::string, model, "", "stream: name of a loaded causal model.");
ABSL_FLAG(int64_t, chunk, 160,
          "stream: cells per chunk along the time axis (the input's last spatial axis).");
ABSL_FLAG(std::string, stride, "1", "Stride: one value or one per axis.");
ABSL_FLAG(std::string, dilation, "1", "Dilation: one value or one per axis.");
ABSL_FLAG(std::string, padding, "0",
          "valid, same, same_upper, same_lower, causal, P, P1,P2 or B1:E1,B2:E2.");
ABSL_FLAG(std::string, padding_mode, "zeros", "zeros, reflect, replicate or circular.");
ABSL_FLAG(int64_t, groups, 1, "Groups.");
ABSL_FLAG(std::string, data_format, "channels_first", "channels_first or channels_last.");
ABSL_FLAG(std::string, weight_format, "oihw",
          "oihw (C_out, C_in/g, *K) or hwio (*K, C_in/g, C_out).");
ABSL_FLAG(std::string, activation, "none",
          "none, relu, relu6, leaky_relu, elu, sigmoid, tanh, silu or gelu.");
ABSL_FLAG(std::string, activation_alpha, "", "Alpha of leaky_relu / elu (empty = default).");

namespace convserve::client {
namespace {

int Fail(const absl::Status& status) {
  std::cerr << "convctl: " << absl::StatusCodeToString(status.code()) << ": " << status.message()
            << "\n";
  return 1;
}

absl::StatusOr<std::vector<int64_t>> ParseInts(const std::string& name, const std::string& text) {
  std::vector<int64_t> values;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, ": expected comma-separated integers, got '", text, "'"));
    }
    values.push_back(value);
  }
  return values;
}

absl::StatusOr<LayerArgs> LayerArgsFromFlags() {
  LayerArgs args;
  absl::StatusOr<std::vector<int64_t>> stride = ParseInts("stride", absl::GetFlag(FLAGS_stride));
  if (!stride.ok()) return stride.status();
  absl::StatusOr<std::vector<int64_t>> dilation =
      ParseInts("dilation", absl::GetFlag(FLAGS_dilation));
  if (!dilation.ok()) return dilation.status();
  args.stride = *stride;
  args.dilation = *dilation;
  args.padding = absl::GetFlag(FLAGS_padding);
  args.padding_mode = absl::GetFlag(FLAGS_padding_mode);
  args.groups = absl::GetFlag(FLAGS_groups);
  args.data_format = absl::GetFlag(FLAGS_data_format);
  args.weight_format = absl::GetFlag(FLAGS_weight_format);
  args.activation = absl::GetFlag(FLAGS_activation);
  const std::string alpha = absl::GetFlag(FLAGS_activation_alpha);
  if (!alpha.empty()) {
    float value = 0;
    if (!absl::SimpleAtof(alpha, &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--activation_alpha: expected a number, got '", alpha, "'"));
    }
    args.activation_alpha = value;
  }
  return args;
}

int Health(Client& client) {
  absl::StatusOr<std::string> status = client.Health();
  if (!status.ok()) return Fail(status.status());
  std::cout << *status << "\n";
  return *status == "SERVING" ? 0 : 1;
}

int Shape(Client& client) {
  absl::StatusOr<LayerArgs> args = LayerArgsFromFlags();
  if (!args.ok()) return Fail(args.status());
  absl::StatusOr<std::vector<int64_t>> input_shape =
      ParseInts("input_shape", absl::GetFlag(FLAGS_input_shape));
  absl::StatusOr<std::vector<int64_t>> weight_shape =
      ParseInts("weight_shape", absl::GetFlag(FLAGS_weight_shape));
  if (!input_shape.ok()) return Fail(input_shape.status());
  if (!weight_shape.ok()) return Fail(weight_shape.status());
  args->input_shape = *input_shape;
  args->weight_shape = *weight_shape;
  args->bias = absl::GetFlag(FLAGS_with_bias);
  absl::StatusOr<v1::ConvLayer> layer = MakeLayer(*args);
  if (!layer.ok()) return Fail(layer.status());
  v1::Framework enforce = v1::FRAMEWORK_UNSPECIFIED;
  const std::string enforce_name = absl::GetFlag(FLAGS_enforce);
  if (!enforce_name.empty() &&
      !v1::Framework_Parse("FRAMEWORK_" + absl::AsciiStrToUpper(enforce_name), &enforce)) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--enforce: expected pytorch, keras or onnx, got '", enforce_name, "'")));
  }
  absl::StatusOr<v1::ShapeReport> report = client.ValidateShape(*layer, *input_shape, enforce);
  if (!report.ok()) return Fail(report.status());
  std::cout << FormatReport(*report);
  return 0;
}

int Conv(Client& client) {
  absl::StatusOr<LayerArgs> args = LayerArgsFromFlags();
  if (!args.ok()) return Fail(args.status());
  if (absl::GetFlag(FLAGS_input).empty() || absl::GetFlag(FLAGS_weight).empty() ||
      absl::GetFlag(FLAGS_output).empty()) {
    return Fail(absl::InvalidArgumentError("conv: --input, --weight and --output are required"));
  }
  absl::StatusOr<FloatArray> input = ReadNpy(absl::GetFlag(FLAGS_input));
  if (!input.ok()) return Fail(input.status());
  absl::StatusOr<FloatArray> weight = ReadNpy(absl::GetFlag(FLAGS_weight));
  if (!weight.ok()) return Fail(weight.status());
  std::optional<FloatArray> bias;
  if (!absl::GetFlag(FLAGS_bias).empty()) {
    absl::StatusOr<FloatArray> read = ReadNpy(absl::GetFlag(FLAGS_bias));
    if (!read.ok()) return Fail(read.status());
    bias = *std::move(read);
  }
  args->input_shape = input->shape;
  args->weight_shape = weight->shape;
  args->bias = bias.has_value();
  absl::StatusOr<v1::ConvLayer> layer = MakeLayer(*args);
  if (!layer.ok()) return Fail(layer.status());
  absl::StatusOr<ConvResult> result =
      client.Conv(*layer, *input, *weight, bias.has_value() ? &*bias : nullptr);
  if (!result.ok()) return Fail(result.status());
  absl::Status written = WriteNpy(absl::GetFlag(FLAGS_output), result->output);
  if (!written.ok()) return Fail(written);
  std::cout << "output [" << absl::StrJoin(result->output.shape, ", ") << "] written to "
            << absl::GetFlag(FLAGS_output) << " (" << result->compute_time_ns / 1000
            << " us on the server, kernel " << result->kernel << ")\n";
  return 0;
}

// Cells [begin, begin + length) of `array` along `axis`.
FloatArray SliceAxis(const FloatArray& array, size_t axis, int64_t begin, int64_t length) {
  int64_t outer = 1;
  int64_t inner = 1;
  for (size_t d = 0; d < array.shape.size(); ++d) {
    if (d < axis) outer *= array.shape[d];
    if (d > axis) inner *= array.shape[d];
  }
  FloatArray slice{array.shape, {}};
  slice.shape[axis] = length;
  for (int64_t o = 0; o < outer; ++o) {
    const float* row = array.values.data() + (o * array.shape[axis] + begin) * inner;
    slice.values.insert(slice.values.end(), row, row + length * inner);
  }
  return slice;
}

// Runs a loaded causal model over --input in chunks of --chunk cells along
// its time axis (StreamModel) and writes the concatenated outputs.
int Stream(Client& client) {
  const std::string model = absl::GetFlag(FLAGS_model);
  const int64_t chunk = absl::GetFlag(FLAGS_chunk);
  const std::string data_format = absl::GetFlag(FLAGS_data_format);
  if (model.empty() || absl::GetFlag(FLAGS_input).empty() || absl::GetFlag(FLAGS_output).empty()) {
    return Fail(absl::InvalidArgumentError("stream: --model, --input and --output are required"));
  }
  if (chunk < 1) {
    return Fail(
        absl::InvalidArgumentError(absl::StrCat("--chunk: expected at least 1 cell, got ", chunk)));
  }
  if (data_format != "channels_first" && data_format != "channels_last") {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--data_format: expected channels_first or channels_last, got '", data_format, "'")));
  }
  absl::StatusOr<FloatArray> input = ReadNpy(absl::GetFlag(FLAGS_input));
  if (!input.ok()) return Fail(input.status());
  if (input->shape.size() < 3 || input->shape.size() > 5) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--input: expected (N, C, *S) or (N, *S, C) with 1 to 3 spatial axes, got "
                     "shape [",
                     absl::StrJoin(input->shape, ", "), "]")));
  }
  const size_t axis = input->shape.size() - (data_format == "channels_first" ? 1 : 2);
  std::unique_ptr<ModelStream> stream = client.StreamModel(model);
  std::vector<FloatArray> outputs;
  for (int64_t at = 0; at < input->shape[axis]; at += chunk) {
    absl::StatusOr<FloatArray> output =
        stream->Push(SliceAxis(*input, axis, at, std::min(chunk, input->shape[axis] - at)));
    if (!output.ok()) return Fail(output.status());
    outputs.push_back(*std::move(output));
  }
  absl::Status finished = stream->Finish();
  if (!finished.ok()) return Fail(finished);
  FloatArray joined{outputs.front().shape, {}};
  joined.shape[axis] = 0;
  for (const FloatArray& output : outputs) joined.shape[axis] += output.shape[axis];
  int64_t outer = 1;
  for (size_t d = 0; d < axis; ++d) outer *= joined.shape[d];
  for (int64_t o = 0; o < outer; ++o) {
    for (const FloatArray& output : outputs) {
      const size_t row = output.values.size() / static_cast<size_t>(outer);
      joined.values.insert(joined.values.end(), output.values.begin() + o * row,
                           output.values.begin() + (o + 1) * row);
    }
  }
  absl::Status written = WriteNpy(absl::GetFlag(FLAGS_output), joined);
  if (!written.ok()) return Fail(written);
  std::cout << "output [" << absl::StrJoin(joined.shape, ", ") << "] written to "
            << absl::GetFlag(FLAGS_output) << " (" << outputs.size() << " chunks)\n";
  return 0;
}

int PrintServiceConfig(const ClientOptions& options) {
  absl::StatusOr<std::string> json = ServiceConfigJson(options);
  if (!json.ok()) return Fail(json.status());
  std::cout << *json << "\n";
  return 0;
}

int Models(Client& client) {
  absl::StatusOr<std::vector<v1::ModelInfo>> models = client.ListModels();
  if (!models.ok()) return Fail(models.status());
  for (const v1::ModelInfo& model : *models) {
    std::cout << model.name() << ": " << model.layers_size() << " layers, " << model.parameters()
              << " parameters\n";
    // A model with branches: how its layers connect, one step per line.
    for (const std::string& step : model.graph()) std::cout << "  " << step << "\n";
  }
  return 0;
}

// One "name: value" line per field, as `python3 -m convserve info` prints them.
int Info(Client& client) {
  absl::StatusOr<v1::GetServerInfoResponse> info = client.ServerInfo();
  if (!info.ok()) return Fail(info.status());
  const v1::ServerLimits& limits = info->limits();
  std::cout << "version: " << info->version() << "\n"
            << "git_commit: " << info->git_commit() << "\n"
            << "build_type: " << info->build_type() << "\n"
            << "kernel_tiers: " << absl::StrJoin(info->kernel_tiers(), ", ") << "\n"
            << "compute_threads: " << info->compute_threads() << "\n"
            << "auth_required: " << (info->auth_required() ? "true" : "false") << "\n";
  // Every limit, in the proto's order (all int64): new ones print themselves.
  const google::protobuf::Descriptor* descriptor = limits.GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = descriptor->field(i);
    std::cout << field->name() << ": " << limits.GetReflection()->GetInt64(limits, field) << "\n";
  }
  return 0;
}

// The flag's value if given, else $variable if set and not empty, else
// `fallback`: the Python CLI resolves the same variables the same way.
std::string FlagOrEnvironment(const absl::Flag<std::string>& flag, const char* variable,
                              const char* fallback) {
  std::string value = absl::GetFlag(flag);
  if (!value.empty()) return value;
  const char* from_environment = std::getenv(variable);
  return from_environment != nullptr && *from_environment ? from_environment : fallback;
}

}  // namespace
}  // namespace convserve::client

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Talks to a ConvServe server or its replicas.\n"
      "Usage: convctl [--target=host:port] health|shape|conv|stream|models|info|service_config "
      "[flags]\n"
      "  health          print the serving status (exit 0 iff SERVING)\n"
      "  shape           explain a layer: --input_shape --weight_shape [layer flags]\n"
      "  conv            run a layer: --input x.npy --weight w.npy [--bias b.npy] --output y.npy\n"
      "  stream          run a loaded causal model over a signal in chunks: --model NAME\n"
      "                  --input x.npy --output y.npy [--chunk 160] [--data_format]\n"
      "  models          list loaded models\n"
      "  info            print the server's version, build, kernel tiers and limits\n"
      "  service_config  print the gRPC service config (--lb_policy, --retries) and exit");
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() != 2) {
    std::cerr << absl::ProgramUsageMessage() << "\n";
    return 2;
  }
  const std::string command = positional[1];
  convserve::client::ClientOptions options;
  options.lb_policy = absl::GetFlag(FLAGS_lb_policy);
  options.retries = absl::GetFlag(FLAGS_retries);
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  if (command == "service_config") return convserve::client::PrintServiceConfig(options);
  absl::StatusOr<std::unique_ptr<convserve::client::Client>> connected =
      convserve::client::Client::Connect(
          convserve::client::FlagOrEnvironment(FLAGS_target, "CONVSERVE_TARGET", "localhost:50051"),
          options);
  if (!connected.ok()) {
    // Option names as convctl spells them (tls_ca_file: -> --tls_ca_file:).
    const std::string message(connected.status().message());
    std::cerr << "convctl: " << (absl::StartsWith(message, "tls_") ? "--" : "") << message << "\n";
    return 2;
  }
  std::unique_ptr<convserve::client::Client> client = *std::move(connected);
  client->set_timeout(std::chrono::seconds(absl::GetFlag(FLAGS_timeout_s)));
  client->set_request_id(absl::GetFlag(FLAGS_request_id));
  const std::string token_file = absl::GetFlag(FLAGS_auth_token_file);
  if (!token_file.empty()) {
    std::ifstream file(token_file);
    std::string token;
    if (!std::getline(file, token)) {
      std::cerr << "convctl: --auth_token_file: cannot read a token from '" << token_file << "'\n";
      return 2;
    }
    client->set_auth_token(std::string(absl::StripAsciiWhitespace(token)));
  } else if (const char* token = std::getenv("CONVSERVE_TOKEN"); token != nullptr && *token) {
    client->set_auth_token(std::string(absl::StripAsciiWhitespace(token)));
  }
  int (*run)(convserve::client::Client&) = nullptr;
  if (command == "health") run = convserve::client::Health;
  if (command == "shape") run = convserve::client::Shape;
  if (command == "conv") run = convserve::client::Conv;
  if (command == "stream") run = convserve::client::Stream;
  if (command == "models") run = convserve::client::Models;
  if (command == "info") run = convserve::client::Info;
  if (run == nullptr) {
    std::cerr << "convctl: unknown command '" << command << "'\n"
              << absl::ProgramUsageMessage() << "\n";
    return 2;
  }
  const int repeat = absl::GetFlag(FLAGS_repeat);
  if (repeat < 1) {
    std::cerr << "convctl: --repeat: expected at least 1, got " << repeat << "\n";
    return 2;
  }
  if (repeat == 1) return run(*client);
  // The first call prints as usual; the others print only their failures.
  int failed = 0;
  std::streambuf* const out = std::cout.rdbuf();
  std::ostringstream discarded;
  for (int i = 0; i < repeat; ++i) {
    if (i == 1) std::cout.rdbuf(discarded.rdbuf());
    if (run(*client) != 0) ++failed;
    discarded.str("");
  }
  std::cout.rdbuf(out);
  std::cerr << "convctl: " << repeat << " calls, " << repeat - failed << " ok, " << failed
            << " failed\n";
  return failed == 0 ? 0 : 1;
}
