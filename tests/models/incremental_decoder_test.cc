// Streaming detokenization: pushing tokens one at a time and concatenating what comes out must
// give the same text as decoding them all at once, in valid UTF-8 pieces, for each tokenizer.
#include "models/incremental_decoder.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "models/json_escape.h"
#include "models/tokenizer.h"
#include "models/unicode_text.h"
#include "tests/models/tokenizer_test_util.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace models {
namespace {

using testing::ReadFileOrDie;
using testing::ScratchDir;
using testing::SourceDir;
using testing::UnicodeSample;
using testing::WriteFileOrDie;

// Pushes ids one by one; checks every piece is valid UTF-8; returns the concatenation.
std::string Stream(const Tokenizer& t, const std::vector<int32_t>& context,
                   const std::vector<int32_t>& ids, int* empty_pieces = nullptr) {
  auto decoder = t.NewIncrementalDecoder(context);
  std::string text;
  for (int32_t id : ids) {
    const std::string piece = decoder->Push(id);
    EXPECT_EQ(FindInvalidUtf8(piece), -1) << "piece is not valid UTF-8";
    if (piece.empty() && empty_pieces != nullptr) ++*empty_pieces;
    text += piece;
  }
  const std::string rest = decoder->Flush();
  EXPECT_EQ(FindInvalidUtf8(rest), -1);
  return text + rest;
}

std::string Text() {
  return ReadFileOrDie(SourceDir() + "/models/corpus/tinyshakespeare.txt").substr(0, 20000) +
         UnicodeSample();
}

TEST(TakeCompleteUtf8Test, HoldsIncompleteAndReplacesInvalid) {
  std::string pending = "ab\xE2\x82";  // "ab" + 2 of the 3 bytes of the euro sign
  EXPECT_EQ(TakeCompleteUtf8(&pending, false), "ab");
  EXPECT_EQ(pending, "\xE2\x82");
  pending += "\xAC!";
  EXPECT_EQ(TakeCompleteUtf8(&pending, false), "\xE2\x82\xAC!");
  EXPECT_EQ(pending, "");
  pending = "\xFFx\xC0\xAFy\xED\xA0\x80";  // invalid byte, overlong '/', a surrogate
  EXPECT_EQ(TakeCompleteUtf8(&pending, false), "\xEF\xBF\xBDx\xEF\xBF\xBD\xEF\xBF\xBDy\xEF\xBF\xBD");
  pending = "z\xF0\x9F";
  EXPECT_EQ(TakeCompleteUtf8(&pending, true), "z\xEF\xBF\xBD");
}

TEST(IncrementalDecoderTest, Gpt2BpeStreamsWhatDecodeGives) {
  ScratchDir dir;
  ASSERT_TRUE(testing::WriteGpt2VocabAndMerges(dir.path()));
  auto t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string text = Text();
  auto ids = (*t)->Encode(text);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(Stream(**t, {}, *ids), text);
  // Plain ASCII comes out at once, token by token.
  auto ascii = (*t)->Encode("To be, or not to be: that is the question.");
  int empty = 0;
  Stream(**t, {}, *ascii, &empty);
  EXPECT_EQ(empty, 0);
}

TEST(IncrementalDecoderTest, JsonEscapedBpeStreamsTheUnescapedText) {
  ScratchDir dir;
  ASSERT_TRUE(testing::WriteGpt2VocabAndMerges(dir.path()));
  WriteFileOrDie(dir.File("tokenizer_config.json"),
                 R"({"tokenizer_class": "JSONGPT2Tokenizer", "add_bos_token": true})");
  auto t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ((*t)->kind(), "gpt2-bpe+json-escape");
  // Non-ASCII text becomes escapes that BPE splits across tokens ("\u00" | "e9").
  const std::string text = Text();
  auto ids = (*t)->Encode(text);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(Stream(**t, {}, *ids), text);
  // Every prefix of the stream is a prefix of the final text: nothing is taken back.
  auto decoder = (*t)->NewIncrementalDecoder({});
  std::string so_far;
  for (int32_t id : *ids) {
    so_far += decoder->Push(id);
    ASSERT_EQ(text.compare(0, so_far.size(), so_far), 0) << so_far.size();
  }
}

TEST(IncrementalDecoderTest, JsonEscapeHoldsSplitSurrogatePairs) {
  // Drive the unescaping layer directly with hand-split escaped text.
  class Pieces : public IncrementalDecoder {
   public:
    explicit Pieces(std::vector<std::string> p) : pieces_(std::move(p)) {}
    std::string Push(int32_t id) override { return pieces_[id]; }
    std::string Flush() override { return ""; }

   private:
    std::vector<std::string> pieces_;
  };
  const std::vector<std::string> pieces = {"a\\", "ud83d", "\\u", "de00", "b\\u00", "e9", "\\"};
  auto d = NewJsonUnescapingDecoder(std::make_unique<Pieces>(pieces));
  std::vector<std::string> out;
  for (int i = 0; i < static_cast<int>(pieces.size()); ++i) out.push_back(d->Push(i));
  out.push_back(d->Flush());
  const std::vector<std::string> expected = {"a", "", "", "\xF0\x9F\x98\x80", "b", "\xC3\xA9", "", "\\"};
  EXPECT_EQ(out, expected);
}

TEST(IncrementalDecoderTest, SentencePieceKeepsTheLeadingSpaceAfterThePrompt) {
  ScratchDir dir;
  const std::string corpus = ReadFileOrDie(SourceDir() + "/models/corpus/tinyshakespeare.txt");
  ASSERT_TRUE(testing::TrainSentencePiece(
      dir, "tokenizer", corpus.substr(0, 150000),
      "--vocab_size=800 --model_type=bpe --byte_fallback=true --character_coverage=1.0"));
  auto t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string prompt = "ROMEO:\nWhat light";
  const std::string continuation = " through yonder window breaks? It is the east, and Juliet "
                                   "is the sun. Cafés \xE2\x9C\xA8 and \xE6\x97\xA5\xE6\x9C\xAC.";
  auto all = (*t)->Encode(prompt + continuation);
  auto prompt_ids = (*t)->Encode(prompt);
  ASSERT_TRUE(all.ok() && prompt_ids.ok());
  // Split where the prompt's tokens end (they are a prefix of the whole text's tokens here).
  ASSERT_TRUE(std::equal(prompt_ids->begin(), prompt_ids->end(), all->begin()));
  const std::vector<int32_t> generated(all->begin() + prompt_ids->size(), all->end());
  auto expected = (*t)->Decode(*all);
  auto prefix = (*t)->Decode(*prompt_ids);
  ASSERT_TRUE(expected.ok() && prefix.ok());
  EXPECT_EQ(Stream(**t, *prompt_ids, generated), expected->substr(prefix->size()));
  EXPECT_EQ(Stream(**t, *prompt_ids, generated).substr(0, 9), " through ");
}

}  // namespace
}  // namespace models
}  // namespace foxserve
