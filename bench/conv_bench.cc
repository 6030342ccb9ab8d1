// conv_bench: ConvServe's core against oneDNN on a layer set, side by side.
//
// For every layer, data layout (channels_first / channels_last) and thread
// count, ConvServe and oneDNN run the same layer in this process on the same
// threads, ConvServe and the caller always on plain input and output tensors
// (nchw / nhwc). oneDNN runs in two forms (OneDnnConv): on those plain tensors,
// and on the blocked layouts it prefers with the reorders into and out of
// them timed inside each call (what PyTorch does); each keeps its weights
// pre-packed (ConvOperator packs at creation, oneDNN's weights are reordered
// to its preferred layout once, outside the timed loop). Reported: median
// GFLOP/s of --reps repetitions after warm-up, the ratio against the faster
// oneDNN form, and the share of this machine's FMA peak measured in the same
// run. Repetitions of the three alternate, so a change in the machine's load
// hits all of them. Outputs are compared (a warning is printed on a mismatch).
//
//   conv_bench [--layers FILE] [--json FILE] [--filter SUBSTRING] [--reps N]
//              [--threads 1,2] [--min-ms MS] [--onednn-isa all|avx2]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/fma_peak.h"
#include "bench/layer_set.h"
#include "core/conv.h"
#include "core/fast/fast_conv.h"
#include "core/geometry.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "tbb/task_arena.h"

namespace convserve {
namespace bench {
namespace {

using Clock = std::chrono::steady_clock;

// A row is measured on a quiet machine when a short FMA loop on every thread
// reaches this share of the run's peak, before and after the row.
constexpr double kQuietShare = 0.85;
constexpr int kRowAttempts = 5;

struct Options {
  std::string layers = std::string(CONVSERVE_SOURCE_DIR) + "/bench/layers.json";
  std::string json;
  std::string filter;
  int reps = 7;
  double min_ms = 20.0;  // Each repetition runs the layer for at least this long.
  std::vector<int> threads = {1, 2};
  // Highest ISA oneDNN may use: "all" (its default) or "avx2" (the ISA
  // ConvServe's kernels target).
  std::string onednn_isa = "all";
};

bool ParseOptions(int argc, char** argv, Options* options) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s: expected a value\n", flag.c_str());
      return false;
    }
    const std::string value = argv[++i];
    if (flag == "--layers") {
      options->layers = value;
    } else if (flag == "--json") {
      options->json = value;
    } else if (flag == "--filter") {
      options->filter = value;
    } else if (flag == "--reps") {
      options->reps = std::max(1, std::atoi(value.c_str()));
    } else if (flag == "--onednn-isa") {
      options->onednn_isa = value;
    } else if (flag == "--min-ms") {
      options->min_ms = std::max(0.0, std::atof(value.c_str()));
    } else if (flag == "--threads") {
      options->threads.clear();
      for (size_t start = 0; start < value.size();) {
        size_t end = value.find(',', start);
        if (end == std::string::npos) end = value.size();
        options->threads.push_back(
            std::max(1, std::atoi(value.substr(start, end - start).c_str())));
        start = end + 1;
      }
    } else {
      std::fprintf(
          stderr,
          "unknown flag %s\nusage: conv_bench [--layers FILE] [--json FILE] "
          "[--filter SUBSTRING] [--reps N] [--threads 1,2] [--min-ms MS] [--onednn-isa all|avx2]\n",
          flag.c_str());
      return false;
    }
  }
  return true;
}

// Calls per repetition so that one repetition of fn() lasts about min_ms,
// after a warm-up of at least min_ms.
template <typename Fn>
int64_t CallsPerRepetition(Fn fn, double min_ms) {
  int64_t calls = 0;
  const Clock::time_point start = Clock::now();
  do {
    fn();
    ++calls;
  } while (std::chrono::duration<double, std::milli>(Clock::now() - start).count() < min_ms);
  const double per_call =
      std::chrono::duration<double>(Clock::now() - start).count() / static_cast<double>(calls);
  return std::max<int64_t>(1, static_cast<int64_t>(min_ms * 1e-3 / per_call));
}

template <typename Fn>
double SecondsPerCall(Fn fn, int64_t calls) {
  const Clock::time_point start = Clock::now();
  for (int64_t i = 0; i < calls; ++i) fn();
  return std::chrono::duration<double>(Clock::now() - start).count() / static_cast<double>(calls);
}

