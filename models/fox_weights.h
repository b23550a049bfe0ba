// FoX weights in float32, laid out for the CPU forward pass, loaded from a checkpoint with strict
// name and shape checks (FOX.md section 1): a tensor the config implies and the checkpoint lacks,
// a shape that disagrees, or a tensor the config does not use is an error naming the tensor.
#ifndef FOXSERVE_MODELS_FOX_WEIGHTS_H_
#define FOXSERVE_MODELS_FOX_WEIGHTS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "models/model_config.h"
#include "models/safetensors.h"

namespace foxserve {
namespace models {

// Row offsets inside a layer's fused input projection; -1 when the config has no such part.
// Every part reads the attention-normed hidden state, so one matrix product computes them all.
struct InProjLayout {
  int64_t q = -1;        // [D] rows: q_proj
  int64_t k = -1;        // [D] rows: k_proj (or k_proj.linear with k shift)
  int64_t v = -1;        // [D] rows: v_proj (or v_proj.linear)
  int64_t k_shift = -1;  // [H] rows: k_proj.shift_proj
  int64_t v_shift = -1;  // [H] rows: v_proj.shift_proj
  int64_t fgate = -1;    // [H] rows: fgate_proj (fgate_type full)
  int64_t ogate = -1;    // [D] rows: ogate_proj
  int64_t rows = 0;
};

InProjLayout MakeInProjLayout(const FoxConfig& config);

struct FoxLayerWeights {
  std::vector<float> attn_norm;     // [D]
  std::vector<float> in_proj;       // [rows, D], see InProjLayout
  std::vector<float> fgate_bias;    // [H]; empty for fgate_type none
  std::vector<float> q_norm;        // [D], or [head_dim] when shared across heads; empty without qk_norm
  std::vector<float> k_norm;        // same
  std::vector<float> output_norm;   // [D]; empty without use_output_norm
  std::vector<float> o_proj;        // [D, D]
  std::vector<float> mlp_norm;      // [D]
  std::vector<float> gate_up_proj;  // [2I, D]: rows 0..I-1 gate, I..2I-1 value
  std::vector<float> down_proj;     // [D, I]
};

struct FoxWeights {
  FoxConfig config;
  InProjLayout in_proj;
  std::vector<float> embeddings;  // [V, D]
  std::vector<FoxLayerWeights> layers;
  std::vector<float> final_norm;  // [D]
  std::vector<float> lm_head;     // [V, D]; empty when tied to the embeddings

  const std::vector<float>& output_embeddings() const {
    return lm_head.empty() ? embeddings : lm_head;
  }
};

// Called after each tensor with (bytes converted so far, bytes in the checkpoint).
using LoadProgress = std::function<void(int64_t, int64_t)>;

absl::StatusOr<std::unique_ptr<FoxWeights>> LoadFoxWeights(const SafetensorsCheckpoint& checkpoint,
                                                           const FoxConfig& config,
                                                           const LoadProgress& progress = nullptr);

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_FOX_WEIGHTS_H_
