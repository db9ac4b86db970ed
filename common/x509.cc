#include "common/x509.h"

#include "common/file_io.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>

#include "common/crypto.h"

namespace ppml::x509 {
namespace {

struct BignumDeleter { void operator()(BIGNUM* p) const { BN_free(p); } };
struct GeneralNameDeleter { void operator()(GENERAL_NAME* p) const { GENERAL_NAME_free(p); } };
struct GeneralNamesDeleter { void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); } };
struct ExtensionDeleter { void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); } };
struct Asn1StringDeleter { void operator()(ASN1_STRING* p) const { ASN1_STRING_free(p); } };

constexpr long kBackdateSeconds = 5 * 60;  // tolerate small clock differences between hosts
constexpr int kSerialBits = 128;

Status OpenSslFailure(const std::string& what) { return Status::Internal(crypto::OpenSslErrorMessage(what)); }

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long length = BIO_get_mem_data(bio, &data);
  return length > 0 ? std::string(data, static_cast<size_t>(length)) : std::string();
}

Result<crypto::EvpPkeyPtr> NewP256Key(const std::string& what) {
  crypto::EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return OpenSslFailure(what + ": EC P-256 key generation");
  return key;
}

Result<CertifiedKey> ToPem(EVP_PKEY* key, X509* cert, const std::string& what) {
  // Secure-heap BIO: the private key's PEM text is wiped when the BIO is freed.
  BioPtr key_bio(BIO_new(BIO_s_secmem()));
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  if (!key_bio || !cert_bio) return OpenSslFailure(what + ": BIO_new");
  if (PEM_write_bio_PrivateKey(key_bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslFailure(what + ": private key PEM encoding");
  }
  if (PEM_write_bio_X509(cert_bio.get(), cert) != 1) return OpenSslFailure(what + ": certificate PEM encoding");
  return CertifiedKey{BioContents(key_bio.get()), BioContents(cert_bio.get())};
}

Result<crypto::EvpPkeyPtr> ParsePrivateKeyPem(std::string_view pem, const std::string& what) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslFailure(what + ": BIO_new_mem_buf");
  crypto::EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return Status::InvalidArgument(crypto::OpenSslErrorMessage(what + ": not a PEM private key"));
  return key;
}

// Version 3, random serial, validity window, subject CN and public key: the
// parts every certificate here shares. Extensions and the issuer come after.
Result<X509Ptr> NewCertificate(std::string_view common_name, EVP_PKEY* subject_key, int validity_days,
                               const std::string& what) {
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslFailure(what + ": X509_new");
  std::unique_ptr<BIGNUM, BignumDeleter> serial(BN_new());
  if (!serial || BN_rand(serial.get(), kSerialBits, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return OpenSslFailure(what + ": serial number");
  }
  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kBackdateSeconds) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(validity_days) * 24 * 3600) == nullptr ||
      X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.data()),
                                 static_cast<int>(common_name.size()), -1, 0) != 1 ||
      X509_set_pubkey(cert.get(), subject_key) != 1) {
    return OpenSslFailure(what + ": certificate fields");
  }
  return cert;
}

// One extension from OpenSSL's config syntax ("critical,CA:TRUE"); `issuer`
// supplies the key id for authorityKeyIdentifier.
Status AddExtension(X509* cert, X509* issuer, int nid, const char* value, const std::string& what) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, ExtensionDeleter> ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return OpenSslFailure(what + ": extension " + OBJ_nid2sn(nid) + "=" + value);
  }
  return Status::Ok();
}

// Letters, digits, '-' and '.', optionally a leading "*." wildcard label.
bool IsDnsName(std::string_view name) {
  if (name.starts_with("*.")) name.remove_prefix(2);
  if (name.empty() || name.size() > 253 || name.front() == '.' || name.back() == '.') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// Appends one GEN_DNS or GEN_IPADD entry; `value` is owned by the entry after.
Status PushGeneralName(GENERAL_NAMES* names, int type, ASN1_STRING* value, const std::string& what) {
  std::unique_ptr<ASN1_STRING, Asn1StringDeleter> owned_value(value);
  std::unique_ptr<GENERAL_NAME, GeneralNameDeleter> name(GENERAL_NAME_new());
  if (!name) return OpenSslFailure(what + ": GENERAL_NAME_new");
  GENERAL_NAME_set0_value(name.get(), type, owned_value.release());
  if (sk_GENERAL_NAME_push(names, name.get()) == 0) return OpenSslFailure(what + ": subjectAltName");
  name.release();
  return Status::Ok();
}

// subjectAltName built from typed entries, never from a config string, so a
// name cannot smuggle extra entries in with a comma.
Status AddSubjectAltNames(X509* cert, const CertificateRequest& request, const std::string& what) {
  std::unique_ptr<GENERAL_NAMES, GeneralNamesDeleter> names(sk_GENERAL_NAME_new_null());
  if (!names) return OpenSslFailure(what + ": subjectAltName");
  for (const std::string& dns : request.dns_names) {
    if (!IsDnsName(dns)) return Status::InvalidArgument(what + ": not a DNS name: '" + dns + "'");
    ASN1_IA5STRING* value = ASN1_IA5STRING_new();
    if (value == nullptr || ASN1_STRING_set(value, dns.data(), static_cast<int>(dns.size())) != 1) {
      ASN1_IA5STRING_free(value);
      return OpenSslFailure(what + ": subjectAltName DNS");
    }
    PPML_RETURN_IF_ERROR(PushGeneralName(names.get(), GEN_DNS, value, what));
  }
  for (const std::string& ip : request.ip_addresses) {
    ASN1_OCTET_STRING* value = a2i_IPADDRESS(ip.c_str());
    if (value == nullptr) {
      crypto::OpenSslErrorMessage("");  // clears the queue a2i_IPADDRESS filled
      return Status::InvalidArgument(what + ": not an IP address: '" + ip + "'");
    }
    PPML_RETURN_IF_ERROR(PushGeneralName(names.get(), GEN_IPADD, value, what));
  }
  if (sk_GENERAL_NAME_num(names.get()) == 0) return Status::Ok();
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return OpenSslFailure(what + ": subjectAltName");
  }
  return Status::Ok();
}

