// ehbp_interop_peer: our HPKE/EHBP (common/hpke.h, common/ehbp.h) driven from
// the command line, so that tests/interop/ehbp_interop.mjs can check it
// against independent JavaScript implementations (npm `ehbp`, `hpke`,
// `@hpke/core`). Only the test uses it.
//
// Keys, headers and short messages travel as lowercase hex; bodies as files.
// Results are one JSON object per line on stdout; errors go to stderr as
// "error: <status>" with exit status 1 (2 for bad usage).
//
//   keygen
//       -> {"sk":HEX,"pk":HEX}                  a fresh X25519 key pair
//   public-key --sk HEX
//       -> {"pk":HEX}                           X25519(sk, basepoint)
//   server --sk HEX --enc HEADER --body FILE --plaintext-out FILE
//          --reply FILE --reply-out FILE [--chunk-size N]
//       EHBP server: DecryptRequest(enc header, body) -> plaintext-out, then
//       EncryptResponse(reply) -> reply-out.
//       -> {"response_nonce":HEADER}
//   client --pk HEX --request FILE --body-out FILE --reply-body FILE
//          --reply-plaintext-out FILE [--chunk-size N]
//       EHBP client: EncryptRequest(request) -> body-out, prints
//       {"enc":HEADER}; then reads one line from stdin, the
//       Ehbp-Response-Nonce value (the reply body must be in reply-body by
//       then), DecryptResponse -> reply-plaintext-out, prints {"ok":true}.
//   hpke-seal --pk HEX --info HEX --aad HEX --pt HEX [--pt HEX ...]
//             [--aead 1|2] [--export-context HEX --export-length N]
//       SetupBaseS, Seal each --pt in order (sequence 0, 1, ...), Export.
//       -> {"enc":HEX,"ct":[HEX,...],"export":HEX}
//   hpke-open --sk HEX --enc HEX --info HEX --aad HEX --ct HEX [--ct HEX ...]
//             [--aead 1|2] [--export-context HEX --export-length N]
//       SetupBaseR, Open each --ct in order, Export.
//       -> {"pt":[HEX,...],"export":HEX}
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.h"
#include "common/ehbp.h"
#include "common/hpke.h"
#include "common/status.h"

namespace ppml {
namespace {

using crypto::Bytes;

// --flag value pairs; a flag may repeat.
class Args {
 public:
  static Result<Args> Parse(int argc, char** argv, int first) {
    Args a;
    for (int i = first; i < argc; i += 2) {
      std::string flag = argv[i];
      if (flag.rfind("--", 0) != 0 || i + 1 >= argc) {
        return Status::InvalidArgument("expected --flag VALUE pairs, got '" + flag + "'");
      }
      a.values_[flag.substr(2)].push_back(argv[i + 1]);
    }
    return a;
  }
  Result<std::string> One(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return Status::InvalidArgument("missing --" + name);
    if (it->second.size() != 1) return Status::InvalidArgument("--" + name + " given more than once");
    return it->second.front();
  }
  std::string OneOr(const std::string& name, const std::string& fallback) const {
    auto it = values_.find(name);
    return it == values_.end() || it->second.empty() ? fallback : it->second.back();
  }
  std::vector<std::string> All(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
  }
  Result<Bytes> Hex(const std::string& name) const {
    PPML_ASSIGN_OR_RETURN(std::string text, One(name));
    auto bytes = crypto::FromHex(text);
    if (!bytes.ok()) return Status::InvalidArgument("--" + name + ": " + bytes.status().message());
    return std::move(bytes).value();
  }
  Result<size_t> Size(const std::string& name, size_t fallback) const {
    std::string text = OneOr(name, "");
    if (text.empty()) return fallback;
    char* end = nullptr;
    unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    if (*end != '\0' || v == 0) return Status::InvalidArgument("--" + name + ": not a positive integer: " + text);
    return static_cast<size_t>(v);
  }

 private:
  std::map<std::string, std::vector<std::string>> values_;
};

Result<Bytes> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError("cannot open " + path);
  Bytes data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return Status::IoError("cannot read " + path);
  return data;
}

Status WriteFile(const std::string& path, const Bytes& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IoError("cannot create " + path);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) return Status::IoError("cannot write " + path);
  return Status::Ok();
}

