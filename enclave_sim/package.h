// Encrypted model packages: a model owner's ONNX model sealed to one attested
// enclave key (Privado), split into per-layer chunks that are each hashed in
// the manifest and authenticated on their own (Occlumency), so the enclave can
// decrypt one layer's weights just before it runs and a tampered chunk fails
// with an error naming its layer.
//
// File layout (integers big-endian):
//
//   0          8          12                12 + M
//   +----------+----------+-----------------+---------+---------+-- ... --+
//   | PPMLPKG  |    M     | manifest        | chunk 0 | chunk 1 |         |
//   |   \x01   |   u32    | (JSON, M bytes) | (graph) | (tensor)|         |
//   +----------+----------+-----------------+---------+---------+-- ... --+
//                                           ^ data area: chunk offsets count
//                                             from here; chunks are packed in
//                                             index order with no gap, and the
//                                             last one ends the file
//
//   chunk i = nonce (12 random bytes) || AES-256-GCM(model key, nonce,
//             aad = ChunkAad(i), plaintext) || tag (16)
//
//   ChunkAad(i) = "ppml-chunk-v1" || u32 index || u16 len || layer
//                                 || u16 len || tensor
//   so a chunk moved to another index, or swapped with another chunk, does not
//   authenticate even under the right key.
//
// Manifest (one JSON object, UTF-8; the enclave measurement covers its SHA-256
// as stored, see ManifestHash):
//
//   {"format":"ppml-model-package","version":1,"model_name":"fashion_cnn",
//    "source_sha256":"<hex of SHA-256 of the original .onnx file>",
//    "enclave_public_key":"<hex, 32-byte X25519 key the package is sealed to>",
//    "key_wrap":{"enc":"<hex, 32 bytes>","ciphertext":"<hex, 48 bytes>"},
//    "chunks":[{"index":0,"kind":"graph","layer":"(graph)","tensor":"",
//               "dtype":"onnx","shape":[],"offset":0,"length":N,"sha256":"<hex>"},
//              {"index":1,"kind":"tensor","layer":"conv1","tensor":"conv1.weight",
//               "dtype":"float32","shape":[16,1,3,3],"offset":N,"length":...,
//               "sha256":"<hex of the chunk as stored: nonce||ciphertext||tag>"},
//              ...]}
//
// Chunks:
//   - chunk 0, kind "graph": the ONNX ModelProto with every graph initializer's
//     data moved out. Each such TensorProto keeps name, dims and data_type; its
//     data fields are cleared, data_location = EXTERNAL, and it has one
//     external_data entry {"location": "chunk:<index>"}. Constant nodes,
//     sparse initializers and subgraph initializers stay in this chunk.
//   - one chunk of kind "tensor" per graph initializer: its little-endian raw
//     bytes (typed fields such as float_data are converted to that form), so
//     length = 12 + element size * element count + 16. "layer" is the first
//     node in graph order that uses the initializer (directly or inside one of
//     its subgraphs): its name, or "<op_type>_<node index>" when unnamed (the
//     engine's naming); "(unused)" when no node uses it. Tensor chunks are in
//     the graph order of first use, unused ones last.
//
// Key wrap: the 32-byte random model key is sealed with HPKE base mode
// single-shot (RFC 9180; DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM)
// to enclave_public_key with info "ppml model key v1", and
// aad = SHA-256(ManifestBinding), where ManifestBinding is (integers
// big-endian; "str" = u32 length || bytes):
//
//   str "ppml-model-package-v1" || u32 version || str model_name
//   || source_sha256 (32) || enclave_public_key (32) || u32 chunk count
//   || per chunk: u32 index || u8 kind (0 graph, 1 tensor) || str layer
//                 || str tensor || str dtype || u32 rank || rank x i64 dim
//                 || u64 offset || u64 length || sha256 (32)
//
// i.e. every manifest field except the key wrap itself, so the model key does
// not unwrap for a package whose chunk table (or name or source hash) was
// edited after sealing.
//
// Errors: a malformed file or manifest is DataLoss naming the field or the
// chunk (index, layer, tensor); an unknown version is Unsupported. Nothing in
// a message is key material or plaintext.
//
// Thread safety: free functions are stateless. A PackageView is immutable
// after OpenPackage: any number of threads may call DecryptChunk (or any other
// function taking a const view and a const model key) at once, for the same or
// different chunks. The view does not own the file bytes: keep them alive and
// unchanged while the view is in use.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.h"
#include "common/status.h"
#include "enclave_sim/attestation.h"

