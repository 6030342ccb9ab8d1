// server_metrics.h: the gauges read at scrape time from the server's own objects.
#ifndef CONVSERVE_SERVER_SERVER_METRICS_H_
#define CONVSERVE_SERVER_SERVER_METRICS_H_

#include "server/compute_pool.h"
#include "server/conv_service.h"
#include "server/metrics.h"

namespace convserve {

// Adds to `registry`, each read at every scrape:
//   convserve_queue_depth                          work items waiting for the compute pool
//   convserve_compute_threads                      threads of the compute pool
//   convserve_memory_budget_bytes{state="reserved|limit"}  the working-memory budget
//   convserve_models_loaded, convserve_model_bytes  the model registry
//   convserve_build_info{version,commit,isa} = 1   isa: the best kernel tier
// `service` and `pool` must outlive every Render() of `registry`.
void AddServerMetrics(MetricsRegistry* registry, const ConvServiceImpl* service,
                      const ComputePool* pool);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_SERVER_METRICS_H_
