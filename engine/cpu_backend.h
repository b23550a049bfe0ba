// The float32 CPU backend: the reference every GPU path is tested against, and what the server
// runs when no GPU is present. Owns the model, the thread pool and the KV page storage.
#ifndef FOXSERVE_ENGINE_CPU_BACKEND_H_
#define FOXSERVE_ENGINE_CPU_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_backend.h"
#include "kernels/thread_pool.h"

namespace foxserve {
namespace engine {

struct CpuBackendOptions {
  int num_threads = 0;  // 0: one per hardware thread
  int32_t page_size = kernels::kDefaultPageSize;
  // KV pool size; 0 derives it from kv_cache_bytes.
  int64_t num_pages = 0;
  int64_t kv_cache_bytes = int64_t{1} << 30;
  models::AcpOptions acp;
  // When the config's log_pruning_tolerance is set and acp.log_eps was not overridden, the
  // config's value wins.
  bool log_eps_from_config = true;
  models::LoadProgress progress;  // optional: weight loading progress
  // Tests: report overlaps_steps(), so that the engine takes its overlapped decode path here too
  // (the CPU runs a step at Launch, so overlapping would only delay each token by a step).
  bool report_overlapped_steps = false;
};

class CpuBackend : public ModelBackend {
 public:
  // Loads config.json, the weights and prepares the KV pool.
  static absl::StatusOr<std::unique_ptr<CpuBackend>> Load(const std::string& model_dir,
                                                          const CpuBackendOptions& options);
  ~CpuBackend() override;

  const models::FoxConfig& config() const override { return model_->config(); }
  std::string name() const override { return "cpu"; }
  int32_t page_size() const override { return layout_.page_size; }
  int64_t num_pages() const override { return num_pages_; }
  int64_t page_bytes() const override {
    return layout_.page_floats() * static_cast<int64_t>(sizeof(float));
  }
  const models::AcpOptions& acp() const override { return acp_; }
  const std::vector<double>& logit_bounds() const override { return model_->logit_bounds(); }

  absl::Status Forward(absl::Span<const models::ForwardItem> items,
                       std::vector<float>* logits) override;
  absl::Status CandidateRow(int64_t k, std::vector<float>* row) override {
    return model_->CandidateRow(k, row);
  }
  void PoisonPages(absl::Span<const int32_t> pages) override;
  bool overlaps_steps() const override { return report_overlapped_steps_; }

 private:
  CpuBackend() = default;

  std::unique_ptr<kernels::ThreadPool> pool_;
  std::unique_ptr<models::FoxModel> model_;
  kernels::KvPageLayout layout_;
  int64_t num_pages_ = 0;
  // [num_pages][layout_.page_floats()], left uninitialized: a page is written before it is read,
  // and untouched pages cost no resident memory.
  std::unique_ptr<float[]> kv_storage_;
  models::AcpOptions acp_;
  bool report_overlapped_steps_ = false;
};

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_CPU_BACKEND_H_
