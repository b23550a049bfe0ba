#include "server/request_conversion.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "models/incremental_decoder.h"

namespace foxserve {
namespace server {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

bool Printable(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

absl::Status ParseRequestBytes(absl::string_view bytes, google::protobuf::MessageLite* message) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !message->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    message->Clear();
    return Invalid("request", absl::StrCat("not a valid ", message->GetTypeName(),
                                           " message (protobuf parsing failed)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<engine::GenerationRequest> ToEngineRequest(const v1::GenerateRequest& request,
                                                          const models::Tokenizer* tokenizer) {
  engine::GenerationRequest r;
  if (request.request_id().size() > kMaxRequestIdBytes || !Printable(request.request_id())) {
    return Invalid("request_id", absl::StrCat("must be at most ", kMaxRequestIdBytes,
                                              " printable ASCII characters"));
  }
  r.request_id = request.request_id();
  switch (request.prompt_case()) {
    case v1::GenerateRequest::kText: {
      if (request.text().empty()) return Invalid("prompt", "empty text");
      if (tokenizer == nullptr) {
        return Invalid("prompt", "the model has no tokenizer; send token_ids instead of text");
      }
      if (tokenizer->add_bos() && tokenizer->bos_id()) r.prompt.push_back(*tokenizer->bos_id());
      auto ids = tokenizer->Encode(request.text());
      if (!ids.ok()) return Invalid("prompt", "text cannot be tokenized (is it valid UTF-8?)");
      r.prompt.insert(r.prompt.end(), ids->begin(), ids->end());
      break;
    }
    case v1::GenerateRequest::kTokenIds:
      if (request.token_ids().ids().empty()) return Invalid("prompt", "empty token_ids");
      r.prompt.assign(request.token_ids().ids().begin(), request.token_ids().ids().end());
      break;
    case v1::GenerateRequest::PROMPT_NOT_SET:
      return Invalid("prompt", "set text or token_ids");
  }
  if (request.max_new_tokens() == 0) return Invalid("max_new_tokens", "must be at least 1");
  r.max_new_tokens = request.max_new_tokens();

  const v1::SamplingParameters& s = request.sampling();
  r.sampling.temperature = s.temperature();
  r.sampling.top_k = s.top_k();
  if (s.has_top_p()) r.sampling.top_p = s.top_p();
  r.sampling.min_p = s.min_p();
  if (s.has_repetition_penalty()) r.sampling.repetition_penalty = s.repetition_penalty();
  r.sampling.presence_penalty = s.presence_penalty();
  r.sampling.frequency_penalty = s.frequency_penalty();
  if (s.has_seed()) r.sampling.seed = s.seed();

  r.stop.assign(request.stop().begin(), request.stop().end());
  r.stop_token_ids.assign(request.stop_token_ids().begin(), request.stop_token_ids().end());
  r.ignore_eos = request.ignore_eos();
  if (request.has_logprobs()) {
    if (request.logprobs() > 1000) return Invalid("logprobs", "too large");
    r.logprobs = static_cast<int32_t>(request.logprobs());
  }
  return r;
}

v1::FinishReason ToProto(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case engine::FinishReason::kStop: return v1::FINISH_REASON_STOP;
    case engine::FinishReason::kEos: return v1::FINISH_REASON_EOS;
    case engine::FinishReason::kCancelled: return v1::FINISH_REASON_CANCELLED;
    case engine::FinishReason::kNone:
    case engine::FinishReason::kError: return v1::FINISH_REASON_UNSPECIFIED;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void AppendTokens(const engine::RequestOutput& output, const models::Tokenizer* tokenizer,
                  google::protobuf::RepeatedField<int32_t>* ids,
                  google::protobuf::RepeatedPtrField<v1::TokenLogprobs>* logprobs) {
  auto text_of = [&](int32_t id) {
    if (tokenizer == nullptr) return std::string();
    auto t = tokenizer->Decode({id});
    if (!t.ok()) return std::string();
    std::string bytes = *t;
    return models::TakeCompleteUtf8(&bytes, /*flush=*/true);  // a token may be part of a character
  };
  for (const engine::GeneratedToken& t : output.tokens) {
    ids->Add(t.id);
    if (!t.has_logprobs) continue;
    v1::TokenLogprobs* lp = logprobs->Add();
    lp->mutable_chosen()->set_token_id(t.id);
    lp->mutable_chosen()->set_logprob(t.chosen.logprob);
    lp->mutable_chosen()->set_text(text_of(t.id));
    for (const engine::TokenLogprob& alt : t.top) {
      v1::TokenLogprob* a = lp->add_top();
      a->set_token_id(alt.token);
      a->set_logprob(alt.logprob);
      a->set_text(text_of(alt.token));
    }
  }
}

void FillFinal(const engine::RequestOutput& output, v1::FinishReason* reason, v1::Usage* usage,
               v1::AcpStats* acp) {
  *reason = ToProto(output.finish_reason);
  usage->set_prompt_tokens(static_cast<uint32_t>(output.prompt_tokens));
  usage->set_completion_tokens(static_cast<uint32_t>(output.completion_tokens));
  acp->set_blocks_computed(output.acp_blocks_computed);
  acp->set_blocks_skipped(output.acp_blocks_skipped);
}

}  // namespace server
}  // namespace foxserve
