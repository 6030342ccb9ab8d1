// main.cc: convserve_load, closed- and open-loop load on a ConvServe server with a latency report.
//
//   convserve_load --target=127.0.0.1:50051 --call=health --concurrency=1,8,32 --duration=10
//   convserve_load --call=conv --layer=rn50.res2.3x3 --rps=200 --arrival=poisson --format=html
//       --output=report.html
//   convserve_load --call=run_model --model=block --input_shape=1,64,56,56 --rps=50
//   convserve_load --mix=health:1,conv:3 --layer=mnet.dw112 --concurrency=8
//
// Calls go out through gRPC's callback API over --connections channels (round-robin per call),
// each request serialized once and sent as the same bytes every time. Closed loop: N calls in
// flight, each completion starting the next. Open loop: calls sent on a constant or Poisson
// schedule whatever the server does, latency measured from each call's scheduled send time, so
// a server that stalls shows its queueing in the latencies instead of slowing the load down
// (no coordinated omission). Calls due during --warmup are sent but left out of the results.
// Every call is checked (status, and the output size a probe call returned before the run),
// and the response's compute_time_ns splits each conv / run_model call into the server's
// compute and the rest. Progress once per second on stderr; the report (text, json, csv or
// html; bench/load/report.h) on stdout or --output.
//
// Exit status: 0 when every measured call succeeded, 1 when any failed (the report is written
// all the same) or the server could not be reached, 2 for a bad flag, 130 after SIGINT or SIGTERM
// (the run stops sending, waits for its calls in flight and reports what it measured).
#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/layer_set.h"
#include "bench/load/report.h"
#include "bench/load/results.h"
#include "bench/load/schedule.h"
#include "client/cpp/convserve_client.h"

// --- Where and how to connect.
ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "Server address host:port; several as a comma list host:port,host:port (spread by "
          "--lb_policy; host names are resolved once, at start); or any gRPC target "
          "(dns:///name:port, ipv4:a:p,b:p). Host names in a list are resolved once, at start, "
          "to an IPv4 address if they have one.");
ABSL_FLAG(std::string, lb_policy, "round_robin",
          "How each channel spreads calls over the target's addresses: round_robin or "
          "pick_first.");
ABSL_FLAG(std::string, connections, "1",
          "Channels (each its own TCP connection per address); calls go round-robin over them.");
ABSL_FLAG(std::string, token_file, "",
          "File whose first line is the server's bearer token (sent as authorization: Bearer).");
ABSL_FLAG(std::string, tls_ca_file, "",
          "Connect over TLS, trusting this PEM CA (any --tls_* flag turns TLS on; without this "
          "one, gRPC's default roots).");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM client certificate (mutual TLS); needs --tls_key_file.");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the server's certificate must carry, if not the --target host.");
// --- What to call.
ABSL_FLAG(std::string, call, "", "health (grpc.health.v1 Check, the default), conv or run_model.");
ABSL_FLAG(std::string, mix, "",
          "Weighted mix instead of --call, e.g. health:1,conv:3 (each call drawn at random).");
ABSL_FLAG(std::string, layer, "",
          "conv: a layer of --layers_file by name, e.g. rn50.res2.3x3 (or give --input_shape and "
          "--weight_shape with the layer flags below).");
ABSL_FLAG(std::string, layers_file, "",
          "Layer set for --layer (default: bench/layers.json of the source tree).");
ABSL_FLAG(std::string, model, "", "run_model: name of a model loaded on the server.");
ABSL_FLAG(std::string, element_type, "float32",
          "conv and run_model: the type of the tensors sent and of the output: float32, float16 "
          "or bfloat16 (the server computes in float32).");
ABSL_FLAG(std::string, input_shape, "",
          "conv without --layer, and run_model: input shape, e.g. 1,64,56,56.");
ABSL_FLAG(std::string, weight_shape, "", "conv without --layer: weight shape, e.g. 64,64,3,3.");
ABSL_FLAG(bool, with_bias, false, "conv without --layer: the layer has a bias.");
ABSL_FLAG(std::string, stride, "1", "conv without --layer: stride, one value or one per axis.");
ABSL_FLAG(std::string, dilation, "1", "conv without --layer: dilation, one value or one per axis.");
ABSL_FLAG(std::string, padding, "0",
          "conv without --layer: valid, same, same_lower, causal, P, P1,P2 or B1:E1,B2:E2.");
ABSL_FLAG(std::string, padding_mode, "zeros",
          "conv without --layer: zeros, reflect, replicate or circular.");
ABSL_FLAG(std::string, groups, "1", "conv without --layer: groups.");
ABSL_FLAG(std::string, data_format, "channels_first",
          "conv without --layer: channels_first or channels_last.");
ABSL_FLAG(std::string, weight_format, "oihw", "conv without --layer: oihw or hwio.");
ABSL_FLAG(std::string, activation, "none",
          "conv without --layer: none, relu, relu6, leaky_relu, elu, sigmoid, tanh, silu or gelu.");
ABSL_FLAG(std::string, activation_alpha, "", "conv without --layer: alpha of leaky_relu / elu.");
// --- How much load.
ABSL_FLAG(std::string, concurrency, "",
          "Closed loop: calls in flight, or a comma list to sweep (1,8,32). Default 1 unless "
          "--rps is given.");
ABSL_FLAG(std::string, rps, "",
          "Open loop: calls per second, or a comma list to sweep; latency counts from each "
          "call's scheduled send time.");
ABSL_FLAG(std::string, arrival, "", "Open loop: constant (the default) or poisson.");
ABSL_FLAG(std::string, duration, "",
          "Seconds measured per load level (default 10), after --warmup.");
ABSL_FLAG(std::string, requests, "", "Measured calls per load level instead of --duration.");
ABSL_FLAG(std::string, warmup, "1", "Seconds of load before measuring, per load level.");
ABSL_FLAG(std::string, deadline_ms, "10000", "Deadline of each call, from its send, in ms.");
ABSL_FLAG(std::string, max_in_flight, "10000",
          "Open loop: most calls in flight; beyond, sending waits (and the wait counts in "
          "latency).");
ABSL_FLAG(std::string, seed, "1", "Seed of the input data, the Poisson schedule and the mix.");
// --- Report.
ABSL_FLAG(std::string, format, "text", "Report format: text, json, csv or html.");
ABSL_FLAG(std::string, output, "", "Report file (default: stdout).");
ABSL_FLAG(bool, progress, true, "Print a progress line per second on stderr.");

