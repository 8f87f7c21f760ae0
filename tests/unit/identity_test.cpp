// Identities: SPIFFE ids parse and format; the CA issues leaves of the required shape that
// verify against its root only; its files round-trip with the right modes and name themselves
// in errors; trust bundles load and merge; and real TLS 1.3 handshakes between the HBONE
// contexts (two threads, a socketpair, plain blocking OpenSSL) succeed with h2 and mutual
// identities, and fail for a foreign CA, an expired certificate or a missing h2.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <thread>

#include "openssl_util.h"
#include "zmesh/identity.h"

namespace zmesh {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

using identity_detail::Deleter;
using SslPtr = std::unique_ptr<SSL, Deleter<SSL_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;

SpiffeId id_of(const std::string& ns, const std::string& sa, const std::string& td = "cluster.local") {
  return SpiffeId{td, ns, sa};
}

// A directory of the test's own under /tmp (pid and test name), removed when the test ends.
class TempDir {
 public:
  TempDir() {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = "/tmp/zmesh-identity-test-" + std::to_string(::getpid()) + "-" + test->name();
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void write_text(const std::filesystem::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << file;
}

unsigned mode_of(const std::filesystem::path& file) {
  struct stat st {};
  EXPECT_EQ(::stat(file.c_str(), &st), 0) << file;
  return st.st_mode & 07777;
}

// The IdentityError message of `f`, or a test failure if it does not throw one.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const IdentityError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no IdentityError";
  return {};
}

// X509_V_OK, or why `leaf` does not chain to `bundle` (as a TLS client certificate, unless
// another purpose is given).
int verify(const X509Ptr& leaf, const TrustBundle& bundle, int purpose = X509_PURPOSE_SSL_CLIENT) {
  StorePtr store(X509_STORE_new());
  for (const auto& root : bundle.roots()) X509_STORE_add_cert(store.get(), root.get());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  EXPECT_EQ(X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), nullptr), 1);
  X509_STORE_CTX_set_purpose(ctx.get(), purpose);
  return X509_verify_cert(ctx.get()) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx.get());
}

bool is_critical(X509* cert, int nid) {
  int where = X509_get_ext_by_NID(cert, nid, -1);
  return where >= 0 && X509_EXTENSION_get_critical(X509_get_ext(cert, where)) == 1;
}

std::vector<std::string> uris_of(X509* cert) {
  std::vector<std::string> out;
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type == GEN_URI)
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.uniformResourceIdentifier)),
                       ASN1_STRING_length(name->d.uniformResourceIdentifier));
    else
      out.push_back("(not a URI)");
  }
  return out;
}

std::string drain_errors() {
  std::string out;
  while (unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out;
}

std::string peer_text(const std::variant<SpiffeId, std::string>& peer) {
  return std::holds_alternative<SpiffeId>(peer) ? std::get<SpiffeId>(peer).uri() : std::get<std::string>(peer);
}

// One side of a handshake as seen after it ended.
struct Side {
  bool ok = false;
  std::string errors;  // OpenSSL's error queue of this side
  std::variant<SpiffeId, std::string> peer = std::string("not run");
  std::string alpn;
};
struct Handshake {
  Side client, server;
};

void record(Side& side, SSL* ssl) {
  side.errors = drain_errors();
  side.peer = verified_peer_identity(ssl);
  const unsigned char* proto = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(ssl, &proto, &len);
  if (proto) side.alpn.assign(reinterpret_cast<const char*>(proto), len);
}

// A full TLS handshake over a socketpair, server on a second thread. In TLS 1.3 the client
// finishes before the server has checked the client's certificate, so the server sends one
// byte after it accepted and the client's success includes reading it.
Handshake handshake(boost::asio::ssl::context& client_ctx, boost::asio::ssl::context& server_ctx,
                    const std::function<void(SSL*)>& adjust_client = {}) {
  Handshake result;
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    ADD_FAILURE() << "socketpair: " << std::strerror(errno);
    return result;
  }
  // A handshake that goes wrong fails the test instead of hanging it.
  timeval timeout{10, 0};
  for (int fd : fds) ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);

  std::thread server([&] {
    SslPtr ssl(SSL_new(server_ctx.native_handle()));
    SSL_set_fd(ssl.get(), fds[1]);
    result.server.ok = SSL_accept(ssl.get()) == 1 && SSL_write(ssl.get(), "s", 1) == 1;
    record(result.server, ssl.get());
  });
  {
    SslPtr ssl(SSL_new(client_ctx.native_handle()));
    if (adjust_client) adjust_client(ssl.get());
    SSL_set_fd(ssl.get(), fds[0]);
    char byte = 0;
    result.client.ok = SSL_connect(ssl.get()) == 1 && SSL_read(ssl.get(), &byte, 1) == 1 && byte == 's';
    record(result.client, ssl.get());
  }
  server.join();
  // Closed only after both sides are done: neither ever writes to a closed socket (SIGPIPE).
  ::close(fds[0]);
  ::close(fds[1]);
  return result;
}

