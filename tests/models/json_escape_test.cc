// The LongCrawl64 JSON-escape convention, checked against Python's json module (run with
// python3), and the tokenizer folder form of the released FoX checkpoints.
#include "models/json_escape.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/tokenizer.h"
#include "tests/models/tokenizer_test_util.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace models {
namespace {

using ::foxserve::testing::ReadFileOrDie;
using ::foxserve::testing::RunCommand;
using ::foxserve::testing::ScratchDir;
using ::foxserve::testing::ShellQuote;
using ::foxserve::testing::SourceDir;
using ::foxserve::testing::UnicodeSample;
using ::foxserve::testing::WriteFileOrDie;
using ::testing::HasSubstr;

// Applies `python_expression` (of the str `text`, giving a str) to each input with python3; the
// inputs and outputs travel as UTF-8 files. Returns one output per input, or an empty vector
// after ADD_FAILURE.
std::vector<std::string> RunPython(const std::vector<std::string>& inputs,
                                   const std::string& python_expression) {
  ScratchDir dir;
  const std::string script =
      "import json, sys\n"
      "for path in sys.argv[1:]:\n"
      "    text = open(path, 'rb').read().decode('utf-8')\n"
      "    result = " +
      python_expression +
      "\n"
      "    open(path + '.out', 'wb').write(result.encode('utf-8'))\n";
  WriteFileOrDie(dir.File("run.py"), script);
  std::string command = "python3 " + ShellQuote(dir.File("run.py"));
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string path = dir.File("in" + std::to_string(i));
    WriteFileOrDie(path, inputs[i]);
    command += " " + ShellQuote(path);
  }
  const testing::CommandResult r = RunCommand(command);
  if (r.exit_code != 0) {
    ADD_FAILURE() << "python3 failed (exit code " << r.exit_code
                  << "; 127 means python3 is not installed)";
    return {};
  }
  std::vector<std::string> outputs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    outputs.push_back(ReadFileOrDie(dir.File("in" + std::to_string(i) + ".out")));
  }
  return outputs;
}

std::vector<std::string> TextsToEscape() {
  std::string controls;
  for (int c = 0; c < 0x20; ++c) controls += static_cast<char>(c);
  controls += "\x7f";
  return {
      UnicodeSample(),
      controls,
      "quotes \" and 'single' and \\backslash\\ and \\\" and \\u0041 and /slash/",
      "astral: \xF0\x9F\x98\x80 \xF0\x9D\x94\x98 \xF0\x90\x8D\x88 \xF4\x8F\xBF\xBF",
      "latin-1 and up: \xC2\x80 \xC2\x85 \xC2\xA0 \xC3\xBF \xC4\x80 \xEF\xBB\xBF \xEF\xBF\xBF",
      "\r\n windows line\r\nend \b\f\t",
      "",
      ReadFileOrDie(SourceDir() + "/models/corpus/tinyshakespeare.txt").substr(0, 5000),
  };
}

TEST(JsonEscapeTest, MatchesPythonJsonDumps) {
  const std::vector<std::string> texts = TextsToEscape();
  const std::vector<std::string> expected = RunPython(texts, "json.dumps(text)[1:-1]");
  ASSERT_EQ(expected.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    absl::StatusOr<std::string> escaped = JsonEscape(texts[i]);
    ASSERT_TRUE(escaped.ok()) << escaped.status();
    EXPECT_EQ(*escaped, expected[i]) << "text " << i;
  }
}

TEST(JsonEscapeTest, UnescapeMatchesPythonJsonLoadsOnValidText) {
  std::vector<std::string> escaped_texts = {
      "caf\\u00e9 \\u00E9 \\u00c9t\\u00C9 \\/ \\\" \\\\ \\b\\f\\n\\r\\t end",
      "pair \\ud83d\\ude00 upper \\uD83D\\uDE00 max \\udbff\\udfff \\u0000 nul \\uffff",
      "raw non-ASCII passes: caf\xC3\xA9 \xE4\xB8\xAD",
      "\\\\u0041 is an escaped backslash then u0041",
      "",
  };
  for (const std::string& text : TextsToEscape()) escaped_texts.push_back(*JsonEscape(text));
  const std::vector<std::string> expected =
      RunPython(escaped_texts, "json.loads('\"' + text + '\"')");
  ASSERT_EQ(expected.size(), escaped_texts.size());
  for (size_t i = 0; i < escaped_texts.size(); ++i) {
    EXPECT_EQ(JsonUnescape(escaped_texts[i]), expected[i]) << escaped_texts[i];
  }
}

TEST(JsonEscapeTest, RoundTrips) {
  for (const std::string& text : TextsToEscape()) {
    absl::StatusOr<std::string> escaped = JsonEscape(text);
    ASSERT_TRUE(escaped.ok()) << escaped.status();
    for (unsigned char c : *escaped) EXPECT_TRUE(c >= 0x20 && c <= 0x7e) << static_cast<int>(c);
    EXPECT_EQ(JsonUnescape(*escaped), text);
  }
}

