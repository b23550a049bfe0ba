#include "server/auth.h"

#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace foxserve {
namespace server {
namespace {

absl::StatusOr<std::string> ReadSmallFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  std::string text = ss.str();
  if (text.size() > (1 << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is larger than 1 MiB"));
  }
  return text;
}

absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path,
                                    absl::string_view kind) {
  auto text = ReadSmallFile(flag, path);
  if (!text.ok()) return text.status();
  if (!absl::StrContains(*text, "-----BEGIN ") || !absl::StrContains(*text, kind)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " is not a PEM file with a ", kind));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& tls) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together: give both or neither");
  }
  if (tls.cert_file.empty()) {
    if (!tls.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)");
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  auto cert = ReadPem("--tls-cert", tls.cert_file, "CERTIFICATE");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem("--tls-key", tls.key_file, "PRIVATE KEY");
  if (!key.ok()) return key.status();
  options.pem_key_cert_pairs.push_back({*key, *cert});
  if (!tls.client_ca_file.empty()) {
    auto ca = ReadPem("--tls-client-ca", tls.client_ca_file, "CERTIFICATE");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::unique_ptr<BearerTokenAuth>> BearerTokenAuth::FromFile(const std::string& path) {
  auto text = ReadSmallFile("--auth-token-file", path);
  if (!text.ok()) return text.status();
  const std::string token(absl::StripAsciiWhitespace(*text));
  if (token.size() < 16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--auth-token-file: ", path, " must hold a token of at least 16 characters"));
  }
  for (unsigned char c : token) {
    if (c <= 0x20 || c >= 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--auth-token-file: ", path,
          " must hold one token of printable ASCII without spaces (it travels in a header)"));
    }
  }
  return std::unique_ptr<BearerTokenAuth>(new BearerTokenAuth(token));
}

absl::Status BearerTokenAuth::Check(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const {
  const auto range = metadata.equal_range("authorization");
  if (range.first == range.second) {
    return absl::UnauthenticatedError(
        "this server needs a bearer token: send metadata 'authorization: Bearer <token>'");
  }
  if (std::next(range.first) != range.second) {
    return absl::UnauthenticatedError("more than one authorization header");
  }
  const absl::string_view value(range.first->second.data(), range.first->second.size());
  constexpr absl::string_view kScheme = "Bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError("the authorization header must be 'Bearer <token>'");
  }
  const absl::string_view sent = value.substr(kScheme.size());
  // Constant time in the content: every byte of the expected token is compared, whatever the
  // length or the first difference of what was sent.
  unsigned char diff = sent.size() == token_.size() ? 0 : 1;
  for (size_t i = 0; i < token_.size(); ++i) {
    diff |= static_cast<unsigned char>(token_[i] ^ (i < sent.size() ? sent[i] : 0));
  }
  if (diff != 0) return absl::PermissionDeniedError("the bearer token is not valid");
  return absl::OkStatus();
}

}  // namespace server
}  // namespace foxserve
