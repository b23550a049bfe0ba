// LoadTokenizer: which implementation a folder gives, the side files, and the errors. (The
// SentencePiece folder form is covered in sentencepiece_tokenizer_test, the JSON-escape form in
// json_escape_test.)
#include <filesystem>
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

using ::foxserve::testing::Gpt2ByteSpelling;
using ::foxserve::testing::ScratchDir;
using ::foxserve::testing::UnicodeSample;
using ::foxserve::testing::WriteFileOrDie;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A small byte-level vocabulary: the 256 byte tokens (id = byte), "ab" = 256, then `extra`
// entries (JSON members, spelled as in the file) and the merge "a b".
void WriteSmallBpe(const ScratchDir& dir, const std::string& extra = "") {
  std::string vocab = "{";
  for (int b = 0; b < 256; ++b) {
    std::string spelling = Gpt2ByteSpelling(std::string(1, static_cast<char>(b)));
    if (spelling == "\"" || spelling == "\\") spelling = "\\" + spelling;
    vocab += "\"" + spelling + "\": " + std::to_string(b) + ", ";
  }
  vocab += "\"ab\": 256" + extra + "}";
  WriteFileOrDie(dir.File("vocab.json"), vocab);
  WriteFileOrDie(dir.File("merges.txt"), "#version: 0.2\na b\n");
}

TEST(LoadTokenizerTest, Gpt2VocabAndMerges) {
  ScratchDir dir;
  ASSERT_TRUE(testing::WriteGpt2VocabAndMerges(dir.path()));
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->kind(), "gpt2-bpe");
  EXPECT_EQ((*t)->vocab_size(), 50257);
  // GPT2Tokenizer's defaults: <|endoftext|> is BOS and EOS, and no BOS is added.
  EXPECT_EQ((*t)->bos_id(), 50256);
  EXPECT_EQ((*t)->eos_id(), 50256);
  EXPECT_FALSE((*t)->add_bos());
  EXPECT_THAT(*(*t)->Encode("Hello world"), ElementsAre(15496, 995));

  WriteFileOrDie(dir.File("tokenizer_config.json"),
                 R"({"add_bos_token": true, "tokenizer_class": "GPT2Tokenizer"})");
  t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->kind(), "gpt2-bpe");
  EXPECT_TRUE((*t)->add_bos());
}

TEST(LoadTokenizerTest, TokenizerJsonWinsOverVocabAndMerges) {
  ScratchDir dir;
  WriteSmallBpe(dir);  // vocab_size 257
  std::string vocab = testing::ReadFileOrDie(dir.File("vocab.json"));
  WriteFileOrDie(dir.File("tokenizer.json"),
                 "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}, "
                 "\"added_tokens\": [{\"id\": 300, \"content\": \"<eos>\"}], "
                 "\"model\": {\"type\": \"BPE\", \"vocab\": " +
                     vocab + ", \"merges\": [\"a b\"]}}");
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->kind(), "gpt2-bpe");
  EXPECT_EQ((*t)->vocab_size(), 301);
  EXPECT_EQ((*t)->bos_id(), std::nullopt);  // no <|endoftext|>, no side files
  EXPECT_THAT(*(*t)->Encode("cab"), ElementsAre('c', 256));
}

TEST(LoadTokenizerTest, SpecialTokensFromSideFiles) {
  ScratchDir dir;
  WriteSmallBpe(dir, ", \"<s>\": 257, \"</s>\": 258, \"<|endoftext|>\": 259");
  // Without side files <|endoftext|> is both.
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->bos_id(), 259);
  EXPECT_EQ((*t)->eos_id(), 259);

  // tokenizer_config.json may write tokens as strings or AddedToken objects.
  WriteFileOrDie(dir.File("tokenizer_config.json"),
                 R"({"bos_token": {"__type": "AddedToken", "content": "<s>"},
                     "eos_token": "</s>", "add_bos_token": true})");
  t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->bos_id(), 257);
  EXPECT_EQ((*t)->eos_id(), 258);
  EXPECT_TRUE((*t)->add_bos());

  // special_tokens_map.json overrides tokenizer_config.json, as in transformers; null means none.
  WriteFileOrDie(dir.File("special_tokens_map.json"),
                 R"({"eos_token": {"content": "<|endoftext|>"}})");
  t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->bos_id(), 257);
  EXPECT_EQ((*t)->eos_id(), 259);
  WriteFileOrDie(dir.File("special_tokens_map.json"), R"({"eos_token": null})");
  t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->eos_id(), std::nullopt);
}

