// See ca_client.h. What goes into the request and what the answer looks like follow ztunnel
// (src/identity/caclient.rs, src/tls/csr.rs, src/tls/certificate.rs).
#include "ca_client.h"

#include <google/protobuf/struct.pb.h>
#include <grpcpp/client_context.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include <atomic>
#include <string_view>

#include "../identity/openssl_util.h"
#include "citadel.grpc.pb.h"

namespace zmesh::xds {
namespace {

using namespace identity_detail;
using ReqPtr = std::unique_ptr<X509_REQ, Deleter<X509_REQ_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
// sk_*_pop_free are macros, so they cannot be template arguments.
struct ExtensionsFree {
  void operator()(STACK_OF(X509_EXTENSION) * s) const { sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free); }
};
struct X509StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_free(s); }  // the certificates stay owned elsewhere
};

// A guess at the cause, for the codes a misconfigured node actually meets.
std::string hint(grpc::StatusCode code, const IstiodSettings& settings, std::chrono::milliseconds deadline) {
  switch (code) {
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return " (no answer within " + std::to_string(deadline.count()) + " ms)";
    case grpc::StatusCode::UNAVAILABLE:
      return " (is istiod running and reachable, and does its certificate verify against " +
             settings.root_cert.string() + (settings.server_name.empty() ? "" : " as " + settings.server_name) + "?)";
    case grpc::StatusCode::UNAUTHENTICATED:
      if (settings.token.empty())
        return " (no --xds-token given: istiod wants a service-account token, audience istio-ca)";
      return " (is " + settings.token.string() + " a service-account token for audience istio-ca?)";
    case grpc::StatusCode::PERMISSION_DENIED:
      return " (may this node's service account impersonate the identity? istiod: CA_TRUSTED_NODE_ACCOUNTS)";
    default:
      return "";
  }
}

// An EC P-256 key and a CSR for it with an empty subject and one URI SAN, critical because the
// subject is empty (RFC 5280 4.2.1.6). `uri` has passed SpiffeId::parse, so it holds no ','
// or other config syntax and can be given to OpenSSL as config text.
std::pair<std::string, PkeyPtr> make_csr(const std::string& uri, const std::string& who) {
  PkeyUnique key(EVP_EC_gen("P-256"));
  if (!key) fail(who, "cannot generate a P-256 key");
  ReqPtr req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_pubkey(req.get(), key.get()) != 1)
    fail(who, "cannot build the CSR");
  X509V3_CTX ctx{};
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, nullptr, nullptr, req.get(), nullptr, 0);
  ExtensionPtr san(X509V3_EXT_nconf_nid(nullptr, &ctx, NID_subject_alt_name, ("critical,URI:" + uri).c_str()));
  std::unique_ptr<STACK_OF(X509_EXTENSION), ExtensionsFree> extensions(sk_X509_EXTENSION_new_null());
  if (!san || !extensions || sk_X509_EXTENSION_push(extensions.get(), san.get()) <= 0)
    fail(who, "cannot build the CSR's subjectAltName");
  san.release();
  if (X509_REQ_add_extensions(req.get(), extensions.get()) != 1 ||
      X509_REQ_sign(req.get(), key.get(), EVP_sha256()) <= 0)
    fail(who, "cannot sign the CSR");
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509_REQ(out.get(), req.get()) != 1) fail(who, "cannot write the CSR as PEM");
  char* data = nullptr;
  const long size = BIO_get_mem_data(out.get(), &data);
  return {std::string(data, static_cast<size_t>(size)), share(std::move(key))};
}

// Every PEM certificate in `text` (one element of cert_chain may hold several).
std::vector<X509Ptr> certificates_in(const std::string& text, const std::string& who, const std::string& what) {
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!bio) fail(who, "cannot allocate a memory BIO");
  std::vector<X509Ptr> out;
  for (;;) {
    X509Unique cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert) {
      out.push_back(share(std::move(cert)));
      continue;
    }
    // "No start line" is the end of the text; anything else is a damaged certificate.
    const unsigned long err = ERR_peek_last_error();
    if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) break;
    fail(who, what + ": certificate " + std::to_string(out.size() + 1) + " cannot be read");
  }
  ERR_clear_error();
  if (out.empty()) throw IdentityError(who + ": " + what + " holds no PEM certificate");
  return out;
}

bool self_signed(const X509Ptr& cert) { return X509_self_signed(cert.get(), 1) == 1; }

// Every IstiodCa's failures: a rotation makes a new one, the metric counts on.
std::atomic<uint64_t> process_failures{0};

}  // namespace

struct IstiodCa::State {
  IstiodSettings settings;
  std::chrono::seconds validity;
  std::chrono::milliseconds deadline;
  std::unique_ptr<istio::v1::auth::IstioCertificateService::Stub> stub;
  std::atomic<uint64_t> failures{0};

  Certificate issue(const SpiffeId& id);  // request(), counting failures
  Certificate request(const SpiffeId& id);
  void verify(const Certificate& out, const std::string& who) const;
};

Certificate IstiodCa::State::issue(const SpiffeId& id) {
  try {
    return request(id);
  } catch (...) {
    ++failures;
    ++process_failures;
    throw;
  }
}

