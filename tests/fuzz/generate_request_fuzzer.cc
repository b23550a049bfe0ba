// Arbitrary bytes as a foxserve.v1.GenerateRequest through the path a Generate call takes before
// it reaches the engine thread: server::ParseRequestBytes, server::ToEngineRequest (wire checks, tokenization), then
// Engine::Validate and Engine::Add (the same checks ThreadedEngine::Submit makes) on an engine
// whose backend never computes. Run with no tokenizer, byte-level BPE and SentencePiece.
// Properties:
//   - a refusal is INVALID_ARGUMENT whose message starts with the field's name (G1);
//   - no message contains prompt text: a marker appended to every text prompt never shows up;
//   - an accepted request is within every documented limit, and the engine admits it.
#include <atomic>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "foxserve/v1/generation.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "server/request_conversion.h"
#include "tests/fuzz/fuzz_fixtures.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/fuzz_targets.h"

namespace foxserve {
namespace fuzz {
namespace {

// protobuf logs every string field with invalid UTF-8 it refuses; thousands of lines a second
// would drown libFuzzer's output.
void IgnoreProtobufLog(google::protobuf::LogLevel, const char*, int, const std::string&) {}
[[maybe_unused]] const bool kQuietProtobuf = (google::protobuf::SetLogHandler(&IgnoreProtobufLog), true);

constexpr char kMarker[] = "\xE2\x98\x83PROMPT-MARKER\xE2\x98\x83";

const char* const kFields[] = {
    "request", "request_id", "prompt", "max_new_tokens", "temperature", "top_k", "top_p", "min_p",
    "repetition_penalty", "presence_penalty", "frequency_penalty", "stop_token_ids", "stop",
    "logprobs"};

void CheckRefusal(const absl::Status& status, const std::string& where) {
  FUZZ_CHECK(absl::IsInvalidArgument(status), where + status.ToString());
  const absl::string_view message = status.message();
  bool named = false;
  for (const char* field : kFields) {
    if (absl::StartsWith(message, field)) {
      const absl::string_view rest = message.substr(std::string(field).size());
      named = named || absl::StartsWith(rest, ":") || absl::StartsWith(rest, " ");
    }
  }
  FUZZ_CHECK(named, where + "message does not start with a field name: " + std::string(message));
  FUZZ_CHECK(!absl::StrContains(message, "PROMPT-MARKER"),
             where + "message echoes prompt text: " + std::string(message));
}

void Run(const v1::GenerateRequest& request, const models::Tokenizer* tokenizer) {
  const std::string where =
      absl::StrCat("[tokenizer ", tokenizer ? tokenizer->kind() : "none", "] ");
  auto converted = server::ToEngineRequest(request, tokenizer);
  if (!converted.ok()) {
    CheckRefusal(converted.status(), where);
    return;
  }
  engine::Engine& engine = ValidationEngine(tokenizer);
  const engine::GenerationRequest& r = *converted;
  const absl::Status valid = engine.Validate(r);
  if (!valid.ok()) {
    CheckRefusal(valid, where);
    return;
  }
  // - Accepted: within every limit the engine relies on.
  const int64_t max_len = engine.options().max_model_len;
  const int64_t prompt = static_cast<int64_t>(r.prompt.size());
  FUZZ_CHECK(prompt >= 1 && prompt < max_len, where + "prompt length");
  FUZZ_CHECK(r.max_new_tokens >= 1 && prompt + r.max_new_tokens <= max_len, where + "length");
  for (int32_t id : r.prompt) FUZZ_CHECK(id >= 0 && id < 512, where + "prompt id outside vocab");
  for (int32_t id : r.stop_token_ids) FUZZ_CHECK(id >= 0 && id < 512, where + "stop id");
  FUZZ_CHECK(std::isfinite(r.sampling.temperature) && std::isfinite(r.sampling.top_p) &&
                 std::isfinite(r.sampling.min_p) && std::isfinite(r.sampling.repetition_penalty),
             where + "a non-finite sampling parameter was accepted");
  FUZZ_CHECK(r.logprobs <= engine.options().max_logprobs, where + "logprobs");
  FUZZ_CHECK(static_cast<int64_t>(r.stop.size()) <= engine.options().max_stop_strings,
             where + "stop count");
  if (request.has_text()) {
    FUZZ_CHECK(tokenizer != nullptr, where + "a text prompt without a tokenizer");
  }
  // - The engine admits it (sequence state, sampler, decoder, stop matcher) and cancels it.
  static std::atomic<uint64_t> next_id{1};
  const uint64_t id = next_id++;
  const absl::Status added = engine.Add(id, *converted, nullptr);
  FUZZ_CHECK(added.ok(), where + "validated but not admitted: " + added.ToString());
  FUZZ_CHECK(engine.num_sequences() == 1, where + "sequence count");
  engine.Abort(id, absl::CancelledError("fuzz"));
  FUZZ_CHECK(engine.num_sequences() == 0 && engine.blocks().num_pages_used() == 0,
             where + "the aborted request left state behind");
}

}  // namespace

int FuzzGenerateRequest(const uint8_t* data, size_t size) {
  // - The service's own parser (server::ParseRequestBytes, as GenerationService uses it).
  v1::GenerateRequest request;
  const absl::Status parsed = server::ParseRequestBytes(
      absl::string_view(reinterpret_cast<const char*>(data), size), &request);
  if (!parsed.ok()) {
    CheckRefusal(parsed, "[parse] ");
    return 0;
  }
  if (request.has_text() && !request.text().empty()) request.set_text(request.text() + kMarker);
  Run(request, nullptr);
  Run(request, &BpeFixture());
  Run(request, &SentencePieceFixture());
  return 0;
}

}  // namespace fuzz
}  // namespace foxserve

FOXSERVE_FUZZ_TARGET(FuzzGenerateRequest)
