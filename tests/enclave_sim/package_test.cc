#include "enclave_sim/package.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/crypto.h"
#include "enclave_sim/attestation.h"

namespace ppml::enclave {
namespace {

bool Contains(const Status& s, std::string_view text) { return s.message().find(text) != std::string::npos; }

crypto::X25519PrivateKey Loaded(const SecretBytes& raw) { return crypto::X25519PrivateKey::FromRaw(raw.span()).value(); }

Bytes ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

Bytes Serialize(const onnx::ModelProto& model) {
  std::string text = model.SerializeAsString();
  return Bytes(text.begin(), text.end());
}

template <typename T>
Bytes RawOf(std::initializer_list<T> values) {
  Bytes out(values.size() * sizeof(T));
  std::memcpy(out.data(), values.begin(), out.size());
  return out;
}

// A small model covering the conversions and the layer naming: typed fields
// (float_data, double_data, int64_data, int32_data narrowed to int8), raw_data,
// an unnamed node, an initializer used twice, one used only inside a
// subgraph, and one used by no node.
onnx::ModelProto TinyModel() {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(17);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("tiny");
  auto add_node = [&](const std::string& name, const std::string& op, std::vector<std::string> inputs,
                      const std::string& output) {
    onnx::NodeProto* node = graph->add_node();
    node->set_name(name);
    node->set_op_type(op);
    for (const std::string& input : inputs) node->add_input(input);
    node->add_output(output);
    return node;
  };
  add_node("conv1", "Conv", {"x", "w1", "b1"}, "h1");
  add_node("", "MatMul", {"h1", "w2"}, "h2");  // unnamed: "MatMul_1"
  add_node("add", "Add", {"h2", "w1", "shape"}, "h3");
  onnx::NodeProto* branch = add_node("branch", "If", {"cond"}, "y");
  onnx::AttributeProto* then_branch = branch->add_attribute();
  then_branch->set_name("then_branch");
  then_branch->set_type(onnx::AttributeProto::GRAPH);
  onnx::NodeProto* inner = then_branch->mutable_g()->add_node();
  inner->set_op_type("Identity");
  inner->add_input("q8");
  inner->add_output("y");

  auto add_init = [&](const std::string& name, int type, std::vector<int64_t> dims) {
    onnx::TensorProto* t = graph->add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    for (int64_t d : dims) t->add_dims(d);
    return t;
  };
  // Initializer order differs from first-use order on purpose.
  onnx::TensorProto* spare = add_init("spare", onnx::TensorProto::FLOAT, {2});
  spare->add_float_data(7.0f);
  spare->add_float_data(8.0f);
  onnx::TensorProto* w2 = add_init("w2", onnx::TensorProto::DOUBLE, {3});
  for (double v : {0.5, -1.25, 3.0}) w2->add_double_data(v);
  onnx::TensorProto* w1 = add_init("w1", onnx::TensorProto::FLOAT, {2, 2});
  for (float v : {1.0f, 2.0f, 3.0f, 4.0f}) w1->add_float_data(v);
  onnx::TensorProto* b1 = add_init("b1", onnx::TensorProto::FLOAT, {2});
  Bytes b1_raw = RawOf<float>({0.25f, -0.75f});
  b1->set_raw_data(b1_raw.data(), b1_raw.size());
  onnx::TensorProto* shape = add_init("shape", onnx::TensorProto::INT64, {2});
  shape->add_int64_data(-1);
  shape->add_int64_data(4);
  onnx::TensorProto* q8 = add_init("q8", onnx::TensorProto::INT8, {3});
  for (int v : {-128, 0, 127}) q8->add_int32_data(v);
  return model;
}

// The raw bytes TinyModel's initializers must come back as.
std::map<std::string, Bytes> TinyExpectedBytes() {
  return {{"spare", RawOf<float>({7.0f, 8.0f})},
          {"w2", RawOf<double>({0.5, -1.25, 3.0})},
          {"w1", RawOf<float>({1.0f, 2.0f, 3.0f, 4.0f})},
          {"b1", RawOf<float>({0.25f, -0.75f})},
          {"shape", RawOf<int64_t>({-1, 4})},
          {"q8", Bytes{0x80, 0x00, 0x7f}}};
}

struct Sealed {
  crypto::X25519KeyPair enclave_key;
  Bytes file;
};

Sealed SealOrDie(ByteSpan onnx, std::string_view name = "tiny") {
  Sealed sealed;
  Result<crypto::X25519KeyPair> key = crypto::X25519GenerateKeyPair();
  EXPECT_TRUE(key.ok()) << key.status().ToString();
  sealed.enclave_key = std::move(*key);
  Result<Bytes> file = SealModel(onnx, name, sealed.enclave_key.public_key);
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  if (file.ok()) sealed.file = std::move(*file);
  return sealed;
}

PackageView OpenOrDie(const Bytes& file) {
  Result<PackageView> view = OpenPackage(file);
  EXPECT_TRUE(view.ok()) << view.status().ToString();
  return std::move(view).value();
}

SecretBytes UnwrapOrDie(const PackageView& view, const Sealed& sealed) {
  Result<SecretBytes> key = UnwrapModelKey(view, Loaded(sealed.enclave_key.private_key));
  EXPECT_TRUE(key.ok()) << key.status().ToString();
  return key.ok() ? *key : SecretBytes();
}

std::vector<Bytes> ChunksOf(const PackageView& view) {
  std::vector<Bytes> chunks;
  for (size_t i = 0; i < view.chunk_count(); ++i) {
    ByteSpan bytes = view.chunk_bytes(i);
    chunks.emplace_back(bytes.begin(), bytes.end());
  }
  return chunks;
}

// A package file from a manifest (re-serialized as SealModel would) and chunk
// bytes: how an attacker with the file rewrites it.
Bytes BuildFile(const PackageManifest& manifest, const std::vector<Bytes>& chunks) {
  const std::string json = ManifestToJson(manifest);
  Bytes file(kPackageMagic.begin(), kPackageMagic.end());
  for (int shift = 24; shift >= 0; shift -= 8) file.push_back(static_cast<uint8_t>(json.size() >> shift));
  file.insert(file.end(), json.begin(), json.end());
  for (const Bytes& chunk : chunks) file.insert(file.end(), chunk.begin(), chunk.end());
  return file;
}

// Only the outcome of opening (a view would borrow the temporary file).
Status OpenStatus(const Bytes& file) { return OpenPackage(file).status(); }

// Offsets recomputed for chunks laid out in order.
void RepackOffsets(PackageManifest& manifest) {
  uint64_t offset = 0;
  for (PackageChunk& chunk : manifest.chunks) {
    chunk.offset = offset;
    offset += chunk.length;
  }
}

std::map<std::string, Bytes> InitializerBytes(const onnx::ModelProto& model) {
  std::map<std::string, Bytes> out;
  for (const onnx::TensorProto& t : model.graph().initializer())
    out[t.name()] = Bytes(t.raw_data().begin(), t.raw_data().end());
  return out;
}

// ---- Round trips ---------------------------------------------------------------

TEST(PackageTest, TinyModelRoundTripAndChunkTable) {
  const Bytes onnx = Serialize(TinyModel());
  Sealed sealed = SealOrDie(onnx);
  PackageView view = OpenOrDie(sealed.file);
  const PackageManifest& m = view.manifest();
  EXPECT_EQ(m.model_name, "tiny");
  EXPECT_EQ(m.enclave_public_key, sealed.enclave_key.public_key);
  Result<Bytes> source_sha = crypto::Sha256(onnx);
  ASSERT_TRUE(source_sha.ok());
  EXPECT_TRUE(std::equal(m.source_sha256.begin(), m.source_sha256.end(), source_sha->begin()));

  // Graph first, then first-use order, the unused initializer last.
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"conv1", "w1"}, {"conv1", "b1"}, {"MatMul_1", "w2"}, {"add", "shape"}, {"branch", "q8"}, {"(unused)", "spare"}};
  ASSERT_EQ(m.chunks.size(), expected.size() + 1);
  EXPECT_EQ(m.chunks[0].kind, ChunkKind::kGraph);
  EXPECT_EQ(m.chunks[0].layer, "(graph)");
  for (size_t i = 0; i < expected.size(); ++i) {
    const PackageChunk& c = m.chunks[i + 1];
    EXPECT_EQ(c.index, i + 1);
    EXPECT_EQ(c.kind, ChunkKind::kTensor);
    EXPECT_EQ(c.layer, expected[i].first) << c.tensor;
    EXPECT_EQ(c.tensor, expected[i].second);
  }
  EXPECT_EQ(view.FindTensor("w2")->dtype, "float64");
  EXPECT_EQ(view.FindTensor("q8")->dtype, "int8");
  EXPECT_EQ(view.FindTensor("w1")->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(view.FindTensor("missing"), nullptr);

  SecretBytes key = UnwrapOrDie(view, sealed);
  const std::map<std::string, Bytes> want = TinyExpectedBytes();
  for (size_t i = 1; i < view.chunk_count(); ++i) {
    Result<Bytes> plain = DecryptChunk(view, key, i);
    ASSERT_TRUE(plain.ok()) << plain.status().ToString();
    EXPECT_EQ(*plain, want.at(m.chunks[i].tensor)) << m.chunks[i].tensor;
    EXPECT_EQ(plain->size(), m.chunks[i].plaintext_length());
  }

  Result<Bytes> whole = ReassembleModel(view, key);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  onnx::ModelProto back;
  ASSERT_TRUE(back.ParseFromArray(whole->data(), static_cast<int>(whole->size())));
  EXPECT_EQ(InitializerBytes(back), want);
  EXPECT_EQ(back.graph().node_size(), 4);
  for (const onnx::TensorProto& t : back.graph().initializer()) {
    EXPECT_EQ(t.data_location(), onnx::TensorProto::DEFAULT) << t.name();
    EXPECT_EQ(t.external_data_size(), 0) << t.name();
  }
}

TEST(PackageTest, FashionCnnRoundTripMatchesEveryInitializer) {
  const Bytes onnx = ReadAll(std::string(PPML_SOURCE_DIR) + "/models/fashion_cnn.onnx");
  ASSERT_GT(onnx.size(), 1000u);
  onnx::ModelProto original;
  ASSERT_TRUE(original.ParseFromArray(onnx.data(), static_cast<int>(onnx.size())));
  Sealed sealed = SealOrDie(onnx, "fashion_cnn");
  PackageView view = OpenOrDie(sealed.file);
  ASSERT_EQ(view.chunk_count(), static_cast<size_t>(original.graph().initializer_size()) + 1);
  SecretBytes key = UnwrapOrDie(view, sealed);

  // The graph chunk: no initializer keeps data, each points at its own chunk.
  Result<Bytes> graph_bytes = DecryptChunk(view, key, 0);
  ASSERT_TRUE(graph_bytes.ok()) << graph_bytes.status().ToString();
  onnx::ModelProto graph;
  ASSERT_TRUE(graph.ParseFromArray(graph_bytes->data(), static_cast<int>(graph_bytes->size())));
  EXPECT_EQ(graph.graph().node_size(), original.graph().node_size());
  for (const onnx::TensorProto& t : graph.graph().initializer()) {
    EXPECT_FALSE(t.has_raw_data()) << t.name();
    EXPECT_EQ(t.float_data_size(), 0) << t.name();
    EXPECT_EQ(t.data_location(), onnx::TensorProto::EXTERNAL) << t.name();
    ASSERT_EQ(t.external_data_size(), 1) << t.name();
    EXPECT_EQ(t.external_data(0).key(), "location");
    const PackageChunk* chunk = view.FindTensor(t.name());
    ASSERT_NE(chunk, nullptr) << t.name();
    EXPECT_EQ(t.external_data(0).value(), "chunk:" + std::to_string(chunk->index));
    EXPECT_TRUE(std::equal(t.dims().begin(), t.dims().end(), chunk->shape.begin(), chunk->shape.end()));
    EXPECT_NE(chunk->layer, "(unused)") << t.name();
  }

  // Every chunk decrypts, several threads at once (the enclave prefetches).
  std::vector<Result<Bytes>> plain(view.chunk_count(), Status::Internal("not run"));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < view.chunk_count(); i += 4) plain[i] = DecryptChunk(view, key, i);
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_TRUE(plain[i].ok()) << plain[i].status().ToString();

