// loadgen: closed-loop load on a running ConvServe server, phase by phase,
// with the standard health check measured in the same run as the baseline of
// "how fast can any RPC be here".
//
//   convserve_loadgen --target=127.0.0.1:50051 --concurrency=1,8,32 --seconds=5
//
// Phases, each at every concurrency level:
//   health      grpc.health.v1.Health/Check: the bare RPC cost.
//   conv_small  Conv of a 1x8x16x16 input by 8 3x3 filters, weights sent with
//               the call: RPC plus conversion overhead around a tiny kernel.
//   model_res2  RunModel of ResNet-50's res2 3x3 layer (64 -> 64 channels on
//               1x64x56x56, weights loaded once server-side): a realistic
//               activation (0.8 MB each way) through the whole path.
//   model_res2_f16  The same with a float16 input and output (0.4 MB each
//               way; the server converts and computes in float32).
// For each: calls/s, latency p50/p90/p99, the server's own compute time
// (compute_time_ns, p50), payload MB/s and calls/s relative to health at the
// same concurrency. Every phase is bounded in time and in calls; any failed
// call is counted and printed, and makes the exit code 1.
//
// The load generator shares the machine with the server, so it keeps its own
// cost per call small: each caller serializes its request once and sends the
// same bytes every call (gRPC shares them, no copy), and parses every
// response into one reused message, checking the output's size.
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/client_unary_call.h>
#include <grpcpp/impl/rpc_method.h>
#include <grpcpp/support/byte_buffer.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "client/cpp/convserve_client.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "server address (host:port)");
ABSL_FLAG(std::string, concurrency, "1,8,32", "comma-separated numbers of calls in flight");
ABSL_FLAG(double, seconds, 5.0, "duration of each phase at each concurrency");
ABSL_FLAG(int64_t, max_calls, 2000000, "upper bound of calls per phase and concurrency");
ABSL_FLAG(std::string, phases, "health,conv_small,model_res2", "phases to run, in order");

namespace {

using convserve::client::Client;
using convserve::client::FloatArray;
using Clock = std::chrono::steady_clock;

struct PhaseResult {
  int64_t calls = 0;
  int64_t errors = 0;
  double seconds = 0;
  std::vector<double> latencies_us;
  std::vector<double> compute_us;  // the server's compute_time_ns, when reported
  int64_t payload_bytes = 0;       // request + response tensor bytes over all calls
  std::string first_error;
};

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

// What one successful call reports.
struct CallResult {
  int64_t payload_bytes = 0;  // tensor bytes sent and received
  int64_t compute_ns = -1;    // the server's compute_time_ns; -1 if none
};
// One call of a phase.
using Call = std::function<absl::StatusOr<CallResult>()>;
// Prepares a caller's calls on its own channel (requests built once here).
using MakeCall = std::function<Call(const std::shared_ptr<grpc::Channel>&, Client&)>;

std::shared_ptr<grpc::Channel> Connect(const std::string& target) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(256 << 20);
  arguments.SetMaxSendMessageSize(256 << 20);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments);
}

// A unary call of `method` that sends `request`, serialized once, every time
// and parses each response into one reused `Response`, whose output tensor
// must hold `output_bytes` bytes.
template <typename Response>
Call SerializedCall(const std::shared_ptr<grpc::Channel>& channel, const char* method,
                    const google::protobuf::Message& request, int64_t payload_bytes,
                    int64_t output_bytes) {
  struct State {
    grpc::internal::RpcMethod method;
    std::shared_ptr<grpc::Channel> channel;
    grpc::ByteBuffer request;
    Response response;
  };
  auto state = std::make_shared<State>(
      State{grpc::internal::RpcMethod(method, grpc::internal::RpcMethod::NORMAL_RPC, channel),
            channel, grpc::ByteBuffer(), Response()});
  bool own_buffer = false;
  if (!grpc::SerializationTraits<google::protobuf::Message>::Serialize(request, &state->request,
                                                                       &own_buffer)
           .ok()) {
    return [] { return absl::InternalError("request serialization failed"); };
  }
  return [state, payload_bytes, output_bytes]() -> absl::StatusOr<CallResult> {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::ByteBuffer reply;
    grpc::Status status = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
        state->channel.get(), state->method, &context, state->request, &reply);
    if (!status.ok()) return convserve::client::FromGrpcStatus(status);
    status = grpc::SerializationTraits<Response>::Deserialize(&reply, &state->response);
    if (!status.ok()) return absl::InternalError("response: " + status.error_message());
    if (static_cast<int64_t>(state->response.output().data().size()) != output_bytes) {
      return absl::InternalError(absl::StrCat("response: expected ", output_bytes,
                                              " output bytes, got ",
                                              state->response.output().data().size()));
    }
    return CallResult{payload_bytes, state->response.compute_time_ns()};
  };
}

