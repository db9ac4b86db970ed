// ppml_fake_frontend: FakeFrontend (tests/client/fake_frontend.h) over TLS on
// 127.0.0.1, for the tests that drive `ppml infer`/`ppml attest` and the
// Python client as separate processes.
//
//   ppml_fake_frontend --dir DIR [--attack NAME]
//
// Writes DIR/ca.pem (the CA of its certificate for 127.0.0.1) and
// DIR/platform.pub.pem (its platform key), prints the line `ppml serve`
// prints,
//   ready: url=https://127.0.0.1:PORT ca=DIR/ca.pem platform_pubkey=DIR/platform.pub.pem measurement=HEX
// and serves until its stdin closes (or it is killed). NAME is one of none,
// replayed-nonce, other-platform, key-swap, stale-quote, plaintext-reply,
// tampered-reply, wrong-measurement, other-model.
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <map>
#include <string>

#include "common/file_io.h"
#include "common/x509.h"
#include "tests/client/fake_frontend.h"

int main(int argc, char** argv) {
  using namespace ppml;
  using namespace ppml::client::testing;
  std::string dir;
  std::string attack_name = "none";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--dir") == 0) dir = argv[i + 1];
    else if (std::strcmp(argv[i], "--attack") == 0) attack_name = argv[i + 1];
  }
  const std::map<std::string, Attack> attacks = {
      {"none", Attack::kNone},
      {"replayed-nonce", Attack::kReplayedNonce},
      {"other-platform", Attack::kOtherPlatform},
      {"key-swap", Attack::kKeySwap},
      {"stale-quote", Attack::kStaleQuote},
      {"plaintext-reply", Attack::kPlaintextReply},
      {"tampered-reply", Attack::kTamperedReply},
      {"wrong-measurement", Attack::kWrongMeasurement},
      {"other-model", Attack::kOtherModel},
  };
  if (dir.empty() || attacks.count(attack_name) == 0) {
    std::cerr << "usage: ppml_fake_frontend --dir DIR [--attack NAME]" << std::endl;
    return 2;
  }
  auto fail = [](const Status& s) {
    std::cerr << "ppml_fake_frontend: " << s.ToString() << std::endl;
    return 1;
  };
  Result<std::unique_ptr<FakeFrontend>> fake = FakeFrontend::Create();
  if (!fake.ok()) return fail(fake.status());
  (*fake)->set_attack(attacks.at(attack_name));
  Result<x509::CertifiedKey> ca = x509::GenerateDevCa("ppml fake front-end CA");
  if (!ca.ok()) return fail(ca.status());
  x509::CertificateRequest request;
  request.common_name = "fake front-end";
  request.ip_addresses = {"127.0.0.1"};
  request.dns_names = {"localhost"};
  Result<x509::CertifiedKey> cert = x509::IssueCertificate(*ca, request);
  if (!cert.ok()) return fail(cert.status());
  const std::string ca_file = dir + "/ca.pem", key_file = dir + "/platform.pub.pem";
  if (Status s = x509::WritePemFiles(*ca, dir + "/ca.key", ca_file); !s.ok()) return fail(s);
  if (Status s = WriteFile(key_file, (*fake)->platform_public_key_pem()); !s.ok()) return fail(s);
  TestServer::Options options;
  options.cert_pem = cert->cert_pem;
  options.key_pem = cert->key_pem;
  Result<std::unique_ptr<TestServer>> server = TestServer::Start(options, (*fake)->Handler());
  if (!server.ok()) return fail(server.status());
  std::cout << "ready: url=" << (*server)->url() << " ca=" << ca_file << " platform_pubkey=" << key_file
            << " measurement=" << (*fake)->measurement_hex() << std::endl;
  char buffer[256];
  while (::read(0, buffer, sizeof(buffer)) > 0) {
  }
  (*server)->Stop();
  return 0;
}
