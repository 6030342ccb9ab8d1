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
// For each: calls/s, latency p50/p90/p99, payload MB/s and calls/s relative
// to health at the same concurrency. Every phase is bounded in time and in
// calls; any failed call is counted and printed, and makes the exit code 1.
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
#include "absl/strings/numbers.h"
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
  int64_t payload_bytes = 0;  // request + response tensor bytes over all calls
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

// One call of a phase; returns the payload bytes moved, or the error.
using Call = std::function<absl::StatusOr<int64_t>(Client&)>;

PhaseResult RunPhase(const std::string& target, int concurrency, const Call& call) {
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
      std::unique_ptr<Client> client = Client::Connect(target);
      client->set_timeout(std::chrono::seconds(30));
      PhaseResult& result = per_thread[static_cast<size_t>(t)];
      while (Clock::now() < deadline && issued.fetch_add(1) < max_calls) {
        const Clock::time_point begin = Clock::now();
        absl::StatusOr<int64_t> bytes = call(*client);
        const double us = std::chrono::duration<double, std::micro>(Clock::now() - begin).count();
        if (bytes.ok()) {
          ++result.calls;
          result.payload_bytes += *bytes;
          result.latencies_us.push_back(us);
        } else {
          if (result.errors++ == 0) result.first_error = bytes.status().ToString();
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
    if (total.first_error.empty()) total.first_error = part.first_error;
  }
  std::sort(total.latencies_us.begin(), total.latencies_us.end());
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

  const int64_t small_bytes =
      4 * static_cast<int64_t>(small_x.values.size() * 2 + small_w.values.size() + 8);
  const int64_t res2_bytes = 4 * static_cast<int64_t>(res2_x.values.size() * 2);
  const std::map<std::string, Call> calls = {
      {"health",
       [](Client& client) -> absl::StatusOr<int64_t> {
         absl::StatusOr<std::string> status = client.Health();
         if (!status.ok()) return status.status();
         return int64_t{0};
       }},
      {"conv_small",
       [&](Client& client) -> absl::StatusOr<int64_t> {
         absl::StatusOr<convserve::client::ConvResult> y =
             client.Conv(*small_layer, small_x, small_w, &small_b);
         if (!y.ok()) return y.status();
         return small_bytes;
       }},
      {"model_res2",
       [&](Client& client) -> absl::StatusOr<int64_t> {
         absl::StatusOr<convserve::client::ConvResult> y = client.RunModel(model, res2_x);
         if (!y.ok()) return y.status();
         return res2_bytes;
       }},
  };

  std::vector<std::string> phases;
  for (absl::string_view phase : absl::StrSplit(absl::GetFlag(FLAGS_phases), ',')) {
    if (calls.count(std::string(phase)) == 0) {
      std::fprintf(stderr,
                   "--phases: unknown phase '%s' (expected health, conv_small, model_res2)\n",
                   std::string(phase).c_str());
      return 2;
    }
    phases.emplace_back(phase);
  }
  if (std::find(phases.begin(), phases.end(), "model_res2") != phases.end()) {
    absl::StatusOr<convserve::v1::ModelInfo> info = setup->LoadModel(load);
    if (!info.ok()) {
      std::fprintf(stderr, "LoadModel failed: %s\n", info.status().ToString().c_str());
      return 1;
    }
  }

  std::printf("target %s, %.1f s per phase and concurrency\n\n", target.c_str(),
              absl::GetFlag(FLAGS_seconds));
  std::printf("%-11s %5s %10s %9s %9s %9s %9s %10s %7s\n", "phase", "conc", "calls/s", "p50 us",
              "p90 us", "p99 us", "MB/s", "vs health", "errors");
  std::map<int, double> health_rate;
  int64_t total_errors = 0;
  for (const std::string& phase : phases) {
    for (int level : levels) {
      const PhaseResult result = RunPhase(target, level, calls.at(phase));
      const double rate = result.calls / result.seconds;
      if (phase == "health") health_rate[level] = rate;
      const double relative = health_rate.count(level) ? rate / health_rate[level] : 0;
      std::printf("%-11s %5d %10.0f %9.0f %9.0f %9.0f %9.1f %10.3f %7lld\n", phase.c_str(), level,
                  rate, Percentile(result.latencies_us, 0.5), Percentile(result.latencies_us, 0.9),
                  Percentile(result.latencies_us, 0.99),
                  result.payload_bytes / result.seconds / 1e6, relative,
                  static_cast<long long>(result.errors));
      if (result.errors > 0) std::printf("  first error: %s\n", result.first_error.c_str());
      total_errors += result.errors;
    }
  }
  if (std::find(phases.begin(), phases.end(), "model_res2") != phases.end()) {
    (void)setup->UnloadModel(model);
  }
  return total_errors == 0 ? 0 : 1;
}
