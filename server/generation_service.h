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
#include "server/metrics.h"

namespace foxserve {
namespace server {

class GenerationService final : public v1::Generation::CallbackService {
 public:
  // All pointers are borrowed; tokenizer and metrics may be null.
  GenerationService(engine::ThreadedEngine* engine, const models::Tokenizer* tokenizer,
                    v1::ModelInfo model_info, ServerMetrics* metrics);

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context,
                                     const v1::GenerateRequest* request,
                                     v1::GenerateResponse* response) override;
  grpc::ServerWriteReactor<v1::GenerateStreamResponse>* GenerateStream(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

  engine::ThreadedEngine* engine() const { return engine_; }
  const models::Tokenizer* tokenizer() const { return tokenizer_; }
  ServerMetrics* metrics() const { return metrics_; }

 private:
  engine::ThreadedEngine* engine_;
  const models::Tokenizer* tokenizer_;
  v1::ModelInfo model_info_;
  ServerMetrics* metrics_;
};

}  // namespace server
}  // namespace foxserve

#endif  // FOXSERVE_SERVER_GENERATION_SERVICE_H_
