#include "server/generation_service.h"

#include <deque>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "models/incremental_decoder.h"
#include "server/request_conversion.h"

namespace foxserve {
namespace server {
namespace {

// absl and gRPC share the canonical code numbers.
grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

std::string CodeName(const absl::Status& s) { return absl::StatusCodeToString(s.code()); }

// Validates and submits a generation; on success returns the engine id.
absl::StatusOr<uint64_t> Submit(GenerationService* service, const v1::GenerateRequest& request,
                                std::shared_ptr<engine::RequestSink> sink) {
  if (!service->engine()->accepting()) return absl::UnavailableError("the server is shutting down");
  auto converted = ToEngineRequest(request, service->tokenizer());
  if (!converted.ok()) return converted.status();
  return service->engine()->Submit(std::move(converted).value(), std::move(sink));
}

// Forwards engine outputs to a call that may already be gone.
template <typename Call>
class CallSink : public engine::RequestSink {
 public:
  explicit CallSink(std::shared_ptr<Call> call) : call_(std::move(call)) {}
  void OnOutput(engine::RequestOutput output) override { call_->Deliver(std::move(output)); }

 private:
  std::shared_ptr<Call> call_;
};

// The closing status of a finished output: OK for length/stop/eos, else the engine's status.
absl::Status FinalStatus(const engine::RequestOutput& output) {
  if (output.finish_reason == engine::FinishReason::kCancelled ||
      output.finish_reason == engine::FinishReason::kError) {
    return output.status.ok() ? absl::CancelledError("cancelled") : output.status;
  }
  return absl::OkStatus();
}

// Appends `next` (a later message of the same stream) to `into`.
void Merge(v1::GenerateStreamResponse next, v1::GenerateStreamResponse* into) {
  into->mutable_text()->append(next.text());
  into->mutable_token_ids()->MergeFrom(next.token_ids());
  into->mutable_logprobs()->MergeFrom(next.logprobs());
  if (next.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
    into->set_finish_reason(next.finish_reason());
    *into->mutable_usage() = next.usage();
    *into->mutable_acp() = next.acp();
  }
}

// A server-streaming call. Owns itself (self_) until OnDone; the engine's sink may keep it
// alive longer, and then only finds it done. One write in flight at a time; Finish after the
// last write. Reactor operations are issued outside mu_.
class StreamCall : public grpc::ServerWriteReactor<v1::GenerateStreamResponse>,
                   public std::enable_shared_from_this<StreamCall> {
 public:
  StreamCall(GenerationService* service, grpc::CallbackServerContext* context)
      : service_(service), context_(context) {}

  void Start(const v1::GenerateRequest& request) {
    self_ = shared_from_this();
    request_id_ = request.request_id();
    auto id = Submit(service_, request, std::make_shared<CallSink<StreamCall>>(self_));
    if (!id.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        finish_started_ = true;
        reason_ = "rejected";
        code_ = CodeName(id.status());
      }
      Finish(ToGrpc(id.status()));
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    engine_id_ = *id;
    submitted_ = true;
    if (cancelled_) service_->engine()->Abort(engine_id_);
  }

  // Engine thread.
  void Deliver(engine::RequestOutput output) {
    std::unique_lock<std::mutex> lock(mu_);
    if (done_ || finish_started_) return;
    v1::GenerateStreamResponse message;
    message.set_request_id(request_id_);
    message.set_text(std::move(output.text));
    AppendTokens(output, service_->tokenizer(), message.mutable_token_ids(),
                 message.mutable_logprobs());
    if (output.finished()) {
      v1::FinishReason reason;
      FillFinal(output, &reason, message.mutable_usage(), message.mutable_acp());
      message.set_finish_reason(reason);
      final_status_ = FinalStatus(output);
      final_received_ = true;
      reason_ = engine::FinishReasonName(output.finish_reason);
      code_ = CodeName(final_status_);
      if (output.finish_reason != engine::FinishReason::kError) pending_.push_back(std::move(message));
    } else {
      pending_.push_back(std::move(message));
    }
    Act(lock);
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock(mu_);
    write_in_flight_ = false;
    if (!ok) {
      // The client is gone: stop generating and end the call now.
      if (submitted_) service_->engine()->Abort(engine_id_);
      pending_.clear();
      final_received_ = true;
      final_status_ = absl::CancelledError("the client went away");
      if (reason_.empty()) {
        reason_ = "cancelled";
        code_ = CodeName(final_status_);
      }
    }
    Act(lock);
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (submitted_) service_->engine()->Abort(engine_id_);
  }

  void OnDone() override {
    std::string reason, code;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      reason = reason_.empty() ? "cancelled" : reason_;
      code = code_.empty() ? "CANCELLED" : code_;
    }
    if (service_->metrics() != nullptr) service_->metrics()->CountRequest(reason, code);
    self_.reset();  // may destroy this
  }

 private:
  // Starts the next write, or finishes once everything is written. Releases `lock`.
  void Act(std::unique_lock<std::mutex>& lock) {
    if (write_in_flight_ || finish_started_) return;
    if (!pending_.empty()) {
      // A client slower than the engine gets the backlog as one message, not one per token.
      current_ = std::move(pending_.front());
      pending_.pop_front();
      while (!pending_.empty()) {
        Merge(std::move(pending_.front()), &current_);
        pending_.pop_front();
      }
      write_in_flight_ = true;
      lock.unlock();
      StartWrite(&current_);
      return;
    }
    if (final_received_) {
      finish_started_ = true;
      const grpc::Status status = ToGrpc(final_status_);
      lock.unlock();
      Finish(status);
    }
  }