const char* ExtendedKeyUsage(CertificateUsage usage) {
  switch (usage) {
    case CertificateUsage::kServer: return "serverAuth";
    case CertificateUsage::kClient: return "clientAuth";
    case CertificateUsage::kServerAndClient: return "serverAuth,clientAuth";
  }
  return "serverAuth";
}

Status CheckValidity(int validity_days, const std::string& what) {
  if (validity_days < 1) {
    return Status::InvalidArgument(what + ": validity_days must be at least 1, got " + std::to_string(validity_days));
  }
  return Status::Ok();
}


}  // namespace

void X509Deleter::operator()(X509* p) const { X509_free(p); }
void BioDeleter::operator()(BIO* p) const { BIO_free(p); }

Result<X509Ptr> ParseCertificatePem(std::string_view pem, const std::string& what) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslFailure(what + ": BIO_new_mem_buf");
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return Status::InvalidArgument(crypto::OpenSslErrorMessage(what + ": not a PEM certificate"));
  return cert;
}

Result<CertifiedKey> GenerateDevCa(std::string_view common_name, int validity_days) {
  const std::string what = "dev CA '" + std::string(common_name) + "'";
  if (common_name.empty()) return Status::InvalidArgument("dev CA: empty common name");
  PPML_RETURN_IF_ERROR(CheckValidity(validity_days, what));
  PPML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, NewP256Key(what));
  PPML_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(common_name, key.get(), validity_days, what));
  X509* c = cert.get();
  if (X509_set_issuer_name(c, X509_get_subject_name(c)) != 1) return OpenSslFailure(what + ": issuer name");
  PPML_RETURN_IF_ERROR(AddExtension(c, c, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", what));
  PPML_RETURN_IF_ERROR(AddExtension(c, c, NID_key_usage, "critical,keyCertSign,cRLSign", what));
  PPML_RETURN_IF_ERROR(AddExtension(c, c, NID_subject_key_identifier, "hash", what));
  if (X509_sign(c, key.get(), EVP_sha256()) <= 0) return OpenSslFailure(what + ": signing");
  return ToPem(key.get(), c, what);
}

Result<CertifiedKey> IssueCertificate(const CertifiedKey& ca, const CertificateRequest& request) {
  const std::string what = "certificate '" + request.common_name + "'";
  if (request.common_name.empty()) return Status::InvalidArgument("certificate: empty common name");
  PPML_RETURN_IF_ERROR(CheckValidity(request.validity_days, what));
  if (request.usage != CertificateUsage::kClient && request.dns_names.empty() && request.ip_addresses.empty()) {
    return Status::InvalidArgument(what + ": a server certificate needs at least one DNS name or IP address");
  }
  PPML_ASSIGN_OR_RETURN(X509Ptr ca_cert, ParseCertificatePem(ca.cert_pem, what + ": CA certificate"));
  PPML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr ca_key, ParsePrivateKeyPem(ca.key_pem, what + ": CA key"));
  if (X509_check_private_key(ca_cert.get(), ca_key.get()) != 1) {
    return Status::InvalidArgument(crypto::OpenSslErrorMessage(what + ": the CA key does not match the CA certificate"));
  }

  PPML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, NewP256Key(what));
  PPML_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(request.common_name, key.get(), request.validity_days, what));
  X509* c = cert.get();
  if (X509_set_issuer_name(c, X509_get_subject_name(ca_cert.get())) != 1) {
    return OpenSslFailure(what + ": issuer name");
  }
  PPML_RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE", what));
  PPML_RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_key_usage, "critical,digitalSignature", what));
  PPML_RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_ext_key_usage, ExtendedKeyUsage(request.usage), what));
  PPML_RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_subject_key_identifier, "hash", what));
  PPML_RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_authority_key_identifier, "keyid:always", what));
  PPML_RETURN_IF_ERROR(AddSubjectAltNames(c, request, what));
  if (X509_sign(c, ca_key.get(), EVP_sha256()) <= 0) return OpenSslFailure(what + ": signing");
  return ToPem(key.get(), c, what);
}

Status WritePemFiles(const CertifiedKey& key, const std::string& key_path, const std::string& cert_path) {
  PPML_RETURN_IF_ERROR(WriteFile(key_path, key.key_pem, 0600).WithContext("private key"));
  return WriteFile(cert_path, key.cert_pem, 0644).WithContext("certificate");
}

}  // namespace ppml::x509
