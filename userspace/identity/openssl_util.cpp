// The identity module's shared internals (see openssl_util.h): OpenSSL error text, file reads
// and crash-safe writes, SAN and time conversions.
#include "openssl_util.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace zmesh::identity_detail {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

// Closes a file descriptor on every path out of a function.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // close(2) can report a failed write-back; the caller wants to know.
  int close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

std::string random_suffix() {
  unsigned char bytes[8];
  if (RAND_bytes(bytes, sizeof bytes) != 1) fail("temporary file name", "no random bytes");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

}  // namespace

std::string openssl_error() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return {};
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

void fail(const std::string& where, const std::string& what) {
  std::string message = where + ": " + what;
  if (std::string cause = openssl_error(); !cause.empty()) message += ": " + cause;
  throw IdentityError(message);
}

bool valid_trust_domain(std::string_view td) {
  if (td.empty() || td.size() > 255) return false;
  for (char c : td)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')) return false;
  return true;
}

std::string read_file(const std::filesystem::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw IdentityError(path.string() + ": cannot read: " + errno_text(errno));
  std::string content;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw IdentityError(path.string() + ": cannot read: " + errno_text(errno));
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  return content;
}

TempFile::TempFile(const std::filesystem::path& target, std::string_view content, mode_t mode) {
  path_ = target.parent_path() / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
                                  random_suffix());
  Fd fd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (fd.get() < 0) throw IdentityError(path_.string() + ": cannot create: " + errno_text(errno));
  auto failed = [&](const char* what) {
    int err = errno;
    ::unlink(path_.c_str());
    throw IdentityError(path_.string() + ": " + what + ": " + errno_text(err));
  };
  // The umask may have taken bits away (or, for 0644, nothing); the mode must be exact.
  if (::fchmod(fd.get(), mode) != 0) failed("cannot set the mode");
  for (size_t done = 0; done < content.size();) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) failed("cannot write");
    done += static_cast<size_t>(n);
  }
  // Without it a crash after the link could leave an empty file under the final name.
  if (::fsync(fd.get()) != 0) failed("cannot sync");
  if (fd.close() != 0) failed("cannot close");
}

TempFile::~TempFile() {
  if (!renamed_) ::unlink(path_.c_str());
}

bool TempFile::link_to(const std::filesystem::path& target) const {
  if (::link(path_.c_str(), target.c_str()) == 0) return true;
  if (errno == EEXIST) return false;
  throw IdentityError(target.string() + ": cannot link " + path_.string() + " into place: " + errno_text(errno));
}

void TempFile::rename_to(const std::filesystem::path& target) {
  if (::rename(path_.c_str(), target.c_str()) != 0)
    throw IdentityError(target.string() + ": cannot rename " + path_.string() + " into place: " + errno_text(errno));
  renamed_ = true;
}

void write_file_atomically(const std::filesystem::path& target, std::string_view content, mode_t mode) {
  TempFile temp(target, content, mode);
  temp.rename_to(target);
  sync_directory(target.parent_path());
}

void sync_directory(const std::filesystem::path& dir) {
  Fd fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() >= 0) ::fsync(fd.get());
}

std::vector<std::string> uri_sans(const X509* cert) {
  std::vector<std::string> out;
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                     static_cast<size_t>(ASN1_STRING_length(uri)));
  }
  return out;
}

std::string serial_hex_of(const X509* cert) {
  BnPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) fail("certificate", "cannot read the serial number");
  OpensslString hex(BN_bn2hex(bn.get()));
  if (!hex) fail("certificate", "cannot format the serial number");
  return hex.get();
}

std::string describe(const X509* cert) {
  auto uris = uri_sans(cert);
  if (!uris.empty()) return uris.front();
  return "certificate " + serial_hex_of(cert);
}

std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* time) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(time, &tm) != 1) fail("certificate", "cannot read a validity time");
  return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

}  // namespace zmesh::identity_detail
