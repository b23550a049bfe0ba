#include "server/cli_remote.h"

#include <chrono>
#include <memory>
#include <vector>

#include "absl/strings/str_join.h"
#include "foxserve/v1/generation.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace foxserve {
namespace server {
namespace {

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN";
  }
}

int ReportError(const grpc::Status& status, std::ostream& err) {
  err << CodeName(status.error_code()) << ": " << status.error_message() << "\n";
  return 1;
}

}  // namespace

int RemoteGenerate(const RemoteOptions& options, const v1::GenerateRequest& request,
                   std::ostream& out, std::ostream& err) {
  auto channel = grpc::CreateChannel(options.server, grpc::InsecureChannelCredentials());
  auto stub = v1::Generation::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(options.timeout_seconds * 1000)));
  std::vector<int32_t> ids;
  if (options.stream) {
    auto reader = stub->GenerateStream(&context, request);
    v1::GenerateStreamResponse message;
    while (reader->Read(&message)) {
      out << message.text() << std::flush;
      ids.insert(ids.end(), message.token_ids().begin(), message.token_ids().end());
    }
    const grpc::Status status = reader->Finish();
    if (!status.ok()) {
      out << "\n";
      return ReportError(status, err);
    }
    out << "\n";
  } else {
    v1::GenerateResponse response;
    const grpc::Status status = stub->Generate(&context, request, &response);
    if (!status.ok()) return ReportError(status, err);
    out << response.text() << "\n";
    ids.assign(response.token_ids().begin(), response.token_ids().end());
  }
  if (options.print_ids) out << absl::StrJoin(ids, " ") << "\n";
  return 0;
}

}  // namespace server
}  // namespace foxserve
