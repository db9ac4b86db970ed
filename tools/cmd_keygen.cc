// ppml keygen platform --out-dir DIR [--force]
//
// Creates the simulated platform's secrets (enclave_sim/attestation.h), the
// stand-ins for what SGX hardware holds:
//
//   platform.key.pem  ECDSA P-256 quoting key (PKCS#8 PEM, mode 0600)
//   platform.pub.pem  its public key: clients and model owners pin it
//   platform.secret   32 random bytes, the sealing root (SGX: EGETKEY), mode 0600
//
// Existing files are never replaced without --force: a new platform key
// invalidates every pinned key, and a new secret every sealed blob.
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common/crypto.h"
#include "enclave_sim/attestation.h"
#include "enclave_sim/enclave.h"
#include "tools/cli_support.h"
#include "tools/commands.h"

namespace ppml::tools {
namespace {

constexpr std::string_view kCommand = "keygen platform";

struct KeygenOptions {
  std::string out_dir;
  bool force = false;
};

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};

// A fresh platform secret in a file that is mode 0600 from its creation on
// (never briefly readable by others), also when --force replaces one.
Status WritePlatformSecret(const std::string& path) {
  crypto::SecretBytes secret(enclave::kPlatformSecretLength);
  PPML_RETURN_IF_ERROR(crypto::FillRandom(secret.mutable_span()));
  std::error_code ignored;
  std::filesystem::remove(path, ignored);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, S_IRUSR | S_IWUSR);
  if (fd < 0) return Status::IoError("cannot create " + path + ": " + std::strerror(errno));
  std::unique_ptr<std::FILE, FileCloser> file(::fdopen(fd, "wb"));
  if (!file) {
    ::close(fd);
    return Status::IoError("cannot open " + path + ": " + std::strerror(errno));
  }
  if (std::fwrite(secret.data(), 1, secret.size(), file.get()) != secret.size() || std::fflush(file.get()) != 0) {
    return Status::IoError("cannot write " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

int RunKeygenPlatform(const KeygenOptions& o) {
  const std::filesystem::path dir(o.out_dir);
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) return ReportError(kCommand, "cannot create " + o.out_dir + ": " + error.message(), kExitFailure);
  const std::string key_path = (dir / enclave::kPlatformKeyFile).string();
  const std::string public_path = (dir / enclave::kPlatformPublicKeyFile).string();
  const std::string secret_path = (dir / enclave::kPlatformSecretFile).string();
  if (!o.force) {
    std::vector<std::string> existing;
    for (const std::string& path : {key_path, public_path, secret_path}) {
      if (std::filesystem::exists(std::filesystem::symlink_status(path))) existing.push_back(path);
    }
    if (!existing.empty()) {
      std::string names;
      for (const std::string& path : existing) {
        if (!names.empty()) names += ", ";
        names += path;
      }
      return ReportError(kCommand,
                         names + " already exist" + (existing.size() == 1 ? "s" : "") +
                             "; replacing a platform key breaks every client that pinned it and a new secret "
                             "every sealed blob: pass --force to replace them anyway",
                         kExitFailure);
    }
  }

  Result<crypto::EvpPkeyPtr> key = enclave::GeneratePlatformKey();
  if (!key.ok()) return ReportError(kCommand, key.status().message(), kExitFailure);
  Status status = enclave::SavePlatformPrivateKeyPem(key->get(), key_path);
  if (status.ok()) status = enclave::SavePlatformPublicKeyPem(key->get(), public_path);
  if (status.ok()) status = WritePlatformSecret(secret_path);
  if (!status.ok()) return ReportError(kCommand, status.message(), kExitFailure);
  std::cout << "wrote " << key_path << " (ECDSA P-256 quoting key, mode 0600)\n"
            << "wrote " << public_path << " (its public key: clients and model owners pin it)\n"
            << "wrote " << secret_path << " (32-byte sealing root, mode 0600)" << std::endl;
  return kExitOk;
}

}  // namespace

void AddKeygenCommands(CLI::App& app, int* exit_code) {
  CLI::App* keygen = app.add_subcommand("keygen", "Key generation: platform");
  keygen->require_subcommand(1);
  auto o = std::make_shared<KeygenOptions>();
  CLI::App* platform =
      keygen->add_subcommand("platform", "The simulated platform's quoting key pair and sealing secret");
  platform->add_option("--out-dir", o->out_dir, "folder for platform.key.pem, platform.pub.pem, platform.secret")
      ->required();
  platform->add_flag("--force", o->force, "replace existing files");
  platform->callback([o, exit_code] { *exit_code = RunKeygenPlatform(*o); });
}

}  // namespace ppml::tools
