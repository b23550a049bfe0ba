#include "engine/cpu_backend.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "models/safetensors.h"
#include "models/status_macros.h"

namespace foxserve {
namespace engine {

absl::StatusOr<std::unique_ptr<CpuBackend>> CpuBackend::Load(const std::string& model_dir,
                                                             const CpuBackendOptions& options) {
  if (options.page_size < 1 || options.page_size > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("page size ", options.page_size, " outside [1, 4096]"));
  }
  FOXSERVE_ASSIGN_OR_RETURN(models::FoxConfig config, models::LoadFoxConfig(model_dir));
  FOXSERVE_ASSIGN_OR_RETURN(auto checkpoint, models::SafetensorsCheckpoint::Open(model_dir));
  FOXSERVE_ASSIGN_OR_RETURN(auto weights,
                            models::LoadFoxWeights(*checkpoint, config, options.progress));

  std::unique_ptr<CpuBackend> backend(new CpuBackend());
  backend->pool_ = std::make_unique<kernels::ThreadPool>(options.num_threads);
  backend->model_ = std::make_unique<models::FoxModel>(std::move(weights), backend->pool_.get());
  backend->layout_ = backend->model_->PageLayout(options.page_size);
  backend->acp_ = options.acp;
  if (options.log_eps_from_config && config.log_pruning_tolerance) {
    backend->acp_.log_eps = *config.log_pruning_tolerance;
  }
  backend->report_overlapped_steps_ = options.report_overlapped_steps;
  const int64_t page_bytes = backend->layout_.page_floats() * static_cast<int64_t>(sizeof(float));
  int64_t pages = options.num_pages > 0 ? options.num_pages : options.kv_cache_bytes / page_bytes;
  if (pages < 1) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache of ", options.kv_cache_bytes,
                                                   " bytes holds no page of ", page_bytes, " bytes"));
  }
  if (pages > std::numeric_limits<int32_t>::max()) pages = std::numeric_limits<int32_t>::max();
  backend->num_pages_ = pages;
  backend->kv_storage_.reset(new float[pages * backend->layout_.page_floats()]);
  return backend;
}

CpuBackend::~CpuBackend() = default;

absl::Status CpuBackend::Forward(absl::Span<const models::ForwardItem> items,
                                 std::vector<float>* logits) {
  kernels::KvPoolView pool;
  pool.data = kv_storage_.get();
  pool.num_pages = num_pages_;
  pool.layout = layout_;
  return model_->Forward(items, acp_, pool, logits);
}

void CpuBackend::PoisonPages(absl::Span<const int32_t> pages) {
  const int64_t n = layout_.page_floats();
  for (int32_t p : pages) {
    std::fill(kv_storage_.get() + p * n, kv_storage_.get() + (p + 1) * n,
              std::numeric_limits<float>::quiet_NaN());
  }
}

}  // namespace engine
}  // namespace foxserve