  Result<Bytes> whole = ReassembleModel(view, key);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  onnx::ModelProto back;
  ASSERT_TRUE(back.ParseFromArray(whole->data(), static_cast<int>(whole->size())));
  // The committed model stores every initializer in raw_data.
  const std::map<std::string, Bytes> want = InitializerBytes(original);
  EXPECT_EQ(InitializerBytes(back), want);
  for (const auto& [name, bytes] : want) EXPECT_FALSE(bytes.empty()) << name;

  Result<Sha256Digest> hash = ManifestHash(view);
  ASSERT_TRUE(hash.ok());
  Result<Bytes> direct = crypto::Sha256(view.manifest_bytes());
  ASSERT_TRUE(direct.ok());
  EXPECT_TRUE(std::equal(hash->begin(), hash->end(), direct->begin()));
}

TEST(PackageTest, SealRejectsBadInput) {
  Result<crypto::X25519KeyPair> key = crypto::X25519GenerateKeyPair();
  ASSERT_TRUE(key.ok());
  const Bytes onnx = Serialize(TinyModel());
  EXPECT_EQ(SealModel(Bytes{0xff, 0xff, 0xff}, "m", key->public_key).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SealModel(onnx, "", key->public_key).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SealModel(onnx, "m", Bytes(31, 1)).status().code(), StatusCode::kInvalidArgument);

  onnx::ModelProto external = TinyModel();
  onnx::TensorProto* w1 = external.mutable_graph()->mutable_initializer(2);
  w1->clear_float_data();
  w1->set_data_location(onnx::TensorProto::EXTERNAL);
  onnx::StringStringEntryProto* location = w1->add_external_data();
  location->set_key("location");
  location->set_value("weights.bin");
  Result<Bytes> sealed = SealModel(Serialize(external), "m", key->public_key);
  EXPECT_EQ(sealed.status().code(), StatusCode::kUnsupported);
  EXPECT_TRUE(Contains(sealed.status(), "'w1'")) << sealed.status().ToString();

  onnx::ModelProto short_data = TinyModel();
  short_data.mutable_graph()->mutable_initializer(2)->mutable_float_data()->RemoveLast();
  sealed = SealModel(Serialize(short_data), "m", key->public_key);
  EXPECT_EQ(sealed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(sealed.status(), "'w1'")) << sealed.status().ToString();

  onnx::ModelProto strings = TinyModel();
  onnx::TensorProto* text = strings.mutable_graph()->add_initializer();
  text->set_name("labels");
  text->set_data_type(onnx::TensorProto::STRING);
  text->add_string_data("a");
  sealed = SealModel(Serialize(strings), "m", key->public_key);
  EXPECT_EQ(sealed.status().code(), StatusCode::kUnsupported);
  EXPECT_TRUE(Contains(sealed.status(), "'labels'")) << sealed.status().ToString();
}