namespace convserve::load {
namespace {

namespace v1 = ::convserve::v1;
using Clock = std::chrono::steady_clock;
using client::FloatArray;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// When the first SIGINT or SIGTERM arrived (steady clock, ns), 0 if none: the run stops sending,
// waits for its calls in flight and writes the report of what it measured until then. A second
// signal kills the process.
std::atomic<int64_t> interrupted_ns{0};

extern "C" void OnInterrupt(int signal_number) {
  int64_t none = 0;
  interrupted_ns.compare_exchange_strong(none, NowNs());
  std::signal(signal_number, SIG_DFL);
}

// A flag problem: exits 2 with this message.
absl::Status FlagError(absl::string_view flag, absl::string_view expected, absl::string_view got) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, ": expected ", expected, ", got '", got, "'"));
}

// Flags are checked here rather than by absl (which exits 1 with its own wording): every name
// must be a known flag, every boolean a boolean, and a valued flag must have its value.
absl::Status CheckArgv(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::StartsWith(arg, "-") || arg == "-") continue;
    absl::string_view body = absl::StripPrefix(absl::StripPrefix(arg, "-"), "-");
    const size_t equals = body.find('=');
    const absl::string_view name = body.substr(0, equals);
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    bool negated = false;
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      negated = flag != nullptr && flag->IsOfType<bool>();
      if (!negated) flag = nullptr;
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown flag '", arg, "': expected one of the flags of convserve_load --help"));
    }
    if (flag->IsOfType<bool>()) {
      if (equals == absl::string_view::npos) continue;
      const absl::string_view value = body.substr(equals + 1);
      bool parsed = false;
      if (negated || !absl::SimpleAtob(value, &parsed)) {
        return FlagError(name, "true or false", value);
      }
    } else if (equals == absl::string_view::npos) {
      if (i + 1 >= argc) return FlagError(name, "a value (--name=value)", "");
      ++i;  // "--name value"
    }
  }
  return absl::OkStatus();
}

// --- Parsing flag values.

absl::StatusOr<double> ParseNumber(absl::string_view flag, const std::string& text, double low,
                                   double high, absl::string_view what) {
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || !std::isfinite(value) || value < low || value > high) {
    return FlagError(flag, absl::StrCat(what, " in [", low, ", ", high, "]"), text);
  }
  return value;
}

absl::StatusOr<int64_t> ParseInteger(absl::string_view flag, const std::string& text, int64_t low,
                                     int64_t high) {
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < low || value > high) {
    return FlagError(flag, absl::StrCat("an integer in [", low, ", ", high, "]"), text);
  }
  return value;
}

absl::StatusOr<std::vector<int64_t>> ParseShape(absl::string_view flag, const std::string& text) {
  std::vector<int64_t> values;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &value) || value < 0) {
      return FlagError(flag, "comma-separated non-negative integers", text);
    }
    values.push_back(value);
  }
  return values;
}

absl::StatusOr<std::vector<int64_t>> ParseIntegers(absl::string_view flag,
                                                   const std::string& text) {
  std::vector<int64_t> values;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &value)) {
      return FlagError(flag, "comma-separated integers", text);
    }
    values.push_back(value);
  }
  return values;
}

absl::StatusOr<std::string> ReadFile(absl::string_view flag, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream contents;
  if (file) contents << file.rdbuf();
  if (!file || file.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": expected a readable file, got '",
                                                   path, "' (", std::strerror(errno), ")"));
  }
  return contents.str();
}

// --- Connecting.

struct TlsOptions {
  std::string ca_file, cert_file, key_file, server_name;
  bool on() const {
    return !ca_file.empty() || !cert_file.empty() || !key_file.empty() || !server_name.empty();
  }
};

absl::StatusOr<std::string> ReadPem(absl::string_view flag, const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(flag, path);
  if (!text.ok()) return text.status();
  if (text->find("-----BEGIN ") == std::string::npos) {
    return FlagError(flag, "a PEM file ('-----BEGIN ...' line)", path);
  }
  return text;
}

// Insecure credentials, or SSL ones (client/cpp/convserve_client.cc's rules, with the flags'
// names in the errors); the server name override goes into `arguments`.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(
    const TlsOptions& tls, grpc::ChannelArguments* arguments) {
  if (!tls.on()) return grpc::InsecureChannelCredentials();
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return tls.key_file.empty()
               ? FlagError("tls_key_file", "the key of --tls_cert_file (both or neither)", "")
               : FlagError("tls_cert_file", "the certificate of --tls_key_file (both or neither)",
                           "");
  }
  grpc::SslCredentialsOptions ssl;
  if (!tls.ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPem("tls_ca_file", tls.ca_file);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  if (!tls.cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPem("tls_cert_file", tls.cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem("tls_key_file", tls.key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  if (!tls.server_name.empty()) arguments->SetSslTargetNameOverride(tls.server_name);
  return grpc::SslCredentials(ssl);
}

// The gRPC target for --target. A single entry, or anything with a scheme, goes to gRPC as is.
// A comma list of host:port becomes "ipv4:a:p,b:p" (or ipv6:), host names resolved here;
// `first_name` gets the first host name of the list (for TLS), if any.
absl::StatusOr<std::string> GrpcTarget(const std::string& text, std::string* first_name) {
  if (text.empty()) return FlagError("target", "host:port", text);
  if (text.find(',') == std::string::npos || absl::StrContains(text, "://") ||
      absl::StartsWith(text, "ipv4:") || absl::StartsWith(text, "ipv6:") ||
      absl::StartsWith(text, "unix:")) {
    return text;
  }
  const std::string expected = "host:port entries separated by commas, hosts of one family";
  std::vector<std::string> v4, v6;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    const size_t colon = entry.rfind(':');
    int port = 0;
    if (colon == absl::string_view::npos || colon == 0 ||
        !absl::SimpleAtoi(entry.substr(colon + 1), &port) || port < 1 || port > 65535) {
      return FlagError("target", expected, text);
    }
    std::string host(entry.substr(0, colon));
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    in_addr a4;
    in6_addr a6;
    if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
      v4.push_back(absl::StrCat(host, ":", port));
      continue;
    }
    if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
      v6.push_back(absl::StrCat("[", host, "]:", port));
      continue;
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int failure = getaddrinfo(host.c_str(), nullptr, &hints, &found);
    if (failure != 0 || found == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--target: cannot resolve host '", host, "': ", gai_strerror(failure)));
    }
    // One family for the whole list (gRPC's ipv4: and ipv6: schemes): IPv4 when the name has
    // an IPv4 address ("localhost" often lists ::1 first).
    const addrinfo* chosen = found;
    for (const addrinfo* each = found; each != nullptr; each = each->ai_next) {
      if (each->ai_family == AF_INET) {
        chosen = each;
        break;
      }
    }
    char address[INET6_ADDRSTRLEN] = {};
    if (chosen->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(chosen->ai_addr)->sin_addr, address,
                sizeof(address));
      v4.push_back(absl::StrCat(address, ":", port));
    } else {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(chosen->ai_addr)->sin6_addr,
                address, sizeof(address));
      v6.push_back(absl::StrCat("[", address, "]:", port));
    }
    freeaddrinfo(found);
    if (first_name->empty()) *first_name = host;
  }
  if (!v4.empty() && !v6.empty()) return FlagError("target", expected, text);
  return v4.empty() ? "ipv6:" + absl::StrJoin(v6, ",") : "ipv4:" + absl::StrJoin(v4, ",");
}

