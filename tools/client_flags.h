// The flags every command that talks to a running service shares (ppml
// infer, ppml attest, ppml bench serve): where it is, how to trust it
// (--ca, --platform-pubkey, --measurement), the client certificate and timeouts;
// the service's ready line fields also come from PPML_URL, PPML_CA,
// PPML_PLATFORM_PUBKEY and PPML_MEASUREMENT.
#pragma once

#include <cstdint>
#include <string>

#include "client/client.h"
#include "common/status.h"

namespace CLI {
class App;
}

namespace ppml::tools {

struct ConnectFlags {
  std::string url;
  std::string ca;
  std::string cert;
  std::string key;
  std::string platform_pubkey;
  std::string measurement;
  std::string model;
  double timeout_s = 120;  // set another default before AddConnectFlags
  int64_t max_quote_age_s = 300;
};

// --url --ca --cert --key --platform-pubkey --measurement --timeout --max-quote-age (not --model).
void AddConnectFlags(CLI::App& command, ConnectFlags& flags);
// Checks what can be checked without the network: a usage error (exit 2) names the flag.
Status CheckConnectFlags(const ConnectFlags& flags);
client::ClientOptions OptionsFrom(const ConnectFlags& flags);

}  // namespace ppml::tools
