// SentencePiece through the Tokenizer interface, checked against the Debian command-line tools
// (spm_train makes a small model, spm_encode / spm_decode give the reference ids and text).
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/sentencepiece_adapter.h"
#include "models/tokenizer.h"
#include "tests/models/tokenizer_test_util.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace models {
namespace {

using ::foxserve::testing::ParseIds;
using ::foxserve::testing::TrainSentencePiece;
using ::foxserve::testing::ReadFileOrDie;
using ::foxserve::testing::RunCommand;
using ::foxserve::testing::ScratchDir;
using ::foxserve::testing::ShellQuote;
using ::foxserve::testing::SourceDir;
using ::foxserve::testing::UnicodeSample;
using ::foxserve::testing::WriteFileOrDie;
using ::testing::HasSubstr;

constexpr size_t kTrainBytes = 200000;

std::string Corpus() { return ReadFileOrDie(SourceDir() + "/models/corpus/tinyshakespeare.txt"); }

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}


// A BPE model over the first 200 KB of the corpus with byte fallback and no normalization, so
// that any text round-trips; BOS and EOS at ids other than the defaults so that the test sees
// them read from the model. Trained once per test binary.
class SentencePieceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScratchDir;
    std::string train = Corpus().substr(0, kTrainBytes);
    train.resize(train.rfind('\n') + 1);
    trained_ = TrainSentencePiece(*dir_, "sp", train,
                     "--vocab_size=1000 --model_type=bpe --character_coverage=1.0 "
                     "--byte_fallback=true --normalization_rule_name=identity "
                     "--remove_extra_whitespaces=false --unk_id=0 --bos_id=2 --eos_id=1 "
                     "--pad_id=-1");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(trained_); }

  static std::string ModelPath() { return dir_->File("sp.model"); }

  // The held-out text: 30 KB of corpus after the training part, and the Unicode sample.
  static std::vector<std::string> HeldOutLines() {
    std::vector<std::string> lines = Lines(Corpus().substr(kTrainBytes, 30000));
    lines.erase(lines.begin());  // a partial line
    for (const std::string& line : Lines(UnicodeSample())) lines.push_back(line);
    return lines;
  }

  static ScratchDir* dir_;
  static bool trained_;
};

ScratchDir* SentencePieceTest::dir_ = nullptr;
bool SentencePieceTest::trained_ = false;

TEST_F(SentencePieceTest, EncodeMatchesSpmEncodeLineByLine) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadSentencePieceTokenizer(ModelPath(), {});
  ASSERT_TRUE(t.ok()) << t.status();
  ScratchDir dir;
  const std::vector<std::string> lines = HeldOutLines();
  std::string input;
  for (const std::string& line : lines) input += line + "\n";
  WriteFileOrDie(dir.File("held_out.txt"), input);
  const testing::CommandResult r =
      RunCommand("spm_encode --model=" + ShellQuote(ModelPath()) + " --output_format=id < " +
                 ShellQuote(dir.File("held_out.txt")));
  ASSERT_EQ(r.exit_code, 0) << "spm_encode failed";
  const std::vector<std::string> reference = Lines(r.output);
  ASSERT_EQ(reference.size(), lines.size());
  size_t total = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::StatusOr<std::vector<int32_t>> ids = (*t)->Encode(lines[i]);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, ParseIds(reference[i])) << "line " << i << ": " << lines[i];
    total += ids->size();
  }
  EXPECT_GT(total, lines.size());
}

TEST_F(SentencePieceTest, DecodeMatchesSpmDecodeAndRoundTrips) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadSentencePieceTokenizer(ModelPath(), {});
  ASSERT_TRUE(t.ok()) << t.status();
  const std::vector<std::string> lines = HeldOutLines();
  std::vector<std::vector<int32_t>> all_ids;
  std::string id_lines;
  for (const std::string& line : lines) {
    all_ids.push_back(*(*t)->Encode(line));
    for (int32_t id : all_ids.back()) id_lines += std::to_string(id) + " ";
    id_lines += "\n";
  }
  ScratchDir dir;
  WriteFileOrDie(dir.File("ids.txt"), id_lines);
  const testing::CommandResult r =
      RunCommand("spm_decode --model=" + ShellQuote(ModelPath()) + " --input_format=id < " +
                 ShellQuote(dir.File("ids.txt")));
  ASSERT_EQ(r.exit_code, 0) << "spm_decode failed";
  const std::vector<std::string> reference = Lines(r.output);
  ASSERT_EQ(reference.size(), lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::StatusOr<std::string> text = (*t)->Decode(all_ids[i]);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, reference[i]) << "line " << i;
    EXPECT_EQ(*text, lines[i]) << "line " << i;  // identity normalization + byte fallback
  }
}