// --connections channels to one target, each with its own connections (gRPC would otherwise
// share one TCP connection among channels of equal arguments).
class Connections {
 public:
  static absl::StatusOr<std::unique_ptr<Connections>> Open(const std::string& target,
                                                           const std::string& lb_policy,
                                                           const TlsOptions& tls, int count) {
    client::ClientOptions options;
    options.lb_policy = lb_policy;
    options.retries = false;  // a retry would hide the failure it retries
    absl::StatusOr<std::string> service_config = client::ServiceConfigJson(options);
    if (!service_config.ok()) return FlagError("lb_policy", "round_robin or pick_first", lb_policy);
    auto connections = std::make_unique<Connections>();
    for (int i = 0; i < count; ++i) {
      grpc::ChannelArguments arguments;
      arguments.SetMaxReceiveMessageSize(256 << 20);
      arguments.SetMaxSendMessageSize(256 << 20);
      arguments.SetServiceConfigJSON(*service_config);
      arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      arguments.SetInt("convserve_load.channel", i);
      absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
          Credentials(tls, &arguments);
      if (!credentials.ok()) return credentials.status();
      std::shared_ptr<grpc::Channel> channel =
          grpc::CreateCustomChannel(target, *credentials, arguments);
      connections->stubs_.push_back(std::make_unique<grpc::GenericStub>(channel));
      connections->channels_.push_back(std::move(channel));
    }
    return connections;
  }

  size_t size() const { return stubs_.size(); }
  grpc::GenericStub& at(size_t i) { return *stubs_[i]; }
  grpc::GenericStub& Next() { return *stubs_[next_.fetch_add(1) % stubs_.size()]; }

 private:
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs_;
  std::atomic<uint64_t> next_{0};
};

// --- Workloads.

enum class Kind { kHealth, kConv, kRunModel };
const std::vector<std::string> kCallNames = {"health", "conv", "run_model"};

struct Workload {
  Kind kind;
  std::string name;
  std::string method;
  grpc::ByteBuffer request;
  int64_t request_bytes = 0;
  int64_t output_bytes = -1;  // the output tensor's bytes, as the probe call returned them
  std::string description;
};

absl::StatusOr<grpc::ByteBuffer> Serialize(const google::protobuf::Message& message) {
  grpc::ByteBuffer buffer;
  bool own = false;
  grpc::Status status =
      grpc::SerializationTraits<google::protobuf::Message>::Serialize(message, &buffer, &own);
  if (!status.ok()) return absl::InternalError("request serialization: " + status.error_message());
  return buffer;
}

FloatArray RandomArray(std::vector<int64_t> shape, std::mt19937* rng) {
  FloatArray array;
  array.shape = std::move(shape);
  int64_t elements = 1;
  for (int64_t d : array.shape) elements *= d;
  std::normal_distribution<float> normal;
  array.values.resize(static_cast<size_t>(elements));
  for (float& v : array.values) v = normal(*rng);
  return array;
}

std::string ShapeText(const std::vector<int64_t>& shape) { return absl::StrJoin(shape, "x"); }

// --element_type as the wire enum.
absl::StatusOr<v1::ElementType> WireElementType() {
  const std::string name = absl::GetFlag(FLAGS_element_type);
  v1::ElementType type;
  if ((name != "float32" && name != "float16" && name != "bfloat16") ||
      !v1::ElementType_Parse("ELEMENT_TYPE_" + absl::AsciiStrToUpper(name), &type)) {
    return FlagError("element_type", "float32, float16 or bfloat16", name);
  }
  return type;
}

