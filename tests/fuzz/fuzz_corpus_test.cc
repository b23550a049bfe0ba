// Runs every fuzz target over its committed seed corpus (tests/fuzz/corpus/<target>) and the
// inputs that once broke it (tests/fuzz/regressions/<target>), in every build, gcc included; and
// holds the regression tests written for the crashes the fuzzers found (see bench/RESULTS.md).
// A broken property aborts the binary with "FUZZ PROPERTY FAILED" and the input's path.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/fuzz_targets.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace fuzz {
namespace {

using Target = int (*)(const uint8_t*, size_t);

const std::map<std::string, Target>& Targets() {
  static const auto* targets = new std::map<std::string, Target>{
      {"safetensors", FuzzSafetensors},
      {"model_config", FuzzModelConfig},
      {"bpe_tokenizer", FuzzBpeTokenizer},
      {"sentencepiece", FuzzSentencePiece},
      {"stream_decoder", FuzzStreamDecoder},
      {"generate_request", FuzzGenerateRequest},
  };
  return *targets;
}

// The input being run, printed if a property aborts the process.
char current_input[4096];

void PrintCurrentInput(int) {
  const char prefix[] = "fuzz_corpus_test: aborted while running ";
  (void)!write(2, prefix, sizeof(prefix) - 1);
  (void)!write(2, current_input, strlen(current_input));
  (void)!write(2, "\n", 1);
  std::signal(SIGABRT, SIG_DFL);
  std::raise(SIGABRT);
}

std::vector<std::string> FilesUnder(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_regular_file()) files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

void RunBytes(Target target, const std::string& bytes) {
  target(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

class CorpusTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CorpusTest, EveryInputKeepsTheProperties) {
  std::signal(SIGABRT, PrintCurrentInput);
  const Target target = Targets().at(GetParam());
  const std::string root = testing::SourceDir() + "/tests/fuzz";
  const std::vector<std::string> seeds = FilesUnder(root + "/corpus/" + GetParam());
  ASSERT_GE(seeds.size(), 5u) << "the seed corpus of " << GetParam() << " is missing";
  std::vector<std::string> inputs = seeds;
  for (const std::string& f : FilesUnder(root + "/regressions/" + GetParam())) inputs.push_back(f);
  for (const std::string& path : inputs) {
    std::snprintf(current_input, sizeof(current_input), "%s", path.c_str());
    RunBytes(target, testing::ReadFileOrDie(path));
  }
  std::printf("%s: %zu seeds, %zu regressions\n", GetParam().c_str(), seeds.size(),
              inputs.size() - seeds.size());
  std::signal(SIGABRT, SIG_DFL);
}

INSTANTIATE_TEST_SUITE_P(AllTargets, CorpusTest,
                         ::testing::Values("safetensors", "model_config", "bpe_tokenizer",
                                           "sentencepiece", "stream_decoder", "generate_request"),
                         [](const auto& info) { return info.param; });

// The properties themselves must be able to fail: a target fed an input that breaks nothing
// returns, and FUZZ_CHECK on a false condition dies.
TEST(FuzzFrameTest, ABrokenPropertyAborts) {
  EXPECT_DEATH(FUZZ_CHECK(1 + 1 == 3, "arithmetic"), "FUZZ PROPERTY FAILED");
}

}  // namespace
}  // namespace fuzz
}  // namespace foxserve
