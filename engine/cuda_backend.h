// The GPU backend (built with FOXSERVE_CUDA): the FoX forward of models/fox_cuda_model.h behind
// the same interface as the CPU backend. No CUDA header appears here.
#ifndef FOXSERVE_ENGINE_CUDA_BACKEND_H_
#define FOXSERVE_ENGINE_CUDA_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_backend.h"

namespace foxserve {
namespace models {
class FoxCudaModel;
}

namespace engine {

struct CudaBackendOptions {
  int64_t num_pages = 0;  // 0: from kv_cache_bytes
  int64_t kv_cache_bytes = int64_t{8} << 30;
  models::AcpOptions acp;
  bool log_eps_from_config = true;
  models::LoadProgress progress;
};

// Whether this build has the CUDA backend and a GPU is present; `why` says why not.
bool CudaBackendAvailable(std::string* why);

class CudaBackend : public ModelBackend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Load(const std::string& model_dir,
                                                           const CudaBackendOptions& options);
  ~CudaBackend() override;

  const models::FoxConfig& config() const override;
  std::string name() const override { return "cuda"; }
  int32_t page_size() const override;
  int64_t num_pages() const override;
  int64_t page_bytes() const override;
  const models::AcpOptions& acp() const override { return acp_; }
  const std::vector<double>& logit_bounds() const override;
  absl::Status Forward(absl::Span<const models::ForwardItem> items,
                       std::vector<float>* logits) override;
  absl::Status Launch(absl::Span<const models::ForwardItem> items,
                      std::vector<float>* logits) override;
  absl::Status Finish() override;
  bool overlaps_steps() const override;
  absl::Status CandidateRow(int64_t k, std::vector<float>* row) override;
  void PoisonPages(absl::Span<const int32_t> pages) override;
  // Decode steps run as one CUDA graph launch so far (graphs are on unless
  // FOXSERVE_CUDA_GRAPHS=off).
  int64_t decode_graph_launches() const;

 private:
  CudaBackend() = default;
  std::unique_ptr<models::FoxCudaModel> model_;
  models::AcpOptions acp_;
};

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_CUDA_BACKEND_H_
