// main.cc: the convserve_server binary: its flags, its gRPC server and its lifecycle.
//
// Serves convserve.v1.ConvService, grpc.health.v1.Health and server reflection,
// over TLS or mutual TLS if --tls_cert_file/--tls_key_file(/--tls_client_ca_file)
// are set; then --health_listen may add a plaintext port for health probes.
//
// Configuration: flags, or CONVSERVE_<FLAG> environment variables (an
// explicit flag wins); the start-up line says where each set value came from.
//
// Lifecycle: SIGINT/SIGTERM -> new calls are refused with UNAVAILABLE and
// health turns NOT_SERVING -> after --drain_grace_ms, and once the calls in
// flight have finished (at most --shutdown_timeout_s), the server shuts down.
// A second SIGINT/SIGTERM during the drain exits at once (code 128 + signal);
// SIGHUP reads --model_repository again (logged only without one); SIGPIPE
// is ignored (server/process.h). A listener that stopped accepting drains the server, exit code 3
// (server/listener_watch.h).
// Every flag is checked before serving (server/server_flags.h; the
// connection flags are in server/transport_options.h): exit code 2.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/conv.h"
#include "server/access_log.h"
#include "server/auth.h"
#include "server/build_info.h"
#include "server/call_observers.h"
#include "server/compute_pool.h"
#include "server/conv_service.h"
#include "server/flag_environment.h"
#include "server/listener_watch.h"
#include "server/logging.h"
#include "server/metrics.h"
#include "server/metrics_http.h"
#include "server/process.h"
#include "server/server_flags.h"
#include "server/server_metrics.h"
#include "server/tls.h"
#include "server/transport_options.h"
#include "server/usable_cpus.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051",
          "Address to listen on, host:port. Port 0 picks a free port (see --port_file).");
ABSL_FLAG(int, compute_threads, 0,
          "Threads that run convolutions, apart from gRPC's; 0 = the CPUs this process may use "
          "(its affinity mask and cgroup v2 CPU quota).");
ABSL_FLAG(int64_t, max_message_bytes, 256 << 20,
          "Largest request and response message, in bytes (at most 2^31 - 1).");
ABSL_FLAG(int64_t, max_elements, int64_t{1} << 28,
          "Largest tensor (input, weight or output) one request may involve, in elements.");
ABSL_FLAG(int64_t, max_macs, int64_t{1} << 40,
          "Most multiply-accumulates one request may ask for.");
ABSL_FLAG(int64_t, memory_budget_bytes, int64_t{2} << 30,
          "Working memory all calls in flight may reserve together; calls beyond it get "
          "RESOURCE_EXHAUSTED at once.");
ABSL_FLAG(int64_t, max_model_bytes, int64_t{1} << 30,
          "Weight bytes all loaded models may hold together.");
ABSL_FLAG(int64_t, max_models, 1024, "Models that may be loaded at once.");
ABSL_FLAG(int64_t, max_layers_per_model, 1024, "Most layers one model may have.");
ABSL_FLAG(std::string, model_repository, "",
          "Directory of models to serve, in Triton's layout: DIR/<model name>/<version>/"
          "model.onnx, the highest version of each served. Loaded before the server reports "
          "SERVING; read again on SIGHUP and every --model_repository_poll_s seconds, a changed "
          "model swapped in atomically (a model that fails to load leaves the old one serving).");
ABSL_FLAG(int64_t, model_repository_poll_s, 0,
          "Seconds between rescans of --model_repository (0: only at start and on SIGHUP).");
ABSL_FLAG(int64_t, max_queued_calls, 256,
          "Calls that may wait for the compute threads at once, in each of the large and the "
          "small-call queue; more get RESOURCE_EXHAUSTED at once (their memory is bounded by "
          "--memory_budget_bytes).");
ABSL_FLAG(int64_t, small_call_macs, convserve::kDefaultSmallCallMacs,
          "Conv calls of fewer multiply-accumulates run single-threaded on a small-call thread "
          "of their own instead of queueing for every compute thread; 0 turns this off.");
