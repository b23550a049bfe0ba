// The hand-written GPT-2 pre-tokenizer and the Unicode classes under it. Expected splits are
// worked out from the regex by hand in the comments; bpe_tokenizer_test compares whole encodings
// with an independent implementation.
#include "models/gpt2_pretokenizer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/unicode_text.h"

namespace foxserve {
namespace models {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<std::string> Split(const std::string& text) {
  std::vector<std::string> pieces;
  for (const TextSpan& s : Gpt2PreTokenize(text))
    pieces.push_back(text.substr(s.begin, s.end - s.begin));
  return pieces;
}

TEST(UnicodeTextTest, ClassesFollowUnicodeProperties) {
  EXPECT_EQ(ClassifyCodePoint('a'), CharClass::kLetter);
  EXPECT_EQ(ClassifyCodePoint(U'é'), CharClass::kLetter);
  EXPECT_EQ(ClassifyCodePoint(U'中'), CharClass::kLetter);    // Lo
  EXPECT_EQ(ClassifyCodePoint(0x02B0), CharClass::kLetter);   // ʰ, Lm
  EXPECT_EQ(ClassifyCodePoint(0x1D518), CharClass::kLetter);  // 𝔘, astral Lu
  EXPECT_EQ(ClassifyCodePoint('7'), CharClass::kNumber);
  EXPECT_EQ(ClassifyCodePoint(0x0663), CharClass::kNumber);  // ٣, Nd
  EXPECT_EQ(ClassifyCodePoint(0x216B), CharClass::kNumber);  // Ⅻ, Nl
  EXPECT_EQ(ClassifyCodePoint(0x00BD), CharClass::kNumber);  // ½, No
  EXPECT_EQ(ClassifyCodePoint(0x0301), CharClass::kOther);   // combining acute, Mn
  EXPECT_EQ(ClassifyCodePoint('\''), CharClass::kOther);
  EXPECT_EQ(ClassifyCodePoint(0x1F600), CharClass::kOther);  // 😀, So
  EXPECT_EQ(ClassifyCodePoint(0x200D), CharClass::kOther);   // ZWJ, Cf
  EXPECT_EQ(ClassifyCodePoint(0x001F), CharClass::kOther);   // not White_Space (Python's
                                                             // str.isspace says it is)
  for (char32_t c : {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028,
                     0x2029, 0x202F, 0x205F, 0x3000}) {
    EXPECT_EQ(ClassifyCodePoint(c), CharClass::kWhitespace) << std::hex << c;
  }
  EXPECT_EQ(ClassifyCodePoint(0x200B), CharClass::kOther);  // zero-width space is not White_Space
}

// Our \s is Unicode White_Space, as in Hugging Face tokenizers (Rust regex / Oniguruma).
// JavaScript's \s (gpt-3-encoder) differs at exactly these two: it excludes U+0085 and includes
// U+FEFF. This pins our side of the difference.
TEST(UnicodeTextTest, NextLineIsWhitespaceAndByteOrderMarkIsNot) {
  EXPECT_EQ(ClassifyCodePoint(0x0085), CharClass::kWhitespace);
  EXPECT_EQ(ClassifyCodePoint(0xFEFF), CharClass::kOther);
  // Two U+0085 then a letter: a whitespace run of two before a non-space gives one unit to
  // `\s+(?!\S)` and the other to `\s+`. Were U+0085 not whitespace, both would form one
  // `[^\s\p{L}\p{N}]+` run.
  EXPECT_THAT(Split("\u0085\u0085b"), ElementsAre("\u0085", "\u0085", "b"));
  // Two U+FEFF are one `[^\s\p{L}\p{N}]+` run; as whitespace they would split like the above.
  EXPECT_THAT(Split("\uFEFF\uFEFFb"), ElementsAre("\uFEFF\uFEFF", "b"));
}

TEST(UnicodeTextTest, DecodesUtf8AndKeepsInvalidBytesAsUnits) {
  const std::string text = "a\xC3\xA9\xF0\x9F\x98\x80\xFF\xC3(\xED\xA0\x80";
  const std::vector<TextUnit> units = DecodeUtf8(text);
  ASSERT_EQ(units.size(), 9u);
  EXPECT_EQ(units[0].code_point, U'a');
  EXPECT_EQ(units[1].code_point, U'é');
  EXPECT_EQ(units[1].offset, 1u);
  EXPECT_EQ(units[1].length, 2);
  EXPECT_EQ(units[2].code_point, 0x1F600u);
  EXPECT_EQ(units[2].length, 4);
  EXPECT_FALSE(units[3].valid);  // 0xFF never occurs in UTF-8
  EXPECT_FALSE(units[4].valid);  // 0xC3 without continuation
  EXPECT_EQ(units[4].char_class, CharClass::kOther);
  EXPECT_EQ(units[5].code_point, U'(');
  EXPECT_FALSE(units[6].valid);  // ED A0 80 would be the surrogate U+D800: each byte alone
  EXPECT_EQ(units[6].offset, 10u);
  EXPECT_FALSE(units[7].valid);
  EXPECT_FALSE(units[8].valid);
  EXPECT_EQ(units[8].offset, 12u);
  EXPECT_EQ(FindInvalidUtf8(text), 7);
  EXPECT_EQ(FindInvalidUtf8("plain \xE2\x82\xAC"), -1);
  EXPECT_EQ(FindInvalidUtf8("\xC0\x80"), 0);            // overlong NUL
  EXPECT_EQ(FindInvalidUtf8("ok\xF4\x90\x80\x80"), 2);  // above U+10FFFF
  EXPECT_EQ(FindInvalidUtf8("ok\xE2\x82"), 2);          // truncated
}

TEST(Gpt2PreTokenizeTest, WordsTakeTheirLeadingSpace) {
  EXPECT_THAT(Split(""), IsEmpty());
  EXPECT_THAT(Split("Hello world"), ElementsAre("Hello", " world"));
  EXPECT_THAT(Split(" leading"), ElementsAre(" leading"));
  // Letters, numbers and other characters form separate runs; only U+0020 may lead them.
  EXPECT_THAT(Split("abc123def 45!?"), ElementsAre("abc", "123", "def", " 45", "!?"));
  EXPECT_THAT(Split("a !!b"), ElementsAre("a", " !!", "b"));
  EXPECT_THAT(Split("a\u00a0b"), ElementsAre("a", "\u00a0", "b"));  // NBSP leads nothing
}

TEST(Gpt2PreTokenizeTest, WhitespaceRunsGiveTheirLastSpaceToTheNextWord) {
  // `\s+(?!\S)` backtracks one character before a non-space; the last space joins the word.
  EXPECT_THAT(Split("a   b"), ElementsAre("a", "  ", " b"));
  // A tab cannot lead a word: the backtracked tab is matched alone by `\s+`.
  EXPECT_THAT(Split("a\t\tb"), ElementsAre("a", "\t", "\t", "b"));
  EXPECT_THAT(Split("a \n b"), ElementsAre("a", " \n", " b"));
  EXPECT_THAT(Split("a\n\nb"), ElementsAre("a", "\n", "\n", "b"));
  // At the end of the text the lookahead succeeds, so the whole run is one piece.
  EXPECT_THAT(Split("end   "), ElementsAre("end", "   "));
  EXPECT_THAT(Split("  \t\n"), ElementsAre("  \t\n"));
  // A single whitespace character before a non-space: `\s+`.
  EXPECT_THAT(Split("a\nb"), ElementsAre("a", "\n", "b"));
  EXPECT_THAT(Split(" \n\xe4\xb8\xad"), ElementsAre(" ", "\n", "\xe4\xb8\xad"));
}

TEST(Gpt2PreTokenizeTest, ContractionsAreLowercaseAndComeFirst) {
  EXPECT_THAT(Split("I'm you're we've it's he'll she'd don't"),
              ElementsAre("I", "'m", " you", "'re", " we", "'ve", " it", "'s", " he", "'ll", " she",
                          "'d", " don", "'t"));
  // Uppercase is not a contraction: the apostrophe is punctuation, the letters a word.
  EXPECT_THAT(Split("DON'T"), ElementsAre("DON", "'", "T"));
  // At a match start the contraction alternatives win, even after punctuation...
  EXPECT_THAT(Split("'sa"), ElementsAre("'s", "a"));
  // ...but a punctuation run that reaches the apostrophe swallows it.
  EXPECT_THAT(Split("!'s"), ElementsAre("!'", "s"));
  EXPECT_THAT(Split(" 's"), ElementsAre(" '", "s"));
  EXPECT_THAT(Split("'l"), ElementsAre("'", "l"));  // "'ll" needs both l's
  EXPECT_THAT(Split("x''s"), ElementsAre("x", "''", "s"));
}

TEST(Gpt2PreTokenizeTest, InvalidBytesArePunctuationLike) {
  EXPECT_THAT(Split("a\xff"
                    "b"),
              ElementsAre("a", "\xff", "b"));
  EXPECT_THAT(Split("a \xff\xfe!"), ElementsAre("a", " \xff\xfe!"));
  EXPECT_THAT(Split("\xe4\xb8"), ElementsAre("\xe4\xb8"));  // a cut-off character
}

TEST(Gpt2PreTokenizeTest, SpansTileTheText) {
  const std::string text = "x \t\n  y\xf0\x9f\x98\x80 z\xc3\x28  ";
  uint32_t expected_begin = 0;
  for (const TextSpan& s : Gpt2PreTokenize(text)) {
    EXPECT_EQ(s.begin, expected_begin);
    EXPECT_LT(s.begin, s.end);
    expected_begin = s.end;
  }
  EXPECT_EQ(expected_begin, text.size());
}

}  // namespace
}  // namespace models
}  // namespace foxserve