double Median(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

// Median seconds per call of each of `fns`, measured in interleaved
// repetitions so that all see the same machine (it is shared and its load
// changes within seconds).
std::vector<double> InterleavedMedianSeconds(const std::vector<std::function<void()>>& fns,
                                             int reps, double min_ms) {
  std::vector<int64_t> calls;
  for (const auto& fn : fns) calls.push_back(CallsPerRepetition(fn, min_ms));
  std::vector<std::vector<double>> samples(fns.size());
  for (int r = 0; r < reps; ++r) {
    for (size_t i = 0; i < fns.size(); ++i) samples[i].push_back(SecondsPerCall(fns[i], calls[i]));
  }
  std::vector<double> medians;
  for (std::vector<double>& s : samples) medians.push_back(Median(std::move(s)));
  return medians;
}

// FMA-only throughput of `threads` threads: 12 independent FMA chains per
// thread on ymm (AVX2) or zmm (AVX-512F) registers; best of three rounds.
double MeasurePeakGflops(int threads, bool zmm, size_t iterations = 20'000'000, int rounds = 3) {
  const size_t kIterations = iterations;
  const double flops_per_round = 12.0 * 2.0 * (zmm ? 16 : 8);
  double best = 0.0;
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::thread> workers;
    const Clock::time_point start = Clock::now();
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([zmm, kIterations] {
        volatile float sink =
            zmm ? f32_fma_peak_12x16_avx512f(kIterations) : f32_fma_peak_12x8_avx2_fma(kIterations);
        (void)sink;
      });
    }
    for (std::thread& worker : workers) worker.join();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::max(best, flops_per_round * kIterations * threads / seconds * 1e-9);
  }
  return best;
}

dnnl::memory::format_tag PlainTag(int rank, bool channels_last) {
  using tag = dnnl::memory::format_tag;
  switch (rank) {
    case 1:
      return channels_last ? tag::nwc : tag::ncw;
    case 2:
      return channels_last ? tag::nhwc : tag::nchw;
    default:
      return channels_last ? tag::ndhwc : tag::ncdhw;
  }
}

dnnl::memory::format_tag PlainWeightTag(int rank, bool grouped) {
  using tag = dnnl::memory::format_tag;
  switch (rank) {
    case 1:
      return grouped ? tag::goiw : tag::oiw;
    case 2:
      return grouped ? tag::goihw : tag::oihw;
    default:
      return grouped ? tag::goidhw : tag::oidhw;
  }
}

