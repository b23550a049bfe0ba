#include "engine/cuda_backend.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "models/safetensors.h"
#include "models/status_macros.h"

#ifdef FOXSERVE_HAVE_CUDA
#include "models/fox_cuda_model.h"
#endif

namespace foxserve {
namespace engine {

#ifdef FOXSERVE_HAVE_CUDA

bool CudaBackendAvailable(std::string* why) { return models::CudaDeviceAvailable(why); }

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Load(const std::string& model_dir,
                                                               const CudaBackendOptions& options) {
  FOXSERVE_ASSIGN_OR_RETURN(models::FoxConfig config, models::LoadFoxConfig(model_dir));
  FOXSERVE_ASSIGN_OR_RETURN(auto checkpoint, models::SafetensorsCheckpoint::Open(model_dir));
  FOXSERVE_ASSIGN_OR_RETURN(auto weights,
                            models::LoadFoxWeights(*checkpoint, config, options.progress));
  const int64_t pages = options.num_pages > 0
                            ? options.num_pages
                            : models::FoxCudaModel::PagesForBytes(config, options.kv_cache_bytes);
  std::unique_ptr<CudaBackend> backend(new CudaBackend());
  FOXSERVE_ASSIGN_OR_RETURN(backend->model_,
                            models::FoxCudaModel::Create(std::move(weights), pages));
  backend->acp_ = options.acp;
  if (options.log_eps_from_config && config.log_pruning_tolerance) {
    backend->acp_.log_eps = *config.log_pruning_tolerance;
  }
  return backend;
}

CudaBackend::~CudaBackend() = default;

const models::FoxConfig& CudaBackend::config() const { return model_->config(); }
int32_t CudaBackend::page_size() const { return model_->page_size(); }
int64_t CudaBackend::num_pages() const { return model_->num_pages(); }
int64_t CudaBackend::decode_graph_launches() const { return model_->decode_graph_launches(); }
int64_t CudaBackend::page_bytes() const { return model_->page_bytes(); }
const std::vector<double>& CudaBackend::logit_bounds() const { return model_->logit_bounds(); }

absl::Status CudaBackend::Forward(absl::Span<const models::ForwardItem> items,
                                  std::vector<float>* logits) {
  return model_->Forward(items, acp_, logits);
}

absl::Status CudaBackend::Launch(absl::Span<const models::ForwardItem> items,
                                 std::vector<float>* logits) {
  return model_->Launch(items, acp_, logits);
}

absl::Status CudaBackend::Finish() { return model_->Finish(); }
bool CudaBackend::overlaps_steps() const { return model_->overlaps_steps(); }

absl::Status CudaBackend::CandidateRow(int64_t k, std::vector<float>* row) {
  return model_->CandidateRow(k, row);
}

void CudaBackend::PoisonPages(absl::Span<const int32_t> pages) { model_->PoisonPages(pages); }

#else  // no CUDA in this build

}  // namespace engine
namespace models {
class FoxCudaModel {};  // never constructed: Load refuses first
}  // namespace models
namespace engine {

bool CudaBackendAvailable(std::string* why) {
  if (why != nullptr) *why = "this build has no CUDA backend (configured with FOXSERVE_CUDA off or no nvcc)";
  return false;
}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Load(const std::string&,
                                                               const CudaBackendOptions&) {
  std::string why;
  CudaBackendAvailable(&why);
  return absl::FailedPreconditionError(why);
}

CudaBackend::~CudaBackend() = default;
const models::FoxConfig& CudaBackend::config() const { std::abort(); }
int32_t CudaBackend::page_size() const { return 0; }
int64_t CudaBackend::num_pages() const { return 0; }
int64_t CudaBackend::decode_graph_launches() const { return 0; }
int64_t CudaBackend::page_bytes() const { return 0; }
const std::vector<double>& CudaBackend::logit_bounds() const { std::abort(); }
absl::Status CudaBackend::Forward(absl::Span<const models::ForwardItem>, std::vector<float>*) {
  return absl::FailedPreconditionError("no CUDA backend");
}
absl::Status CudaBackend::CandidateRow(int64_t, std::vector<float>*) {
  return absl::FailedPreconditionError("no CUDA backend");
}
absl::Status CudaBackend::Launch(absl::Span<const models::ForwardItem>, std::vector<float>*) {
  return absl::FailedPreconditionError("no CUDA backend");
}
absl::Status CudaBackend::Finish() { return absl::FailedPreconditionError("no CUDA backend"); }
bool CudaBackend::overlaps_steps() const { return false; }
void CudaBackend::PoisonPages(absl::Span<const int32_t>) {}

#endif

}  // namespace engine
}  // namespace foxserve