// ---- SPIFFE ids ----

TEST(SpiffeId, ParsesAndFormats) {
  struct Case {
    const char* uri;
    SpiffeId id;
  } cases[] = {
      {"spiffe://cluster.local/ns/default/sa/app", {"cluster.local", "default", "app"}},
      {"spiffe://example.org/ns/shop-1/sa/my_sa.v2", {"example.org", "shop-1", "my_sa.v2"}},
      {"spiffe://td/ns/N/sa/S", {"td", "N", "S"}},
  };
  for (const auto& c : cases) {
    auto parsed = SpiffeId::parse(c.uri);
    ASSERT_TRUE(parsed) << c.uri;
    EXPECT_EQ(*parsed, c.id) << c.uri;
    EXPECT_EQ(parsed->uri(), c.uri);
  }
  EXPECT_EQ(id_of("a", "b").uri(), "spiffe://cluster.local/ns/a/sa/b");
}

TEST(SpiffeId, RejectsAnythingElse) {
  const char* bad[] = {
      "",
      "spiffe://",
      "spiffe://cluster.local",
      "spiffe://cluster.local/",
      "http://cluster.local/ns/a/sa/b",
      "SPIFFE://cluster.local/ns/a/sa/b",
      "spiffe:/cluster.local/ns/a/sa/b",
      "spiffe:///ns/a/sa/b",                     // no trust domain
      "spiffe://cluster.local/ns//sa/b",         // empty namespace
      "spiffe://cluster.local/ns/a/sa/",         // empty service account
      "spiffe://cluster.local/ns/a",             // no service account
      "spiffe://cluster.local/ns/a/sa/b/extra",  // extra segment
      "spiffe://cluster.local/ns/a/sa/b/",       // trailing slash
      "spiffe://cluster.local/sa/b/ns/a",        // swapped
      "spiffe://cluster.local/NS/a/sa/b",
      "spiffe://cluster.local/ns/a/sa/b?x=1",  // query
      "spiffe://cluster.local/ns/a/sa/b#frag",  // fragment
      "spiffe://cluster.local:8080/ns/a/sa/b",  // port
      "spiffe://user@cluster.local/ns/a/sa/b",  // userinfo
      "spiffe://Cluster.Local/ns/a/sa/b",       // trust domains are lowercase
      "spiffe://cluster.local/ns/../sa/b",      // dot segment
      "spiffe://cluster.local/ns/a%2Fb/sa/c",   // percent-encoding
      "spiffe://cluster.local/ns/a b/sa/c",
  };
  for (const char* uri : bad) EXPECT_FALSE(SpiffeId::parse(uri)) << uri;
}

// ---- the CA ----

TEST(IdentityCa, RootHasTheRequiredShape) {
  auto ca = CertificateAuthority::create("cluster.local");
  X509* root = ca.root().get();
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(ca.trust_domain(), "cluster.local");
  EXPECT_EQ(X509_get_version(root), X509_VERSION_3);
  char name[256];
  X509_NAME_oneline(X509_get_subject_name(root), name, sizeof name);
  EXPECT_STREQ(name, "/O=zmesh/CN=zmesh root CA");
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(root), X509_get_issuer_name(root)), 0);
  EXPECT_NE(X509_check_ca(root), 0);
  EXPECT_TRUE(is_critical(root, NID_basic_constraints));
  EXPECT_TRUE(is_critical(root, NID_key_usage));
  EXPECT_EQ(X509_get_key_usage(root), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_NE(X509_get0_subject_key_id(root), nullptr);
  EXPECT_EQ(uris_of(root), std::vector<std::string>{"spiffe://cluster.local"});
  EXPECT_EQ(X509_get_signature_nid(root), NID_ecdsa_with_SHA256);
  // Self-signed: it verifies against itself (as a CA, not as a TLS peer).
  EXPECT_EQ(verify(ca.root(), ca.bundle(), X509_PURPOSE_ANY), X509_V_OK);
  EXPECT_EQ(verify(ca.root(), ca.bundle()), X509_V_ERR_INVALID_PURPOSE);
  const int days_left = [&] {
    int days = 0, seconds = 0;
    ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(root));
    return days;
  }();
  EXPECT_GE(days_left, 3649);

  EXPECT_NE(error_of([] { CertificateAuthority::create("Not A Domain"); }).find("Not A Domain"), std::string::npos);
}