// oneDNN forward-inference convolution with plain src/dst, weights reordered
// once into the primitive's preferred layout.
// oneDNN's convolution in one of two forms:
//   plain:   source and destination in the caller's layout (nchw / nhwc);
//            for channels_first oneDNN then often runs gemm:jit (im2col +
//            GEMM), its weakest path.
//   blocked: oneDNN picks the source and destination layouts
//            (format_tag::any, e.g. nChw16c) and the caller's tensors are
//            reordered into and out of them inside every call, as PyTorch's
//            CPU backend does around a oneDNN convolution.
// Weights are packed once, in both forms, as ConvServe packs them.
class OneDnnConv {
 public:
  OneDnnConv(const BenchLayer& layer, bool channels_last, bool blocked,
             const std::vector<float>& weight_oihw, const std::vector<float>& bias,
             const ConvGeometry& g)
      : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {
    using dims = dnnl::memory::dims;
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const int rank = static_cast<int>(layer.spatial.size());
    dims src_dims = {layer.batch, layer.in_channels};
    dims dst_dims = {layer.batch, layer.out_channels};
    dims weight_dims;
    if (layer.groups > 1) {
      weight_dims = {layer.groups, layer.out_channels / layer.groups,
                     layer.in_channels / layer.groups};
    } else {
      weight_dims = {layer.out_channels, layer.in_channels};
    }
    dims strides, dilates, pad_l, pad_r;
    for (int a = 0; a < rank; ++a) {
      src_dims.push_back(layer.spatial[a]);
      dst_dims.push_back(g.output[3 - rank + a]);
      weight_dims.push_back(layer.kernel[a]);
      strides.push_back(layer.stride);
      dilates.push_back(layer.dilation - 1);
      pad_l.push_back(layer.pad);
      pad_r.push_back(layer.pad);
    }
    const dnnl::memory::desc user_src_md(src_dims, dt::f32, PlainTag(rank, channels_last));
    const dnnl::memory::desc user_dst_md(dst_dims, dt::f32, PlainTag(rank, channels_last));
    const dnnl::memory::desc src_md =
        blocked ? dnnl::memory::desc(src_dims, dt::f32, tag::any) : user_src_md;
    const dnnl::memory::desc dst_md =
        blocked ? dnnl::memory::desc(dst_dims, dt::f32, tag::any) : user_dst_md;
    const dnnl::memory::desc user_weight_md(weight_dims, dt::f32,
                                            PlainWeightTag(rank, layer.groups > 1));
    const dnnl::memory::desc any_weight_md(weight_dims, dt::f32, tag::any);
    const dnnl::memory::desc bias_md({layer.out_channels}, dt::f32, tag::x);
    const dnnl::convolution_forward::desc desc(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_md,
        any_weight_md, bias_md, dst_md, strides, dilates, pad_l, pad_r);
    pd_ = dnnl::convolution_forward::primitive_desc(desc, engine_);
    conv_ = dnnl::convolution_forward(pd_);

    dnnl::memory user_weights(user_weight_md, engine_, const_cast<float*>(weight_oihw.data()));
    weights_ = dnnl::memory(pd_.weights_desc(), engine_);
    dnnl::reorder(user_weights, weights_).execute(stream_, user_weights, weights_);
    bias_ = dnnl::memory(bias_md, engine_);
    std::copy(bias.begin(), bias.end(), static_cast<float*>(bias_.get_data_handle()));
    user_src_ = dnnl::memory(user_src_md, engine_, nullptr);
    user_dst_ = dnnl::memory(user_dst_md, engine_, nullptr);
    // The blocked form's own buffers and the reorders into and out of them
    // (none where oneDNN chose the caller's layout anyway).
    if (pd_.src_desc() != user_src_md) {
      src_ = dnnl::memory(pd_.src_desc(), engine_);
      src_reorder_ = dnnl::reorder(user_src_, src_);
    } else {
      src_ = user_src_;
    }
    if (pd_.dst_desc() != user_dst_md) {
      dst_ = dnnl::memory(pd_.dst_desc(), engine_);
      dst_reorder_ = dnnl::reorder(dst_, user_dst_);
    } else {
      dst_ = user_dst_;
    }
    reorders_ = (src_reorder_ ? 1 : 0) + (dst_reorder_ ? 1 : 0);
    stream_.wait();
  }

  // oneDNN's implementation name, plus the reorders the blocked form adds.
  std::string Implementation() const {
    std::string name = pd_.impl_info_str();
    if (reorders_ > 0) name += "+" + std::to_string(reorders_) + "reorder";
    return name;
  }

  void Run(const float* input, float* output) {
    user_src_.set_data_handle(const_cast<float*>(input));
    user_dst_.set_data_handle(output);
    if (src_reorder_) src_reorder_.execute(stream_, user_src_, src_);
    conv_.execute(stream_, {{DNNL_ARG_SRC, src_},
                            {DNNL_ARG_WEIGHTS, weights_},
                            {DNNL_ARG_BIAS, bias_},
                            {DNNL_ARG_DST, dst_}});
    if (dst_reorder_) dst_reorder_.execute(stream_, dst_, user_dst_);
    stream_.wait();
  }

 private:
  dnnl::engine engine_;
  dnnl::stream stream_;
  dnnl::convolution_forward::primitive_desc pd_;
  dnnl::convolution_forward conv_;
  dnnl::memory weights_, bias_, user_src_, user_dst_, src_, dst_;
  dnnl::reorder src_reorder_, dst_reorder_;
  int reorders_ = 0;
};

struct Row {
  std::string name;
  std::string layout;
  int threads = 1;
  double convserve_gflops = 0;
  double onednn_gflops = 0;          // plain form
  double onednn_blocked_gflops = 0;  // blocked form, reorders included
  double ratio = 0;                  // against the faster of the two forms
  double peak_fraction = 0;
  std::string kernel;
  std::string onednn_impl;     // the faster form's
  double winograd_gflops = 0;  // direct-convolution FLOPs / Winograd time; 0: no Winograd
  bool busy = false;           // The machine was busy around every attempt at this row.
};