// ---- Tampering ----------------------------------------------------------------

class PackageTamperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sealed_ = SealOrDie(Serialize(TinyModel()));
    Result<PackageView> view = OpenPackage(sealed_.file);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    manifest_ = view->manifest();
    chunks_ = ChunksOf(*view);
    model_key_ = UnwrapOrDie(*view, sealed_);
  }

  // Opens `file`, unwraps with the genuine enclave key and decrypts chunk
  // `index` with the genuine model key; returns the first failure.
  Status OpenUnwrapDecrypt(const Bytes& file, size_t index, Status* unwrap = nullptr) {
    Result<PackageView> view = OpenPackage(file);
    if (!view.ok()) return view.status();
    Result<SecretBytes> key = UnwrapModelKey(*view, Loaded(sealed_.enclave_key.private_key));
    if (unwrap != nullptr) *unwrap = key.status();
    // Past the key wrap, the chunk's own checks must still hold on their own.
    return DecryptChunk(*view, model_key_, index).status();
  }

  Sealed sealed_;
  PackageManifest manifest_;
  std::vector<Bytes> chunks_;
  SecretBytes model_key_;
};

TEST_F(PackageTamperTest, FlippedBitInAChunkNamesTheLayer) {
  std::vector<Bytes> chunks = chunks_;
  chunks[3][20] ^= 0x01;  // w2, first used by the unnamed MatMul
  Status unwrap;
  Status s = OpenUnwrapDecrypt(BuildFile(manifest_, chunks), 3, &unwrap);
  EXPECT_TRUE(unwrap.ok()) << unwrap.ToString();  // the table is intact
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(s, "package chunk 3 (layer 'MatMul_1', tensor 'w2'): modified: hash mismatch")) << s.ToString();
}