// The Conv request of --layer or of the layer flags; random input, weight and bias.
absl::StatusOr<Workload> ConvWorkload(std::mt19937* rng) {
  client::LayerArgs args;
  std::string description;
  const std::string layer_name = absl::GetFlag(FLAGS_layer);
  if (!layer_name.empty()) {
    // The layer flags describe a layer of their own: refuse them beside --layer, not ignore.
    for (const char* name :
         {"weight_shape", "with_bias", "stride", "dilation", "padding", "padding_mode", "groups",
          "data_format", "weight_format", "activation", "activation_alpha"}) {
      const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
      if (flag != nullptr && flag->CurrentValue() != flag->DefaultValue()) {
        return FlagError(name, "nothing with --layer (the layer has its own)",
                         flag->CurrentValue());
      }
    }
    std::string file = absl::GetFlag(FLAGS_layers_file);
    if (file.empty()) file = std::string(CONVSERVE_SOURCE_DIR) + "/bench/layers.json";
    absl::StatusOr<std::vector<bench::BenchLayer>> layers = bench::ReadLayerSet(file);
    if (!layers.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--layers_file: expected a readable layer set, got '", file,
                       "': ", layers.status().message()));
    }
    std::vector<std::string> names;
    const bench::BenchLayer* chosen = nullptr;
    for (const bench::BenchLayer& layer : *layers) {
      names.push_back(layer.name);
      if (layer.name == layer_name) chosen = &layer;
    }
    if (chosen == nullptr) {
      return FlagError("layer",
                       absl::StrCat("a layer of ", file, " (", absl::StrJoin(names, ", "), ")"),
                       layer_name);
    }
    args.input_shape = {chosen->batch, chosen->in_channels};
    args.input_shape.insert(args.input_shape.end(), chosen->spatial.begin(), chosen->spatial.end());
    args.weight_shape = {chosen->out_channels, chosen->in_channels / chosen->groups};
    args.weight_shape.insert(args.weight_shape.end(), chosen->kernel.begin(), chosen->kernel.end());
    args.bias = true;
    args.stride = {chosen->stride};
    args.dilation = {chosen->dilation};
    args.padding = absl::StrCat(chosen->pad);
    args.groups = chosen->groups;
    description = absl::StrFormat(
        "layer %s: input %s, weight %s, bias, stride %d, pad %d, "
        "dilation %d, groups %d",
        chosen->name, ShapeText(args.input_shape), ShapeText(args.weight_shape), chosen->stride,
        chosen->pad, chosen->dilation, chosen->groups);
  } else {
    if (absl::GetFlag(FLAGS_input_shape).empty() || absl::GetFlag(FLAGS_weight_shape).empty()) {
      return FlagError("layer", "a layer name, or --input_shape and --weight_shape, for conv", "");
    }
    absl::StatusOr<std::vector<int64_t>> input =
        ParseShape("input_shape", absl::GetFlag(FLAGS_input_shape));
    if (!input.ok()) return input.status();
    absl::StatusOr<std::vector<int64_t>> weight =
        ParseShape("weight_shape", absl::GetFlag(FLAGS_weight_shape));
    if (!weight.ok()) return weight.status();
    absl::StatusOr<std::vector<int64_t>> stride =
        ParseIntegers("stride", absl::GetFlag(FLAGS_stride));
    if (!stride.ok()) return stride.status();
    absl::StatusOr<std::vector<int64_t>> dilation =
        ParseIntegers("dilation", absl::GetFlag(FLAGS_dilation));
    if (!dilation.ok()) return dilation.status();
    absl::StatusOr<int64_t> groups =
        ParseInteger("groups", absl::GetFlag(FLAGS_groups), 1, INT32_MAX);
    if (!groups.ok()) return groups.status();
    args.input_shape = *input;
    args.weight_shape = *weight;
    args.bias = absl::GetFlag(FLAGS_with_bias);
    args.stride = *stride;
    args.dilation = *dilation;
    args.padding = absl::GetFlag(FLAGS_padding);
    args.padding_mode = absl::GetFlag(FLAGS_padding_mode);
    args.groups = *groups;
    args.data_format = absl::GetFlag(FLAGS_data_format);
    args.weight_format = absl::GetFlag(FLAGS_weight_format);
    args.activation = absl::GetFlag(FLAGS_activation);
    const std::string alpha = absl::GetFlag(FLAGS_activation_alpha);
    if (!alpha.empty()) {
      absl::StatusOr<double> value =
          ParseNumber("activation_alpha", alpha, -1e30, 1e30, "a number");
      if (!value.ok()) return value.status();
      args.activation_alpha = static_cast<float>(*value);
    }
    description = absl::StrFormat(
        "input %s, weight %s%s, stride %s, padding %s, groups %d, "
        "%s, activation %s",
        ShapeText(args.input_shape), ShapeText(args.weight_shape), args.bias ? ", bias" : "",
        absl::GetFlag(FLAGS_stride), args.padding, args.groups, args.data_format, args.activation);
  }
  if (args.weight_shape.size() < 3 || args.weight_shape.size() > 5) {
    return FlagError("weight_shape", "3 to 5 dims (spatial rank + 2)",
                     ShapeText(args.weight_shape));
  }
  absl::StatusOr<v1::ConvLayer> layer = client::MakeLayer(args);
  if (!layer.ok()) {
    // MakeLayer names the argument without dashes; the flag is the same word.
    return absl::InvalidArgumentError(absl::StrCat("--", layer.status().message()));
  }
  // Keep allocations sane before generating data: the server's own limits are far lower.
  for (const std::vector<int64_t>* shape : {&args.input_shape, &args.weight_shape}) {
    double elements = 1;
    for (int64_t d : *shape) elements *= static_cast<double>(d);
    if (elements > (1 << 28)) {
      return FlagError(shape == &args.input_shape ? "input_shape" : "weight_shape",
                       "at most 2^28 elements", ShapeText(*shape));
    }
  }
  absl::StatusOr<v1::ElementType> type = WireElementType();
  if (!type.ok()) return type.status();
  v1::ConvRequest request;
  *request.mutable_layer() = *layer;
  client::ToProto(RandomArray(args.input_shape, rng), request.mutable_input(), *type);
  client::ToProto(RandomArray(args.weight_shape, rng), request.mutable_weight(), *type);
  if (args.bias) {
    const int64_t out_channels = absl::AsciiStrToLower(args.weight_format) == "hwio"
                                     ? args.weight_shape.back()
                                     : args.weight_shape.front();
    client::ToProto(RandomArray({out_channels}, rng), request.mutable_bias(), *type);
  }
  Workload workload{Kind::kConv, "conv", "/convserve.v1.ConvService/Conv", {}, 0, -1, description};
  absl::StatusOr<grpc::ByteBuffer> buffer = Serialize(request);
  if (!buffer.ok()) return buffer.status();
  workload.request = *std::move(buffer);
  workload.request_bytes = static_cast<int64_t>(request.ByteSizeLong());
  return workload;
}

absl::StatusOr<Workload> RunModelWorkload(std::mt19937* rng) {
  const std::string model = absl::GetFlag(FLAGS_model);
  if (model.empty()) return FlagError("model", "the name of a loaded model for run_model", "");
  const std::string shape_text = absl::GetFlag(FLAGS_input_shape);
  if (shape_text.empty())
    return FlagError("input_shape", "the model's input shape for run_model", "");
  absl::StatusOr<std::vector<int64_t>> shape = ParseShape("input_shape", shape_text);
  if (!shape.ok()) return shape.status();
  double elements = 1;
  for (int64_t d : *shape) elements *= static_cast<double>(d);
  if (elements > (1 << 28)) return FlagError("input_shape", "at most 2^28 elements", shape_text);
  absl::StatusOr<v1::ElementType> type = WireElementType();
  if (!type.ok()) return type.status();
  v1::RunModelRequest request;
  request.set_name(model);
  client::ToProto(RandomArray(*shape, rng), request.mutable_input(), *type);
  Workload workload{Kind::kRunModel,
                    "run_model",
                    "/convserve.v1.ConvService/RunModel",
                    {},
                    0,
                    -1,
                    absl::StrCat("model ", model, ", input ", ShapeText(*shape), " ",
                                 absl::GetFlag(FLAGS_element_type))};
  absl::StatusOr<grpc::ByteBuffer> buffer = Serialize(request);
  if (!buffer.ok()) return buffer.status();
  workload.request = *std::move(buffer);
  workload.request_bytes = static_cast<int64_t>(request.ByteSizeLong());
  return workload;
}

Workload HealthWorkload() {
  grpc::health::v1::HealthCheckRequest request;
  Workload workload{Kind::kHealth,
                    "health",
                    "/grpc.health.v1.Health/Check",
                    {},
                    0,
                    -1,
                    "grpc.health.v1.Health/Check of the whole server"};
  workload.request = *Serialize(request);
  return workload;
}

// What a completed call amounts to. `output_bytes` gets the output tensor's size.
Outcome Inspect(const Workload& workload, const grpc::Status& status, grpc::ByteBuffer* response,
                int64_t* output_bytes = nullptr) {
  Outcome outcome;
  if (!status.ok()) {
    outcome.error = StatusCodeName(status.error_code());
    return outcome;
  }
  using Traits = grpc::SerializationTraits<google::protobuf::Message>;
  if (workload.kind == Kind::kHealth) {
    grpc::health::v1::HealthCheckResponse health;
    if (!Traits::Deserialize(response, &health).ok()) {
      outcome.error = "BAD_RESPONSE";
    } else if (health.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
      outcome.error = "NOT_SERVING";
    }
    return outcome;
  }
  v1::ConvResponse conv;
  v1::RunModelResponse run;
  google::protobuf::Message* message =
      workload.kind == Kind::kConv ? static_cast<google::protobuf::Message*>(&conv) : &run;
  if (!Traits::Deserialize(response, message).ok()) {
    outcome.error = "BAD_RESPONSE";
    return outcome;
  }
  const v1::Tensor& output = workload.kind == Kind::kConv ? conv.output() : run.output();
  const int64_t bytes = static_cast<int64_t>(output.data().size());
  if (output_bytes != nullptr) *output_bytes = bytes;
  if (workload.output_bytes >= 0 && bytes != workload.output_bytes) {
    outcome.error = "BAD_RESPONSE";
    return outcome;
  }
  outcome.compute_ns =
      workload.kind == Kind::kConv ? conv.compute_time_ns() : run.compute_time_ns();
  return outcome;
}