TEST(IdentityCa, IssuesALeafThatVerifiesAgainstTheRoot) {
  auto ca = CertificateAuthority::create("cluster.local");
  const auto id = id_of("shop", "app");
  const auto before = Clock::now();
  auto leaf = ca.issue(id, 1h);
  X509* cert = leaf.cert.get();
  ASSERT_NE(cert, nullptr);
  ASSERT_NE(leaf.key, nullptr);
  EXPECT_TRUE(leaf.chain.empty());

  EXPECT_EQ(verify(leaf.cert, ca.bundle()), X509_V_OK);
  EXPECT_EQ(X509_check_private_key(cert, leaf.key.get()), 1);
  EXPECT_EQ(X509_get_version(cert), X509_VERSION_3);
  EXPECT_EQ(X509_NAME_entry_count(X509_get_subject_name(cert)), 0) << "subject must be empty";
  EXPECT_EQ(uris_of(cert), std::vector<std::string>{id.uri()});
  EXPECT_TRUE(is_critical(cert, NID_subject_alt_name));
  EXPECT_TRUE(is_critical(cert, NID_basic_constraints));
  EXPECT_TRUE(is_critical(cert, NID_key_usage));
  EXPECT_EQ(X509_check_ca(cert), 0);
  EXPECT_EQ(X509_get_key_usage(cert), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT));
  EXPECT_EQ(X509_get_extended_key_usage(cert), static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  ASSERT_NE(X509_get0_subject_key_id(cert), nullptr);
  ASSERT_NE(X509_get0_authority_key_id(cert), nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(cert), X509_get0_subject_key_id(ca.root().get())), 0);
  EXPECT_EQ(X509_get_signature_nid(cert), NID_ecdsa_with_SHA256);

  // P-256.
  EVP_PKEY* pub = X509_get0_pubkey(cert);
  ASSERT_NE(pub, nullptr);
  EXPECT_EQ(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
  char group[64] = {};
  size_t group_len = 0;
  ASSERT_EQ(EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &group_len), 1);
  EXPECT_STREQ(group, "prime256v1");

  // Validity [now - 1 min, now + 1 h], to the second.
  EXPECT_LE(leaf.not_before, before - 59s);
  EXPECT_GE(leaf.not_before, before - 62s);
  EXPECT_GE(leaf.not_after, before + 1h - 2s);
  EXPECT_LE(leaf.not_after, Clock::now() + 1h);

  const std::string serial = leaf.serial_hex();
  EXPECT_FALSE(serial.empty());
  EXPECT_LE(serial.size(), 34u);
  EXPECT_EQ(serial.find_first_not_of("0123456789ABCDEF"), std::string::npos) << serial;
}

TEST(IdentityCa, EachIssueHasANewKeyAndSerial) {
  auto ca = CertificateAuthority::create("cluster.local");
  auto a = ca.issue(id_of("shop", "app"), 1h);
  auto b = ca.issue(id_of("shop", "app"), 1h);
  EXPECT_NE(EVP_PKEY_eq(a.key.get(), b.key.get()), 1);
  EXPECT_NE(a.serial_hex(), b.serial_hex());
}

TEST(IdentityCa, RefusesAnIdOfAnotherTrustDomain) {
  auto ca = CertificateAuthority::create("cluster.local");
  auto message = error_of([&] { ca.issue(id_of("shop", "app", "other.domain"), 1h); });
  EXPECT_NE(message.find("spiffe://other.domain/ns/shop/sa/app"), std::string::npos) << message;
  EXPECT_NE(message.find("cluster.local"), std::string::npos) << message;
  EXPECT_FALSE(error_of([&] { ca.issue(id_of("", "app"), 1h); }).empty());
}

