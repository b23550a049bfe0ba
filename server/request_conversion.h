// Between the wire (foxserve.v1 protos) and the engine: request validation and conversion, and
// the responses built from engine outputs. Pure functions, so the fuzzers can drive them.
#ifndef FOXSERVE_SERVER_REQUEST_CONVERSION_H_
#define FOXSERVE_SERVER_REQUEST_CONVERSION_H_

#include <string>

#include "absl/status/statusor.h"
#include "engine/request.h"
#include "foxserve/v1/generation.pb.h"
#include "models/tokenizer.h"

namespace foxserve {
namespace server {

inline constexpr size_t kMaxRequestIdBytes = 128;

// Parses a request message as received from the wire. InvalidArgument "request: not a valid
// <type> message" when the bytes are not one (a string field with invalid UTF-8 included); the
// message never quotes the bytes.
absl::Status ParseRequestBytes(absl::string_view bytes, google::protobuf::MessageLite* message);

// Checks the fields the wire form adds and turns the request into the engine's form (tokenizing
// a text prompt, BOS first when the tokenizer wants it). InvalidArgument naming the field. The
// engine's own limits (lengths, vocabulary, sampling ranges) are checked by Engine::Validate.
// Error messages never contain prompt text. `tokenizer` may be null.
absl::StatusOr<engine::GenerationRequest> ToEngineRequest(const v1::GenerateRequest& request,
                                                          const models::Tokenizer* tokenizer);

v1::FinishReason ToProto(engine::FinishReason reason);

// Appends an engine output's tokens (and their log probabilities) to a response message.
// `tokenizer` gives the text of log-probability entries; may be null.
void AppendTokens(const engine::RequestOutput& output, const models::Tokenizer* tokenizer,
                  google::protobuf::RepeatedField<int32_t>* ids,
                  google::protobuf::RepeatedPtrField<v1::TokenLogprobs>* logprobs);

// The closing fields shared by both responses.
void FillFinal(const engine::RequestOutput& output, v1::FinishReason* reason, v1::Usage* usage,
               v1::AcpStats* acp);

}  // namespace server
}  // namespace foxserve

#endif  // FOXSERVE_SERVER_REQUEST_CONVERSION_H_
