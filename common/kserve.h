// KServe v2 / Open Inference Protocol: the JSON (and JSON + binary tensor)
// bodies of `POST /v2/models/{model}/infer` and its reply.
//
// Used by the enclave (parse the decrypted request, encode the reply), by
// clients (`ppml infer`: encode the request, parse the reply) and by the
// front-end in plaintext mode. Request bodies arrive from untrusted clients:
// the parsers never read outside the body, bound what they allocate, and
// answer every malformed body with an error, never a crash.
//
// Supported subset
//
//   request   {"id": string?, "parameters": {"binary_data_output": bool?}?,
//              "inputs":  [{"name", "shape", "datatype", "parameters"?, "data"?}, ...],
//              "outputs": [{"name", "parameters": {"binary_data": bool?}?}, ...]?}
//   response  {"model_name", "model_version"?, "id"?, "parameters"?,
//              "outputs": [{"name", "shape", "datatype", "parameters"?, "data"?}, ...]}
//   error     {"error": string}
//
//   - datatype: FP32, UINT8, INT8, INT32, INT64 (DataType kF32, kU8, kS8,
//     kS32, kS64). The other protocol types (BOOL, UINT16, UINT32, UINT64,
//     INT16, FP16, BF16, FP64, BYTES) are Unsupported; any other name is
//     InvalidArgument.
//   - shape: JSON integers >= 0, at most kMaxRank of them; no -1 wildcards.
//   - data: JSON numbers, either flat (row-major, exactly shape's element
//     count) or nested to exactly the rank with every level's length equal
//     to its dimension. Integer types take integer literals only ("1.0" is
//     not an INT32) within the type's range; FP32 takes any number whose
//     value is finite as a float (NaN and infinities cannot be written in
//     JSON: send them as binary data).
//   - Binary tensor data extension: an input (or response output) with
//     parameters.binary_data_size = N carries no "data"; its N bytes
//     (= element count x element size, little-endian, row-major, no padding)
//     follow the JSON, tensors back to back in the order of the "inputs"
//     ("outputs") array. The JSON's byte length travels in the HTTP header
//     Inference-Header-Content-Length (kHeaderLengthHeader). Outputs are
//     asked for as binary by outputs[].parameters.binary_data, or all at once
//     by the request's parameters.binary_data_output (a per-output
//     binary_data, true or false, overrides it).
//   - Not supported: shared memory (parameters "shared_memory_region*") and
//     classification outputs ("classification") are Unsupported; other
//     parameters and unknown fields are ignored. Duplicate keys in one JSON
//     object, duplicate input or output names, and an empty "inputs" array
//     are InvalidArgument.
//   - Limits: all tensors of one body together hold at most kMaxTensorBytes
//     (256 MiB), checked from the shapes before anything is allocated.
//     Numbers that do not fit a double or a 64-bit integer fail as invalid
//     JSON (the JSON parser refuses them).
//
// Errors are InvalidArgument (or Unsupported) and name the tensor and the
// field, e.g. `inference request: input "x": data[3]: 300 is out of range
// for UINT8`. The model, not this codec, decides whether input and output
// names, datatypes and shapes fit it.
//
// Thread safety: every function is stateless and may be called from several
// threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace ppml::kserve {

inline constexpr std::string_view kHeaderLengthHeader = "Inference-Header-Content-Length";
inline constexpr size_t kMaxTensorBytes = size_t{256} << 20;  // all tensors of one body
inline constexpr size_t kMaxRank = 32;

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

// An entry of the request's "outputs": an output the client wants back.
struct RequestedOutput {
  std::string name;
  bool binary = false;  // its binary_data, or else the request's binary_data_output
};

struct InferRequest {
  std::string id;                        // "" when the request has none
  std::vector<NamedTensor> inputs;       // in request order
  std::vector<RequestedOutput> outputs;  // empty: every output of the model
  bool binary_output = false;            // parameters.binary_data_output

  // Whether output `name` goes back as binary data: as its entry in
  // `outputs` says, or binary_output when it has none.
  bool WantsBinary(std::string_view name) const;
};