struct CallSettings {
  std::chrono::milliseconds deadline{10000};
  std::string token;
};

void PrepareContext(const CallSettings& settings, grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() + settings.deadline);
  if (!settings.token.empty()) context->AddMetadata("authorization", "Bearer " + settings.token);
}

// One call of each workload on each channel, before any load: connects every channel, learns
// each output's size, and stops the run early (exit 1) if the call cannot succeed.
absl::Status Probe(Connections& connections, std::vector<Workload>& workloads,
                   const CallSettings& settings) {
  for (Workload& workload : workloads) {
    for (size_t c = 0; c < connections.size(); ++c) {
      grpc::ClientContext context;
      PrepareContext(settings, &context);
      grpc::ByteBuffer response;
      std::promise<grpc::Status> done;
      connections.at(c).UnaryCall(&context, workload.method, grpc::StubOptions(), &workload.request,
                                  &response,
                                  [&done](grpc::Status status) { done.set_value(status); });
      const grpc::Status status = done.get_future().get();
      int64_t output_bytes = -1;
      const Outcome outcome = Inspect(workload, status, &response, &output_bytes);
      if (!outcome.error.empty()) {
        return absl::UnavailableError(absl::StrCat(
            "the first ", workload.name, " call (connection ", c + 1, ") failed: ", outcome.error,
            status.error_message().empty() ? "" : ": ", status.error_message()));
      }
      if (workload.kind != Kind::kHealth) {
        if (workload.output_bytes >= 0 && workload.output_bytes != output_bytes) {
          return absl::InternalError(absl::StrCat(workload.name, ": the output has ", output_bytes,
                                                  " bytes on connection ", c + 1, ", ",
                                                  workload.output_bytes, " before"));
        }
        workload.output_bytes = output_bytes;
      }
    }
    if (workload.kind != Kind::kHealth) {
      absl::StrAppendFormat(&workload.description, "; %.3f MB request, %.3f MB output",
                            workload.request_bytes / 1e6, workload.output_bytes / 1e6);
    }
  }
  return absl::OkStatus();
}

// --- A load level.

struct Level {
  bool open_loop = false;
  int concurrency = 1;
  double rps = 0;
};

struct RunSettings {
  double warmup_seconds = 1;
  double duration_seconds = 10;  // unless requests > 0
  int64_t requests = 0;
  int64_t max_in_flight = 10000;
  Arrival arrival = Arrival::kConstant;
  uint64_t seed = 1;
  bool progress = true;
};

class LoadRun {
 public:
  LoadRun(Connections& connections, const std::vector<Workload>& workloads, const CallMix& mix,
          const CallSettings& calls, const RunSettings& settings, const Level& level)
      : connections_(connections),
        workloads_(workloads),
        mix_(mix),
        calls_(calls),
        settings_(settings),
        level_(level),
        recorder_(Names(workloads)) {}

  RunResult Run() {
    start_ns_ = NowNs();
    measure_start_ns_ = start_ns_ + static_cast<int64_t>(settings_.warmup_seconds * 1e9);
    end_ns_ = settings_.requests > 0
                  ? INT64_MAX
                  : measure_start_ns_ + static_cast<int64_t>(settings_.duration_seconds * 1e9);
    std::thread ticker([this] { TickEverySecond(); });
    if (level_.open_loop) {
      SendOnSchedule();
    } else {
      for (int user = 0; user < level_.concurrency; ++user) {
        rngs_.emplace_back(settings_.seed * 1000003 + static_cast<uint64_t>(user));
      }
      for (int user = 0; user < level_.concurrency; ++user) {
        bool measured = false;
        const int64_t now = NowNs();
        if (Admit(now, &measured)) Start(now, measured, static_cast<size_t>(user));
      }
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      idle_.wait(lock, [this] { return in_flight_ == 0; });
      finished_ = true;
    }
    idle_.notify_all();
    ticker.join();

    RunResult result;
    result.open_loop = level_.open_loop;
    result.concurrency = level_.open_loop ? 0 : level_.concurrency;
    result.requested_rps = level_.open_loop ? level_.rps : 0;
    result.arrival = level_.open_loop ? ArrivalName(settings_.arrival) : "";
    result.label = level_.open_loop ? absl::StrFormat("rps %g %s", level_.rps, result.arrival)
                                    : absl::StrFormat("concurrency %d", level_.concurrency);
    result.warmup_seconds = settings_.warmup_seconds;
    const int64_t window_end =
        settings_.requests > 0 ? last_completion_ns_.load() : std::min(end_ns_, WindowEnd());
    result.window_seconds = std::max<int64_t>(0, window_end - measure_start_ns_) / 1e9;
    result.scheduled = scheduled_measured_;
    result.planned_seconds = result.window_seconds;
    recorder_.Collect(&result);
    return result;
  }

 private:
  // The end of the measuring window: its planned end, or the interruption if earlier.
  int64_t WindowEnd() const {
    const int64_t interrupted = interrupted_ns.load();
    return interrupted != 0 ? std::min(end_ns_, interrupted) : end_ns_;
  }

  struct Call {
    grpc::ClientContext context;
    grpc::ByteBuffer response;
    int64_t scheduled_ns = 0;
    size_t workload = 0;
    size_t user = 0;
    bool measured = false;
  };

  static std::vector<std::string> Names(const std::vector<Workload>& workloads) {
    std::vector<std::string> names;
    for (const Workload& workload : workloads) names.push_back(workload.name);
    return names;
  }

  // Whether a call due at `due_ns` is sent, and whether it is measured.
  bool Admit(int64_t due_ns, bool* measured) {
    if (interrupted_ns.load() != 0) return false;
    if (due_ns < measure_start_ns_) {
      *measured = false;
      return true;
    }
    if (due_ns >= end_ns_) return false;
    if (settings_.requests > 0 && measured_admitted_.fetch_add(1) >= settings_.requests) {
      return false;
    }
    *measured = true;
    return true;
  }