namespace ppml::enclave {

using crypto::SecretBytes;

inline constexpr std::string_view kPackageMagic{"PPMLPKG\x01", 8};
inline constexpr size_t kPackageHeaderLength = 12;  // magic + u32 manifest length
inline constexpr std::string_view kPackageFormat = "ppml-model-package";
inline constexpr uint32_t kPackageVersion = 1;
inline constexpr std::string_view kModelKeyWrapInfo = "ppml model key v1";  // HPKE info
inline constexpr std::string_view kChunkAadLabel = "ppml-chunk-v1";
inline constexpr std::string_view kChunkLocationPrefix = "chunk:";  // external_data location
inline constexpr std::string_view kGraphLayer = "(graph)";
inline constexpr std::string_view kUnusedLayer = "(unused)";
inline constexpr std::string_view kGraphDtype = "onnx";
inline constexpr size_t kModelKeyLength = 32;
inline constexpr size_t kChunkOverhead = crypto::kAesGcmNonceLength + crypto::kAesGcmTagLength;  // 28
inline constexpr size_t kMaxModelNameLength = 256;
inline constexpr size_t kMaxChunkNameLength = 0xffff;  // layer and tensor: u16 length in ChunkAad

using Sha256Digest = std::array<uint8_t, crypto::kSha256Length>;

enum class ChunkKind : uint8_t { kGraph = 0, kTensor = 1 };
// "graph" or "tensor".
std::string_view ChunkKindName(ChunkKind kind);

// One entry of the manifest's chunk table.
struct PackageChunk {
  uint32_t index = 0;
  ChunkKind kind = ChunkKind::kTensor;
  std::string layer;           // first consuming node; kGraphLayer for chunk 0
  std::string tensor;          // initializer name; empty for chunk 0
  std::string dtype;           // "float32", "int64", ...; kGraphDtype for chunk 0
  std::vector<int64_t> shape;  // initializer dims; empty for chunk 0
  uint64_t offset = 0;         // from the start of the data area
  uint64_t length = 0;         // stored bytes: nonce || ciphertext || tag
  Sha256Digest sha256{};       // of the stored bytes

  // Plaintext bytes (length - kChunkOverhead).
  uint64_t plaintext_length() const { return length - kChunkOverhead; }
  // "package chunk 17 (layer 'conv2_1', tensor 'conv2_1.weight')", or
  // "package chunk 0 (graph)": how every error about a chunk starts.
  std::string Describe() const;
};

struct PackageManifest {
  uint32_t version = kPackageVersion;
  std::string model_name;
  Sha256Digest source_sha256{};
  // The owner forbids anything that reveals the weights outside the enclave
  // (verified outsourcing sends them to the accelerator).
  bool confidential = false;
  Bytes enclave_public_key;          // 32 bytes, X25519
  Bytes key_wrap_enc;                // HPKE encapsulated key, 32 bytes
  Bytes key_wrap_ciphertext;         // sealed model key, 32 + 16 bytes
  std::vector<PackageChunk> chunks;  // chunks[i].index == i; chunks[0] is the graph
};

// A validated, not decrypted, package over caller-owned file bytes.
class PackageView {
 public:
  const PackageManifest& manifest() const { return manifest_; }
  // The manifest JSON exactly as stored (what ManifestHash hashes).
  ByteSpan manifest_bytes() const { return manifest_bytes_; }
  // Chunk `index`'s stored bytes (nonce || ciphertext || tag); index < chunk count.
  ByteSpan chunk_bytes(size_t index) const;
  size_t chunk_count() const { return manifest_.chunks.size(); }
  // The tensor chunk holding initializer `tensor`, or nullptr.
  const PackageChunk* FindTensor(std::string_view tensor) const;
  size_t file_size() const { return file_.size(); }