Result<hpke::Aead> ParseAead(const Args& args) {
  std::string id = args.OneOr("aead", "2");
  if (id == "1") return hpke::Aead::kAes128Gcm;
  if (id == "2") return hpke::Aead::kAes256Gcm;
  return Status::InvalidArgument("--aead: 1 (AES-128-GCM) or 2 (AES-256-GCM), got " + id);
}

std::string JsonHexArray(const std::vector<Bytes>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += '"';
    out += crypto::ToHex(items[i]);
    out += '"';
  }
  return out + "]";
}

// Export when --export-context is given; empty otherwise.
Result<std::string> MaybeExport(const Args& args, const hpke::Context& context) {
  if (args.All("export-context").empty()) return std::string();
  PPML_ASSIGN_OR_RETURN(Bytes exporter_context, args.Hex("export-context"));
  PPML_ASSIGN_OR_RETURN(size_t length, args.Size("export-length", 32));
  PPML_ASSIGN_OR_RETURN(crypto::SecretBytes secret, context.Export(exporter_context, length));
  return crypto::ToHex(secret.span());
}

Status Keygen() {
  PPML_ASSIGN_OR_RETURN(crypto::X25519KeyPair pair, crypto::X25519GenerateKeyPair());
  std::cout << "{\"sk\":\"" << crypto::ToHex(pair.private_key.span()) << "\",\"pk\":\""
            << crypto::ToHex(pair.public_key) << "\"}" << std::endl;
  return Status::Ok();
}

Status PublicKey(const Args& args) {
  PPML_ASSIGN_OR_RETURN(Bytes sk, args.Hex("sk"));
  PPML_ASSIGN_OR_RETURN(Bytes pk, crypto::X25519PublicFromPrivate(sk));
  std::cout << "{\"pk\":\"" << crypto::ToHex(pk) << "\"}" << std::endl;
  return Status::Ok();
}

Status Server(const Args& args) {
  PPML_ASSIGN_OR_RETURN(Bytes sk, args.Hex("sk"));
  PPML_ASSIGN_OR_RETURN(std::string enc_header, args.One("enc"));
  PPML_ASSIGN_OR_RETURN(std::string body_path, args.One("body"));
  PPML_ASSIGN_OR_RETURN(std::string plaintext_out, args.One("plaintext-out"));
  PPML_ASSIGN_OR_RETURN(std::string reply_path, args.One("reply"));
  PPML_ASSIGN_OR_RETURN(std::string reply_out, args.One("reply-out"));
  PPML_ASSIGN_OR_RETURN(size_t chunk_size, args.Size("chunk-size", ehbp::kDefaultChunkSize));
  PPML_ASSIGN_OR_RETURN(Bytes body, ReadFile(body_path));
  PPML_ASSIGN_OR_RETURN(Bytes reply, ReadFile(reply_path));

  PPML_ASSIGN_OR_RETURN(ehbp::DecryptedRequest request, ehbp::DecryptRequest(enc_header, body, sk));
  PPML_RETURN_IF_ERROR(WriteFile(plaintext_out, request.plaintext));
  PPML_ASSIGN_OR_RETURN(ehbp::EncryptedResponse response,
                        ehbp::EncryptResponse(request.server_state, reply, chunk_size));
  PPML_RETURN_IF_ERROR(WriteFile(reply_out, response.body));
  std::cout << "{\"response_nonce\":\"" << response.response_nonce_header_value << "\"}" << std::endl;
  return Status::Ok();
}

Status Client(const Args& args) {
  PPML_ASSIGN_OR_RETURN(Bytes pk, args.Hex("pk"));
  PPML_ASSIGN_OR_RETURN(std::string request_path, args.One("request"));
  PPML_ASSIGN_OR_RETURN(std::string body_out, args.One("body-out"));
  PPML_ASSIGN_OR_RETURN(std::string reply_body_path, args.One("reply-body"));
  PPML_ASSIGN_OR_RETURN(std::string reply_plaintext_out, args.One("reply-plaintext-out"));
  PPML_ASSIGN_OR_RETURN(size_t chunk_size, args.Size("chunk-size", ehbp::kDefaultChunkSize));
  PPML_ASSIGN_OR_RETURN(Bytes request, ReadFile(request_path));

  PPML_ASSIGN_OR_RETURN(ehbp::EncryptedRequest encrypted, ehbp::EncryptRequest(pk, request, chunk_size));
  PPML_RETURN_IF_ERROR(WriteFile(body_out, encrypted.body));
  std::cout << "{\"enc\":\"" << encrypted.encapsulated_key_header_value << "\"}" << std::endl;

  // The sender context lives in this process: wait for the peer's reply.
  std::string nonce_header;
  if (!std::getline(std::cin, nonce_header)) {
    return Status::InvalidArgument("stdin closed before the Ehbp-Response-Nonce line");
  }
  PPML_ASSIGN_OR_RETURN(Bytes reply_body, ReadFile(reply_body_path));
  PPML_ASSIGN_OR_RETURN(Bytes reply,
                        ehbp::DecryptResponse(encrypted.client_state, nonce_header, reply_body));
  PPML_RETURN_IF_ERROR(WriteFile(reply_plaintext_out, reply));
  std::cout << "{\"ok\":true}" << std::endl;
  return Status::Ok();
}

