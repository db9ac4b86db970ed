// Per-request cost of the encrypted path (HPKE/EHBP), one thread: what the
// client pays to encrypt a request and open its reply, what the enclave pays
// to open the request and seal the reply, and the primitives under them.
// docs/BENCHMARKS.md quotes it next to the end-to-end figures.
//
//   build/bin/ppml-bench-crypto [--benchmark_filter=Ehbp]
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <iostream>

#include "common/crypto.h"
#include "common/ehbp.h"
#include "common/hpke.h"

namespace {

using namespace ppml;

// A Fashion-MNIST request as the clients send it (784 floats with the KServe
// JSON around them, about 4 KiB) and a reply of ten scores.
constexpr size_t kRequestBytes = 4096;
constexpr size_t kReplyBytes = 256;

template <typename T>
T Must(Result<T> result) {
  if (!result.ok()) {
    std::cerr << "ppml-bench-crypto: " << result.status().ToString() << "\n";
    std::exit(1);
  }
  return std::move(result).value();
}

// The enclave's service key, loaded once as the enclave keeps it.
const crypto::X25519PrivateKey& EnclaveKey() {
  static const crypto::X25519PrivateKey key = Must(crypto::X25519PrivateKey::Generate());
  return key;
}

// What the enclave would pay per request if it kept its key as raw bytes.
void BM_X25519LoadRawPrivateKey(benchmark::State& state) {
  const crypto::SecretBytes raw = Must(EnclaveKey().RawPrivate());
  for (auto _ : state) benchmark::DoNotOptimize(Must(crypto::X25519PrivateKey::FromRaw(raw.span())));
}
BENCHMARK(BM_X25519LoadRawPrivateKey);

void BM_X25519Generate(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(Must(crypto::X25519PrivateKey::Generate()));
}
BENCHMARK(BM_X25519Generate);

void BM_X25519Agree(benchmark::State& state) {
  const auto peer = Must(crypto::X25519PrivateKey::Generate());
  for (auto _ : state) benchmark::DoNotOptimize(Must(EnclaveKey().Agree(peer.public_key())));
}
BENCHMARK(BM_X25519Agree);

void BM_HkdfExtract(benchmark::State& state) {
  const crypto::Bytes salt(32, 1), ikm(32, 2);
  for (auto _ : state) benchmark::DoNotOptimize(Must(crypto::HkdfSha256Extract(salt, ikm)));
}
BENCHMARK(BM_HkdfExtract);

void BM_AesGcmSeal(benchmark::State& state) {
  const crypto::Bytes key(32, 3), nonce(12, 4), plaintext(static_cast<size_t>(state.range(0)), 5);
  for (auto _ : state) benchmark::DoNotOptimize(Must(crypto::AesGcmSeal(key, nonce, {}, plaintext)));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_AesGcmSeal)->Arg(kReplyBytes)->Arg(kRequestBytes);

// Client: encapsulate to the enclave key and seal the request.
void BM_EhbpEncryptRequest(benchmark::State& state) {
  const crypto::Bytes request(kRequestBytes, 7);
  for (auto _ : state) {
    benchmark::DoNotOptimize(Must(ehbp::EncryptRequest(EnclaveKey().public_key(), request)));
  }
}
BENCHMARK(BM_EhbpEncryptRequest);

// Enclave: decapsulate and open the request, then seal the reply.
void BM_EhbpDecryptRequestAndEncryptResponse(benchmark::State& state) {
  const crypto::Bytes request(kRequestBytes, 7), reply(kReplyBytes, 8);
  auto sent = Must(ehbp::EncryptRequest(EnclaveKey().public_key(), request));
  for (auto _ : state) {
    auto opened = Must(ehbp::DecryptRequest(sent.encapsulated_key_header_value, sent.body,
                                            EnclaveKey()));
    benchmark::DoNotOptimize(Must(ehbp::EncryptResponse(opened.server_state, reply)));
  }
}
BENCHMARK(BM_EhbpDecryptRequestAndEncryptResponse);

// Client: open the reply.
void BM_EhbpDecryptResponse(benchmark::State& state) {
  const crypto::Bytes request(kRequestBytes, 7), reply(kReplyBytes, 8);
  auto sent = Must(ehbp::EncryptRequest(EnclaveKey().public_key(), request));
  auto opened = Must(ehbp::DecryptRequest(sent.encapsulated_key_header_value, sent.body,
                                          EnclaveKey()));
  auto answered = Must(ehbp::EncryptResponse(opened.server_state, reply));
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        Must(ehbp::DecryptResponse(sent.client_state, answered.response_nonce_header_value, answered.body)));
  }
}
BENCHMARK(BM_EhbpDecryptResponse);

}  // namespace

BENCHMARK_MAIN();