TEST_F(SentencePieceTest, ReadsSpecialIdsFromTheModel) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadSentencePieceTokenizer(ModelPath(), {});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->kind(), "sentencepiece");
  EXPECT_EQ((*t)->vocab_size(), 1000);
  EXPECT_EQ((*t)->bos_id(), 2);
  EXPECT_EQ((*t)->eos_id(), 1);
  EXPECT_TRUE((*t)->add_bos());
  EXPECT_EQ(*(*t)->Decode({2, 1}), "");  // control pieces decode to nothing

  absl::StatusOr<std::unique_ptr<Tokenizer>> no_bos =
      LoadSentencePieceTokenizer(ModelPath(), false);
  ASSERT_TRUE(no_bos.ok()) << no_bos.status();
  EXPECT_FALSE((*no_bos)->add_bos());
}

TEST_F(SentencePieceTest, ModelWithoutBos) {
  ScratchDir dir;
  ASSERT_TRUE(TrainSentencePiece(dir, "nobos", Corpus().substr(0, 30000),
                    "--vocab_size=200 --model_type=unigram --bos_id=-1 --eos_id=1 --unk_id=0"));
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      LoadSentencePieceTokenizer(dir.File("nobos.model"), {});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->bos_id(), std::nullopt);
  EXPECT_EQ((*t)->eos_id(), 1);
  EXPECT_FALSE((*t)->add_bos());
  absl::StatusOr<std::unique_ptr<Tokenizer>> forced =
      LoadSentencePieceTokenizer(dir.File("nobos.model"), true);
  EXPECT_EQ(forced.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(forced.status().message(), HasSubstr("nobos.model"));
}

TEST_F(SentencePieceTest, DecodeRejectsIdsOutOfRange) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadSentencePieceTokenizer(ModelPath(), {});
  ASSERT_TRUE(t.ok()) << t.status();
  for (int32_t bad : {-1, 1000, 123456}) {
    absl::StatusOr<std::string> text = (*t)->Decode({5, bad});
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(text.status().message(), HasSubstr(std::to_string(bad)));
  }
}

TEST_F(SentencePieceTest, LoadTokenizerPicksTokenizerModel) {
  ScratchDir dir;
  std::filesystem::copy_file(ModelPath(), dir.File("tokenizer.model"));
  // tokenizer.model wins over BPE files in the same folder.
  WriteFileOrDie(dir.File("vocab.json"), "not read");
  WriteFileOrDie(dir.File("merges.txt"), "not read");
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->kind(), "sentencepiece");
  EXPECT_TRUE((*t)->add_bos());
  EXPECT_EQ((*t)->bos_id(), 2);

  WriteFileOrDie(dir.File("tokenizer_config.json"), R"({"add_bos_token": false})");
  t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_FALSE((*t)->add_bos());

  WriteFileOrDie(dir.File("tokenizer_config.json"), R"({"tokenizer_class": "JSONGPT2Tokenizer"})");
  t = LoadTokenizer(dir.path());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("JSONGPT2Tokenizer"));
}

TEST(SentencePieceLoadTest, RejectsFilesThatAreNotModels) {
  ScratchDir dir;
  WriteFileOrDie(dir.File("tokenizer.model"), "definitely not a protobuf \xff\xff\xff");
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir.path());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer.model"));

  t = LoadSentencePieceTokenizer(dir.File("missing.model"), {});
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("missing.model"));
}

}  // namespace
}  // namespace models
}  // namespace foxserve