ABSL_FLAG(std::string, auth_token_file, "",
          "If set, a file whose first line is the token every ConvService call must present "
          "as metadata 'authorization: Bearer <token>' (UNAUTHENTICATED otherwise). Health "
          "and reflection stay open.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate (chain) of the server; with --tls_key_file turns TLS on for --listen.");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key (unencrypted) of --tls_cert_file.");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA certificate(s); with TLS on, every client must present a certificate this CA "
          "signed (mutual TLS).");
ABSL_FLAG(std::string, health_listen, "",
          "With TLS on: a second, plaintext address (host:port; port 0 picks a free one, see "
          "--health_port_file) serving grpc.health.v1 only, for probes that cannot present a "
          "client certificate. ConvService calls there get UNAUTHENTICATED.");
ABSL_FLAG(std::string, health_port_file, "",
          "If set, the bound --health_listen port is written to this file once the server "
          "serves (removed if there is no --health_listen).");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error, critical or off.");
ABSL_FLAG(std::string, log_format, "text",
          "text (spdlog's lines) or json (one JSON object per line); gRPC's own lines too.");
ABSL_FLAG(bool, access_log, true,
          "One INFO line per call: method, model, request ID, peer, status code, bytes in and "
          "out, queue, compute and total seconds.");
ABSL_FLAG(int, drain_grace_ms, 500,
          "After SIGTERM: how long health reports NOT_SERVING (and new calls get UNAVAILABLE) "
          "before the listener closes, so load balancers notice.");
ABSL_FLAG(int, shutdown_timeout_s, 30,
          "After the drain grace: how long calls in flight may take to finish before the "
          "server shuts down and cancels them.");
ABSL_FLAG(int64_t, stream_idle_timeout_s, 300,
          "A StreamModel stream whose client sends no message for this many seconds is ended "
          "with DEADLINE_EXCEEDED (1 to 86400).");
ABSL_FLAG(std::string, metrics_listen, "",
          "If set, HOST:PORT where GET /metrics serves Prometheus metrics over plain HTTP "
          "(e.g. 0.0.0.0:9090; port 0 picks a free one). Empty: no metrics endpoint.");
ABSL_FLAG(std::string, port_file, "",
          "If set, the bound port is written to this file once the server serves (for tests "
          "and scripts using port 0).");

