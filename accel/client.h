// AccelClient: an enclave thread's connection to ppml-accel (protocol.h).
//
//   PPML_ASSIGN_OR_RETURN(auto client, AccelClient::Connect("unix:/run/ppml/accel.sock"));
//   PPML_ASSIGN_OR_RETURN(uint64_t layer, client->Register(spec));
//   PPML_ASSIGN_OR_RETURN(std::vector<uint32_t> z, client->Compute(layer, batch, blinded_x));
//
// Everything the server returns is untrusted: the caller checks results with
// FreivaldsCheck. The client only makes sure a reply has the right type and
// size and holds field elements (DataLoss otherwise).
//
// Errors: Unavailable when the server cannot be reached, closes or fails (the
// message names the address); DeadlineExceeded when it does not answer within
// the timeout; the server's own error (InvalidArgument, NotFound for an
// unknown handle, ...) as it sent it, prefixed "ppml-accel: ". After a
// transport error or a malformed reply the connection is closed and every
// later call is Unavailable: make a new client.
//
// Thread safety: none; one client per enclave thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "accel/address.h"
#include "accel/field.h"
#include "accel/protocol.h"
#include "common/listen.h"
#include "common/status.h"

namespace ppml::accel {

struct AccelClientOptions {
  int connect_timeout_ms = 5000;
  int io_timeout_ms = 60000;  // one request's send, compute and reply
  uint32_t max_reply_bytes = kDefaultMaxPayload;
};

class AccelClient {
 public:
  // Connects and exchanges Hello (a server speaking another protocol
  // version is FailedPrecondition).
  static Result<std::unique_ptr<AccelClient>> Connect(std::string_view address, AccelClientOptions options = {});

  // The server's handle for `spec` (the same for every client registering it).
  Result<uint64_t> Register(const LinearSpec& spec);
  // (x W) mod p for batch images of x (batch * input_size field elements).
  // `handle` must come from Register on this client (its sizes are checked here).
  Result<std::vector<uint32_t>> Compute(uint64_t handle, int64_t batch, std::span<const uint32_t> x);

  const std::string& address() const { return address_; }
  // False once a transport error or a malformed reply closed the connection.
  bool connected() const { return fd_.get() >= 0; }

 private:
  struct LayerSizes {
    int64_t input_size, output_size;
  };
  AccelClient(ScopedFd fd, std::string address, AccelClientOptions options)
      : fd_(std::move(fd)), address_(std::move(address)), options_(options) {}
  // Sends one request and reads its reply; an Error reply becomes its Status.
  Result<Frame> RoundTrip(MessageType type, std::span<const uint8_t> payload, MessageType expected);
  Status Broken(Status status);

  ScopedFd fd_;
  std::string address_;
  AccelClientOptions options_;
  std::unordered_map<uint64_t, LayerSizes> layers_;
};

}  // namespace ppml::accel
