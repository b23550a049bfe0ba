// The FoX model configuration: the Hugging Face `config.json` of the authors' checkpoints
// (FOX.md section 1). Every key that changes the computation is parsed; a value foxserve does not
// support is an InvalidArgument naming the key and the value. Keys that do not change the
// computation (initializer_range, fuse_*, use_cache, ...) are ignored.
#ifndef FOXSERVE_MODELS_MODEL_CONFIG_H_
#define FOXSERVE_MODELS_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace foxserve {
namespace models {

inline constexpr char kFoxModelType[] = "forgetting_transformer-project_fox";

enum class FgateType { kFull, kBiasOnly, kFixed, kNone };
enum class MlpActivation { kSwish, kSigmoid };
enum class OgateActivation { kSigmoid, kSilu };

struct FoxConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;  // D
  int64_t num_hidden_layers = 0;
  int64_t num_heads = 0;  // H
  int64_t head_dim = 0;   // D / H
  double hidden_ratio = 4;
  int64_t intermediate_size = 0;  // I (resolved from hidden_ratio when null in the file)
  MlpActivation hidden_act = MlpActivation::kSwish;
  double norm_eps = 1e-6;
  FgateType fgate_type = FgateType::kFull;
  bool use_output_gate = false;
  OgateActivation ogate_act = OgateActivation::kSigmoid;
  bool use_output_norm = false;
  bool qk_norm = false;
  bool qk_norm_share_param_across_head = false;
  bool use_k_shift = false;
  bool use_v_shift = false;
  bool tie_word_embeddings = false;
  std::optional<double> log_pruning_tolerance;  // ACP's log(eps); null: ACP off in the reference
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;  // config may give one id or a list
  std::optional<int32_t> pad_token_id;
  std::optional<int64_t> max_position_embeddings;  // informational: FoX has no position embedding

  // "FoX (Pro)": output gate + output norm + qk-norm + k and v shift.
  bool is_pro() const {
    return use_output_gate && use_output_norm && qk_norm && use_k_shift && use_v_shift;
  }
};

// Parses config.json text; `source` names the file in error messages.
absl::StatusOr<FoxConfig> ParseFoxConfig(absl::string_view json_text, const std::string& source);
// Reads and parses `<model_dir>/config.json`.
absl::StatusOr<FoxConfig> LoadFoxConfig(const std::string& model_dir);

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_MODEL_CONFIG_H_