TEST_F(PackageTamperTest, EditedHashMatchingAModifiedChunkFailsTheAead) {
  std::vector<Bytes> chunks = chunks_;
  chunks[1].back() ^= 0x80;  // w1's tag
  PackageManifest manifest = manifest_;
  Result<Bytes> sha = crypto::Sha256(chunks[1]);
  ASSERT_TRUE(sha.ok());
  std::copy(sha->begin(), sha->end(), manifest.chunks[1].sha256.begin());
  Status unwrap;
  Status s = OpenUnwrapDecrypt(BuildFile(manifest, chunks), 1, &unwrap);
  EXPECT_EQ(unwrap.code(), StatusCode::kDataLoss) << unwrap.ToString();  // the edited table
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(s, "package chunk 1 (layer 'conv1', tensor 'w1'): does not authenticate")) << s.ToString();
}

TEST_F(PackageTamperTest, SwappedChunksWithTheirEntriesDoNotAuthenticate) {
  // Swap w1 (chunk 1) and w2 (chunk 3), moving each manifest entry with its
  // bytes; indices and offsets are made consistent again.
  std::vector<Bytes> chunks = chunks_;
  std::swap(chunks[1], chunks[3]);
  PackageManifest manifest = manifest_;
  std::swap(manifest.chunks[1], manifest.chunks[3]);
  manifest.chunks[1].index = 1;
  manifest.chunks[3].index = 3;
  RepackOffsets(manifest);
  const Bytes file = BuildFile(manifest, chunks);
  Status unwrap;
  Status s = OpenUnwrapDecrypt(file, 1, &unwrap);
  EXPECT_EQ(unwrap.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(unwrap, "does not unwrap")) << unwrap.ToString();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(
      Contains(s, "package chunk 1 (layer 'MatMul_1', tensor 'w2'): does not authenticate (reordered or swapped)"))
      << s.ToString();
  s = OpenUnwrapDecrypt(file, 3);
  EXPECT_TRUE(Contains(s, "package chunk 3 (layer 'conv1', tensor 'w1'): does not authenticate")) << s.ToString();
}

