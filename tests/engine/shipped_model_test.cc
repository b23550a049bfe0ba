// The shipped model (models/fox-pro-shakespeare) through the C++ engine: the validation loss the
// trainer recorded (float32, the same BF16 weights) is reproduced within 1%, ACP moves it by
// less than 0.1%, and our SentencePiece path tokenizes the validation text as the trainer did.
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/kv_block_manager.h"
#include "engine/sequence_runner.h"
#include "gtest/gtest.h"
#include "models/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/engine/golden_data.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {
namespace {

std::string ModelDir() { return SourceDir() + "/models/fox-pro-shakespeare"; }

// Mean cross-entropy (nats) of ids[1:] given the prefixes, computed by the engine.
double Loss(bool acp, const std::vector<int32_t>& ids) {
  auto backend = LoadBackend(ModelDir(), acp, /*num_pages=*/6 * 4 * 16);
  engine::KvBlockManager blocks(backend->num_pages());
  engine::SequenceRunner runner(backend.get(), &blocks, ids.size());
  auto logits = runner.Feed(ids, /*all_logits=*/true);
  EXPECT_TRUE(logits.ok()) << logits.status();
  const int64_t V = backend->config().vocab_size;
  double total = 0;
  for (size_t t = 0; t + 1 < ids.size(); ++t) {
    const float* row = logits->data() + t * V;
    double max_logit = row[0];
    for (int64_t v = 1; v < V; ++v) max_logit = std::max<double>(max_logit, row[v]);
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(row[v] - max_logit);
    total += max_logit + std::log(z) - row[ids[t + 1]];
  }
  return total / static_cast<double>(ids.size() - 1);
}

TEST(ShippedModelTest, ValidationLossMatchesTheTrainer) {
  const auto slice = nlohmann::json::parse(ReadFileOrDie(ModelDir() + "/eval_slice.json"));
  const auto ids = slice["input_ids"].get<std::vector<int32_t>>();
  const double recorded = slice["loss"].get<double>();
  ASSERT_GE(ids.size(), 256u);
  const double dense = Loss(false, ids);
  const double pruned = Loss(true, ids);
  std::printf("[ measured ] %zu tokens: trainer %.5f, engine %.5f (%.3g%%), ACP on %.5f (%.3g%%)\n",
              ids.size(), recorded, dense, 100 * std::fabs(dense - recorded) / recorded, pruned,
              100 * std::fabs(pruned - dense) / dense);
  EXPECT_LT(std::fabs(dense - recorded) / recorded, 0.01);
  EXPECT_LT(std::fabs(pruned - dense) / dense, 0.001);
}

TEST(ShippedModelTest, TokenizerAgreesWithTheTrainersEncoding) {
  // The trainer (Python sentencepiece) encoded the validation split: the last 10% of the lines.
  const std::string corpus = ReadFileOrDie(SourceDir() + "/models/corpus/tinyshakespeare.txt");
  int64_t newlines = 0;
  for (char c : corpus) newlines += c == '\n';
  size_t cut = 0;
  for (int64_t seen = 0; cut < corpus.size(); ++cut) {
    if (corpus[cut] == '\n' && ++seen == (newlines + 1) * 9 / 10) break;
  }
  const std::string val = corpus.substr(cut + 1);
  auto tokenizer = models::LoadTokenizer(ModelDir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->kind(), "sentencepiece");
  auto encoded = (*tokenizer)->Encode(val);
  ASSERT_TRUE(encoded.ok());
  const auto slice = nlohmann::json::parse(ReadFileOrDie(ModelDir() + "/eval_slice.json"));
  const auto ids = slice["input_ids"].get<std::vector<int32_t>>();
  ASSERT_EQ(ids[0], *(*tokenizer)->bos_id());
  ASSERT_GE(encoded->size(), ids.size() - 1);
  EXPECT_EQ(std::vector<int32_t>(encoded->begin(), encoded->begin() + ids.size() - 1),
            std::vector<int32_t>(ids.begin() + 1, ids.end()));
  EXPECT_EQ(*(*tokenizer)->Decode(*encoded), val);
}

}  // namespace
}  // namespace testing
}  // namespace foxserve