namespace convserve {
namespace {

constexpr char kServiceName[] = "convserve.v1.ConvService";

// Every call allocates and frees buffers the size of its tensors (gRPC's
// receive slices, the parsed request, the output, the kernels' scratch).
// By default glibc serves blocks above its mmap threshold (128 KiB at first,
// adapting) with fresh mmap()s, returns freed arena tops to the kernel, and
// gives each busy thread an arena of its own that grows in heaps of at most
// 64 MiB, each unmapped as soon as it empties. So every call page-faults its
// megabytes in anew, at a cost that grows with the calls in flight
// (bench/RPC_RESULTS.md has the measurements). Instead: one arena
// (the main one, which grows and shrinks in place; a single lock is cheap
// beside megabyte copies), blocks up to 32 MiB (glibc's largest threshold)
// from it, and up to 256 MiB of free memory kept for reuse. Working memory
// stays bounded by --memory_budget_bytes and the message limits; only its
// return to the OS is deferred. Before any thread starts.
void TuneMalloc() {
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

// The flags --help lists and the environment may set: the server's own.
bool IsServerFlagFile(absl::string_view file) { return absl::StrContains(file, "server/"); }

const char* GetEnvironment(const char* name) { return std::getenv(name); }

std::string VersionString() {
  return absl::StrCat("convserve_server ", kVersion, " (commit ", kGitCommit, ", ", kBuildType,
                      " build; kernels ", absl::StrJoin(KernelTiers(), ", "), ")\n");
}

int Serve(const std::vector<FlagOrigin>& configured) {
  TuneMalloc();
  // First, so that every line from here on has the chosen format.
  const absl::StatusOr<LogFormat> log_format = ParseLogFormat(absl::GetFlag(FLAGS_log_format));
  if (!log_format.ok()) {
    spdlog::critical("{}", std::string(log_format.status().message()));
    return 2;
  }
  SetLogFormat(*log_format);
  const std::string level_name = absl::GetFlag(FLAGS_log_level);
  const spdlog::level::level_enum level = spdlog::level::from_str(level_name);
  if (level == spdlog::level::off && level_name != "off") {
    spdlog::critical(
        "--log_level: expected trace, debug, info, warn, error, critical or off, "
        "got '{}'",
        level_name);
    return 2;
  }
  spdlog::set_level(level);

  ServerFlagValues flags;
  flags.listen = absl::GetFlag(FLAGS_listen);
  flags.compute_threads = absl::GetFlag(FLAGS_compute_threads);
  flags.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  flags.max_elements = absl::GetFlag(FLAGS_max_elements);
  flags.max_macs = absl::GetFlag(FLAGS_max_macs);
  flags.memory_budget_bytes = absl::GetFlag(FLAGS_memory_budget_bytes);
  flags.max_model_bytes = absl::GetFlag(FLAGS_max_model_bytes);
  flags.small_call_macs = absl::GetFlag(FLAGS_small_call_macs);
  flags.drain_grace_ms = absl::GetFlag(FLAGS_drain_grace_ms);
  flags.shutdown_timeout_s = absl::GetFlag(FLAGS_shutdown_timeout_s);
  flags.stream_idle_timeout_s = absl::GetFlag(FLAGS_stream_idle_timeout_s);
  flags.port_file = absl::GetFlag(FLAGS_port_file);
  flags.health_listen = absl::GetFlag(FLAGS_health_listen);
  flags.health_port_file = absl::GetFlag(FLAGS_health_port_file);
  const int usable_cpus = UsableCpus();
  absl::Status flags_ok = ValidateServerFlags(flags, usable_cpus);
  absl::StatusOr<TransportOptions> transport = TransportOptionsFromFlags();
  if (flags_ok.ok() && !transport.ok()) flags_ok = transport.status();
  if (!flags_ok.ok()) {
    spdlog::critical("{}", std::string(flags_ok.message()));
    return 2;
  }

  int threads = flags.compute_threads;
  if (threads <= 0) threads = usable_cpus;
  ServiceOptions options;
  options.max_message_bytes = flags.max_message_bytes;
  options.max_elements = flags.max_elements;
  options.max_macs = flags.max_macs;
  options.memory_budget_bytes = flags.memory_budget_bytes;
  options.max_model_bytes = flags.max_model_bytes;
  options.small_call_macs = flags.small_call_macs;
  options.stream_idle_timeout_s = flags.stream_idle_timeout_s;

  const std::string token_file = absl::GetFlag(FLAGS_auth_token_file);
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(token_file);
    if (!token.ok()) {
      spdlog::critical("{}", std::string(token.status().message()));
      return 2;
    }
    options.auth_token = *std::move(token);
  }

  absl::StatusOr<ServerTls> tls =
      BuildServerTls({absl::GetFlag(FLAGS_tls_cert_file), absl::GetFlag(FLAGS_tls_key_file),
                      absl::GetFlag(FLAGS_tls_client_ca_file)});
  if (!tls.ok()) {
    spdlog::critical("{}", std::string(tls.status().message()));
    return 2;
  }
  for (const std::string& warning : tls->warnings) spdlog::warn("{}", warning);
  options.require_tls = tls->mode != TlsMode::kOff;
  const std::string health_listen = absl::GetFlag(FLAGS_health_listen);
  if (!health_listen.empty() && tls->mode == TlsMode::kOff) {
    // Without TLS the two ports could not be told apart: both would serve ConvService.
    spdlog::critical(
        "--health_listen: expected only with TLS on (--tls_cert_file and --tls_key_file), got "
        "'{}' without TLS; without TLS, probes reach health on --listen",
        health_listen);
    return 2;
  }

  // The stop signals and SIGHUP, blocked in every thread since main()
  // (threads inherit the mask); this thread takes them synchronously below.
  const sigset_t server_signals = BlockServerSignals();
  const FileLimit file_limit = RaiseFileLimit();

  options.max_models = absl::GetFlag(FLAGS_max_models);
  options.max_layers_per_model = absl::GetFlag(FLAGS_max_layers_per_model);
  const int64_t max_queued_calls = absl::GetFlag(FLAGS_max_queued_calls);
  for (const auto& [flag, value] :
       {std::pair<const char*, int64_t>{"max_models", options.max_models},
        {"max_layers_per_model", options.max_layers_per_model},
        {"max_queued_calls", max_queued_calls}}) {
    if (value < 1) {
      spdlog::critical("--{}: expected a number >= 1, got {}", flag, value);
      return 2;
    }
  }
  const std::string repository_root = absl::GetFlag(FLAGS_model_repository);
  const int64_t repository_poll_s = absl::GetFlag(FLAGS_model_repository_poll_s);
  if (repository_poll_s < 0 || repository_poll_s > 86400) {
    spdlog::critical("--model_repository_poll_s: expected 0 (off) to 86400 (a day), got {}",
                     repository_poll_s);
    return 2;
  }
  if (repository_poll_s > 0 && repository_root.empty()) {
    spdlog::critical("--model_repository_poll_s: expected only with --model_repository, got {}",
                     repository_poll_s);
    return 2;
  }
  if (!repository_root.empty()) {
    absl::StatusOr<RepositoryScan> scan = ScanModelRepository(repository_root);
    if (!scan.ok()) {
      spdlog::critical("{}", std::string(scan.status().message()));
      return 2;
    }
  }
  ComputePool pool(threads, max_queued_calls);
  AccessLog access_log;
  MetricsRegistry metrics;
  CallMetrics call_metrics(&metrics);
  CallObservers observers;
  if (absl::GetFlag(FLAGS_access_log)) observers.Add(&access_log);
  const std::string metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  if (!metrics_listen.empty()) observers.Add(&call_metrics);
  ConvServiceImpl service(options, &pool, &observers);
  // Over TLS the token is checked from the headers, before gRPC reads the
  // body (docs/RELIABILITY.md row 15).
  if (tls->mode != TlsMode::kOff && !options.auth_token.empty()) {
    tls->credentials->SetAuthMetadataProcessor(
        MakeBearerTokenProcessor(options.auth_token, &observers));
  }
  std::unique_ptr<ModelRepository> repository;
  if (!repository_root.empty()) {
    repository = std::make_unique<ModelRepository>(
        repository_root, options.max_model_bytes, service.mutable_models(),
        [&service](const std::string& /*name*/, const std::string& bytes,
                   const std::string& model_dir, v1::Precision precision) {
          return service.BuildOnnxModel(model_dir + "/" + kModelFileName, bytes, precision);
        });
    service.set_model_repository(repository.get());
  }
  AddServerMetrics(&metrics, &service, &pool);
  AddProcessMetrics(&metrics);
  std::unique_ptr<MetricsHttpServer> metrics_server;
  if (!metrics_listen.empty()) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> started =
        MetricsHttpServer::Start(metrics_listen, [&metrics] { return metrics.Render(); });
    if (!started.ok()) {
      spdlog::critical("{}", std::string(started.status().message()));
      return 2;
    }
    metrics_server = *std::move(started);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  // gRPC sets SO_REUSEPORT by default, which lets a second server silently
  // share a port already in use; a clash must fail loudly instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  ApplyTransportOptions(*transport, &builder);
  builder.AddListeningPort(listen, tls->credentials, &port);
  int health_port = 0;
  if (!health_listen.empty()) {
    builder.AddListeningPort(health_listen, grpc::InsecureServerCredentials(), &health_port);
  }
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  // Compressed requests are refused from their headers (UNIMPLEMENTED,
  // "Compression algorithm 'gzip' is disabled"), before a byte is inflated:
  // gRPC compares --max_message_bytes with the inflated size only once it
  // has inflated all of it, and 1 MB of gzip inflates to 1 GB
  // (docs/RELIABILITY.md row 22).
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_DEFLATE, false);
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_GZIP, false);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0 || (!health_listen.empty() && health_port == 0)) {
    spdlog::critical(
        "cannot listen on {}{} (address in use or malformed?)", listen,
        health_listen.empty() ? "" : absl::StrCat(" and --health_listen ", health_listen));
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  // With a model repository, SERVING waits until its models are loaded.
  health->SetServingStatus(kServiceName, repository == nullptr);
  health->SetServingStatus(repository == nullptr);

  std::vector<std::string> origins;
  for (const FlagOrigin& origin : configured) {
    origins.push_back(absl::StrCat(origin.name, "=", origin.value, " (", origin.from, ")"));
  }
  spdlog::info("convserve_server {} (commit {}, {} build); configured: {}", kVersion, kGitCommit,
               kBuildType, origins.empty() ? "all defaults" : absl::StrJoin(origins, ", "));
  spdlog::info(
      "convserve_server serving on {} (port {}): compute_threads={} max_message_bytes={} "
      "max_elements={} max_macs={} memory_budget_bytes={} max_model_bytes={} auth={} "
      "log_level={} log_format={} access_log={} tls={} health_listen={}",
      listen, port, threads, options.max_message_bytes, options.max_elements, options.max_macs,
      options.memory_budget_bytes, options.max_model_bytes,
      options.auth_token.empty() ? "off" : "bearer token", spdlog::level::to_string_view(level),
      absl::GetFlag(FLAGS_log_format), absl::GetFlag(FLAGS_access_log),
      std::string(TlsModeName(tls->mode)),
      health_listen.empty() ? "off"
                            : absl::StrCat(health_listen, " (port ", health_port, ", plaintext)"));
  spdlog::info("connections: {}; {}", DescribeTransportOptions(*transport),
               DescribeFileLimit(file_limit));
  if (metrics_server != nullptr) {
    spdlog::info("metrics: serving GET /metrics on {} (--metrics_listen)",
                 metrics_server->address());
  }
  // Written to a temporary name and renamed so readers never see half a number.
  auto write_port_file = [](const std::string& path, int bound_port) {
    if (path.empty()) return;
    const std::string temporary = path + ".tmp";
    std::ofstream(temporary) << bound_port << "\n";
    std::rename(temporary.c_str(), path.c_str());
  };
  const std::string health_port_file = absl::GetFlag(FLAGS_health_port_file);
  if (health_listen.empty()) {
    // No file from an earlier run may mislead a health check into the wrong port.
    if (!health_port_file.empty()) std::remove(health_port_file.c_str());
  } else {
    write_port_file(health_port_file, health_port);  // before --port_file, which readers await
  }
  write_port_file(absl::GetFlag(FLAGS_port_file), port);
  if (repository != nullptr) {
    absl::StatusOr<RepositorySyncReport> report = repository->Sync();
    if (!report.ok()) {  // the directory went away since the start-up check
      spdlog::critical("{}", std::string(report.status().message()));
      server->Shutdown();
      return 2;
    }
    spdlog::info("model repository {}: {} models loaded, {} refused (see the lines above); serving",
                 repository_root, report->loaded, report->refused.size());
    repository->StartBackground(repository_poll_s);
    health->SetServingStatus(kServiceName, true);
    health->SetServingStatus(true);
  }
  // A listener gRPC stopped accepting on does not come back: drain, exit 3.
  std::atomic<bool> listener_dead{false};
  std::unique_ptr<ListenerWatch> listener_watch;
  if (transport->listener_check_s > 0) {
    listener_watch = std::make_unique<ListenerWatch>(
        ProbeHost(ParseListenAddress(listen)->host), port,
        std::chrono::seconds(transport->listener_check_s), 3,
        [&listener_dead, port](const std::string& why) {
          spdlog::critical(
              "the listener on port {} no longer accepts connections ({}); gRPC does not "
              "recover from this (e.g. after accept() failed with 'Too many open files'): "
              "draining, then exiting with code 3 so that a supervisor restarts the server",
              port, why);
          listener_dead = true;
          kill(getpid(), SIGTERM);
        });
  }

  const int signal_number = WaitForStopSignal(server_signals, [&repository] {
    if (repository == nullptr) {
      spdlog::info("received SIGHUP: no --model_repository to read again; still serving");
      return;
    }
    spdlog::info("received SIGHUP: reading the model repository again");
    repository->RequestSync();
  });
  spdlog::info("received signal {}: draining (health NOT_SERVING, new calls UNAVAILABLE)",
               signal_number);
  OnStopSignalAgain(
      server_signals,
      [](int again) {
        spdlog::warn(
            "received signal {} again while draining: exiting now with code {}, "
            "without waiting for the calls in flight",
            again, ForcedExitCode(again));
        spdlog::default_logger()->flush();
        std::fflush(nullptr);
        std::_Exit(ForcedExitCode(again));
      },
      [] { spdlog::info("received SIGHUP while draining: ignored"); });
  if (listener_watch != nullptr) listener_watch->Stop();  // the drain closes the listener
  service.StartDraining();
  health->SetServingStatus(false);
  std::this_thread::sleep_for(std::chrono::milliseconds(absl::GetFlag(FLAGS_drain_grace_ms)));
  // Calls in flight finish while the server still answers new ones with
  // UNAVAILABLE; gRPC's Shutdown() would answer them CANCELLED instead.
  const std::chrono::seconds timeout(absl::GetFlag(FLAGS_shutdown_timeout_s));
  if (!pool.DrainFor(timeout)) {
    spdlog::warn("calls still running after --shutdown_timeout_s={}; cancelling them",
                 timeout.count());
    service.StopAllWork();  // their computations stop within a work item, UNAVAILABLE
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  pool.Drain();
  if (metrics_server != nullptr) metrics_server->Stop();
  spdlog::info("stopped");
  return listener_dead ? 3 : 0;
}

}  // namespace
}  // namespace convserve

