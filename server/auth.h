// Transport security and client authentication of the gRPC listener (issue 9, RELIABILITY.md
// section 1 "TLS and auth"):
//   - TLS from a PEM certificate chain and key; mTLS when a client CA bundle is given (clients
//     without a certificate signed by it fail the handshake);
//   - an optional shared bearer token, checked on every foxserve.v1.Generation call: a call
//     without `authorization: Bearer <token>` gets UNAUTHENTICATED, one with another token
//     PERMISSION_DENIED, never UNAVAILABLE. grpc.health.v1.Health stays open (Kubernetes probes
//     carry no token); server reflection, off by default, is not covered by the token.
//
// Thread-safety: BearerTokenAuth is immutable after FromFile; Check is safe from any thread.
#ifndef FOXSERVE_SERVER_AUTH_H_
#define FOXSERVE_SERVER_AUTH_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/support/string_ref.h"

namespace foxserve {
namespace server {

struct TlsOptions {
  std::string cert_file;       // PEM certificate chain; empty: plaintext
  std::string key_file;        // PEM private key of the first certificate
  std::string client_ca_file;  // PEM CA bundle; set: require and verify client certificates
};

// The listener's credentials: insecure when `tls.cert_file` is empty. InvalidArgument naming the
// flag (--tls-cert, --tls-key, --tls-client-ca) when a file is missing, unreadable, not PEM, or
// when the combination is incomplete.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& tls);

class BearerTokenAuth {
 public:
  // Reads the token from `path` (surrounding whitespace removed). InvalidArgument naming
  // --auth-token-file when it is unreadable, empty, shorter than 16 characters, or holds
  // characters outside printable ASCII or a space.
  static absl::StatusOr<std::unique_ptr<BearerTokenAuth>> FromFile(const std::string& path);

  // OK, UNAUTHENTICATED (no or malformed authorization metadata) or PERMISSION_DENIED (a token
  // that does not match). Compares in time independent of where the tokens differ. Messages
  // never contain what the client sent.
  absl::Status Check(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const;

 private:
  explicit BearerTokenAuth(std::string token) : token_(std::move(token)) {}
  std::string token_;
};

}  // namespace server
}  // namespace foxserve

#endif  // FOXSERVE_SERVER_AUTH_H_
