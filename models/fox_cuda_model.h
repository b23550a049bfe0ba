// The FoX forward pass on the GPU (bf16 weights and KV pages, fp32 activations and
// accumulation): the CUDA twin of models/fox_model.h, behind a header free of CUDA types so the
// engine can hold it. The host keeps the sequences' block tables and c metadata
// (SequenceKvState), as for the CPU forward; the device keeps a mirror of them
// (kernels/cuda/device_kv_mirror.h, attached to each state as its backend_state) and plans ACP
// there (kernels/cuda/acp_plan_cuda.h) with the CPU's decisions. A step synchronizes once: the
// logits (or greedy tokens) and the plan's results come back together. FOXSERVE_ACP_PLANNER=host
// plans on the host instead (one round trip a layer), for A/B runs and as the tests' reference.
// Matrix products through cuBLASLt. Requires head_dim 64 and pages of 64 tokens.
//
// Thread-safety: Forward and PoisonPages from one thread at a time (the scheduler loop).
#ifndef FOXSERVE_MODELS_FOX_CUDA_MODEL_H_
#define FOXSERVE_MODELS_FOX_CUDA_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "models/fox_model.h"
#include "models/fox_weights.h"

namespace foxserve {
namespace models {

// Whether a CUDA device can be used; `why` says why not.
bool CudaDeviceAvailable(std::string* why);

class FoxCudaModel {
 public:
  // Uploads the weights (as bf16) and allocates a KV pool of num_pages pages of 64 tokens.
  static absl::StatusOr<std::unique_ptr<FoxCudaModel>> Create(std::unique_ptr<FoxWeights> weights,
                                                              int64_t num_pages);
  ~FoxCudaModel();

  const FoxConfig& config() const;
  const std::vector<double>& logit_bounds() const;
  int32_t page_size() const;
  int64_t page_bytes() const;
  int64_t num_pages() const;
  // Decode steps run as a CUDA graph so far (the default; FOXSERVE_CUDA_GRAPHS=off turns graphs off), for tests and benchmarks.
  int64_t decode_graph_launches() const;
  // Pages that fit in `bytes` of device memory for this model.
  static int64_t PagesForBytes(const FoxConfig& config, int64_t bytes);

  // As FoxModel::CandidateRow (a copy from the device).
  absl::Status CandidateRow(int64_t k, std::vector<float>* row);
  // As FoxModel::Forward; refused while a step is in flight.
  absl::Status Forward(absl::Span<const ForwardItem> items, const AcpOptions& acp,
                       std::vector<float>* logits);
  // Forward in two halves (overlapped decode, engine/model_backend.h): Launch queues a step and
  // returns; Finish waits for the oldest queued step and completes it as Forward does (greedy
  // tokens, candidates, counters, sequence state; `logits` is filled by then). The items, their
  // states and outputs must outlive the step. A second step may be queued behind one in flight
  // only when it continues it: every item takes ForwardItem::token_from_step_in_flight, the same
  // states in the same order, every item of both steps greedy. Launch advances each state's
  // num_tokens at once, so the second step's positions follow the first's.
  absl::Status Launch(absl::Span<const ForwardItem> items, const AcpOptions& acp,
                      std::vector<float>* logits);
  absl::Status Finish();
  // Whether Launch can queue a step behind one in flight (device planner; not while
  // FOXSERVE_PROFILE_STAGES times the stages, whose marks assume one step at a time).
  bool overlaps_steps() const;
  void PoisonPages(absl::Span<const int32_t> pages);

 private:
  struct Impl;
  explicit FoxCudaModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_FOX_CUDA_MODEL_H_
