#include "tests/engine/golden_data.h"

#include <cmath>
#include <cstring>

#include "gtest/gtest.h"
#include "models/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {

GoldenData LoadGolden(const std::string& name) {
  GoldenData g;
  g.model_dir = GoldenDir(name);
  auto file = models::SafetensorsFile::Open(g.model_dir + "/golden.safetensors");
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return g;
  auto ids = (*file)->Get("input_ids");
  auto logits = (*file)->Get("logits");
  EXPECT_TRUE(ids.ok() && logits.ok());
  if (!ids.ok() || !logits.ok()) return g;
  EXPECT_EQ(ids->dtype, models::DType::kI64);
  g.batch = ids->shape[0];
  g.tokens = ids->shape[1];
  g.vocab = logits->shape[2];
  auto values = models::TensorToFloat32(*logits);
  EXPECT_TRUE(values.ok());
  for (int64_t b = 0; b < g.batch; ++b) {
    std::vector<int32_t> row(g.tokens);
    for (int64_t t = 0; t < g.tokens; ++t) {
      int64_t v;
      std::memcpy(&v, ids->bytes.data() + (b * g.tokens + t) * 8, 8);
      row[t] = static_cast<int32_t>(v);
    }
    g.input_ids.push_back(row);
    g.logits.emplace_back(values->begin() + b * g.tokens * g.vocab,
                          values->begin() + (b + 1) * g.tokens * g.vocab);
  }
  const auto json = nlohmann::json::parse(ReadFileOrDie(g.model_dir + "/golden.json"));
  for (const auto& row : json.at("greedy_new_tokens")) {
    g.greedy_tokens.push_back(row.get<std::vector<int32_t>>());
  }
  return g;
}

std::unique_ptr<engine::CpuBackend> LoadBackend(const std::string& model_dir, bool acp,
                                                int64_t num_pages, int threads) {
  engine::CpuBackendOptions options;
  options.num_threads = threads;
  options.num_pages = num_pages;
  options.acp.enabled = acp;
  auto backend = engine::CpuBackend::Load(model_dir, options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(backend).value() : nullptr;
}

// A copy of a golden checkpoint whose forget-gate biases make head 0 of every layer forget fast
// (sigmoid(-2): about 2 nats per token) and head 1 slowly (sigmoid(5): about 0.007 per token).
void WriteFastForgettingModel(const std::string& golden, const std::string& dir) {
  WriteFileOrDie(dir + "/config.json", ReadFileOrDie(GoldenDir(golden) + "/config.json"));
  auto ckpt = models::SafetensorsCheckpoint::Open(GoldenDir(golden));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  std::vector<std::vector<uint8_t>> storage;
  std::vector<models::TensorToWrite> tensors;
  for (const std::string& name : (*ckpt)->names()) {
    auto t = (*ckpt)->Get(name);
    ASSERT_TRUE(t.ok());
    storage.emplace_back(t->bytes.begin(), t->bytes.end());
    if (name.find("fgate_proj.bias") != std::string::npos) {
      ASSERT_EQ(t->dtype, models::DType::kF32);
      const float bias[2] = {-2.0f, 5.0f};
      std::memcpy(storage.back().data(), bias, sizeof(bias));
    }
  }
  size_t i = 0;
  for (const std::string& name : (*ckpt)->names()) {
    auto t = (*ckpt)->Get(name);
    tensors.push_back({name, t->dtype, t->shape, storage[i++]});
  }
  ASSERT_TRUE(models::WriteSafetensors(dir + "/model.safetensors", tensors).ok());
}

double RelativeError(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace testing
}  // namespace foxserve
