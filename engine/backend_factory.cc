#include "engine/backend_factory.h"

#include "absl/strings/str_cat.h"
#include "engine/cpu_backend.h"
#include "engine/cuda_backend.h"

namespace foxserve {
namespace engine {

absl::StatusOr<std::unique_ptr<ModelBackend>> LoadBackend(const std::string& model_dir,
                                                          const BackendOptions& options) {
  std::string why;
  const bool cuda = options.device == "cuda" ||
                    (options.device == "auto" && CudaBackendAvailable(&why));
  if (options.device != "cpu" && options.device != "cuda" && options.device != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("device must be cpu, cuda or auto, got \"", options.device, "\""));
  }
  if (cuda) {
    CudaBackendOptions o;
    o.num_pages = options.num_pages;
    if (options.kv_cache_bytes) o.kv_cache_bytes = *options.kv_cache_bytes;
    o.acp = options.acp;
    o.log_eps_from_config = options.log_eps_from_config;
    o.progress = options.progress;
    auto backend = CudaBackend::Load(model_dir, o);
    if (!backend.ok()) return backend.status();
    return std::unique_ptr<ModelBackend>(std::move(backend).value());
  }
  CpuBackendOptions o;
  o.num_threads = options.num_threads;
  o.num_pages = options.num_pages;
  if (options.kv_cache_bytes) o.kv_cache_bytes = *options.kv_cache_bytes;
  o.acp = options.acp;
  o.log_eps_from_config = options.log_eps_from_config;
  o.progress = options.progress;
  auto backend = CpuBackend::Load(model_dir, o);
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<ModelBackend>(std::move(backend).value());
}

}  // namespace engine
}  // namespace foxserve