  // REQUIRES: for a closed loop, at most one call of `user` in flight. `new_slot`: the call
  // adds to the calls in flight (false: it takes over the slot of the call that just ended).
  void Start(int64_t scheduled_ns, bool measured, size_t user, bool new_slot = true) {
    auto* call = new Call;
    call->scheduled_ns = scheduled_ns;
    call->measured = measured;
    call->user = user;
    call->workload = mix_.Pick(level_.open_loop ? sender_rng_ : rngs_[user]);
    PrepareContext(calls_, &call->context);
    if (new_slot) {
      std::lock_guard<std::mutex> lock(mutex_);
      ++in_flight_;
    }
    const Workload& workload = workloads_[call->workload];
    connections_.Next().UnaryCall(&call->context, workload.method, grpc::StubOptions(),
                                  &workload.request, &call->response,
                                  [this, call](grpc::Status status) { Done(call, status); });
  }

  // On a gRPC callback thread.
  void Done(Call* call, const grpc::Status& status) {
    const int64_t now = NowNs();
    Outcome outcome = Inspect(workloads_[call->workload], status, &call->response);
    outcome.latency_ns = static_cast<uint64_t>(std::max<int64_t>(0, now - call->scheduled_ns));
    recorder_.Record(call->workload, outcome, call->measured,
                     now >= measure_start_ns_ && now < WindowEnd());
    if (call->measured) {
      int64_t seen = last_completion_ns_.load();
      while (seen < now && !last_completion_ns_.compare_exchange_weak(seen, now)) {
      }
    }
    if (!level_.open_loop) {
      bool measured = false;
      const int64_t next = NowNs();
      if (Admit(next, &measured)) {
        const size_t user = call->user;
        delete call;
        Start(next, measured, user, /*new_slot=*/false);
        return;
      }
    }
    delete call;
    // Notified under the lock: once Run sees no call in flight it returns and this LoadRun is
    // destroyed, so nothing of it may be touched after the unlock.
    std::lock_guard<std::mutex> lock(mutex_);
    --in_flight_;
    if (in_flight_ == 0 || level_.open_loop) idle_.notify_all();
  }

  void SendOnSchedule() {
    ArrivalSchedule schedule(settings_.arrival, level_.rps, settings_.seed);
    sender_rng_.seed(settings_.seed * 7919 + 17);
    while (true) {
      const int64_t due = start_ns_ + schedule.NextNanos();
      bool measured = false;
      if (!Admit(due, &measured)) break;
      // Sleep until due, waking at least every 100 ms to notice an interruption.
      for (int64_t now = NowNs(); due > now && interrupted_ns.load() == 0; now = NowNs()) {
        std::this_thread::sleep_for(
            std::chrono::nanoseconds(std::min<int64_t>(due - now, 100000000)));
      }
      if (interrupted_ns.load() != 0) break;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        idle_.wait(lock, [this] { return in_flight_ < settings_.max_in_flight; });
      }
      if (measured) {
        ++scheduled_measured_;
        recorder_.RecordSendLag(static_cast<uint64_t>(std::max<int64_t>(0, NowNs() - due)));
      }
      Start(due, measured, 0);
    }
  }

  void TickEverySecond() {
    int64_t previous = start_ns_;
    for (int64_t tick = 1;; ++tick) {
      const int64_t at = start_ns_ + tick * 1'000'000'000;
      bool last = false;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        last = idle_.wait_until(lock, Clock::time_point(std::chrono::nanoseconds(at)),
                                [this] { return finished_; });
      }
      const int64_t now = last ? NowNs() : at;
      // The part of this interval inside the measuring window, if any.
      const int64_t window_now = std::min(now, WindowEnd());
      const double window = (window_now - measure_start_ns_) / 1e9;
      const double length = (window_now - std::max(previous, measure_start_ns_)) / 1e9;
      const Recorder::Interval interval = recorder_.Tick(length > 0 ? window : 0, length);
      if (settings_.progress && (!last || interval.calls > 0))
        PrintProgress(now, previous, interval);
      previous = now;
      if (last) return;
    }
  }

  void PrintProgress(int64_t now, int64_t previous, const Recorder::Interval& interval) {
    const double seconds = std::max(1e-9, (now - previous) / 1e9);
    std::string phase;
    if (now <= measure_start_ns_) {
      phase =
          absl::StrFormat("warm-up %.1f/%g s", (now - start_ns_) / 1e9, settings_.warmup_seconds);
    } else if (settings_.requests > 0) {
      phase = absl::StrFormat("%.1f s, %d/%d calls", (now - measure_start_ns_) / 1e9,
                              interval.measured_calls, settings_.requests);
    } else {
      phase =
          absl::StrFormat("%.1f/%g s", (now - measure_start_ns_) / 1e9, settings_.duration_seconds);
    }
    int64_t in_flight = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_flight = in_flight_;
    }
    absl::FPrintF(stderr,
                  "convserve_load: %s, %s: %.0f calls/s, p50 %.3f ms, p99 %.3f ms, %d errors, "
                  "%d in flight; measured so far %d calls, %d errors\n",
                  level_.open_loop ? absl::StrFormat("rps %g", level_.rps)
                                   : absl::StrFormat("concurrency %d", level_.concurrency),
                  phase, interval.calls / seconds, interval.p50_ns / 1e6, interval.p99_ns / 1e6,
                  interval.errors, in_flight, interval.measured_calls, interval.measured_errors);
  }

  Connections& connections_;
  const std::vector<Workload>& workloads_;
  const CallMix& mix_;
  const CallSettings& calls_;
  const RunSettings& settings_;
  const Level level_;
  Recorder recorder_;

  int64_t start_ns_ = 0, measure_start_ns_ = 0, end_ns_ = 0;
  std::vector<std::mt19937_64> rngs_;  // closed loop: one per user
  std::mt19937_64 sender_rng_;         // open loop
  std::atomic<int64_t> measured_admitted_{0};
  std::atomic<int64_t> last_completion_ns_{0};
  uint64_t scheduled_measured_ = 0;  // sender thread only

  std::mutex mutex_;
  std::condition_variable idle_;
  int64_t in_flight_ = 0;
  bool finished_ = false;
};

// "AMD EPYC, CPU family 26, 2 CPUs" from /proc/cpuinfo (the family tells Zen 4 from Zen 5).
std::string MachineName() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model, family;
  while (std::getline(cpuinfo, line) && (model.empty() || family.empty())) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    if (absl::StartsWith(line, "model name") && model.empty()) model = value;
    if (absl::StartsWith(line, "cpu family") && family.empty()) family = value;
  }
  std::string machine = model.empty() ? "unknown CPU" : model;
  if (!family.empty()) absl::StrAppend(&machine, ", CPU family ", family);
  absl::StrAppend(&machine, ", ", std::thread::hardware_concurrency(), " CPUs");
  return machine;
}

std::string UtcNow() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

