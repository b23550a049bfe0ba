// foxserve-cli run as a real process on the golden checkpoints.
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "models/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/support/subprocess.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {
namespace {

std::string Cli(const std::string& args) { return std::string(FOXSERVE_CLI_PATH) + " " + args; }

std::vector<float> ReadLogits(const std::string& path, std::vector<int64_t>* shape) {
  auto file = models::SafetensorsFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  auto t = (*file)->Get("logits");
  EXPECT_TRUE(t.ok()) << t.status();
  *shape = t->shape;
  return *models::TensorToFloat32(*t);
}

double RelErr(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += (double{a[i]} - b[i]) * (double{a[i]} - b[i]);
    den += double{b[i]} * b[i];
  }
  return std::sqrt(num / den);
}

TEST(CliTest, LogitsMatchGoldenFile) {
  for (const char* model : {"fox-pro-tiny", "fox-llama-tiny"}) {
    for (const char* acp : {"off", "on"}) {
      ScratchDir dir;
      const std::string golden = GoldenDir(model) + "/golden.safetensors";
      const auto r = RunCommand(Cli("logits --model " + GoldenDir(model) + " --input " + golden +
                                    " --output " + dir.File("out.safetensors") + " --acp " + acp),
                                /*merge_stderr=*/true);
      ASSERT_EQ(r.exit_code, 0) << r.output;
      EXPECT_NE(r.output.find(std::string("acp: ") + acp), std::string::npos) << r.output;
      std::vector<int64_t> shape, golden_shape;
      const auto out = ReadLogits(dir.File("out.safetensors"), &shape);
      const auto ref = ReadLogits(golden, &golden_shape);
      ASSERT_EQ(shape, golden_shape);
      const size_t row = shape[1] * shape[2];
      for (int64_t b = 0; b < shape[0]; ++b) {
        EXPECT_LT(RelErr(out.data() + b * row, ref.data() + b * row, row),
                  std::strcmp(acp, "on") == 0 ? 1e-3 : 1e-4)
            << model << " row " << b;
      }
    }
  }
}

TEST(CliTest, GenerateGreedyPrintsTheReferenceTokens) {
  const std::string dir = GoldenDir("fox-llama-tiny");
  auto file = models::SafetensorsFile::Open(dir + "/golden.safetensors");
  ASSERT_TRUE(file.ok());
  auto ids = (*file)->Get("input_ids");
  std::string csv;
  for (int64_t t = 0; t < ids->shape[1]; ++t) {
    int64_t v;
    std::memcpy(&v, ids->bytes.data() + t * 8, 8);
    csv += (t ? "," : "") + std::to_string(v);
  }
  const auto json = nlohmann::json::parse(ReadFileOrDie(dir + "/golden.json"));
  std::string expected;
  for (const auto& t : json["greedy_new_tokens"][0]) {
    expected += (expected.empty() ? "" : " ") + std::to_string(t.get<int>());
  }
  const auto r = RunCommand(Cli("generate --model " + dir + " --input-ids " + csv +
                                " --max-new-tokens 16 --ignore-eos --print-ids"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> lines = absl::StrSplit(r.output, '\n', absl::SkipEmpty());
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(), expected);
}

TEST(CliTest, SampledGenerationIsReproducibleWithASeed) {
  const std::string cmd = Cli("generate --model " + GoldenDir("fox-pro-tiny") +
                              " --input-ids 5,6,7 --max-new-tokens 12 --temperature 1.0 "
                              "--top-p 0.9 --seed 77 --ignore-eos --print-ids");
  const auto a = RunCommand(cmd), b = RunCommand(cmd);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(a.output, b.output);
  std::vector<std::string> ids = absl::StrSplit(absl::StripAsciiWhitespace(a.output), ' ');
  EXPECT_EQ(ids.size(), 12u);
}

TEST(CliTest, BadInvocationsFailWithAClearMessage) {
  struct Bad {
    std::string args;
    std::string message;
  };
  const std::string pro = GoldenDir("fox-pro-tiny");
  const std::vector<Bad> cases = {
      {"", "usage"},
      {"frobnicate", "unknown command"},
      {"generate --input-ids 1", "missing required flag --model"},
      {"generate --model " + pro + " --input-ids 1 --max-new-tokens 2 --bogus 1", "unknown flag --bogus"},
      {"generate --model " + pro + " --input-ids 1,999", "999"},
      {"generate --model " + pro + " --input-ids 1 --top-p 1.5", "--top-p"},
      {"generate --model " + pro + " --input-ids 1 --max-new-tokens 0", "--max-new-tokens"},
      {"generate --model " + pro + " --prompt hello", "no tokenizer"},
      {"generate --model /nonexistent --input-ids 1", "/nonexistent/config.json"},
      {"logits --model " + pro + " --input /nonexistent.safetensors --output /tmp/x", "nonexistent"},
  };
  for (const Bad& bad : cases) {
    const auto r = RunCommand(Cli(bad.args), /*merge_stderr=*/true);
    EXPECT_NE(r.exit_code, 0) << bad.args;
    EXPECT_NE(r.output.find(bad.message), std::string::npos) << bad.args << "\n" << r.output;
  }
}

TEST(CliTest, CorruptCheckpointFailsStartup) {
  ScratchDir dir;
  const std::string src = GoldenDir("fox-pro-tiny");
  WriteFileOrDie(dir.File("config.json"), ReadFileOrDie(src + "/config.json"));
  const std::string weights = ReadFileOrDie(src + "/model.safetensors");
  WriteFileOrDie(dir.File("model.safetensors"), weights.substr(0, weights.size() / 2));
  const auto r = RunCommand(Cli("generate --model " + dir.path() + " --input-ids 1,2"),
                            /*merge_stderr=*/true);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("model.safetensors"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace testing
}  // namespace foxserve

namespace foxserve {
namespace testing {
namespace {

// The shipped model writes text in the corpus's style: most generated words are words of the
// corpus (random weights would give fragments), and it keeps the play's speaker layout.
TEST(CliTest, ShippedModelWritesShakespeare) {
  const std::string model = SourceDir() + "/models/fox-pro-shakespeare";
  const auto r = RunCommand(Cli("generate --model " + model +
                                " --prompt ROMEO: --max-new-tokens 200 --temperature 0.8 "
                                "--top-p 0.95 --seed 3 --ignore-eos"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(r.output.rfind("ROMEO:", 0), 0u) << r.output;
  const std::string corpus = ReadFileOrDie(SourceDir() + "/models/corpus/tinyshakespeare.txt");
  std::set<std::string> known;
  for (absl::string_view w : absl::StrSplit(corpus, absl::ByAnyChar(" \n,.;:!?'-"), absl::SkipEmpty())) {
    known.insert(std::string(w));
  }
  int words = 0, in_corpus = 0;
  for (absl::string_view w : absl::StrSplit(r.output.substr(6), absl::ByAnyChar(" \n,.;:!?'-"),
                                             absl::SkipEmpty())) {
    ++words;
    in_corpus += known.count(std::string(w));
  }
  std::printf("[ measured ] %d words, %d in the corpus\n", words, in_corpus);
  EXPECT_GT(words, 60);
  EXPECT_GT(in_corpus, words * 9 / 10) << r.output;
  EXPECT_NE(r.output.find(":\n"), std::string::npos) << "no speaker line:\n" << r.output;
}

}  // namespace
}  // namespace testing
}  // namespace foxserve
