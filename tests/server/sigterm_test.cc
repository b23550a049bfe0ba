// The foxserve binary under SIGTERM: health turns NOT_SERVING, a request in flight ends with
// UNAVAILABLE at the drain timeout, new requests are refused, and the process exits 0.
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "foxserve/v1/generation.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/support/grpc_test_util.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {
namespace {

TEST(SigtermTest, DrainsAndExitsZero) {
  ScratchDir dir;
  const int port = PickFreePort();
  WriteFileOrDie(dir.File("server.log"), "");
  ChildProcess server({FOXSERVE_SERVER_PATH, "--model", GoldenDir("fox-pro-tiny"), "--host",
                       "127.0.0.1", "--port", std::to_string(port), "--metrics-port", "-1",
                       "--drain-timeout", "1", "--max-model-len", "8192", "--threads", "2"},
                      dir.File("server.log"));
  ASSERT_TRUE(server.started());
  // Connect once the server says it listens: an early failed connection would put the channel
  // into reconnect backoff.
  for (int i = 0; i < 1000; ++i) {
    if (ReadFileOrDie(dir.File("server.log")).find("serving gRPC") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  bool serving = false;
  for (int i = 0; i < 300 && !serving; ++i) {
    auto h = HealthCheck(channel);
    serving = h.ok() && *h == 1;
    if (!serving) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(serving) << ReadFileOrDie(dir.File("server.log"));
  auto stub = v1::Generation::NewStub(channel);
  grpc::ClientContext ctx;
  v1::GenerateRequest request;
  for (int i = 0; i < 100; ++i) request.mutable_token_ids()->add_ids(3 + i);
  request.set_max_new_tokens(8000);
  request.set_ignore_eos(true);
  auto reader = stub->GenerateStream(&ctx, request);
  v1::GenerateStreamResponse m;
  ASSERT_TRUE(reader->Read(&m));

  const auto sent = std::chrono::steady_clock::now();
  server.Signal(SIGTERM);
  // Health flips at once; the listener stays up during the drain, refusing new work.
  bool not_serving = false;
  for (int i = 0; i < 50 && !not_serving; ++i) {
    auto h = HealthCheck(channel);
    not_serving = h.ok() && *h == 2;
    if (!not_serving) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(not_serving);
  grpc::ClientContext late;
  v1::GenerateResponse response;
  request.set_max_new_tokens(2);
  EXPECT_EQ(stub->Generate(&late, request, &response).error_code(), grpc::StatusCode::UNAVAILABLE);
  while (reader->Read(&m)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(server.Wait(20), 0) << ReadFileOrDie(dir.File("server.log"));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  EXPECT_LT(seconds, 1 + 3) << ReadFileOrDie(dir.File("server.log"));  // drain + 1 s grace
  EXPECT_NE(ReadFileOrDie(dir.File("server.log")).find("received SIGTERM"), std::string::npos);
}

}  // namespace
}  // namespace testing
}  // namespace foxserve
