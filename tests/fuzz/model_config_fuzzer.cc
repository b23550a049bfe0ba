// config.json input: ParseFoxConfig must refuse bad input with InvalidArgument, and a config it
// accepts must describe a model the rest of the code can size without overflow.
#include "absl/strings/str_cat.h"
#include "models/model_config.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/fuzz_targets.h"

namespace foxserve {
namespace fuzz {

int FuzzModelConfig(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = models::ParseFoxConfig(text, "fuzz/config.json");
  if (!config.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(config.status()), config.status().ToString());
    FUZZ_CHECK(config.status().message().rfind("fuzz/config.json", 0) == 0,
               absl::StrCat("message does not name the file: ", config.status().message()));
    return 0;
  }
  const models::FoxConfig& c = *config;
  const std::string where = absl::StrCat("accepted ", Quote(text), ": ");
  FUZZ_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.num_hidden_layers > 0 && c.num_heads > 0,
             where + "a non-positive size");
  FUZZ_CHECK(c.head_dim > 0 && c.head_dim * c.num_heads == c.hidden_size,
             where + "head_dim * num_heads != hidden_size");
  FUZZ_CHECK(c.intermediate_size > 0, where + "no MLP width");
  // The weights of one layer must be countable in int64 (fox_weights.cc multiplies these).
  int64_t per_layer = 0;
  FUZZ_CHECK(!__builtin_mul_overflow(c.hidden_size, c.intermediate_size, &per_layer),
             where + "hidden_size * intermediate_size overflows");
  int64_t embedding = 0;
  FUZZ_CHECK(!__builtin_mul_overflow(c.vocab_size, c.hidden_size, &embedding),
             where + "vocab_size * hidden_size overflows");
  for (int32_t id : c.eos_token_ids) {
    FUZZ_CHECK(id >= 0 && id < c.vocab_size, where + "eos id outside the vocabulary");
  }
  if (c.bos_token_id) FUZZ_CHECK(*c.bos_token_id >= 0, where + "negative bos id");
  if (c.log_pruning_tolerance) FUZZ_CHECK(*c.log_pruning_tolerance < 0, where + "log eps >= 0");
  FUZZ_CHECK(c.norm_eps >= 0 && c.norm_eps < 1, where + "norm_eps out of range");
  return 0;
}

}  // namespace fuzz
}  // namespace foxserve

FOXSERVE_FUZZ_TARGET(FuzzModelConfig)
