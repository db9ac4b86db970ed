#include "accel/client.h"

namespace ppml::accel {

Result<std::unique_ptr<AccelClient>> AccelClient::Connect(std::string_view address, AccelClientOptions options) {
  PPML_ASSIGN_OR_RETURN(AccelAddress parsed, ParseAccelAddress(address));
  PPML_ASSIGN_OR_RETURN(ScopedFd fd, ConnectAccel(parsed, net::DeadlineAfter(options.connect_timeout_ms)));
  std::unique_ptr<AccelClient> client(new AccelClient(std::move(fd), parsed.ToString(), options));
  PPML_ASSIGN_OR_RETURN(Frame hello,
                        client->RoundTrip(MessageType::kHello, EncodeHello(kProtocolVersion), MessageType::kHello));
  PPML_ASSIGN_OR_RETURN(uint32_t version, ParseHello(hello.payload));
  if (version != kProtocolVersion) {
    return Status::FailedPrecondition("ppml-accel " + client->address_ + " speaks protocol " + std::to_string(version) +
                                      ", this client " + std::to_string(kProtocolVersion));
  }
  return client;
}

Status AccelClient::Broken(Status status) {
  fd_ = ScopedFd();
  return status.WithContext("ppml-accel " + address_);
}

Result<Frame> AccelClient::RoundTrip(MessageType type, std::span<const uint8_t> payload, MessageType expected) {
  if (fd_.get() < 0) return Status::Unavailable("ppml-accel " + address_ + ": connection closed after an earlier error");
  const net::Deadline deadline = net::DeadlineAfter(options_.io_timeout_ms);
  if (Status s = WriteFrame(fd_.get(), type, payload, deadline); !s.ok()) return Broken(s);
  Result<Frame> reply = ReadFrame(fd_.get(), options_.max_reply_bytes, deadline);
  if (!reply.ok()) {
    Status s = reply.status();
    // A reply we cannot parse leaves the stream at an unknown position.
    if (s.code() == StatusCode::kInvalidArgument) s = Status::DataLoss(s.message());
    return Broken(s);
  }
  if (reply->type == MessageType::kError) return ParseError(reply->payload);  // the connection stays usable
  if (reply->type != expected) {
    return Broken(Status::DataLoss(std::string("replied ") + MessageTypeName(reply->type) + " to " +
                                   MessageTypeName(type)));
  }
  return reply;
}

Result<uint64_t> AccelClient::Register(const LinearSpec& spec) {
  PPML_RETURN_IF_ERROR(ValidateSpec(spec));
  PPML_ASSIGN_OR_RETURN(Frame reply,
                        RoundTrip(MessageType::kRegisterLayer, SerializeSpec(spec), MessageType::kLayerRegistered));
  Result<uint64_t> handle = ParseHandle(reply.payload);
  if (!handle.ok()) return Broken(Status::DataLoss(handle.status().message()));
  layers_[*handle] = {spec.input_size(), spec.output_size()};
  return *handle;
}

Result<std::vector<uint32_t>> AccelClient::Compute(uint64_t handle, int64_t batch, std::span<const uint32_t> x) {
  const auto layer = layers_.find(handle);
  if (layer == layers_.end()) {
    return Status::InvalidArgument("ppml-accel " + address_ + ": handle " + std::to_string(handle) +
                                   " was not registered by this client");
  }
  if (batch < 1 || batch > kMaxComputeBatch || static_cast<int64_t>(x.size()) != batch * layer->second.input_size) {
    return Status::InvalidArgument("ppml-accel compute: " + std::to_string(x.size()) + " elements for batch " +
                                   std::to_string(batch) + " of a layer with " +
                                   std::to_string(layer->second.input_size) + " inputs per image");
  }
  if (x.size_bytes() + 12 > options_.max_reply_bytes) {
    return Status::ResourceExhausted("ppml-accel compute: the request exceeds the frame cap; send a smaller batch");
  }
  PPML_ASSIGN_OR_RETURN(Frame reply, RoundTrip(MessageType::kCompute, EncodeCompute(handle, batch, x),
                                               MessageType::kComputeResult));
  // A reply of the wrong size or outside the field is DataLoss, like a wrong
  // result; the frame was read whole, so the connection stays usable.
  return ParseElements(reply.payload, static_cast<size_t>(batch * layer->second.output_size));
}

}  // namespace ppml::accel