TEST_F(PackageTamperTest, ReorderedManifestEntriesNameTheLayer) {
  PackageManifest manifest = manifest_;
  std::swap(manifest.chunks[2], manifest.chunks[4]);  // b1 and shape, index fields kept
  Status opened = OpenStatus(BuildFile(manifest, chunks_));
  EXPECT_EQ(opened.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(opened, "chunks[2] (layer 'add', tensor 'shape'): field \"index\": 4, expected 2"))
      << opened.ToString();
}

TEST_F(PackageTamperTest, TruncatedFileNamesTheLastChunk) {
  Bytes file = sealed_.file;
  file.resize(file.size() - 5);
  Status opened = OpenStatus(file);
  EXPECT_EQ(opened.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(opened, "(layer '(unused)', tensor 'spare')")) << opened.ToString();
  EXPECT_TRUE(Contains(opened, "truncated")) << opened.ToString();
  EXPECT_EQ(OpenStatus(Bytes(sealed_.file.begin(), sealed_.file.begin() + 7)).code(), StatusCode::kDataLoss);
}

TEST_F(PackageTamperTest, BadMagicAndVersion) {
  Bytes file = sealed_.file;
  file[0] = 'X';
  Status opened = OpenStatus(file);
  EXPECT_EQ(opened.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(opened, "magic")) << opened.ToString();
  file = sealed_.file;
  file[7] = 2;
  EXPECT_EQ(OpenStatus(file).code(), StatusCode::kUnsupported);
}