// Everything the flags say, checked; INVALID_ARGUMENT (exit 2) naming the flag otherwise.
struct Plan {
  std::string target;       // as given
  std::string grpc_target;  // as gRPC gets it
  std::string lb_policy;
  int connections = 1;
  TlsOptions tls;
  CallSettings calls;
  RunSettings run;
  std::vector<Level> levels;
  CallMix mix = CallMix::Single("health");
  Format format = Format::kText;
  std::string output;
};

absl::StatusOr<Plan> MakePlan() {
  Plan plan;
  plan.target = absl::GetFlag(FLAGS_target);
  plan.tls = TlsOptions{absl::GetFlag(FLAGS_tls_ca_file), absl::GetFlag(FLAGS_tls_cert_file),
                        absl::GetFlag(FLAGS_tls_key_file), absl::GetFlag(FLAGS_tls_server_name)};
  std::string first_name;
  absl::StatusOr<std::string> grpc_target = GrpcTarget(plan.target, &first_name);
  if (!grpc_target.ok()) return grpc_target.status();
  plan.grpc_target = *grpc_target;
  // The certificate names the host, not the address it was resolved to.
  if (plan.tls.on() && plan.tls.server_name.empty() && !first_name.empty()) {
    plan.tls.server_name = first_name;
  }
  plan.lb_policy = absl::GetFlag(FLAGS_lb_policy);
  if (plan.lb_policy != "round_robin" && plan.lb_policy != "pick_first") {
    return FlagError("lb_policy", "round_robin or pick_first", plan.lb_policy);
  }
  absl::StatusOr<int64_t> connections =
      ParseInteger("connections", absl::GetFlag(FLAGS_connections), 1, 1024);
  if (!connections.ok()) return connections.status();
  plan.connections = static_cast<int>(*connections);

  const std::string token_file = absl::GetFlag(FLAGS_token_file);
  if (!token_file.empty()) {
    absl::StatusOr<std::string> text = ReadFile("token_file", token_file);
    if (!text.ok()) return text.status();
    const std::string first_line(absl::StripAsciiWhitespace(text->substr(0, text->find('\n'))));
    if (first_line.empty()) {
      return FlagError("token_file", "a token on the first line",
                       absl::StrCat("an empty line in ", token_file));
    }
    plan.calls.token = first_line;
  }
  absl::StatusOr<int64_t> deadline =
      ParseInteger("deadline_ms", absl::GetFlag(FLAGS_deadline_ms), 1, 86400000);
  if (!deadline.ok()) return deadline.status();
  plan.calls.deadline = std::chrono::milliseconds(*deadline);

  // What to call.
  const std::string call = absl::GetFlag(FLAGS_call), mix = absl::GetFlag(FLAGS_mix);
  if (!call.empty() && !mix.empty()) return FlagError("mix", "--call or --mix, not both", mix);
  if (!mix.empty()) {
    absl::StatusOr<CallMix> parsed = CallMix::Parse("mix", mix, kCallNames);
    if (!parsed.ok()) return parsed.status();
    plan.mix = *std::move(parsed);
  } else if (!call.empty()) {
    if (std::find(kCallNames.begin(), kCallNames.end(), call) == kCallNames.end()) {
      return FlagError("call", "health, conv or run_model", call);
    }
    plan.mix = CallMix::Single(call);
  }
  bool conv = false, run_model = false;
  for (const CallMix::Entry& entry : plan.mix.entries()) {
    conv = conv || entry.name == "conv";
    run_model = run_model || entry.name == "run_model";
  }
  if (!conv && !absl::GetFlag(FLAGS_layer).empty()) {
    return FlagError("layer", "conv in --call or --mix for a layer", absl::GetFlag(FLAGS_layer));
  }
  if (!run_model && !absl::GetFlag(FLAGS_model).empty()) {
    return FlagError("model", "run_model in --call or --mix for a model",
                     absl::GetFlag(FLAGS_model));
  }

  // How much load.
  const std::string concurrency = absl::GetFlag(FLAGS_concurrency), rps = absl::GetFlag(FLAGS_rps);
  if (!concurrency.empty() && !rps.empty()) {
    return FlagError("rps", "--concurrency (closed loop) or --rps (open loop), not both", rps);
  }
  if (!rps.empty()) {
    for (absl::string_view part : absl::StrSplit(rps, ',')) {
      absl::StatusOr<double> rate =
          ParseNumber("rps", std::string(absl::StripAsciiWhitespace(part)), 0.001, 1e6,
                      "calls per second (a comma list)");
      if (!rate.ok())
        return FlagError("rps", "calls per second in [0.001, 1e6], or a comma list of them", rps);
      plan.levels.push_back(Level{true, 0, *rate});
    }
    const std::string arrival = absl::GetFlag(FLAGS_arrival);
    if (!arrival.empty()) {
      absl::StatusOr<Arrival> parsed = ParseArrival(arrival);
      if (!parsed.ok()) return parsed.status();
      plan.run.arrival = *parsed;
    }
  } else {
    if (!absl::GetFlag(FLAGS_arrival).empty()) {
      return FlagError("arrival", "--rps with it (arrivals are an open-loop setting)",
                       absl::GetFlag(FLAGS_arrival));
    }
    for (absl::string_view part : absl::StrSplit(concurrency.empty() ? "1" : concurrency, ',')) {
      int64_t value = 0;
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &value) || value < 1 ||
          value > 10000) {
        return FlagError("concurrency", "integers in [1, 10000], or a comma list of them",
                         concurrency);
      }
      plan.levels.push_back(Level{false, static_cast<int>(value), 0});
    }
  }
  const std::string duration = absl::GetFlag(FLAGS_duration),
                    requests = absl::GetFlag(FLAGS_requests);
  if (!duration.empty() && !requests.empty()) {
    return FlagError("requests", "--duration or --requests, not both", requests);
  }
  if (!requests.empty()) {
    absl::StatusOr<int64_t> count = ParseInteger("requests", requests, 1, int64_t{1} << 40);
    if (!count.ok()) return count.status();
    plan.run.requests = *count;
  } else if (!duration.empty()) {
    absl::StatusOr<double> seconds =
        ParseNumber("duration", duration, 0.001, 30 * 86400, "seconds");
    if (!seconds.ok()) return seconds.status();
    plan.run.duration_seconds = *seconds;
  }
  absl::StatusOr<double> warmup =
      ParseNumber("warmup", absl::GetFlag(FLAGS_warmup), 0, 86400, "seconds");
  if (!warmup.ok()) return warmup.status();
  plan.run.warmup_seconds = *warmup;
  absl::StatusOr<int64_t> max_in_flight =
      ParseInteger("max_in_flight", absl::GetFlag(FLAGS_max_in_flight), 1, 1000000);
  if (!max_in_flight.ok()) return max_in_flight.status();
  plan.run.max_in_flight = *max_in_flight;
  absl::StatusOr<int64_t> seed = ParseInteger("seed", absl::GetFlag(FLAGS_seed), 0, INT64_MAX);
  if (!seed.ok()) return seed.status();
  plan.run.seed = static_cast<uint64_t>(*seed);
  plan.run.progress = absl::GetFlag(FLAGS_progress);

  absl::StatusOr<Format> format = ParseFormat(absl::GetFlag(FLAGS_format));
  if (!format.ok()) return format.status();
  plan.format = *format;
  plan.output = absl::GetFlag(FLAGS_output);
  return plan;
}

