// GPT-2 byte-level BPE: every byte string round-trips through Encode/Decode; Decode of arbitrary
// ids either fails naming an id or concatenates; tokenizer files read from the input either fail
// with InvalidArgument or give a tokenizer with the same round-trip property.
#include <vector>

#include "absl/strings/str_cat.h"
#include "models/bpe_files.h"
#include "models/bpe_tokenizer.h"
#include "models/json_escape.h"
#include "models/unicode_text.h"
#include "tests/fuzz/fuzz_fixtures.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/fuzz_targets.h"

namespace foxserve {
namespace fuzz {
namespace {

void CheckRoundTrip(const models::Tokenizer& t, const std::string& text) {
  auto ids = t.Encode(text);
  FUZZ_CHECK(ids.ok(), absl::StrCat(t.kind(), " cannot encode ", Quote(text), ": ",
                                    ids.status().ToString()));
  for (int32_t id : *ids) FUZZ_CHECK(id >= 0 && id < t.vocab_size(), "id outside the vocabulary");
  auto back = t.Decode(*ids);
  FUZZ_CHECK(back.ok(), back.status().ToString());
  FUZZ_CHECK(*back == text, absl::StrCat(t.kind(), " round trip: ", Quote(text), " -> ",
                                         Quote(*back)));
}

void CheckDecodeIds(const models::Tokenizer& t, const std::vector<int32_t>& ids) {
  auto all = t.Decode(ids);
  bool in_range = true;
  for (int32_t id : ids) in_range = in_range && id >= 0 && id < t.vocab_size();
  if (!in_range) {
    FUZZ_CHECK(absl::IsInvalidArgument(all.status()), "an id outside the vocabulary decoded");
    return;
  }
  FUZZ_CHECK(all.ok(), all.status().ToString());
  // Byte-level BPE: decoding is concatenation, whatever the split.
  const size_t half = ids.size() / 2;
  auto a = t.Decode(absl::MakeConstSpan(ids).subspan(0, half));
  auto b = t.Decode(absl::MakeConstSpan(ids).subspan(half));
  FUZZ_CHECK(a.ok() && b.ok() && *a + *b == *all, "Decode(a) + Decode(b) != Decode(a ++ b)");
}

void CheckLoadedTokenizer(absl::StatusOr<models::BpeSpec> spec) {
  if (!spec.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(spec.status()) || absl::IsNotFound(spec.status()),
               spec.status().ToString());
    return;
  }
  auto bpe = models::BpeTokenizer::Create(*spec);
  if (!bpe.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(bpe.status()), bpe.status().ToString());
    return;
  }
  CheckRoundTrip(**bpe, "Hello, world! It's 2026: naïve café \xF0\x9F\x98\x80\xFF\xC3");
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < (*bpe)->vocab_size() && i < 600; ++i) ids.push_back(i);
  auto text = (*bpe)->Decode(ids);  // unassigned ids are refused, the rest decode
  if (!text.ok()) FUZZ_CHECK(absl::IsInvalidArgument(text.status()), text.status().ToString());
}

}  // namespace

int FuzzBpeTokenizer(const uint8_t* data, size_t size) {
  ByteReader in(data, size);
  switch (in.U8() % 4) {
    case 0: {  // text
      const std::string text = in.Rest();
      CheckRoundTrip(BpeFixture(), text);
      // The JSON-escape convention refuses invalid UTF-8 and otherwise round-trips too.
      auto ids = JsonBpeFixture().Encode(text);
      if (models::FindInvalidUtf8(text) >= 0) {
        FUZZ_CHECK(absl::IsInvalidArgument(ids.status()), "invalid UTF-8 was JSON-escaped");
      } else {
        CheckRoundTrip(JsonBpeFixture(), text);
      }
      break;
    }
    case 1: {  // ids, a few of them out of range
      std::vector<int32_t> ids;
      while (in.remaining() >= 2) {
        const uint16_t v = in.U16();
        ids.push_back(v >= 0xFFF0 ? -static_cast<int32_t>(v & 0xF) - 1 : v % 520);
      }
      CheckDecodeIds(BpeFixture(), ids);
      auto json = JsonBpeFixture().Decode(ids);  // never crashes; unescaping never fails
      (void)json;
      break;
    }
    case 2: {  // vocab.json, then merges.txt after the first NUL byte
      const std::string rest = in.Rest();
      const size_t nul = rest.find('\0');
      const std::string vocab = rest.substr(0, nul);
      const std::string merges = nul == std::string::npos ? "" : rest.substr(nul + 1);
      CheckLoadedTokenizer(
          models::ReadGpt2VocabAndMerges(MemoryFile(0, vocab), MemoryFile(1, merges)));
      break;
    }
    case 3:  // tokenizer.json
      CheckLoadedTokenizer(models::ReadHfTokenizerJson(MemoryFile(0, in.Rest())));
      break;
  }
  return 0;
}

}  // namespace fuzz
}  // namespace foxserve

FOXSERVE_FUZZ_TARGET(FuzzBpeTokenizer)