 private:
  friend Result<PackageView> OpenPackage(ByteSpan file);
  PackageView() = default;  // only OpenPackage makes views: each one is validated
  ByteSpan file_;
  ByteSpan manifest_bytes_;
  ByteSpan data_area_;
  PackageManifest manifest_;
};

// The manifest as SealModel stores it: one line, keys in the order drawn
// above, byte fields in lower-case hex. (Also how tests build altered
// packages.)
std::string ManifestToJson(const PackageManifest& manifest);

// ---- Model owner -------------------------------------------------------------

// Splits, encrypts and wraps `onnx_model` (a serialized ModelProto) for the
// enclave holding the private half of `enclave_public_key` (32-byte X25519;
// verify its attestation first: VerifyAttestationDocument). Returns the
// package file bytes, already checked to open with OpenPackage.
// InvalidArgument for a model that does not parse, a bad name or key;
// Unsupported (naming the initializer) for external data, segments or string
// tensors.
// `confidential` marks the package so that no enclave outsources its layers.
Result<Bytes> SealModel(ByteSpan onnx_model, std::string_view model_name, ByteSpan enclave_public_key,
                        bool confidential = false);

// ---- Enclave -----------------------------------------------------------------

// Parses the header and the manifest and validates everything that can be
// checked without a key: magic, lengths, every manifest field's type and
// range, indices 0..n-1 in order, chunk 0 the only graph chunk, unique tensor
// names, tensor lengths that match dtype and shape, offsets packed in order
// inside the file. Decrypts nothing.
Result<PackageView> OpenPackage(ByteSpan file);
// A temporary would be gone before the view is used.
Result<PackageView> OpenPackage(const Bytes&& file) = delete;
// The same over std::byte (what engine::Model::LoadBytes takes).
inline Result<PackageView> OpenPackage(std::span<const std::byte> file) {
  return OpenPackage(ByteSpan(reinterpret_cast<const uint8_t*>(file.data()), file.size()));
}

// SHA-256 of the manifest bytes as stored: EnclaveIdentity::manifest_hash of
// the enclave serving this package.
Result<Sha256Digest> ManifestHash(const PackageView& view);

// The model key, unwrapped with the enclave's 32-byte X25519 private key.
// PermissionDenied "package is sealed to another enclave key" when the key's
// public half is not the manifest's; DataLoss when the wrap does not open
// (the manifest was edited after sealing, or the wrap itself was altered).
Result<SecretBytes> UnwrapModelKey(const PackageView& view, const crypto::X25519PrivateKey& enclave_private_key);

// Chunk `index`'s plaintext: first its stored bytes against the manifest's
// SHA-256, then the AEAD. DataLoss "<Describe()>: modified: hash mismatch" or
// "<Describe()>: does not authenticate (reordered or swapped)";
// InvalidArgument for an index out of range.
Result<Bytes> DecryptChunk(const PackageView& view, const SecretBytes& model_key, size_t index);
// The same into enclave memory of exactly the chunk's plaintext length (no
// second copy: on-demand loading); `out` is wiped when the chunk fails.
Status DecryptChunkInto(const PackageView& view, const SecretBytes& model_key, size_t index, std::span<uint8_t> out);

// The whole model back as a serialized ModelProto: the graph chunk with each
// initializer's raw_data restored from its chunk. Checks that every
// initializer in the graph points at the tensor chunk with its name, dtype
// and shape, and that every tensor chunk is used exactly once (DataLoss
// naming the chunk otherwise). For resident (not on-demand) loading and tests.
Result<Bytes> ReassembleModel(const PackageView& view, const SecretBytes& model_key);

// Reads a whole package file. NotFound / IoError naming the file.
Result<Bytes> ReadPackageFile(const std::string& path);

}  // namespace ppml::enclave