std::vector<std::pair<std::string, std::string>> Settings(const Plan& plan) {
  std::vector<std::pair<std::string, std::string>> settings;
  std::string target = plan.target;
  if (plan.grpc_target != plan.target) absl::StrAppend(&target, " (", plan.grpc_target, ")");
  settings.emplace_back("target", target);
  std::string security = "plaintext";
  if (plan.tls.on()) {
    security = "TLS";
    if (!plan.tls.ca_file.empty()) absl::StrAppend(&security, ", CA ", plan.tls.ca_file);
    if (!plan.tls.cert_file.empty())
      absl::StrAppend(&security, ", client certificate ", plan.tls.cert_file);
    if (!plan.tls.server_name.empty())
      absl::StrAppend(&security, ", server name ", plan.tls.server_name);
  }
  if (!plan.calls.token.empty()) absl::StrAppend(&security, ", bearer token");
  settings.emplace_back("security", security);
  settings.emplace_back("connections",
                        absl::StrCat(plan.connections, ", lb_policy ", plan.lb_policy));
  std::string load;
  if (plan.levels.front().open_loop) {
    std::vector<std::string> rates;
    for (const Level& level : plan.levels) rates.push_back(absl::StrFormat("%g", level.rps));
    load = absl::StrCat("open loop, ", ArrivalName(plan.run.arrival), " arrivals at ",
                        absl::StrJoin(rates, ", "), " calls/s; at most ", plan.run.max_in_flight,
                        " in flight");
  } else {
    std::vector<std::string> levels;
    for (const Level& level : plan.levels) levels.push_back(absl::StrCat(level.concurrency));
    load = absl::StrCat("closed loop, concurrency ", absl::StrJoin(levels, ", "));
  }
  settings.emplace_back("load", load);
  settings.emplace_back(
      "measuring", plan.run.requests > 0
                       ? absl::StrFormat("%d calls per level after %g s warm-up", plan.run.requests,
                                         plan.run.warmup_seconds)
                       : absl::StrFormat("%g s per level after %g s warm-up",
                                         plan.run.duration_seconds, plan.run.warmup_seconds));
  std::vector<std::string> mix;
  for (const CallMix::Entry& entry : plan.mix.entries()) {
    mix.push_back(absl::StrCat(entry.name, ":", entry.weight));
  }
  settings.emplace_back("mix", absl::StrJoin(mix, ","));
  settings.emplace_back("deadline", absl::StrCat(plan.calls.deadline.count(), " ms a call"));
  settings.emplace_back("seed", absl::StrCat(plan.run.seed));
  return settings;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Closed- and open-loop load on a ConvServe server, with a latency report.\n"
      "Usage: convserve_load [--target=host:port] [--call=health|conv|run_model | --mix=...] "
      "[--concurrency=N,... | --rps=R,...] [--duration=S | --requests=N] [--format=...]");
  if (absl::Status argv_ok = CheckArgv(argc, argv); !argv_ok.ok()) {
    std::fprintf(stderr, "convserve_load: %s\n", std::string(argv_ok.message()).c_str());
    return 2;
  }
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "convserve_load: expected flags only, got the argument '%s'\n",
                 positional[1]);
    return 2;
  }
  absl::StatusOr<Plan> plan = MakePlan();
  std::mt19937 data_rng(1);
  std::vector<Workload> workloads;
  if (plan.ok()) {
    data_rng.seed(static_cast<uint32_t>(plan->run.seed));
    for (const CallMix::Entry& entry : plan->mix.entries()) {
      absl::StatusOr<Workload> workload = entry.name == "health" ? HealthWorkload()
                                          : entry.name == "conv" ? ConvWorkload(&data_rng)
                                                                 : RunModelWorkload(&data_rng);
      if (!workload.ok()) {
        plan = workload.status();
        break;
      }
      workloads.push_back(*std::move(workload));
    }
  }
  std::unique_ptr<Connections> connections;
  if (plan.ok()) {
    absl::StatusOr<std::unique_ptr<Connections>> opened =
        Connections::Open(plan->grpc_target, plan->lb_policy, plan->tls, plan->connections);
    if (opened.ok()) {
      connections = *std::move(opened);
    } else {
      plan = opened.status();
    }
  }
  std::ofstream file;
  if (plan.ok() && !plan->output.empty()) {
    file.open(plan->output, std::ios::binary | std::ios::trunc);
    if (!file) {
      plan = absl::InvalidArgumentError(
          absl::StrCat("--output: expected a file that can be written, got '", plan->output, "' (",
                       std::strerror(errno), ")"));
    }
  }
  if (!plan.ok()) {
    std::fprintf(stderr, "convserve_load: %s\n", std::string(plan.status().message()).c_str());
    return 2;
  }

  if (absl::Status probe = Probe(*connections, workloads, plan->calls); !probe.ok()) {
    std::fprintf(stderr, "convserve_load: %s (target %s)\n", std::string(probe.message()).c_str(),
                 plan->grpc_target.c_str());
    return 1;
  }

  Report report;
  report.started_utc = UtcNow();
  report.machine = MachineName();
  report.settings = Settings(*plan);
  for (const Workload& workload : workloads) {
    report.calls.emplace_back(workload.name, workload.description);
  }
  std::signal(SIGINT, OnInterrupt);
  std::signal(SIGTERM, OnInterrupt);
  for (const Level& level : plan->levels) {
    LoadRun run(*connections, workloads, plan->mix, plan->calls, plan->run, level);
    report.runs.push_back(run.Run());
    if (interrupted_ns.load() != 0) {
      report.settings.emplace_back(
          "interrupted",
          absl::StrFormat("by a signal during %s%s", report.runs.back().label,
                          &level == &plan->levels.back() ? "" : "; later levels not run"));
      std::fprintf(stderr, "convserve_load: interrupted; writing the report so far\n");
      break;
    }
  }

  const std::string text = FormatReport(report, plan->format);
  if (plan->output.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  } else {
    file << text;
    file.close();
    if (!file) {
      std::fprintf(stderr, "convserve_load: --output: writing '%s' failed\n", plan->output.c_str());
      return 1;
    }
  }
  if (interrupted_ns.load() != 0) return 130;
  const uint64_t errors = report.error_count();
  if (errors > 0)
    std::fprintf(stderr, "convserve_load: %llu calls failed\n",
                 static_cast<unsigned long long>(errors));
  return errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace convserve::load

int main(int argc, char** argv) { return convserve::load::Main(argc, argv); }