Certificate IstiodCa::State::request(const SpiffeId& id) {
  ERR_clear_error();
  const std::string uri = id.uri();
  const std::string who = uri + " from istiod " + settings.address;
  if (auto parsed = SpiffeId::parse(uri); !parsed || *parsed != id)
    throw IdentityError("'" + uri + "' is not a valid SPIFFE id");

  auto [csr, key] = make_csr(uri, who);
  istio::v1::auth::IstioCertificateRequest request;
  request.set_csr(std::move(csr));
  request.set_validity_duration(validity.count());
  // istiod signs for the identity named here rather than the caller's own, once it has checked
  // that the caller (the node's service account) may impersonate it.
  (*request.mutable_metadata()->mutable_fields())["ImpersonatedIdentity"].set_string_value(uri);

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  try {
    authenticate(context, settings);
  } catch (const IstiodError& e) {
    throw IdentityError(who + ": " + e.what());
  }
  istio::v1::auth::IstioCertificateResponse response;
  if (grpc::Status status = stub->CreateCertificate(&context, request, &response); !status.ok())
    throw IdentityError(who + ": CreateCertificate failed: " + status_code_name(status.error_code()) + ": " +
                        status.error_message() + hint(status.error_code(), settings, deadline));

  // Leaf first, root last; the root is not ours to send, peers hold it in their bundles.
  if (response.cert_chain().empty()) throw IdentityError(who + ": istiod answered with an empty cert_chain");
  std::vector<X509Ptr> certs;
  for (int i = 0; i < response.cert_chain_size(); ++i) {
    auto part =
        certificates_in(response.cert_chain(i), who, i == 0 ? "the leaf" : "cert_chain[" + std::to_string(i) + "]");
    certs.insert(certs.end(), part.begin(), part.end());
  }
  Certificate out;
  out.cert = certs.front();
  out.key = std::move(key);
  for (auto it = certs.begin() + 1; it != certs.end(); ++it)
    if (!self_signed(*it)) out.chain.push_back(*it);

  std::vector<std::string> spiffe;
  for (auto& san : uri_sans(out.cert.get()))
    if (san.starts_with("spiffe://")) spiffe.push_back(std::move(san));
  // Peers read exactly one spiffe:// SAN (verified_peer_identity); anything else is not `id`.
  if (spiffe.size() != 1 || spiffe.front() != uri) {
    std::string got;
    for (const auto& s : spiffe) got += (got.empty() ? "" : ", ") + s;
    throw IdentityError(who + ": the certificate istiod issued is for " + (got.empty() ? "no spiffe:// URI" : got) +
                        ", not for the identity asked for");
  }
  if (X509_check_private_key(out.cert.get(), out.key.get()) != 1)
    fail(who, "the certificate istiod issued is not for the key of our CSR");
  verify(out, who);
  out.not_before = to_time_point(X509_get0_notBefore(out.cert.get()));
  out.not_after = to_time_point(X509_get0_notAfter(out.cert.get()));
  return out;
}

// The leaf must chain to the mesh root through the intermediates it came with; a chain that
// ends elsewhere (istiod signing with another CA) would fail every peer's handshake.
void IstiodCa::State::verify(const Certificate& out, const std::string& who) const {
  const TrustBundle roots = TrustBundle::load(settings.root_cert);
  StorePtr store(X509_STORE_new());
  std::unique_ptr<STACK_OF(X509), X509StackFree> untrusted(sk_X509_new_null());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !untrusted || !ctx) fail(who, "cannot allocate the chain verification");
  for (const auto& root : roots.roots())
    if (X509_STORE_add_cert(store.get(), root.get()) != 1) fail(who, "cannot load " + settings.root_cert.string());
  for (const auto& cert : out.chain)
    if (sk_X509_push(untrusted.get(), cert.get()) <= 0) fail(who, "cannot collect the intermediates");
  if (X509_STORE_CTX_init(ctx.get(), store.get(), out.cert.get(), untrusted.get()) != 1)
    fail(who, "cannot start the chain verification");
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    // The issuer where the chain breaks tells the operator which CA istiod signs with.
    char issuer[256] = "?";
    if (X509* at = X509_STORE_CTX_get_current_cert(ctx.get()))
      X509_NAME_oneline(X509_get_issuer_name(at), issuer, sizeof issuer);
    ERR_clear_error();
    throw IdentityError(who + ": the certificate chain does not verify up to a root in " + settings.root_cert.string() +
                        ": " + X509_verify_cert_error_string(err) + " at depth " +
                        std::to_string(X509_STORE_CTX_get_error_depth(ctx.get())) + ", issuer " + issuer);
  }
}

IstiodCa::IstiodCa(IstiodSettings settings, std::chrono::seconds validity, std::chrono::milliseconds deadline)
    : state_(std::make_shared<State>()) {
  if (validity <= std::chrono::seconds::zero()) throw IstiodError("the workload certificate validity must be positive");
  state_->stub = istio::v1::auth::IstioCertificateService::NewStub(istiod_channel(settings));
  state_->settings = std::move(settings);
  state_->validity = validity;
  state_->deadline = deadline;
}

Certificate IstiodCa::issue(const SpiffeId& id) { return state_->issue(id); }

Certificates::Source IstiodCa::source() {
  return [state = state_](const SpiffeId& id) { return state->issue(id); };
}

uint64_t IstiodCa::failures() const { return state_->failures.load(); }
uint64_t IstiodCa::failures_in_process() { return process_failures.load(); }

}  // namespace zmesh::xds