  GenerationService* service_;
  grpc::CallbackServerContext* context_;
  std::shared_ptr<StreamCall> self_;
  std::string request_id_;

  std::mutex mu_;
  uint64_t engine_id_ = 0;
  bool submitted_ = false;
  bool cancelled_ = false;
  std::deque<v1::GenerateStreamResponse> pending_;
  v1::GenerateStreamResponse current_;  // the message being written
  bool write_in_flight_ = false;
  bool final_received_ = false;
  bool finish_started_ = false;
  bool done_ = false;
  absl::Status final_status_;
  std::string reason_, code_;
};

// A unary Generate: gathers the outputs into the response and finishes with the last one.
class UnaryCall : public grpc::ServerUnaryReactor, public std::enable_shared_from_this<UnaryCall> {
 public:
  UnaryCall(GenerationService* service, v1::GenerateResponse* response)
      : service_(service), response_(response) {}

  void Start(const v1::GenerateRequest& request) {
    self_ = shared_from_this();
    response_->set_request_id(request.request_id());
    auto id = Submit(service_, request, std::make_shared<CallSink<UnaryCall>>(self_));
    if (!id.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        finished_ = true;
        reason_ = "rejected";
        code_ = CodeName(id.status());
      }
      Finish(ToGrpc(id.status()));
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    engine_id_ = *id;
    submitted_ = true;
    if (cancelled_) service_->engine()->Abort(engine_id_);
  }

  void Deliver(engine::RequestOutput output) {
    std::unique_lock<std::mutex> lock(mu_);
    if (finished_) return;
    response_->mutable_text()->append(output.text);
    AppendTokens(output, service_->tokenizer(), response_->mutable_token_ids(),
                 response_->mutable_logprobs());
    if (!output.finished()) return;
    v1::FinishReason reason;
    FillFinal(output, &reason, response_->mutable_usage(), response_->mutable_acp());
    response_->set_finish_reason(reason);
    const absl::Status status = FinalStatus(output);
    finished_ = true;
    reason_ = engine::FinishReasonName(output.finish_reason);
    code_ = CodeName(status);
    lock.unlock();
    Finish(ToGrpc(status));
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (submitted_) service_->engine()->Abort(engine_id_);
  }

  void OnDone() override {
    std::string reason, code;
    {
      std::lock_guard<std::mutex> lock(mu_);
      reason = reason_.empty() ? "cancelled" : reason_;
      code = code_.empty() ? "CANCELLED" : code_;
    }
    if (service_->metrics() != nullptr) service_->metrics()->CountRequest(reason, code);
    self_.reset();
  }

 private:
  GenerationService* service_;
  v1::GenerateResponse* response_;
  std::shared_ptr<UnaryCall> self_;
  std::mutex mu_;
  uint64_t engine_id_ = 0;
  bool submitted_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
  std::string reason_, code_;
};

}  // namespace

GenerationService::GenerationService(engine::ThreadedEngine* engine,
                                     const models::Tokenizer* tokenizer, v1::ModelInfo model_info,
                                     ServerMetrics* metrics)
    : engine_(engine), tokenizer_(tokenizer), model_info_(std::move(model_info)), metrics_(metrics) {}

grpc::ServerUnaryReactor* GenerationService::Generate(grpc::CallbackServerContext* context,
                                                      const v1::GenerateRequest* request,
                                                      v1::GenerateResponse* response) {
  auto call = std::make_shared<UnaryCall>(this, response);
  call->Start(*request);
  return call.get();
}

grpc::ServerWriteReactor<v1::GenerateStreamResponse>* GenerationService::GenerateStream(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  auto call = std::make_shared<StreamCall>(this, context);
  call->Start(*request);
  return call.get();
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                      const v1::TokenizeRequest* request,
                                                      v1::TokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (tokenizer_ == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the model has no tokenizer"));
    return reactor;
  }
  if (request->add_bos() && tokenizer_->bos_id()) response->add_token_ids(*tokenizer_->bos_id());
  auto ids = tokenizer_->Encode(request->text());
  if (!ids.ok()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "text: cannot be tokenized (is it valid UTF-8?)"));
    return reactor;
  }
  for (int32_t id : *ids) response->add_token_ids(id);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::Detokenize(grpc::CallbackServerContext* context,
                                                        const v1::DetokenizeRequest* request,
                                                        v1::DetokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (tokenizer_ == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the model has no tokenizer"));
    return reactor;
  }
  const std::vector<int32_t> ids(request->token_ids().begin(), request->token_ids().end());
  auto text = tokenizer_->Decode(ids);
  if (!text.ok()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("token_ids: ", text.status().message())));
    return reactor;
  }
  std::string bytes = *text;
  response->set_text(models::TakeCompleteUtf8(&bytes, /*flush=*/true));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::GetModelInfo(grpc::CallbackServerContext* context,
                                                          const v1::GetModelInfoRequest* request,
                                                          v1::ModelInfo* response) {
  *response = model_info_;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace server
}  // namespace foxserve