TEST(IdentityCa, LeafOfAnotherCaDoesNotVerify) {
  auto ours = CertificateAuthority::create("cluster.local");
  auto theirs = CertificateAuthority::create("cluster.local");
  auto leaf = theirs.issue(id_of("shop", "app"), 1h);
  EXPECT_EQ(verify(leaf.cert, theirs.bundle()), X509_V_OK);
  EXPECT_EQ(verify(leaf.cert, ours.bundle()), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
}

TEST(IdentityCa, SaveAndLoadRoundTrip) {
  TempDir dir;
  auto ca = CertificateAuthority::create("example.org");
  ca.save(dir.path() / "ca");
  const auto cert_file = dir.path() / "ca" / CertificateAuthority::kCertFile;
  const auto key_file = dir.path() / "ca" / CertificateAuthority::kKeyFile;
  EXPECT_EQ(mode_of(cert_file), 0644u);
  EXPECT_EQ(mode_of(key_file), 0600u);
  std::ifstream key_in(key_file);
  std::string first_line;
  std::getline(key_in, first_line);
  EXPECT_EQ(first_line, "-----BEGIN PRIVATE KEY-----");  // PKCS#8

  auto loaded = CertificateAuthority::load(dir.path() / "ca");
  EXPECT_EQ(loaded.trust_domain(), "example.org");
  EXPECT_EQ(X509_cmp(loaded.root().get(), ca.root().get()), 0);
  // The loaded key is the root's: its leaves verify against the original root.
  auto leaf = loaded.issue(id_of("a", "b", "example.org"), 1h);
  EXPECT_EQ(verify(leaf.cert, ca.bundle()), X509_V_OK);
}

TEST(IdentityCa, LoadErrorsNameTheFile) {
  TempDir dir;
  const auto cert_file = dir.path() / CertificateAuthority::kCertFile;
  const auto key_file = dir.path() / CertificateAuthority::kKeyFile;
  auto message = error_of([&] { CertificateAuthority::load(dir.path() / "missing"); });
  EXPECT_NE(message.find((dir.path() / "missing" / CertificateAuthority::kCertFile).string() + ": cannot read"),
            std::string::npos)
      << message;

  auto ca = CertificateAuthority::create("cluster.local");
  ca.save(dir.path());
  write_text(cert_file, "not a certificate\n");
  message = error_of([&] { CertificateAuthority::load(dir.path()); });
  EXPECT_NE(message.find(cert_file.string()), std::string::npos) << message;

  ca.save(dir.path());
  write_text(key_file, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  message = error_of([&] { CertificateAuthority::load(dir.path()); });
  EXPECT_NE(message.find(key_file.string()), std::string::npos) << message;

  // Files of two different CAs: the key is named as not belonging to the certificate.
  ca.save(dir.path());
  write_text(key_file, to_pem(ca.issue(id_of("a", "b"), 1h).key));
  message = error_of([&] { CertificateAuthority::load(dir.path()); });
  EXPECT_NE(message.find(key_file.string() + ": is not the key of"), std::string::npos) << message;

  // A root without the spiffe://<td> SAN (here: a leaf, whose SAN has a path) is refused.
  auto leaf = ca.issue(id_of("a", "b"), 1h);
  write_text(cert_file, to_pem(leaf.cert));
  write_text(key_file, to_pem(leaf.key));
  message = error_of([&] { CertificateAuthority::load(dir.path()); });
  EXPECT_NE(message.find(cert_file.string()), std::string::npos) << message;
}

TEST(IdentityCa, LoadOrCreateKeepsTheFirstRoot) {
  TempDir dir;
  auto first = CertificateAuthority::load_or_create(dir.path() / "ca", "cluster.local");
  auto second = CertificateAuthority::load_or_create(dir.path() / "ca", "cluster.local");
  EXPECT_EQ(X509_cmp(first.root().get(), second.root().get()), 0);
  EXPECT_EQ(mode_of(dir.path() / "ca" / CertificateAuthority::kKeyFile), 0600u);
  EXPECT_EQ(mode_of(dir.path() / "ca" / CertificateAuthority::kCertFile), 0644u);
  auto message = error_of([&] { CertificateAuthority::load_or_create(dir.path() / "ca", "other.domain"); });
  EXPECT_NE(message.find("other.domain"), std::string::npos) << message;
}

TEST(IdentityCa, LoadOrCreateRaceEndsWithOneRoot) {
  TempDir dir;
  constexpr int kRacers = 8;
  std::vector<X509Ptr> roots(kRacers);
  std::vector<std::string> errors(kRacers);
  std::vector<std::thread> racers;
  for (int i = 0; i < kRacers; ++i)
    racers.emplace_back([&, i] {
      try {
        roots[i] = CertificateAuthority::load_or_create(dir.path(), "cluster.local").root();
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  for (auto& racer : racers) racer.join();
  for (int i = 0; i < kRacers; ++i) {
    EXPECT_EQ(errors[i], "") << i;
    ASSERT_NE(roots[i], nullptr) << i;
    EXPECT_EQ(X509_cmp(roots[i].get(), roots[0].get()), 0) << i;
  }
  // No temporaries left behind.
  size_t files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 2u);
}

TEST(IdentityCa, LoadOrCreateRaceBetweenProcesses) {
  TempDir dir;
  const auto ca_dir = dir.path() / "ca";
  constexpr int kRacers = 4;
  std::vector<pid_t> children;
  for (int i = 0; i < kRacers; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {
      // The child reports the root it ended with and leaves without running any test code.
      int rc = 0;
      try {
        auto ca = CertificateAuthority::load_or_create(ca_dir, "cluster.local");
        std::ofstream(dir.path() / ("root-" + std::to_string(i) + ".pem")) << to_pem(ca.root());
      } catch (...) {
        rc = 1;
      }
      ::_exit(rc);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  auto root = CertificateAuthority::load(ca_dir).root();
  for (int i = 0; i < kRacers; ++i) {
    auto seen = TrustBundle::load(dir.path() / ("root-" + std::to_string(i) + ".pem"));
    EXPECT_EQ(X509_cmp(seen.roots().at(0).get(), root.get()), 0) << i;
  }
}

TEST(IdentityCa, WritePemFilesWithTheirModes) {
  TempDir dir;
  auto ca = CertificateAuthority::create("cluster.local");
  auto leaf = ca.issue(id_of("shop", "app"), 1h);
  write_pem_files(leaf, dir.path() / "cert.pem", dir.path() / "key.pem");
  EXPECT_EQ(mode_of(dir.path() / "cert.pem"), 0644u);
  EXPECT_EQ(mode_of(dir.path() / "key.pem"), 0600u);
  auto read_back = TrustBundle::load(dir.path() / "cert.pem");
  ASSERT_EQ(read_back.roots().size(), 1u);
  EXPECT_EQ(X509_cmp(read_back.roots()[0].get(), leaf.cert.get()), 0);
}

// ---- trust bundles ----

TEST(TrustBundle, LoadsEveryCertificateInTheFile) {
  TempDir dir;
  auto a = CertificateAuthority::create("cluster.local");
  auto b = CertificateAuthority::create("cluster.local");
  const auto file = dir.path() / "bundle.pem";
  write_text(file, to_pem(a.root()) + "\n" + to_pem(b.root()));
  auto bundle = TrustBundle::load(file);
  ASSERT_EQ(bundle.roots().size(), 2u);
  EXPECT_EQ(X509_cmp(bundle.roots()[0].get(), a.root().get()), 0);
  EXPECT_EQ(X509_cmp(bundle.roots()[1].get(), b.root().get()), 0);

  auto message = error_of([&] { TrustBundle::load(dir.path() / "missing.pem"); });
  EXPECT_NE(message.find((dir.path() / "missing.pem").string() + ": cannot read"), std::string::npos) << message;
  write_text(file, "no certificates here\n");
  message = error_of([&] { TrustBundle::load(file); });
  EXPECT_NE(message.find(file.string() + ": no PEM certificate"), std::string::npos) << message;
  write_text(file, to_pem(a.root()) + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  message = error_of([&] { TrustBundle::load(file); });
  EXPECT_NE(message.find(file.string() + ": certificate 2"), std::string::npos) << message;
}

TEST(TrustBundle, WithTwoCasAcceptsLeavesOfBoth) {
  auto old_ca = CertificateAuthority::create("cluster.local");
  auto new_ca = CertificateAuthority::create("cluster.local");
  auto other = CertificateAuthority::create("cluster.local");
  auto both = old_ca.bundle().with(new_ca.bundle());
  EXPECT_EQ(both.roots().size(), 2u);
  EXPECT_EQ(both.with(old_ca.bundle()).roots().size(), 2u) << "a root already in the bundle is not added twice";

  auto old_leaf = old_ca.issue(id_of("shop", "old"), 1h);
  auto new_leaf = new_ca.issue(id_of("shop", "new"), 1h);
  EXPECT_EQ(verify(old_leaf.cert, both), X509_V_OK);
  EXPECT_EQ(verify(new_leaf.cert, both), X509_V_OK);
  EXPECT_NE(verify(other.issue(id_of("shop", "x"), 1h).cert, both), X509_V_OK);

  // Mid-rotation: a server of the old root and a client of the new one, both trusting both.
  auto server = make_server_context(old_leaf, both);
  auto client = make_client_context(new_leaf, both);
  auto result = handshake(*client, *server);
  EXPECT_TRUE(result.client.ok) << result.client.errors;
  EXPECT_TRUE(result.server.ok) << result.server.errors;
  EXPECT_EQ(peer_text(result.server.peer), id_of("shop", "new").uri());
  EXPECT_EQ(peer_text(result.client.peer), id_of("shop", "old").uri());
}

// ---- TLS ----

struct Peers {
  CertificateAuthority ca = CertificateAuthority::create("cluster.local");
  SpiffeId client_id = id_of("shop", "client");
  SpiffeId server_id = id_of("db", "server");
  Certificate client_cert = ca.issue(client_id, 1h);
  Certificate server_cert = ca.issue(server_id, 1h);
  std::shared_ptr<boost::asio::ssl::context> server = make_server_context(server_cert, ca.bundle());
};

TEST(IdentityTls, HandshakeWithH2AndEachOthersIdentity) {
  Peers p;
  auto client = make_client_context(p.client_cert, p.ca.bundle());
  auto result = handshake(*client, *p.server, [](SSL* ssl) {
    EXPECT_EQ(SSL_get_min_proto_version(ssl), TLS1_3_VERSION);
    EXPECT_EQ(SSL_get_max_proto_version(ssl), TLS1_3_VERSION);
  });
  ASSERT_TRUE(result.client.ok) << result.client.errors;
  ASSERT_TRUE(result.server.ok) << result.server.errors;
  EXPECT_EQ(result.client.alpn, "h2");
  EXPECT_EQ(result.server.alpn, "h2");
  ASSERT_TRUE(std::holds_alternative<SpiffeId>(result.client.peer)) << peer_text(result.client.peer);
  ASSERT_TRUE(std::holds_alternative<SpiffeId>(result.server.peer)) << peer_text(result.server.peer);
  EXPECT_EQ(std::get<SpiffeId>(result.client.peer), p.server_id);
  EXPECT_EQ(std::get<SpiffeId>(result.server.peer), p.client_id);
}

TEST(IdentityTls, ServerRejectsAClientOfAnotherCa) {
  Peers p;
  auto stranger = CertificateAuthority::create("cluster.local");
  // The client trusts the server's CA, but its own certificate is from elsewhere.
  auto client = make_client_context(stranger.issue(p.client_id, 1h), p.ca.bundle());
  auto result = handshake(*client, *p.server);
  EXPECT_FALSE(result.server.ok);
  EXPECT_FALSE(result.client.ok);
  EXPECT_EQ(peer_text(result.server.peer), "verification failed: unable to get local issuer certificate");
  EXPECT_NE(result.server.errors.find("certificate verify failed"), std::string::npos) << result.server.errors;
}

TEST(IdentityTls, ClientRejectsAServerOfAnotherCa) {
  Peers p;
  auto stranger = CertificateAuthority::create("cluster.local");
  auto client = make_client_context(p.client_cert, stranger.bundle());
  auto result = handshake(*client, *p.server);
  EXPECT_FALSE(result.client.ok);
  EXPECT_FALSE(result.server.ok);
  EXPECT_EQ(peer_text(result.client.peer), "verification failed: unable to get local issuer certificate");
}

TEST(IdentityTls, ServerRejectsAnExpiredClientCertificate) {
  Peers p;
  const auto now = Clock::now();
  auto expired = p.ca.issue(p.client_id, now - 2h, now - 1h);
  auto client = make_client_context(expired, p.ca.bundle());
  auto result = handshake(*client, *p.server);
  EXPECT_FALSE(result.server.ok);
  EXPECT_FALSE(result.client.ok);
  EXPECT_EQ(peer_text(result.server.peer), "verification failed: certificate has expired");
  EXPECT_NE(result.client.errors.find("certificate expired"), std::string::npos) << result.client.errors;
}

TEST(IdentityTls, ServerRejectsAClientWithoutAlpn) {
  Peers p;
  auto client = make_client_context(p.client_cert, p.ca.bundle());
  auto result = handshake(*client, *p.server, [](SSL* ssl) { SSL_set_alpn_protos(ssl, nullptr, 0); });
  EXPECT_FALSE(result.server.ok);
  EXPECT_FALSE(result.client.ok);
  EXPECT_NE(result.server.errors.find("no application protocol"), std::string::npos) << result.server.errors;
  EXPECT_NE(result.client.errors.find("no application protocol"), std::string::npos) << result.client.errors;
}

TEST(IdentityTls, ServerRejectsAClientOfferingOnlyAnotherProtocol) {
  Peers p;
  auto client = make_client_context(p.client_cert, p.ca.bundle());
  auto result = handshake(*client, *p.server, [](SSL* ssl) {
    static constexpr unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    ASSERT_EQ(SSL_set_alpn_protos(ssl, kHttp11, sizeof kHttp11), 0);
  });
  EXPECT_FALSE(result.server.ok);
  EXPECT_FALSE(result.client.ok);
  EXPECT_NE(result.server.errors.find("no application protocol"), std::string::npos) << result.server.errors;
  EXPECT_NE(result.client.errors.find("no application protocol"), std::string::npos) << result.client.errors;
}

TEST(IdentityTls, ClientRejectsAServerThatSelectsNoProtocol) {
  Peers p;
  // A bare TLS 1.3 server with a valid certificate that ignores ALPN.
  SslCtxPtr bare(SSL_CTX_new(TLS_server_method()));
  ASSERT_TRUE(bare);
  SSL_CTX_set_min_proto_version(bare.get(), TLS1_3_VERSION);
  SSL_CTX_set_num_tickets(bare.get(), 0);
  ASSERT_EQ(SSL_CTX_use_certificate(bare.get(), p.server_cert.cert.get()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey(bare.get(), p.server_cert.key.get()), 1);
  boost::asio::ssl::context server(bare.release());
  auto client = make_client_context(p.client_cert, p.ca.bundle());
  auto result = handshake(*client, server);
  EXPECT_FALSE(result.client.ok);
  EXPECT_FALSE(result.server.ok);
  EXPECT_NE(result.client.errors.find("no application protocol"), std::string::npos) << result.client.errors;
}

TEST(IdentityTls, PeerIdentityBeforeAHandshake) {
  Peers p;
  SslPtr ssl(SSL_new(p.server->native_handle()));
  EXPECT_EQ(peer_text(verified_peer_identity(ssl.get())), "no certificate");
  EXPECT_EQ(peer_text(verified_peer_identity(nullptr)), "no TLS connection");
}

TEST(IdentityTls, ContextsRefuseMismatchedKeysAndEmptyBundles) {
  Peers p;
  Certificate mismatched = p.client_cert;
  mismatched.key = p.server_cert.key;
  auto message = error_of([&] { make_client_context(mismatched, p.ca.bundle()); });
  EXPECT_NE(message.find(p.client_id.uri()), std::string::npos) << message;
  message = error_of([&] { make_server_context(p.server_cert, TrustBundle()); });
  EXPECT_NE(message.find("no roots"), std::string::npos) << message;
}

}  // namespace
}  // namespace zmesh

namespace zmesh {
namespace {

// What a holder of a CA key can sign that the built-in CA never would: a leaf for another
// trust domain, a leaf that is itself a CA. Built with plain OpenSSL, signed with `ca`'s key
// (read back from its saved files, as an attacker with the key would have it).
Certificate crafted_leaf(const CertificateAuthority& ca, const std::string& uri, bool is_ca) {
  TempDir dir;
  ca.save(dir.path());
  identity_detail::BioPtr bio(BIO_new_file((dir.path() / CertificateAuthority::kKeyFile).c_str(), "r"));
  PkeyPtr ca_key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), PkeyFree());
  Certificate out;
  out.key = PkeyPtr(EVP_EC_gen("P-256"), PkeyFree());
  X509* leaf = X509_new();
  out.cert = X509Ptr(leaf, X509Free());
  X509_set_version(leaf, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(leaf), 4711);
  X509_gmtime_adj(X509_getm_notBefore(leaf), -60);
  X509_gmtime_adj(X509_getm_notAfter(leaf), 3600);
  X509_set_pubkey(leaf, out.key.get());
  X509_set_issuer_name(leaf, X509_get_subject_name(ca.root().get()));
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca.root().get(), leaf, nullptr, nullptr, 0);
  const std::pair<int, std::string> extensions[] = {
      {NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
      {NID_key_usage, is_ca ? "critical,digitalSignature,keyCertSign" : "critical,digitalSignature,keyEncipherment"},
      {NID_ext_key_usage, "serverAuth,clientAuth"},
      {NID_authority_key_identifier, "keyid:always"},
      {NID_subject_alt_name, "critical,URI:" + uri}};
  for (const auto& [nid, value] : extensions) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    EXPECT_NE(ext, nullptr) << value;
    X509_add_ext(leaf, ext, -1);
    X509_EXTENSION_free(ext);
  }
  EXPECT_GT(X509_sign(leaf, ca_key.get(), EVP_sha256()), 0);
  out.not_before = Clock::now() - 1min;
  out.not_after = Clock::now() + 1h;
  return out;
}

// A root speaks for its own trust domain only: the lab CA (cluster.local) signing a
// spiffe://evil.org identity does not make it one, and it cannot pass for "default" either.
TEST(IdentityTls, AnIdentityOfAnotherTrustDomainThanItsRootIsRefused) {
  Peers p;
  auto client = make_client_context(crafted_leaf(p.ca, "spiffe://evil.org/ns/default/sa/app1", false), p.ca.bundle());
  auto result = handshake(*client, *p.server);
  ASSERT_TRUE(result.server.ok) << "the chain itself verifies: " << result.server.errors;
  ASSERT_TRUE(std::holds_alternative<std::string>(result.server.peer)) << peer_text(result.server.peer);
  EXPECT_EQ(peer_text(result.server.peer),
            "certificate's trust domain evil.org is not that of the root it chains to (cluster.local)");
  // The same crafting within the trust domain is an ordinary identity (the check is the
  // trust domain, not the crafting).
  auto same = make_client_context(crafted_leaf(p.ca, "spiffe://cluster.local/ns/default/sa/app1", false), p.ca.bundle());
  auto ok = handshake(*same, *p.server);
  EXPECT_EQ(peer_text(ok.server.peer), "spiffe://cluster.local/ns/default/sa/app1");
  // A bundle with a root per trust domain: each vouches for its own.
  auto federated = CertificateAuthority::create("other.org");
  auto server = make_server_context(p.server_cert, p.ca.bundle().with(federated.bundle()));
  auto other = make_client_context(federated.issue(id_of("default", "app1", "other.org"), 1h),
                                   p.ca.bundle().with(federated.bundle()));
  EXPECT_EQ(peer_text(handshake(*other, *server).server.peer), "spiffe://other.org/ns/default/sa/app1");
  auto posing = make_client_context(crafted_leaf(federated, "spiffe://cluster.local/ns/db/sa/server", false),
                                    p.ca.bundle().with(federated.bundle()));
  EXPECT_EQ(peer_text(handshake(*posing, *server).server.peer),
            "certificate's trust domain cluster.local is not that of the root it chains to (other.org)");
}

// An X.509-SVID leaf is never a CA: one with CA:TRUE is refused as a peer.
TEST(IdentityTls, ALeafThatIsACaIsRefused) {
  Peers p;
  auto client = make_client_context(crafted_leaf(p.ca, "spiffe://cluster.local/ns/default/sa/app1", true), p.ca.bundle());
  auto result = handshake(*client, *p.server);
  EXPECT_EQ(peer_text(result.server.peer),
            "certificate is a CA certificate (CA:TRUE or keyCertSign), which an X.509-SVID leaf never is");
}

}  // namespace
}  // namespace zmesh

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "zmesh/certificates.h"

namespace zmesh {
namespace {

// A CA that cannot issue (istiod away) is asked again after a backoff that doubles — 500 ms,
// 1 s, 2 s … — not every tick, while the certificate in use stays; when it answers again, the
// certificate is renewed. (Timers never fire early, so the lower bounds hold on any machine.)
TEST(Certificates, AFailedRenewalIsRetriedWithABackoffThatDoubles) {
  const auto ca = CertificateAuthority::create("cluster.local");
  const SpiffeId id{"cluster.local", "default", "app"};
  std::vector<std::chrono::steady_clock::time_point> asked;
  int failures_left = 3;
  Certificates certificates(
      [&](const SpiffeId& who) {
        asked.push_back(std::chrono::steady_clock::now());
        if (asked.size() > 1 && failures_left-- > 0) throw IdentityError("the CA is away");
        const auto now = std::chrono::system_clock::now();  // past half life from the start
        return ca.issue(who, now - std::chrono::seconds(60), now + std::chrono::seconds(60));
      },
      TrustBundle({ca.root()}), "test");
  certificates.ensure(id);
  const auto first_serial = certificates.certificate(id).serial_hex();
  boost::asio::io_context io;
  boost::asio::co_spawn(io, certificates.renew_forever(), boost::asio::detached);
  while (certificates.renewals() == 0 && asked.size() < 10) io.run_one_for(std::chrono::seconds(10));
  ASSERT_EQ(certificates.renewals(), 1u) << "asked " << asked.size() << " times";
  EXPECT_NE(certificates.certificate(id).serial_hex(), first_serial);
  ASSERT_EQ(asked.size(), 5u) << "issue, three failures, the renewal";
  for (size_t i = 2; i < asked.size(); ++i) {  // asked[1]: the first renewal, at once
    const auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(asked[i] - asked[i - 1]);
    EXPECT_GE(gap.count(), 500 << (i - 2)) << "try " << i << " came after " << gap.count() << " ms";
  }
}

// istiod's CA may take its time (up to the 10 s deadline) or not answer: a renewal waits for it
// on the source's own thread, and the executor meanwhile serves everything else (connections,
// timers). Were the renewal run in place, the timer below could not fire before it ended.
TEST(Certificates, ARenewalWaitingForItsCaHoldsUpNothingElse) {
  const auto ca = CertificateAuthority::create("cluster.local");
  const SpiffeId id{"cluster.local", "default", "app"};
  std::promise<void> answer;
  auto answered = answer.get_future().share();
  std::atomic<int> asked{0};
  Certificates certificates(
      [&](const SpiffeId& who) {
        if (asked++ > 0) answered.wait_for(std::chrono::seconds(5));  // the renewal: the CA is slow
        const auto now = std::chrono::system_clock::now();                  // past half life from the start
        return ca.issue(who, now - std::chrono::seconds(60), now + std::chrono::seconds(60));
      },
      TrustBundle({ca.root()}), "test");
  certificates.ensure(id);
  boost::asio::io_context io;
  boost::asio::co_spawn(io, certificates.renew_forever(), boost::asio::detached);
  boost::asio::steady_timer other_work(io, std::chrono::milliseconds(300));
  std::optional<uint64_t> renewals_when_it_ran;
  other_work.async_wait([&](boost::system::error_code) {
    renewals_when_it_ran = certificates.renewals();
    answer.set_value();  // now the CA answers
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (certificates.renewals() == 0 && std::chrono::steady_clock::now() < deadline)
    io.run_one_for(std::chrono::seconds(1));
  ASSERT_TRUE(renewals_when_it_ran.has_value());
  EXPECT_EQ(*renewals_when_it_ran, 0u) << "other work ran while the renewal waited for the CA";
  EXPECT_EQ(certificates.renewals(), 1u);
  EXPECT_EQ(asked.load(), 2);
}

}  // namespace
}  // namespace zmesh