Status HpkeSeal(const Args& args) {
  PPML_ASSIGN_OR_RETURN(Bytes pk, args.Hex("pk"));
  PPML_ASSIGN_OR_RETURN(Bytes info, args.Hex("info"));
  PPML_ASSIGN_OR_RETURN(Bytes aad, args.Hex("aad"));
  PPML_ASSIGN_OR_RETURN(hpke::Aead aead, ParseAead(args));
  PPML_ASSIGN_OR_RETURN(hpke::SenderSetup setup, hpke::SetupBaseS(pk, info, aead));
  std::vector<Bytes> cts;
  for (const std::string& hex : args.All("pt")) {
    PPML_ASSIGN_OR_RETURN(Bytes pt, crypto::FromHex(hex));
    PPML_ASSIGN_OR_RETURN(Bytes ct, setup.context.Seal(aad, pt));
    cts.push_back(std::move(ct));
  }
  PPML_ASSIGN_OR_RETURN(std::string exported, MaybeExport(args, setup.context));
  std::cout << "{\"enc\":\"" << crypto::ToHex(setup.enc) << "\",\"ct\":" << JsonHexArray(cts) << ",\"export\":\""
            << exported << "\"}" << std::endl;
  return Status::Ok();
}

Status HpkeOpen(const Args& args) {
  PPML_ASSIGN_OR_RETURN(Bytes sk, args.Hex("sk"));
  PPML_ASSIGN_OR_RETURN(Bytes enc, args.Hex("enc"));
  PPML_ASSIGN_OR_RETURN(Bytes info, args.Hex("info"));
  PPML_ASSIGN_OR_RETURN(Bytes aad, args.Hex("aad"));
  PPML_ASSIGN_OR_RETURN(hpke::Aead aead, ParseAead(args));
  PPML_ASSIGN_OR_RETURN(hpke::ReceiverContext context, hpke::SetupBaseR(enc, sk, info, aead));
  std::vector<Bytes> pts;
  for (const std::string& hex : args.All("ct")) {
    PPML_ASSIGN_OR_RETURN(Bytes ct, crypto::FromHex(hex));
    PPML_ASSIGN_OR_RETURN(Bytes pt, context.Open(aad, ct));
    pts.push_back(std::move(pt));
  }
  PPML_ASSIGN_OR_RETURN(std::string exported, MaybeExport(args, context));
  std::cout << "{\"pt\":" << JsonHexArray(pts) << ",\"export\":\"" << exported << "\"}" << std::endl;
  return Status::Ok();
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: ehbp_interop_peer keygen|public-key|server|client|hpke-seal|hpke-open --flag VALUE ...\n"
                 "(see tests/interop/ehbp_peer.cc)\n";
    return 2;
  }
  std::string_view command = argv[1];
  auto args = Args::Parse(argc, argv, 2);
  if (!args.ok()) {
    std::cerr << "error: " << args.status().ToString() << "\n";
    return 2;
  }
  Status status;
  if (command == "keygen") {
    status = Keygen();
  } else if (command == "public-key") {
    status = PublicKey(*args);
  } else if (command == "server") {
    status = Server(*args);
  } else if (command == "client") {
    status = Client(*args);
  } else if (command == "hpke-seal") {
    status = HpkeSeal(*args);
  } else if (command == "hpke-open") {
    status = HpkeOpen(*args);
  } else {
    std::cerr << "error: unknown command '" << command << "'\n";
    return 2;
  }
  if (!status.ok()) {
    std::cerr << "error: " << status.ToString() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace ppml

int main(int argc, char** argv) { return ppml::Main(argc, argv); }