TEST_F(PackageTamperTest, ManifestLengthPastTheEnd) {
  Bytes file = sealed_.file;
  const uint32_t too_long = static_cast<uint32_t>(file.size());
  for (int i = 0; i < 4; ++i) file[8 + i] = static_cast<uint8_t>(too_long >> (24 - 8 * i));
  Status opened = OpenStatus(file);
  EXPECT_EQ(opened.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(opened, "manifest length")) << opened.ToString();
}

TEST_F(PackageTamperTest, OverlappingOffsetsNameTheLayer) {
  PackageManifest manifest = manifest_;
  manifest.chunks[2].offset -= 1;
  Status opened = OpenStatus(BuildFile(manifest, chunks_));
  EXPECT_EQ(opened.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(opened, "(layer 'conv1', tensor 'b1'): field \"offset\"")) << opened.ToString();
  EXPECT_TRUE(Contains(opened, "overlaps")) << opened.ToString();
}

TEST_F(PackageTamperTest, ManifestFieldsAreValidated) {
  PackageManifest manifest = manifest_;
  manifest.chunks[3].shape = {4};  // w2 is 3 doubles
  Status opened = OpenStatus(BuildFile(manifest, chunks_));
  EXPECT_EQ(opened.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(opened, "(layer 'MatMul_1', tensor 'w2'): field \"length\"")) << opened.ToString();

  manifest = manifest_;
  manifest.chunks[5].tensor = "w1";
  opened = OpenStatus(BuildFile(manifest, chunks_));
  EXPECT_EQ(opened.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(opened, "listed twice")) << opened.ToString();

  manifest = manifest_;
  manifest.chunks[0].kind = ChunkKind::kTensor;
  EXPECT_EQ(OpenStatus(BuildFile(manifest, chunks_)).code(), StatusCode::kDataLoss);

  Bytes trailing = sealed_.file;
  trailing.push_back(0);
  opened = OpenStatus(trailing);
  EXPECT_EQ(opened.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(opened, "after the last chunk")) << opened.ToString();

  // Renaming the model is caught by the key wrap.
  manifest = manifest_;
  manifest.model_name = "other";
  Status unwrap;
  (void)OpenUnwrapDecrypt(BuildFile(manifest, chunks_), 0, &unwrap);
  EXPECT_EQ(unwrap.code(), StatusCode::kDataLoss);
}

TEST_F(PackageTamperTest, AnotherEnclaveKeyIsPermissionDenied) {
  Result<crypto::X25519KeyPair> other = crypto::X25519GenerateKeyPair();
  ASSERT_TRUE(other.ok());
  PackageView view = OpenOrDie(sealed_.file);
  Result<SecretBytes> key = UnwrapModelKey(view, Loaded(other->private_key));
  EXPECT_EQ(key.status().code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Contains(key.status(), "package is sealed to another enclave key")) << key.status().ToString();

  // The key field rewritten to the other enclave's key: the wrap still refuses.
  PackageManifest manifest = manifest_;
  manifest.enclave_public_key = other->public_key;
  PackageView forged = OpenOrDie(BuildFile(manifest, chunks_));
  EXPECT_EQ(UnwrapModelKey(forged, Loaded(other->private_key)).status().code(), StatusCode::kDataLoss);
}

// ---- Attestation document -------------------------------------------------------

struct Attested {
  crypto::EvpPkeyPtr platform;
  Measurement measurement{};
  AttestationDocument document;
};

