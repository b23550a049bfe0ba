// The foxserve.v1.Generation service on gRPC's callback API. Handlers only validate, submit to
// the engine thread and stream what it produces; no model work runs on gRPC threads. A client
// cancel or deadline aborts the request in the engine, which frees its KV pages before the next
// step.
#ifndef FOXSERVE_SERVER_GENERATION_SERVICE_H_
#define FOXSERVE_SERVER_GENERATION_SERVICE_H_

#include <string>

#include "engine/threaded_engine.h"
#include "foxserve/v1/generation.grpc.pb.h"
#include "models/tokenizer.h"
#include "server/auth.h"
#include "server/metrics.h"

namespace foxserve {
namespace server {

// These methods are registered raw (ByteBuffer in and out) so that the service parses requests
// itself: an unparsable message then gets INVALID_ARGUMENT naming "request" rather than the
// callback API's bare UNIMPLEMENTED with no message, and is counted like any other rejection.
// Methods not listed keep the typed callback API of CallbackService.
using GenerationServiceBase = v1::Generation::WithRawCallbackMethod_Generate<
    v1::Generation::WithRawCallbackMethod_GenerateStream<
        v1::Generation::WithRawCallbackMethod_Tokenize<
            v1::Generation::WithRawCallbackMethod_Detokenize<
                v1::Generation::WithRawCallbackMethod_GetModelInfo<
                    v1::Generation::WithRawCallbackMethod_InspectKvCache<
                        v1::Generation::CallbackService>>>>>>;

class GenerationService final : public GenerationServiceBase {
 public:
  // All pointers are borrowed; tokenizer, metrics and auth may be null (auth null: no token
  // check).
  GenerationService(engine::ThreadedEngine* engine, const models::Tokenizer* tokenizer,
                    v1::ModelInfo model_info, ServerMetrics* metrics,
                    const BearerTokenAuth* auth = nullptr);

  // The raw handlers (the generated sync overloads stay unimplemented).
  using GenerationServiceBase::Detokenize;
  using GenerationServiceBase::Generate;
  using GenerationServiceBase::GenerateStream;
  using GenerationServiceBase::GetModelInfo;
  using GenerationServiceBase::InspectKvCache;
  using GenerationServiceBase::Tokenize;
  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerateStream(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  // Answered from the engine thread between two steps (ThreadedEngine::InspectKv), so the counts
  // are one consistent snapshot.
  grpc::ServerUnaryReactor* InspectKvCache(grpc::CallbackServerContext* context,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) override;

  engine::ThreadedEngine* engine() const { return engine_; }
  const models::Tokenizer* tokenizer() const { return tokenizer_; }
  ServerMetrics* metrics() const { return metrics_; }
  // OK when no token is configured or the call carries the right one (server/auth.h).
  absl::Status Authorize(const grpc::CallbackServerContext* context) const;

 private:
  engine::ThreadedEngine* engine_;
  const models::Tokenizer* tokenizer_;
  v1::ModelInfo model_info_;
  ServerMetrics* metrics_;
  const BearerTokenAuth* auth_;

  grpc::Status DoTokenize(const v1::TokenizeRequest& request, v1::TokenizeResponse* response);
  grpc::Status DoDetokenize(const v1::DetokenizeRequest& request,
                            v1::DetokenizeResponse* response);
};

}  // namespace server
}  // namespace foxserve

#endif  // FOXSERVE_SERVER_GENERATION_SERVICE_H_