int main(int argc, char** argv) {
  // Before anything logs: a closed stdout must fail a write, not kill us.
  convserve::IgnoreBrokenPipes();
  // Before any thread starts (creating TLS credentials starts gRPC's): a
  // thread that does not block them would die of a stop signal or SIGHUP
  // the sigwait in Serve() is not waiting for at that moment.
  convserve::BlockServerSignals();
  // gRPC's own lines go through spdlog, in the server's format, from the start.
  convserve::RouteGrpcLogs();
  absl::SetProgramUsageMessage(
      "Serves convolution layers over gRPC.\nUsage: convserve_server [--listen=0.0.0.0:50051] "
      "[--compute_threads=N] ...\nEvery flag can also be set as the environment variable "
      "CONVSERVE_<FLAG> (e.g. CONVSERVE_COMPUTE_THREADS=2); an explicit flag wins.");
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = convserve::IsServerFlagFile;
  usage.contains_helpshort_flags = convserve::IsServerFlagFile;
  usage.version_string = convserve::VersionString;
  usage.normalize_filename = [](absl::string_view file) {
    const size_t server = file.rfind("server/");
    return std::string(server == absl::string_view::npos ? file : file.substr(server));
  };
  absl::SetFlagsUsageConfig(usage);
  absl::Status environment = convserve::ApplyFlagEnvironment(
      argc, argv, convserve::IsServerFlagFile, convserve::GetEnvironment);
  if (!environment.ok()) {
    spdlog::critical("{}", std::string(environment.message()));
    return 2;
  }
  absl::ParseCommandLine(argc, argv);
  return convserve::Serve(convserve::ConfiguredFlags(argc, argv, convserve::IsServerFlagFile,
                                                     convserve::GetEnvironment));
}
