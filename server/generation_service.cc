#include "server/generation_service.h"

#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

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

// The message in `buffer`, or InvalidArgument naming "request" (see ParseRequestBytes).
absl::Status Parse(const grpc::ByteBuffer& buffer, google::protobuf::MessageLite* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return ParseRequestBytes("\xff", message);
  std::string bytes;
  bytes.reserve(buffer.Length());
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return ParseRequestBytes(bytes, message);
}

grpc::ByteBuffer Serialize(const google::protobuf::MessageLite& message) {
  grpc::Slice slice(message.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

// Authorizes, parses, validates and submits a generation; on success returns the engine id. The
// token is checked first, so that a caller without one learns nothing else (not even that the
// server is draining or that its message was malformed).
absl::StatusOr<uint64_t> Submit(GenerationService* service, grpc::CallbackServerContext* context,
                                const grpc::ByteBuffer& raw, std::string* request_id,
                                std::shared_ptr<engine::RequestSink> sink) {
  if (absl::Status auth = service->Authorize(context); !auth.ok()) return auth;
  v1::GenerateRequest request;
  if (absl::Status parsed = Parse(raw, &request); !parsed.ok()) return parsed;
  *request_id = request.request_id();
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
class StreamCall : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                   public std::enable_shared_from_this<StreamCall> {
 public:
  StreamCall(GenerationService* service, grpc::CallbackServerContext* context)
      : service_(service), context_(context) {}

  void Start(const grpc::ByteBuffer& request) {
    self_ = shared_from_this();
    auto id = Submit(service_, context_, request, &request_id_,
                     std::make_shared<CallSink<StreamCall>>(self_));
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
      current_bytes_ = Serialize(current_);
      write_in_flight_ = true;
      lock.unlock();
      StartWrite(&current_bytes_);
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
  grpc::ByteBuffer current_bytes_;     // and its wire form
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
  UnaryCall(GenerationService* service, grpc::CallbackServerContext* context,
            grpc::ByteBuffer* response)
      : service_(service), context_(context), raw_response_(response) {}

  void Start(const grpc::ByteBuffer& request) {
    self_ = shared_from_this();
    auto id = Submit(service_, context_, request, &request_id_,
                     std::make_shared<CallSink<UnaryCall>>(self_));
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
    response_.mutable_text()->append(output.text);
    AppendTokens(output, service_->tokenizer(), response_.mutable_token_ids(),
                 response_.mutable_logprobs());
    if (!output.finished()) return;
    v1::FinishReason reason;
    FillFinal(output, &reason, response_.mutable_usage(), response_.mutable_acp());
    response_.set_finish_reason(reason);
    response_.set_request_id(request_id_);
    const absl::Status status = FinalStatus(output);
    if (status.ok()) *raw_response_ = Serialize(response_);
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
  grpc::CallbackServerContext* context_;
  grpc::ByteBuffer* raw_response_;
  std::string request_id_;        // written by Submit before the engine sees the request
  v1::GenerateResponse response_;  // filled under mu_, serialized into raw_response_ at the end
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
                                     ServerMetrics* metrics, const BearerTokenAuth* auth)
    : engine_(engine),
      tokenizer_(tokenizer),
      model_info_(std::move(model_info)),
      metrics_(metrics),
      auth_(auth) {}

absl::Status GenerationService::Authorize(const grpc::CallbackServerContext* context) const {
  if (auth_ == nullptr) return absl::OkStatus();
  return auth_->Check(context->client_metadata());
}

grpc::ServerUnaryReactor* GenerationService::Generate(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      grpc::ByteBuffer* response) {
  auto call = std::make_shared<UnaryCall>(this, context, response);
  call->Start(*request);
  return call.get();
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerationService::GenerateStream(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  auto call = std::make_shared<StreamCall>(this, context);
  call->Start(*request);
  return call.get();
}

namespace {

// A unary call answered at once: token check, parse, `handle`, reply.
template <typename Request, typename Response, typename Handle>
grpc::ServerUnaryReactor* Answer(GenerationService* service, grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* raw_request, grpc::ByteBuffer* raw_response,
                                 Handle handle) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status auth = service->Authorize(context); !auth.ok()) {
    reactor->Finish(ToGrpc(auth));
    return reactor;
  }
  Request request;
  if (absl::Status parsed = Parse(*raw_request, &request); !parsed.ok()) {
    reactor->Finish(ToGrpc(parsed));
    return reactor;
  }
  Response response;
  const grpc::Status status = handle(request, &response);
  if (status.ok()) *raw_response = Serialize(response);
  reactor->Finish(status);
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      grpc::ByteBuffer* response) {
  return Answer<v1::TokenizeRequest, v1::TokenizeResponse>(
      this, context, request, response,
      [this](const auto& req, auto* resp) { return DoTokenize(req, resp); });
}

grpc::ServerUnaryReactor* GenerationService::Detokenize(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response) {
  return Answer<v1::DetokenizeRequest, v1::DetokenizeResponse>(
      this, context, request, response,
      [this](const auto& req, auto* resp) { return DoDetokenize(req, resp); });
}

grpc::ServerUnaryReactor* GenerationService::GetModelInfo(grpc::CallbackServerContext* context,
                                                          const grpc::ByteBuffer* request,
                                                          grpc::ByteBuffer* response) {
  return Answer<v1::GetModelInfoRequest, v1::ModelInfo>(
      this, context, request, response, [this](const auto&, v1::ModelInfo* info) {
        *info = model_info_;
        return grpc::Status::OK;
      });
}

grpc::ServerUnaryReactor* GenerationService::InspectKvCache(grpc::CallbackServerContext* context,
                                                            const grpc::ByteBuffer* raw_request,
                                                            grpc::ByteBuffer* raw_response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status auth = Authorize(context); !auth.ok()) {
    reactor->Finish(ToGrpc(auth));
    return reactor;
  }
  v1::InspectKvCacheRequest request;
  if (absl::Status parsed = Parse(*raw_request, &request); !parsed.ok()) {
    reactor->Finish(ToGrpc(parsed));
    return reactor;
  }
  if (request.request_id().size() > kMaxRequestIdBytes) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("request_id: longer than ", kMaxRequestIdBytes,
                                              " bytes")));
    return reactor;
  }
  // The reactor and raw_response stay valid until Finish, which the callback calls (the engine
  // calls it with an empty list when it stops first).
  const uint32_t page_size = model_info_.kv_page_size();
  engine_->InspectKv(request.request_id(), [reactor, raw_response,
                                            page_size](std::vector<engine::RequestKvReport> reports) {
    v1::InspectKvCacheResponse response;
    for (const engine::RequestKvReport& r : reports) {
      v1::RequestKvCache* out = response.add_requests();
      out->set_request_id(r.request_id);
      out->set_running(r.running);
      out->set_num_tokens(static_cast<uint32_t>(r.num_tokens));
      out->set_num_cached_tokens(static_cast<uint32_t>(r.num_cached));
      out->set_max_total_tokens(static_cast<uint32_t>(r.max_total_tokens));
      out->set_pages_held(static_cast<uint64_t>(r.pages_held));
      out->set_kv_page_size(page_size);
      uint64_t evicted = 0;
      for (const engine::StreamKvReport& st : r.streams) {
        v1::KvStreamBlocks* b = out->add_streams();
        b->set_layer(static_cast<uint32_t>(st.layer));
        b->set_head(static_cast<uint32_t>(st.head));
        b->set_blocks(static_cast<uint32_t>(st.blocks));
        b->set_live(static_cast<uint32_t>(st.live));
        b->set_dead_resident(static_cast<uint32_t>(st.dead_resident));
        b->set_evicted(static_cast<uint32_t>(st.evicted));
        evicted += static_cast<uint64_t>(st.evicted);
      }
      out->set_pages_evicted(evicted);
    }
    *raw_response = Serialize(response);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::Status GenerationService::DoTokenize(const v1::TokenizeRequest& request,
                                           v1::TokenizeResponse* response) {
  if (tokenizer_ == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the model has no tokenizer");
  }
  if (request.add_bos() && tokenizer_->bos_id()) response->add_token_ids(*tokenizer_->bos_id());
  auto ids = tokenizer_->Encode(request.text());
  if (!ids.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "text: cannot be tokenized (is it valid UTF-8?)");
  }
  for (int32_t id : *ids) response->add_token_ids(id);
  return grpc::Status::OK;
}

grpc::Status GenerationService::DoDetokenize(const v1::DetokenizeRequest& request,
                                             v1::DetokenizeResponse* response) {
  if (tokenizer_ == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the model has no tokenizer");
  }
  const std::vector<int32_t> ids(request.token_ids().begin(), request.token_ids().end());
  // Checked here rather than passed on from the tokenizer, whose messages name its files: a
  // client learns nothing about the server's paths.
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= tokenizer_->vocab_size()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("token_ids: token id ", ids[i], " at position ", i,
                                       " is outside the vocabulary [0, ",
                                       tokenizer_->vocab_size(), ")"));
    }
  }
  auto text = tokenizer_->Decode(ids);
  if (!text.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "token_ids: some ids are not assigned to any token");
  }
  std::string bytes = *text;
  response->set_text(models::TakeCompleteUtf8(&bytes, /*flush=*/true));
  return grpc::Status::OK;
}

}  // namespace server
}  // namespace foxserve