PhaseResult RunPhase(const std::string& target, int concurrency, const MakeCall& make_call) {
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int64_t max_calls = absl::GetFlag(FLAGS_max_calls);
  std::atomic<int64_t> issued{0};
  std::vector<PhaseResult> per_thread(static_cast<size_t>(concurrency));
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      // A channel per caller, as separate client processes would have.
      std::shared_ptr<grpc::Channel> channel = Connect(target);
      Client client(channel);
      client.set_timeout(std::chrono::seconds(30));
      const Call call = make_call(channel, client);
      PhaseResult& result = per_thread[static_cast<size_t>(t)];
      while (Clock::now() < deadline && issued.fetch_add(1) < max_calls) {
        const Clock::time_point begin = Clock::now();
        absl::StatusOr<CallResult> done = call();
        const double us = std::chrono::duration<double, std::micro>(Clock::now() - begin).count();
        if (done.ok()) {
          ++result.calls;
          result.payload_bytes += done->payload_bytes;
          result.latencies_us.push_back(us);
          if (done->compute_ns >= 0) result.compute_us.push_back(done->compute_ns / 1e3);
        } else {
          if (result.errors++ == 0) result.first_error = done.status().ToString();
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  PhaseResult total;
  total.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (PhaseResult& part : per_thread) {
    total.calls += part.calls;
    total.errors += part.errors;
    total.payload_bytes += part.payload_bytes;
    total.latencies_us.insert(total.latencies_us.end(), part.latencies_us.begin(),
                              part.latencies_us.end());
    total.compute_us.insert(total.compute_us.end(), part.compute_us.begin(), part.compute_us.end());
    if (total.first_error.empty()) total.first_error = part.first_error;
  }
  std::sort(total.latencies_us.begin(), total.latencies_us.end());
  std::sort(total.compute_us.begin(), total.compute_us.end());
  return total;
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t index = std::min(sorted.size() - 1, static_cast<size_t>(p * sorted.size()));
  return sorted[index];
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // As in the server (server/main.cc): reuse large blocks instead of
  // page-faulting fresh memory for every response.
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  const std::string target = absl::GetFlag(FLAGS_target);
  std::vector<int> levels;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_concurrency), ',')) {
    int level = 0;
    if (!absl::SimpleAtoi(part, &level) || level < 1 || level > 1024) {
      std::fprintf(stderr, "--concurrency: expected numbers in [1, 1024], got '%s'\n",
                   std::string(part).c_str());
      return 2;
    }
    levels.push_back(level);
  }

  std::unique_ptr<Client> setup = Client::Connect(target);
  absl::StatusOr<std::string> health = setup->Health();
  if (!health.ok()) {
    std::fprintf(stderr, "server at %s does not answer: %s\n", target.c_str(),
                 health.status().ToString().c_str());
    return 1;
  }

  std::mt19937 rng(42);
  // conv_small: weights travel with every call.
  convserve::client::LayerArgs small_args;
  small_args.input_shape = {1, 8, 16, 16};
  small_args.weight_shape = {8, 8, 3, 3};
  small_args.padding = "1";
  small_args.bias = true;
  const absl::StatusOr<convserve::v1::ConvLayer> small_layer = MakeLayer(small_args);
  const FloatArray small_x = RandomArray(small_args.input_shape, &rng);
  const FloatArray small_w = RandomArray(small_args.weight_shape, &rng);
  const FloatArray small_b = RandomArray({8}, &rng);

  // model_res2: weights loaded once.
  convserve::client::LayerArgs res2_args;
  res2_args.input_shape = {1, 64, 56, 56};
  res2_args.weight_shape = {64, 64, 3, 3};
  res2_args.padding = "1";
  res2_args.bias = true;
  res2_args.activation = "relu";
  const absl::StatusOr<convserve::v1::ConvLayer> res2_layer = MakeLayer(res2_args);
  if (!small_layer.ok() || !res2_layer.ok()) {
    std::fprintf(stderr, "internal: layer description refused\n");
    return 1;
  }
  const FloatArray res2_x = RandomArray(res2_args.input_shape, &rng);
  const std::string model = "loadgen.res2";
  convserve::v1::LoadModelRequest load;
  load.set_name(model);
  load.set_replace(true);
  convserve::v1::ModelLayer* model_layer = load.add_layers();
  *model_layer->mutable_layer() = *res2_layer;
  convserve::client::ToProto(RandomArray(res2_args.weight_shape, &rng),
                             model_layer->mutable_weight());
  convserve::client::ToProto(RandomArray({64}, &rng), model_layer->mutable_bias());

  const int64_t small_output_bytes = 4 * static_cast<int64_t>(small_x.values.size());
  const int64_t small_bytes =
      4 * static_cast<int64_t>(small_x.values.size() + small_w.values.size() + 8) +
      small_output_bytes;
  const int64_t res2_output_bytes = 4 * static_cast<int64_t>(res2_x.values.size());
  const int64_t res2_bytes = 4 * static_cast<int64_t>(res2_x.values.size()) + res2_output_bytes;
  convserve::v1::ConvRequest small_request;
  *small_request.mutable_layer() = *small_layer;
  convserve::client::ToProto(small_x, small_request.mutable_input());
  convserve::client::ToProto(small_w, small_request.mutable_weight());
  convserve::client::ToProto(small_b, small_request.mutable_bias());
  convserve::v1::RunModelRequest res2_request;
  res2_request.set_name(model);
  convserve::client::ToProto(res2_x, res2_request.mutable_input());
  // The same call with float16 on the wire both ways (half the bytes).
  convserve::v1::RunModelRequest res2_f16_request;
  res2_f16_request.set_name(model);
  convserve::client::ToProto(res2_x, res2_f16_request.mutable_input(),
                             convserve::v1::ELEMENT_TYPE_FLOAT16);

  const std::map<std::string, MakeCall> calls = {
      {"health",
       [](const std::shared_ptr<grpc::Channel>&, Client& client) -> Call {
         return [&client]() -> absl::StatusOr<CallResult> {
           absl::StatusOr<std::string> status = client.Health();
           if (!status.ok()) return status.status();
           return CallResult{};
         };
       }},
      {"conv_small",
       [&](const std::shared_ptr<grpc::Channel>& channel, Client&) -> Call {
         return SerializedCall<convserve::v1::ConvResponse>(
             channel, "/convserve.v1.ConvService/Conv", small_request, small_bytes,
             small_output_bytes);
       }},
      {"model_res2",
       [&](const std::shared_ptr<grpc::Channel>& channel, Client&) -> Call {
         return SerializedCall<convserve::v1::RunModelResponse>(
             channel, "/convserve.v1.ConvService/RunModel", res2_request, res2_bytes,
             res2_output_bytes);
       }},
      {"model_res2_f16",
       [&](const std::shared_ptr<grpc::Channel>& channel, Client&) -> Call {
         return SerializedCall<convserve::v1::RunModelResponse>(
             channel, "/convserve.v1.ConvService/RunModel", res2_f16_request, res2_bytes / 2,
             res2_output_bytes / 2);
       }},
  };

  std::vector<std::string> phases;
  for (absl::string_view phase : absl::StrSplit(absl::GetFlag(FLAGS_phases), ',')) {
    if (calls.count(std::string(phase)) == 0) {
      std::fprintf(stderr,
                   "--phases: unknown phase '%s' (expected health, conv_small, model_res2, "
                   "model_res2_f16)\n",
                   std::string(phase).c_str());
      return 2;
    }
    phases.emplace_back(phase);
  }
  const bool uses_res2 = std::any_of(phases.begin(), phases.end(), [](const std::string& phase) {
    return absl::StartsWith(phase, "model_res2");
  });
  if (uses_res2) {
    absl::StatusOr<convserve::v1::ModelInfo> info = setup->LoadModel(load);
    if (!info.ok()) {
      std::fprintf(stderr, "LoadModel failed: %s\n", info.status().ToString().c_str());
      return 1;
    }
  }

  std::printf("target %s, %.1f s per phase and concurrency\n\n", target.c_str(),
              absl::GetFlag(FLAGS_seconds));
  std::printf("%-14s %5s %10s %9s %9s %9s %11s %9s %10s %7s\n", "phase", "conc", "calls/s",
              "p50 us", "p90 us", "p99 us", "compute us", "MB/s", "vs health", "errors");
  std::map<int, double> health_rate;
  int64_t total_errors = 0;
  for (const std::string& phase : phases) {
    for (int level : levels) {
      const PhaseResult result = RunPhase(target, level, calls.at(phase));
      const double rate = result.calls / result.seconds;
      if (phase == "health") health_rate[level] = rate;
      const double relative = health_rate.count(level) ? rate / health_rate[level] : 0;
      std::printf("%-14s %5d %10.0f %9.0f %9.0f %9.0f %11s %9.1f %10.3f %7lld\n", phase.c_str(),
                  level, rate, Percentile(result.latencies_us, 0.5),
                  Percentile(result.latencies_us, 0.9), Percentile(result.latencies_us, 0.99),
                  result.compute_us.empty()
                      ? "-"
                      : absl::StrFormat("%.0f", Percentile(result.compute_us, 0.5)).c_str(),
                  result.payload_bytes / result.seconds / 1e6, relative,
                  static_cast<long long>(result.errors));
      if (result.errors > 0) std::printf("  first error: %s\n", result.first_error.c_str());
      total_errors += result.errors;
    }
  }
  if (uses_res2) {
    (void)setup->UnloadModel(model);
  }
  return total_errors == 0 ? 0 : 1;
}