// Model output need not be valid JSON; expectations follow the best-effort rule (json_escape.h).
TEST(JsonEscapeTest, UnescapeKeepsWhatIsNotAValidEscape) {
  EXPECT_EQ(JsonUnescape("a\\xb"), "a\\xb");                // unknown escape letter
  EXPECT_EQ(JsonUnescape("end\\"), "end\\");                // trailing backslash
  EXPECT_EQ(JsonUnescape("\\u12"), "\\u12");                // too short, at the end
  EXPECT_EQ(JsonUnescape("\\u12g4x"), "\\u12g4x");          // not hex
  EXPECT_EQ(JsonUnescape("\\u\\n"), "\\u\n");               // incomplete, then a valid escape
  EXPECT_EQ(JsonUnescape("\\\\u0041"), "\\u0041");          // escaped backslash, literal u0041
  EXPECT_EQ(JsonUnescape("say \"hi\"\n"), "say \"hi\"\n");  // raw quotes and control characters
  EXPECT_EQ(JsonUnescape("\xC3\xA9\xFF"), "\xC3\xA9\xFF");  // raw bytes, even invalid UTF-8
  EXPECT_EQ(JsonUnescape("\\u00e"), "\\u00e");              // a cut-off escape stays as it is
}

TEST(JsonEscapeTest, UnpairedSurrogatesBecomeReplacementCharacters) {
  const std::string kReplacement = "\xEF\xBF\xBD";
  EXPECT_EQ(JsonUnescape("\\ud83d"), kReplacement);
  EXPECT_EQ(JsonUnescape("\\ud83dx"), kReplacement + "x");
  EXPECT_EQ(JsonUnescape("\\ude00"), kReplacement);
  EXPECT_EQ(JsonUnescape("\\ude00\\ud83d"), kReplacement + kReplacement);  // wrong order
  EXPECT_EQ(JsonUnescape("\\ud83d\\ud83d\\ude00"), kReplacement + "\xF0\x9F\x98\x80");
  EXPECT_EQ(JsonUnescape("\\ud83d\\n"), kReplacement + "\n");
  EXPECT_EQ(JsonUnescape("\\ud83d\\ude0"), kReplacement + "\\ude0");  // low half cut off
}

TEST(JsonEscapeTest, RejectsInvalidUtf8) {
  for (const std::string& bad :
       {std::string("ok\xFF"), std::string("\xC3"), std::string("ab\xED\xA0\x80")}) {
    absl::StatusOr<std::string> escaped = JsonEscape(bad);
    EXPECT_EQ(escaped.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(escaped.status().message(), HasSubstr("UTF-8"));
  }
  EXPECT_THAT(JsonEscape("ok\xFF").status().message(), HasSubstr("byte 2"));
}

// The tokenizer folder of the released FoX LongCrawl64 checkpoints: GPT-2's vocab.json and
// merges.txt with a tokenizer_config.json naming JSONGPT2Tokenizer.
class ReleasedCheckpointFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(testing::WriteGpt2VocabAndMerges(escaped_dir_.path()));
    WriteFileOrDie(escaped_dir_.File("tokenizer_config.json"),
                   R"({"tokenizer_class": "JSONGPT2Tokenizer", "add_bos_token": true,
                       "model_max_length": 1000000000000000019884624838656})");
    ASSERT_TRUE(testing::WriteGpt2VocabAndMerges(plain_dir_.path()));
  }
  ScratchDir escaped_dir_;
  ScratchDir plain_dir_;
};

TEST_F(ReleasedCheckpointFolderTest, LoadsAsJsonEscapedGpt2) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(escaped_dir_.path());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->kind(), "gpt2-bpe+json-escape");
  EXPECT_TRUE((*t)->add_bos());
  EXPECT_EQ((*t)->bos_id(), 50256);
  EXPECT_EQ((*t)->eos_id(), 50256);
  EXPECT_EQ((*t)->vocab_size(), 50257);

  absl::StatusOr<std::unique_ptr<Tokenizer>> plain = LoadTokenizer(plain_dir_.path());
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->kind(), "gpt2-bpe");
  EXPECT_FALSE((*plain)->add_bos());

  // "a\nb" is tokenized as the four characters a \ n b.
  absl::StatusOr<std::vector<int32_t>> ids = (*t)->Encode("a\nb");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, *(*plain)->Encode("a\\nb"));
  EXPECT_EQ(*(*t)->Decode(*ids), "a\nb");
  EXPECT_EQ((*t)->Encode("bad \xFF").status().code(), absl::StatusCode::kInvalidArgument);
}

// The whole pipeline against Python's json.dumps followed by gpt-3-encoder.
TEST_F(ReleasedCheckpointFolderTest, EncodesLikePythonEscapingThenGpt3Encoder) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(escaped_dir_.path());
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string sample = UnicodeSample();
  const std::vector<std::string> escaped = RunPython({sample}, "json.dumps(text)[1:-1]");
  ASSERT_EQ(escaped.size(), 1u);
  ScratchDir dir;
  WriteFileOrDie(dir.File("escaped.txt"), escaped[0]);
  const std::vector<int32_t> reference = testing::ReferenceGpt2Encode(dir.File("escaped.txt"));
  ASSERT_FALSE(reference.empty());
  absl::StatusOr<std::vector<int32_t>> ids = (*t)->Encode(sample);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, reference);
  EXPECT_EQ(*(*t)->Decode(*ids), sample);
}

}  // namespace
}  // namespace models
}  // namespace foxserve