struct InferResponse {
  std::string model_name;
  std::string model_version;  // "" is left out of the JSON
  std::string id;             // "" is left out of the JSON
  std::vector<NamedTensor> outputs;
};

// A body ready to send: the JSON, then any binary tensor data.
struct EncodedBody {
  std::vector<uint8_t> body;
  // The Inference-Header-Content-Length value (the JSON's byte length);
  // set exactly when at least one tensor travels as binary data.
  std::optional<size_t> json_length;
};

// Parses a request body. `json_length` is the Inference-Header-Content-Length
// header: absent, the whole body is JSON; present, the first `json_length`
// bytes are JSON and the rest is exactly the binary data its inputs declare.
Result<InferRequest> ParseInferRequest(std::span<const uint8_t> body, std::optional<size_t> json_length);

// The JSON part of a request on its own. A server that decrypts a large body
// frame by frame parses the JSON first, validates and groups requests, then
// reads each binary input straight to where it is used: no copy of the whole
// body, no Tensor per request. ParseInferRequest is this plus filling the
// tensors from the binary section, so both accept and refuse the same bodies.

// An input as the request's JSON describes it, before any binary data is read.
struct InputHeader {
  std::string name;
  DataType dtype = DataType::kF32;
  Shape shape;
  std::optional<size_t> binary_size;  // its bytes in the binary section; absent: `data` holds its values
  Tensor data;                        // the values of "data"; empty for a binary input
};
struct InferRequestHeader {
  InferRequest request;             // id, outputs, binary_output; request.inputs stays empty
  std::vector<InputHeader> inputs;  // in request order
  size_t binary_size = 0;           // the binary section: the binary inputs' bytes back to back, in `inputs` order
};
// Parses the JSON part of a request body. `binary_length`: absent when the request had no
// Inference-Header-Content-Length header (then the whole body was JSON and no input may be binary); present,
// the byte length of the binary section after the JSON, which must equal the sum of the binary_data_size
// parameters. Same checks and the same error messages as ParseInferRequest.
Result<InferRequestHeader> ParseInferRequestHeader(std::span<const uint8_t> json, std::optional<size_t> binary_length);

// Where a request body of `body_size` bytes splits, for ParseInferRequestHeader:
// the JSON's length and the binary section's (absent without the
// Inference-Header-Content-Length header `json_length`). InvalidArgument, as
// ParseInferRequest's, when json_length is past the end of the body.
struct BodyLayout {
  size_t json_length = 0;
  std::optional<size_t> binary_length;
};
Result<BodyLayout> LayOutRequestBody(size_t body_size, std::optional<size_t> json_length);

// Encodes `response` with each output as JSON data or binary data, as
// `request.WantsBinary(output name)` says. Fails when a JSON-encoded FP32
// output holds NaN or an infinity (JSON has no way to write them).
Result<EncodedBody> EncodeInferResponse(const InferResponse& response, const InferRequest& request);

// Client side. Encodes `request` (id, inputs, outputs, binary_output); with
// `binary_inputs` every input travels as binary data.
Result<EncodedBody> EncodeInferRequest(const InferRequest& request, bool binary_inputs);

// Client side. Parses a reply body, `json_length` as for ParseInferRequest.
// A body of the form {"error": "..."} is InvalidArgument carrying the
// server's message.
Result<InferResponse> ParseInferResponse(std::span<const uint8_t> body, std::optional<size_t> json_length);

// {"error":"<message>"}, the body of every failed inference reply.
// "FP32", "UINT8", "INT8", "INT32", "INT64": the protocol's name of a tensor type.
std::string_view DatatypeName(DataType type);

// GET /v2/models/{m} (model metadata): {"name":..,"versions":[],"platform":..,
// "inputs":[{"name":..,"datatype":"FP32","shape":[-1,1,28,28]}],"outputs":[..]};
// -1 marks a symbolic dimension.
struct TensorMetadata {
  std::string name;
  DataType dtype = DataType::kF32;
  Shape shape;
};
struct ModelMetadata {
  std::string name;
  std::string platform;
  std::vector<TensorMetadata> inputs, outputs;
};
std::string EncodeModelMetadata(const ModelMetadata& metadata);

std::string ErrorJson(std::string_view message);

}  // namespace ppml::kserve