Attested MakeAttested() {
  Attested a;
  Result<crypto::EvpPkeyPtr> platform = GeneratePlatformKey();
  EXPECT_TRUE(platform.ok());
  a.platform = std::move(*platform);
  EnclaveIdentity identity;
  identity.code_version = "ppml-enclave test";
  identity.config = {"weights=on-demand"};
  a.measurement = *ComputeMeasurement(identity);
  Result<crypto::X25519KeyPair> key = crypto::X25519GenerateKeyPair();
  EXPECT_TRUE(key.ok());
  a.document.enclave_public_key = key->public_key;
  a.document.nonce = *crypto::RandomBytes(32);
  Result<Quote> quote = SignQuote(a.platform.get(), a.measurement, Bytes(kSignerIdLength, 7),
                                  a.document.enclave_public_key, a.document.nonce, 1000);
  EXPECT_TRUE(quote.ok()) << quote.status().ToString();
  a.document.quote = std::move(*quote);
  return a;
}

TEST(AttestationDocumentTest, JsonRoundTripAndVerify) {
  Attested a = MakeAttested();
  const std::string json = AttestationDocumentToJson(a.document);
  EXPECT_EQ(json.rfind("{\"quote\":{\"version\":1,", 0), 0u) << json;
  Result<AttestationDocument> back = AttestationDocumentFromJson(json);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->enclave_public_key, a.document.enclave_public_key);
  EXPECT_EQ(back->nonce, a.document.nonce);
  EXPECT_EQ(QuoteToJson(back->quote), QuoteToJson(a.document.quote));

  EXPECT_TRUE(VerifyAttestationDocument(*back, a.platform.get(), a.measurement, 60, 1010).ok());
  EXPECT_TRUE(VerifyAttestationDocument(*back, a.platform.get(), a.measurement, 60, 1010, a.document.nonce).ok());

  Measurement wrong = a.measurement;
  wrong[0] ^= 1;
  Status s = VerifyAttestationDocument(*back, a.platform.get(), wrong, 60, 1010);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Contains(s, "wrong measurement")) << s.ToString();

  Result<crypto::EvpPkeyPtr> other_platform = GeneratePlatformKey();
  ASSERT_TRUE(other_platform.ok());
  s = VerifyAttestationDocument(*back, other_platform->get(), a.measurement, 60, 1010);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Contains(s, "bad signature")) << s.ToString();

  s = VerifyAttestationDocument(*back, a.platform.get(), a.measurement, 60, 2000);
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);

  s = VerifyAttestationDocument(*back, a.platform.get(), a.measurement, 60, 1010, Bytes(32, 0));
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);

  // A document whose key was swapped for another: the report data no longer binds it.
  AttestationDocument swapped = *back;
  swapped.enclave_public_key[0] ^= 1;
  s = VerifyAttestationDocument(swapped, a.platform.get(), a.measurement, 60, 1010);
  EXPECT_TRUE(Contains(s, "report data")) << s.ToString();
}

TEST(AttestationDocumentTest, MalformedJsonNamesTheField) {
  Attested a = MakeAttested();
  Result<AttestationDocument> doc = AttestationDocumentFromJson("[]");
  EXPECT_EQ(doc.status().code(), StatusCode::kInvalidArgument);
  doc = AttestationDocumentFromJson("{\"enclave_public_key\":\"00\",\"nonce\":\"00\"}");
  EXPECT_TRUE(Contains(doc.status(), "attestation document: field \"quote\": missing")) << doc.status().ToString();

  AttestationDocument short_nonce = a.document;
  short_nonce.nonce.resize(4);
  doc = AttestationDocumentFromJson(AttestationDocumentToJson(short_nonce));
  EXPECT_TRUE(Contains(doc.status(), "field \"nonce\"")) << doc.status().ToString();

  AttestationDocument short_key = a.document;
  short_key.enclave_public_key.resize(31);
  doc = AttestationDocumentFromJson(AttestationDocumentToJson(short_key));
  EXPECT_TRUE(Contains(doc.status(), "field \"enclave_public_key\"")) << doc.status().ToString();

  std::string json = AttestationDocumentToJson(a.document);
  json.replace(json.find("\"measurement\""), 13, "\"measurementX\"");
  doc = AttestationDocumentFromJson(json);
  EXPECT_EQ(doc.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(doc.status(), "attestation document: quote JSON: field \"measurement\": missing"))
      << doc.status().ToString();
}