TEST(LoadTokenizerTest, SpecialTokenErrors) {
  ScratchDir dir;
  WriteSmallBpe(dir);
  WriteFileOrDie(dir.File("tokenizer_config.json"), R"({"bos_token": "<missing>"})");
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir.path());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), AllOf(HasSubstr("tokenizer_config.json"),
                                          HasSubstr("bos_token"), HasSubstr("<missing>")));

  WriteFileOrDie(dir.File("tokenizer_config.json"), R"({"add_bos_token": true})");
  t = LoadTokenizer(dir.path());  // no <|endoftext|> in this vocabulary, so no BOS to add
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("add_bos_token"));

  WriteFileOrDie(dir.File("tokenizer_config.json"), R"({"add_bos_token": "yes"})");
  t = LoadTokenizer(dir.path());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(),
              AllOf(HasSubstr("tokenizer_config.json"), HasSubstr("add_bos_token")));

  WriteFileOrDie(dir.File("tokenizer_config.json"), R"({"eos_token": 5})");
  t = LoadTokenizer(dir.path());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("eos_token"));

  WriteFileOrDie(dir.File("tokenizer_config.json"), "{oops");
  t = LoadTokenizer(dir.path());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer_config.json"));
}

TEST(LoadTokenizerTest, EmptyOrMissingFolderIsNotFound) {
  ScratchDir dir;
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir.path());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(),
              AllOf(HasSubstr(dir.path()), HasSubstr("tokenizer.model"),
                    HasSubstr("tokenizer.json"), HasSubstr("vocab.json"), HasSubstr("merges.txt")));

  // A tokenizer_config.json alone is not a tokenizer.
  WriteFileOrDie(dir.File("tokenizer_config.json"), R"({"add_bos_token": true})");
  EXPECT_EQ(LoadTokenizer(dir.path()).status().code(), absl::StatusCode::kNotFound);

  t = LoadTokenizer(dir.File("no_such_folder"));
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("no_such_folder"));
}

TEST(LoadTokenizerTest, HalfAGpt2TokenizerIsNotFound) {
  ScratchDir dir;
  WriteSmallBpe(dir);
  std::filesystem::remove(dir.File("merges.txt"));
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir.path());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("merges.txt"));
}

TEST(LoadTokenizerTest, MalformedFilesAreInvalidArgument) {
  struct Case {
    std::string file;
    std::string contents;
    std::vector<std::string> message_parts;
  };
  for (const Case& c : std::vector<Case>{
           {"vocab.json", "{\"a\": 0, ", {"vocab.json", "not valid JSON"}},
           {"vocab.json", "{\"a\": [0]}", {"vocab.json", "'a'"}},
           {"merges.txt", "#version: 0.2\na b\nb q\nab zz\n", {"merges.txt line 3", "'bq'"}},
           {"merges.txt", "#version: 0.2\na b\nab zz\n", {"merges.txt line 3", "'zz'"}},
           {"tokenizer.json",
            R"({"model": {"type": "WordPiece", "vocab": {}}})",
            {"tokenizer.json", "WordPiece"}},
           {"tokenizer.json",
            R"({"model": {"type": "Unigram", "vocab": []}})",
            {"tokenizer.json", "Unigram"}},
           {"tokenizer.json", "[]", {"tokenizer.json", "object"}},
       }) {
    ScratchDir dir;
    WriteSmallBpe(dir);
    WriteFileOrDie(dir.File(c.file), c.contents);
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir.path());
    ASSERT_FALSE(t.ok()) << c.file << ": " << c.contents;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << t.status();
    for (const std::string& part : c.message_parts) {
      EXPECT_THAT(t.status().message(), HasSubstr(part)) << c.contents;
    }
  }
}

TEST(LoadTokenizerTest, DecodeRejectsIdsOutOfRange) {
  ScratchDir dir;
  WriteSmallBpe(dir);
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*(*t)->Decode({256, 'c'}), "abc");
  for (int32_t bad : {-5, 257}) {
    absl::StatusOr<std::string> text = (*t)->Decode({256, bad});
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(text.status().message(),
                AllOf(HasSubstr(std::to_string(bad)), HasSubstr("[0, 257)")));
  }
  EXPECT_THAT(*(*t)->Encode(UnicodeSample()), ::testing::Not(::testing::IsEmpty()));
}

}  // namespace
}  // namespace models
}  // namespace foxserve
