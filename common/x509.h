// Development PKI: a self-signed CA and the certificates it issues, made with
// OpenSSL's X509/EVP APIs (never the openssl command line).
//
// `ppml serve` makes one dev CA per run and issues from it the front-end's
// HTTPS certificate, redis-server's TLS certificate and the client
// certificates of the front-end and workers; the tests do the same to run a
// real TLS redis-server. Production deployments bring their own PKI and only
// point the config at the PEM files.
//
//   keys          ECDSA P-256 (EVP_PKEY "EC"), PKCS#8 PEM, unencrypted
//   signatures    ecdsa-with-SHA256
//   serial        128 random bits (positive)
//   validity      now - 5 minutes (clock skew) .. now + validity_days
//   CA            basicConstraints critical CA:TRUE, pathlen:0;
//                 keyUsage critical keyCertSign, cRLSign; subject key id
//   leaf          basicConstraints critical CA:FALSE; keyUsage critical
//                 digitalSignature; extendedKeyUsage serverAuth and/or
//                 clientAuth; subjectAltName DNS and IP entries;
//                 subject and authority key ids
//
// A CertifiedKey holds the private key as PEM text in a std::string: this is
// dev PKI whose keys also sit in files, not enclave secrets.
//
// Thread safety: every function is stateless and may be called from several
// threads at once; the owning pointers are plain values (one thread at a time).
#pragma once

#include <openssl/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ppml::x509 {

// Owning pointers for the OpenSSL objects this component and its users
// (TLS setup in queue/ and frontend/) handle.
struct X509Deleter { void operator()(X509* p) const; };
struct BioDeleter { void operator()(BIO* p) const; };
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

// A private key and its certificate, both PEM.
struct CertifiedKey {
  std::string key_pem;
  std::string cert_pem;
};

// What a leaf certificate may be used for (extendedKeyUsage).
enum class CertificateUsage { kServer, kClient, kServerAndClient };

struct CertificateRequest {
  std::string common_name;
  // subjectAltName entries. TLS clients check host names against these (never
  // against the common name), so a server certificate needs at least one.
  std::vector<std::string> dns_names;     // "localhost", "redis.internal"
  std::vector<std::string> ip_addresses;  // "127.0.0.1", "::1"
  CertificateUsage usage = CertificateUsage::kServer;
  int validity_days = 365;
};

// A fresh self-signed CA. InvalidArgument for an empty name or validity < 1.
Result<CertifiedKey> GenerateDevCa(std::string_view common_name, int validity_days = 365);

// A fresh key and a certificate for it signed by `ca`. InvalidArgument for an
// empty common name, a server certificate without subject alt names, a
// malformed IP address or DNS name, or a CA whose PEM does not parse.
Result<CertifiedKey> IssueCertificate(const CertifiedKey& ca, const CertificateRequest& request);

// Writes the key (mode 0600, also when the file existed) and the certificate
// (mode 0644). IoError naming the file that could not be written.
Status WritePemFiles(const CertifiedKey& key, const std::string& key_path, const std::string& cert_path);

// Parses one PEM certificate; InvalidArgument naming `what` when it does not parse.
Result<X509Ptr> ParseCertificatePem(std::string_view pem, const std::string& what);

}  // namespace ppml::x509