// ---- The ppml commands around packages ------------------------------------------

#ifdef PPML_TOOL
struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

CommandResult RunPpml(const std::string& arguments) {
  const std::string log = ::testing::TempDir() + "ppml_package_cli.log";
  const int status = std::system((std::string(PPML_TOOL) + " " + arguments + " > " + log + " 2>&1").c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  Bytes text = ReadAll(log);
  result.output.assign(text.begin(), text.end());
  return result;
}

TEST(PackageCliTest, KeygenSealInspect) {
  const std::string dir = ::testing::TempDir() + "ppml_package_cli";
  std::filesystem::remove_all(dir);
  CommandResult r = RunPpml("keygen platform --out-dir " + dir + "/platform");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* name : {"platform.key.pem", "platform.secret"}) {
    const auto perms = std::filesystem::status(dir + "/platform/" + name).permissions();
    EXPECT_EQ(perms & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write)
        << name;
  }
  EXPECT_EQ(std::filesystem::file_size(dir + "/platform/platform.secret"), kPlatformSecretLength);
  r = RunPpml("keygen platform --out-dir " + dir + "/platform");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.output.find("--force") != std::string::npos) << r.output;

  // An enclave's attestation document, signed with that platform key.
  Result<crypto::EvpPkeyPtr> platform = LoadPlatformPrivateKeyPem(dir + "/platform/platform.key.pem");
  ASSERT_TRUE(platform.ok()) << platform.status().ToString();
  EnclaveIdentity identity;
  identity.code_version = "ppml-enclave test";
  const Measurement measurement = *ComputeMeasurement(identity);
  Result<crypto::X25519KeyPair> enclave_key = crypto::X25519GenerateKeyPair();
  ASSERT_TRUE(enclave_key.ok());
  AttestationDocument document;
  document.enclave_public_key = enclave_key->public_key;
  document.nonce = Bytes(16, 9);
  document.quote =
      *SignQuote(platform->get(), measurement, Bytes(kSignerIdLength, 1), document.enclave_public_key, document.nonce);
  std::ofstream(dir + "/quote.json") << AttestationDocumentToJson(document);

  const std::string seal = "model seal --model " + std::string(PPML_SOURCE_DIR) + "/models/fashion_cnn.onnx --quote " +
                           dir + "/quote.json --platform-pubkey " + dir + "/platform/platform.pub.pem --out " + dir +
                           "/m.ppmlpkg --measurement ";
  Measurement other = measurement;
  other[31] ^= 1;
  r = RunPpml(seal + ToHex(other));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.output.find("refusing to seal") != std::string::npos) << r.output;
  EXPECT_TRUE(r.output.find("wrong measurement") != std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/m.ppmlpkg"));

  r = RunPpml(seal + ToHex(measurement));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Bytes file = ReadAll(dir + "/m.ppmlpkg");  // the view borrows it
  PackageView view = OpenOrDie(file);
  EXPECT_EQ(view.manifest().model_name, "fashion_cnn");
  EXPECT_TRUE(UnwrapModelKey(view, Loaded(enclave_key->private_key)).ok());
  EXPECT_TRUE(r.output.find("manifest_sha256=" + ToHex(*ManifestHash(view))) != std::string::npos) << r.output;

  r = RunPpml("model inspect --json --package " + dir + "/m.ppmlpkg");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(r.output.find("\"chunks\":" + std::to_string(view.chunk_count()) + ",") != std::string::npos) << r.output;
  r = RunPpml("model inspect --package " + dir + "/quote.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.output.find("quote.json") != std::string::npos) << r.output;
}
#endif  // PPML_TOOL

}  // namespace
}  // namespace ppml::enclave
