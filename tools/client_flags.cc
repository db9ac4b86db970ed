#include "tools/client_flags.h"

#include <CLI/CLI.hpp>

#include <algorithm>

#include "enclave_sim/attestation.h"
#include "tools/cli_support.h"

namespace ppml::tools {

void AddConnectFlags(CLI::App& command, ConnectFlags& flags) {
  command.add_option("--url", flags.url, "the front-end: https://HOST:PORT (http:// for development)")
      ->envname("PPML_URL")
      ->required();
  command.add_option("--ca", flags.ca, "PEM CA file the server certificate must chain to (default: system CAs)")
      ->envname("PPML_CA");
  command.add_option("--cert", flags.cert, "client certificate (PEM) for mutual TLS");
  command.add_option("--key", flags.key, "the client certificate's key (PEM)");
  command
      .add_option("--platform-pubkey", flags.platform_pubkey,
                  "the pinned platform (quoting) public key, PEM: quotes must verify under it")
      ->envname("PPML_PLATFORM_PUBKEY")
      ->required();
  command
      .add_option("--measurement", flags.measurement,
                  "the enclave measurement to require (64 hex); without it any is accepted and printed")
      ->envname("PPML_MEASUREMENT");
  command.add_option("--timeout", flags.timeout_s, "seconds one request may take")
      ->capture_default_str()
      ->check(Positive());
  command.add_option("--max-quote-age", flags.max_quote_age_s, "oldest quote accepted, in seconds")
      ->capture_default_str()
      ->check(NonNegative());
}

Status CheckConnectFlags(const ConnectFlags& flags) {
  if (Result<client::HttpTarget> target = client::ParseUrl(flags.url); !target.ok()) {
    return target.status().WithContext("--url");
  }
  if (!flags.measurement.empty()) {
    if (Result<enclave::Measurement> m = enclave::MeasurementFromHex(flags.measurement); !m.ok()) {
      return m.status().WithContext("--measurement");
    }
  }
  if (flags.cert.empty() != flags.key.empty()) {
    return Status::InvalidArgument("--cert and --key go together");
  }
  return Status::Ok();
}

client::ClientOptions OptionsFrom(const ConnectFlags& flags) {
  client::ClientOptions options;
  options.url = flags.url;
  options.ca_file = flags.ca;
  options.client_cert_file = flags.cert;
  options.client_key_file = flags.key;
  options.platform_pubkey_pem_path = flags.platform_pubkey;
  options.expected_measurement_hex = flags.measurement;
  options.model = flags.model;
  options.max_quote_age_seconds = flags.max_quote_age_s;
  options.io_timeout_ms = static_cast<int>(std::min(flags.timeout_s * 1000.0, 2.0e9));
  options.connect_timeout_ms = std::min(options.io_timeout_ms, 10'000);
  return options;
}

}  // namespace ppml::tools
