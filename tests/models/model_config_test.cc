#include "models/model_config.h"

#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/test_support.h"

namespace foxserve {
namespace models {
namespace {

using Json = nlohmann::json;

Json GoldenConfig(const std::string& name) {
  return Json::parse(testing::ReadFileOrDie(testing::GoldenDir(name) + "/config.json"));
}

absl::StatusOr<FoxConfig> Parse(const Json& j) { return ParseFoxConfig(j.dump(), "config.json"); }

TEST(ModelConfigTest, ReadsTheGoldenProConfig) {
  auto c = LoadFoxConfig(testing::GoldenDir("fox-pro-tiny"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(c->hidden_size, 128);
  EXPECT_EQ(c->num_hidden_layers, 2);
  EXPECT_EQ(c->num_heads, 2);
  EXPECT_EQ(c->head_dim, 64);
  // hidden_ratio 3.5, intermediate_size null: int(128 * 3.5 * 2/3) = 298 -> 256 * 2 = 512.
  EXPECT_EQ(c->intermediate_size, 512);
  EXPECT_TRUE(c->is_pro());
  EXPECT_EQ(c->fgate_type, FgateType::kFull);
  EXPECT_EQ(c->hidden_act, MlpActivation::kSwish);
  EXPECT_DOUBLE_EQ(c->norm_eps, 1e-6);
  EXPECT_FALSE(c->log_pruning_tolerance.has_value());
  EXPECT_EQ(c->bos_token_id, 0);
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{1});
  EXPECT_FALSE(c->pad_token_id.has_value());
}

TEST(ModelConfigTest, ReadsTheGoldenLlamaConfig) {
  auto c = LoadFoxConfig(testing::GoldenDir("fox-llama-tiny"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->is_pro());
  EXPECT_FALSE(c->qk_norm || c->use_k_shift || c->use_v_shift || c->use_output_gate);
  // hidden_ratio 4: int(128 * 4 * 2/3) = 341 -> 512.
  EXPECT_EQ(c->intermediate_size, 512);
}

TEST(ModelConfigTest, ExplicitValuesAndAlternatives) {
  Json j = GoldenConfig("fox-llama-tiny");
  j["intermediate_size"] = 300;
  j["hidden_act"] = "sigmoid";
  j["fgate_type"] = "bias_only";
  j["use_output_gate"] = true;
  j["ogate_act"] = "silu";
  j["log_pruning_tolerance"] = -8.5;
  j["eos_token_id"] = {1, 7};
  j["tie_word_embeddings"] = true;
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->intermediate_size, 300);
  EXPECT_EQ(c->hidden_act, MlpActivation::kSigmoid);
  EXPECT_EQ(c->fgate_type, FgateType::kBiasOnly);
  EXPECT_EQ(c->ogate_act, OgateActivation::kSilu);
  EXPECT_DOUBLE_EQ(*c->log_pruning_tolerance, -8.5);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{1, 7}));
  EXPECT_TRUE(c->tie_word_embeddings);
  for (const char* f : {"fixed", "none", "full"}) {
    j["fgate_type"] = f;
    EXPECT_TRUE(Parse(j).ok()) << f;
  }
}

// Every unsupported value is an InvalidArgument naming the key and showing the value.
TEST(ModelConfigTest, UnsupportedValuesNameKeyAndValue) {
  struct Bad {
    const char* key;
    Json value;
    const char* shown;
  };
  const Bad cases[] = {
      {"model_type", "llama", "\"llama\""},
      {"num_kv_heads", 1, "1"},
      {"hidden_act", "gelu", "\"gelu\""},
      {"fgate_type", "sometimes", "\"sometimes\""},
      {"ogate_act", "tanh", "\"tanh\""},
      {"use_rope", true, "true"},
      {"attention_bias", true, "true"},
      {"window_size", 512, "512"},
      {"elementwise_affine", false, "false"},
      {"hidden_size", "128", "\"128\""},
      {"hidden_size", 0, "0"},
      {"num_heads", 3, "3"},           // does not divide 128
      {"vocab_size", -5, "-5"},
      {"vocab_size", 1e12, "1000000000000"},
      {"norm_eps", "tiny", "\"tiny\""},
      {"qk_norm", 1, "1"},
      {"log_pruning_tolerance", 2.0, "2.0"},
      {"eos_token_id", 99999, "99999"},
      {"num_hidden_layers", 1000000, "1000000"},
      {"hidden_ratio", 3.5e-6, "3.5e-06"},  // int(128 * ratio * 2/3) = 0: no MLP (a fuzzer find)
  };
  for (const Bad& bad : cases) {
    Json j = GoldenConfig("fox-pro-tiny");
    j[bad.key] = bad.value;
    auto c = Parse(j);
    ASSERT_FALSE(c.ok()) << bad.key;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << bad.key;
    const std::string msg(c.status().message());
    EXPECT_NE(msg.find(std::string("\"") + bad.key + "\""), std::string::npos) << msg;
    EXPECT_NE(msg.find(bad.shown), std::string::npos) << msg;
    EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  }
  // Pro's fused norm-gate requires sigmoid.
  Json j = GoldenConfig("fox-pro-tiny");
  j["ogate_act"] = "silu";
  EXPECT_EQ(Parse(j).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ModelConfigTest, MalformedFiles) {
  EXPECT_EQ(ParseFoxConfig("{\"vocab_size\": ", "c.json").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseFoxConfig("[1, 2]", "c.json").status().code(), absl::StatusCode::kInvalidArgument);
  Json j = GoldenConfig("fox-pro-tiny");
  j.erase("vocab_size");
  auto missing = Parse(j);
  EXPECT_NE(missing.status().message().find("vocab_size"), std::string::npos);
  EXPECT_EQ(LoadFoxConfig("/nonexistent/dir").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace models
}  // namespace foxserve
