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
