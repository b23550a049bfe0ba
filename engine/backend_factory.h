// Picks and loads a backend: "cpu", "cuda", or "auto" (CUDA when this build has it and a GPU is
// present, else the CPU).
#ifndef FOXSERVE_ENGINE_BACKEND_FACTORY_H_
#define FOXSERVE_ENGINE_BACKEND_FACTORY_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model_backend.h"

namespace foxserve {
namespace engine {

struct BackendOptions {
  std::string device = "auto";
  int num_threads = 0;                 // CPU backend
  int64_t num_pages = 0;               // 0: from kv_cache_bytes
  std::optional<int64_t> kv_cache_bytes;  // unset: 1 GiB on the CPU, 8 GiB on the GPU
  models::AcpOptions acp;
  bool log_eps_from_config = true;
  models::LoadProgress progress;
};

absl::StatusOr<std::unique_ptr<ModelBackend>> LoadBackend(const std::string& model_dir,
                                                          const BackendOptions& options);

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_BACKEND_FACTORY_H_