int Main(int argc, char** argv) {
  Options options;
  if (!ParseOptions(argc, argv, &options)) return 2;
  absl::StatusOr<std::vector<BenchLayer>> layers = ReadLayerSet(options.layers);
  if (!layers.ok()) {
    std::fprintf(stderr, "%s\n", layers.status().ToString().c_str());
    return 1;
  }
  if (!kernels::CpuHasAvx2Fma()) {
    std::fprintf(stderr, "this CPU has no AVX2 + FMA: nothing to compare\n");
    return 1;
  }

  if (options.onednn_isa == "avx2") {
    dnnl::set_max_cpu_isa(dnnl::cpu_isa::avx2);
  } else if (options.onednn_isa != "all") {
    std::fprintf(stderr, "--onednn-isa: expected all or avx2, got %s\n",
                 options.onednn_isa.c_str());
    return 2;
  }
  std::printf("oneDNN %d.%d.%d, highest ISA allowed: %s\n", dnnl_version()->major,
              dnnl_version()->minor, dnnl_version()->patch, options.onednn_isa.c_str());

  // The peak that counts is that of the widest FMA the fast path uses here.
  const bool zmm = kernels::BestIsa() == kernels::Isa::kAvx512f;
  std::map<int, double> peak;
  for (int threads : options.threads) {
    const double ymm_peak = MeasurePeakGflops(threads, false);
    peak[threads] = zmm ? MeasurePeakGflops(threads, true) : ymm_peak;
    std::printf("FMA peak, %d thread(s): ymm (AVX2) %.1f GFLOP/s", threads, ymm_peak);
    if (zmm) std::printf(", zmm (AVX-512F) %.1f GFLOP/s", peak[threads]);
    std::printf("\n");
  }
  std::printf("%%peak below is against the %s peak\n", zmm ? "zmm" : "ymm");
  for (int threads : options.threads) {
    // Threads that do not scale the FMA loop do not have their own cores.
    if (threads > 1 && options.threads.front() == 1 && peak[threads] < 0.8 * threads * peak[1]) {
      std::printf(
          "WARNING: %d threads reach only %.1fx the 1-thread FMA peak: the machine is "
          "busy, %d-thread figures are unreliable\n",
          threads, peak[threads] / peak[1], threads);
    }
  }
  std::printf(
      "GFLOP/s; onednn = oneDNN on the caller's layout, onednn_blk = oneDNN on its own blocked\n"
      "layout with the reorders in and out timed; ratio = convserve / the faster of the two;\n"
      "winograd = the layer with algorithm winograd (3x3 stride-1 layers; the direct\n"
      "convolution's FLOPs over its time), w/dir = winograd / convserve (direct)\n");
  std::printf("\n%-18s %-14s %3s %10s %10s %10s %6s %7s %9s %6s  %-26s %s\n", "layer", "layout",
              "thr", "convserve", "onednn", "onednn_blk", "ratio", "%peak", "winograd", "w/dir",
              "convserve kernel", "onednn impl (faster form)");

  std::vector<Row> rows;
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const BenchLayer& layer : *layers) {
    if (!options.filter.empty() && layer.name.find(options.filter) == std::string::npos) continue;
    const int rank = static_cast<int>(layer.spatial.size());
    for (bool channels_last : {false, true}) {
      ConvSpec spec;
      spec.spatial_rank = rank;
      spec.in_channels = layer.in_channels;
      spec.out_channels = layer.out_channels;
      spec.groups = layer.groups;
      spec.kernel = layer.kernel;
      spec.stride = {layer.stride};
      spec.dilation = {layer.dilation};
      spec.pad_begin = {layer.pad};
      spec.pad_end = {layer.pad};
      spec.bias = true;
      spec.data_layout = channels_last ? DataLayout::kChannelsLast : DataLayout::kChannelsFirst;
      std::vector<int64_t> shape = {layer.batch};
      if (!channels_last) shape.push_back(layer.in_channels);
      shape.insert(shape.end(), layer.spatial.begin(), layer.spatial.end());
      if (channels_last) shape.push_back(layer.in_channels);
      absl::StatusOr<ConvGeometry> geometry = ResolveGeometry(spec, shape);
      if (!geometry.ok()) {
        std::fprintf(stderr, "%s: %s\n", layer.name.c_str(), geometry.status().ToString().c_str());
        return 1;
      }
      const ConvGeometry& g = *geometry;
      std::vector<float> input(g.input_elements()), weight(g.weight_elements()),
          bias(g.out_channels);
      for (float& v : input) v = dist(rng);
      for (float& v : weight) v = dist(rng);
      for (float& v : bias) v = dist(rng);
      absl::StatusOr<std::unique_ptr<ConvOperator>> op = ConvOperator::Create(spec, weight, bias);
      if (!op.ok()) {
        std::fprintf(stderr, "%s: %s\n", layer.name.c_str(), op.status().ToString().c_str());
        return 1;
      }
      // The same layer on the Winograd path, where it runs.
      std::unique_ptr<ConvOperator> winograd;
      ConvSpec winograd_spec = spec;
      winograd_spec.algorithm = ConvAlgorithm::kWinograd;
      if (absl::StatusOr<ResolvedLayer> resolved = ResolveLayer(spec);
          resolved.ok() && CheckWinograd(*resolved).ok()) {
        absl::StatusOr<std::unique_ptr<ConvOperator>> made =
            ConvOperator::Create(winograd_spec, weight, bias);
        if (made.ok()) winograd = std::move(*made);
      }
      std::vector<float> ours(g.output_elements()), theirs(g.output_elements()),
          winograd_out(g.output_elements());
      const double flops = 2.0 * static_cast<double>(g.output_elements()) *
                           static_cast<double>(g.in_channels_per_group() * g.kernel_size());

      for (int threads : options.threads) {
        tbb::task_arena arena(threads);
        // oneDNN fixes a primitive's thread count when it is created, so the
        // primitive is made after the OpenMP thread count is set.
        omp_set_num_threads(threads);
        OneDnnConv onednn(layer, channels_last, /*blocked=*/false, weight, bias, g);
        OneDnnConv onednn_blocked(layer, channels_last, /*blocked=*/true, weight, bias, g);
        std::vector<float> theirs_blocked(g.output_elements());
        // The machine is shared: a row counts only if `threads` FMA loops
        // run at full speed just before and just after it (other processes
        // would slow the two libraries very differently: OpenMP's static
        // schedule stalls on a descheduled thread, TBB's work stealing does
        // not). Busy rows are retried, then kept but marked.
        auto quiet = [&] {
          const double full_speed = std::max(
              peak[threads], threads * peak[options.threads.front()] / options.threads.front());
          return MeasurePeakGflops(threads, zmm, 2'000'000, 1) >= kQuietShare * full_speed;
        };
        std::vector<double> seconds;
        bool busy = true;
        for (int attempt = 0; attempt < kRowAttempts && busy; ++attempt) {
          if (attempt > 0) std::this_thread::sleep_for(std::chrono::seconds(2));
          const bool quiet_before = quiet();
          std::vector<std::function<void()>> runs = {
              [&] { arena.execute([&] { (void)(*op)->Run(g, input.data(), ours.data()); }); },
              [&] { onednn.Run(input.data(), theirs.data()); },
              [&] { onednn_blocked.Run(input.data(), theirs_blocked.data()); }};
          if (winograd) {
            runs.push_back([&] {
              arena.execute([&] { (void)winograd->Run(g, input.data(), winograd_out.data()); });
            });
          }
          seconds = InterleavedMedianSeconds(runs, options.reps, options.min_ms);
          busy = !(quiet_before && quiet());
        }
        for (const std::vector<float>* reference : {&theirs, &theirs_blocked}) {
          double max_error = 0, max_value = 0;
          for (size_t i = 0; i < ours.size(); ++i) {
            max_error =
                std::max(max_error, static_cast<double>(std::fabs(ours[i] - (*reference)[i])));
            max_value = std::max(max_value, static_cast<double>(std::fabs((*reference)[i])));
          }
          if (!(max_error <= 1e-4 * (1.0 + max_value))) {
            std::printf("WARNING: %s %s: outputs differ from oneDNN (%s) by %g (max |y| %g)\n",
                        layer.name.c_str(), channels_last ? "channels_last" : "channels_first",
                        reference == &theirs ? "plain" : "blocked", max_error, max_value);
          }
        }
        Row row;
        row.name = layer.name;
        row.layout = channels_last ? "channels_last" : "channels_first";
        row.threads = threads;
        row.convserve_gflops = flops / seconds[0] * 1e-9;
        row.onednn_gflops = flops / seconds[1] * 1e-9;
        row.onednn_blocked_gflops = flops / seconds[2] * 1e-9;
        if (winograd) row.winograd_gflops = flops / seconds[3] * 1e-9;
        const bool blocked_faster = row.onednn_blocked_gflops > row.onednn_gflops;
        row.ratio = row.convserve_gflops / std::max(row.onednn_gflops, row.onednn_blocked_gflops);
        row.peak_fraction = row.convserve_gflops / peak[threads];
        row.kernel = (*op)->KernelName(g);
        row.onednn_impl =
            blocked_faster ? onednn_blocked.Implementation() : onednn.Implementation();
        row.busy = busy;
        const std::string winograd_columns =
            winograd ? absl::StrFormat("%9.1f %6.2f", row.winograd_gflops,
                                       row.winograd_gflops / row.convserve_gflops)
                     : absl::StrFormat("%9s %6s", "-", "-");
        std::printf("%-18s %-14s %3d %10.1f %10.1f %10.1f %6.2f %6.1f%% %s  %-26s %s%s\n",
                    row.name.c_str(), row.layout.c_str(), threads, row.convserve_gflops,
                    row.onednn_gflops, row.onednn_blocked_gflops, row.ratio,
                    100.0 * row.peak_fraction, winograd_columns.c_str(), row.kernel.c_str(),
                    row.onednn_impl.c_str(), row.busy ? "  (BUSY MACHINE)" : "");
        std::fflush(stdout);
        rows.push_back(row);
      }
    }
  }

  // The machine is shared: measure the peak again at the end and keep the
  // better figure, so a busy moment does not inflate %peak.
  for (int threads : options.threads) {
    const double again = MeasurePeakGflops(threads, zmm);
    if (again > peak[threads]) {
      for (Row& row : rows) {
        if (row.threads == threads) row.peak_fraction = row.convserve_gflops / again;
      }
      peak[threads] = again;
    }
    std::printf("FMA peak used for %%peak, %d thread(s): %.1f GFLOP/s\n", threads, peak[threads]);
  }

  std::printf(
      "\ngeometric mean of convserve / the faster oneDNN form (rows measured on a quiet "
      "machine):\n");
  for (const char* layout : {"channels_first", "channels_last"}) {
    for (int threads : options.threads) {
      double log_sum = 0;
      int count = 0, busy = 0;
      double worst = 1e30;
      std::string worst_name;
      for (const Row& row : rows) {
        if (row.layout != layout || row.threads != threads) continue;
        if (row.busy) {
          ++busy;
          continue;
        }
        log_sum += std::log(row.ratio);
        ++count;
        if (row.ratio < worst) {
          worst = row.ratio;
          worst_name = row.name;
        }
      }
      if (count == 0) continue;
      std::printf("  %-14s %d thread(s): %.3f over %d layers (lowest %.2f, %s)", layout, threads,
                  std::exp(log_sum / count), count, worst, worst_name.c_str());
      if (busy > 0) std::printf("; %d busy row(s) left out", busy);
      std::printf("\n");
    }
  }

  if (!options.json.empty()) {
    FILE* file = std::fopen(options.json.c_str(), "w");
    if (file == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", options.json.c_str());
      return 1;
    }
    std::fprintf(file, "[\n");
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& row = rows[i];
      std::fprintf(file,
                   "  {\"name\": \"%s\", \"layout\": \"%s\", \"threads\": %d, "
                   "\"convserve_gflops\": %.3f, \"onednn_gflops\": %.3f, "
                   "\"onednn_blocked_gflops\": %.3f, \"ratio\": %.4f, "
                   "\"peak_fraction\": %.4f, \"winograd_gflops\": %.3f, \"busy_machine\": %s}%s\n",
                   row.name.c_str(), row.layout.c_str(), row.threads, row.convserve_gflops,
                   row.onednn_gflops, row.onednn_blocked_gflops, row.ratio, row.peak_fraction,
                   row.winograd_gflops, row.busy ? "true" : "false",
                   i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(file, "]\n");
    std::fclose(file);
  }
  return 0;
}

}  // namespace
}  // namespace bench
}  // namespace convserve

int main(int argc, char** argv) { return convserve::bench::Main(argc, argv); }
