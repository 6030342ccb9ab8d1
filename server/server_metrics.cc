// server_metrics.cc: the compute pool, memory budget, model and build gauges.
#include "server/server_metrics.h"

#include <string>
#include <vector>

#include "core/conv.h"
#include "server/build_info.h"

namespace convserve {

void AddServerMetrics(MetricsRegistry* registry, const ConvServiceImpl* service,
                      const ComputePool* pool) {
  using Samples = std::vector<MetricsRegistry::Sample>;
  registry->AddGauge("convserve_queue_depth",
                     "Work items waiting for the compute pool (not counting the one running).",
                     [pool] { return static_cast<double>(pool->queued()); });
  registry->AddGauge("convserve_compute_threads", "Threads of the compute pool.",
                     [pool] { return static_cast<double>(pool->threads()); });
  registry->AddCallback(
      "convserve_memory_budget_bytes",
      "The working-memory budget of the calls in flight (--memory_budget_bytes): bytes "
      "reserved now, and the limit.",
      "gauge", {"state"}, [service]() -> Samples {
        const MemoryBudget& budget = service->memory_budget();
        return {{{"reserved"}, static_cast<double>(budget.in_use())},
                {{"limit"}, static_cast<double>(budget.limit())}};
      });
  registry->AddGauge("convserve_models_loaded", "Models loaded (LoadModel).",
                     [service] { return static_cast<double>(service->models().size()); });
  registry->AddGauge(
      "convserve_model_bytes", "Weight bytes the loaded models hold (--max_model_bytes bounds it).",
      [service] { return static_cast<double>(service->models().total_weight_bytes()); });
  // KernelTiers() lists the best tier first; it does not change while the
  // process runs.
  const std::vector<std::string> tiers = KernelTiers();
  const std::string isa = tiers.empty() ? "unknown" : tiers.front();
  registry->AddCallback("convserve_build_info",
                        "Always 1; the labels say which build this is and its best kernel tier.",
                        "gauge", {"version", "commit", "isa"}, [isa]() -> Samples {
                          return {{{kVersion, kGitCommit, isa}, 1}};
                        });
}

}  // namespace convserve
