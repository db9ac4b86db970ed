// docker/: the Dockerfile, compose.yaml, setup.sh and the services' configs,
// kept in step with the tree and with `ppml serve` without Docker (which the
// build machines may not have):
//
//   - the Dockerfile's stages: bases, the install and build scripts, every
//     COPY source in the tree (or a binary the build makes), the host's build/
//     kept out of the context, the runtime packages covering every library
//     the three binaries link (ldd + dpkg -S);
//   - compose.yaml, alone and with compose.outsource.yaml on top (the
//     accelerator): every command is one an image holds (our binaries,
//     redis-server, setup.sh), every path it names is in the image (and so in
//     the tree) or in the shared volume; builds, volumes, start order; as many
//     workers as the quickstart runs;
//   - docker/frontend.yaml, docker/worker.yaml and worker-outsource.yaml load
//     with the services' own loaders and carry the quickstart's settings; the
//     two worker configs differ only in enclave.outsource, whose mode is the
//     one setup.sh provisions with;
//   - the stack as compose runs it, minus containers: setup.sh into a
//     folder standing for the volume (twice: the second run keeps
//     everything), redis-server with compose's arguments, ppml-frontend and
//     two ppml-workers (and ppml-accel) with compose's commands and configs
//     (only hosts, ports and the volume's path changed), then `ppml attest`
//     and `ppml infer` with the CA and platform key from the volume; with
//     the accelerator, its metrics show the layers it computed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/dataset.h"
#include "common/file_io.h"
#include "common/npy.h"
#include "common/process.h"
#include "frontend/config.h"
#include "queue/redis.h"
#include "queue/request_entry.h"
#include "tests/support/http_fetch.h"
#include "tests/support/metric_value.h"
#include "tests/support/run_to_end.h"
#include "worker/config.h"

namespace ppml {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kSource = PPML_SOURCE_DIR;
const std::string kBinDir = PPML_BIN_DIR;
constexpr std::string_view kVolume = "/var/lib/ppml";  // where compose mounts the shared volume
const std::set<std::string> kOurBinaries = {"ppml", "ppml-frontend", "ppml-worker", "ppml-accel"};

std::string TreePath(const std::string& relative) { return kSource + "/" + relative; }

std::string ReadText(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return text.ok() ? *text : "";
}

bool StartsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
bool InVolume(std::string_view path) { return path == kVolume || StartsWith(path, std::string(kVolume) + "/"); }

std::vector<std::string> Words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// ---- the Dockerfile -----------------------------------------------------------

struct Copy {
  std::string from;  // a stage name; empty: the build context (the repository root)
  std::vector<std::string> sources;
  std::string dest;
};

struct Stage {
  std::string name, base, workdir;
  std::vector<Copy> copies;
  std::vector<std::string> runs;
  std::vector<std::string> apt_packages;  // every `apt-get install` of its RUNs
  std::vector<std::string> path_dirs;     // ENV PATH
};

// Instructions with their continuation lines joined and comment lines dropped
// (Docker drops those inside a continuation too).
std::vector<std::string> DockerfileInstructions(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line, current;
  bool continued = false;
  while (std::getline(in, line)) {
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    std::string body = line;
    const bool continues = !body.empty() && body.back() == '\\';
    if (continues) body.pop_back();
    current = continued ? current + " " + body : body;
    continued = continues;
    if (!continued) out.push_back(current);
  }
  if (continued) out.push_back(current);
  return out;
}

std::vector<std::string> AptInstallPackages(const std::string& run) {
  std::vector<std::string> out;
  const std::vector<std::string> words = Words(run);
  for (size_t i = 0; i + 1 < words.size(); ++i) {
    if (words[i] != "apt-get" || words[i + 1] != "install") continue;
    for (size_t j = i + 2; j < words.size() && words[j] != "&&" && words[j] != ";"; ++j) {
      if (words[j][0] != '-') out.push_back(words[j]);
    }
  }
  return out;
}

std::vector<Stage> ParseDockerfile(const std::string& text) {
  std::vector<Stage> stages;
  for (const std::string& instruction : DockerfileInstructions(text)) {
    std::vector<std::string> words = Words(instruction);
    if (words.empty()) continue;
    std::string keyword = words[0];
    std::transform(keyword.begin(), keyword.end(), keyword.begin(), ::toupper);
    words.erase(words.begin());
    if (keyword == "FROM") {
      Stage stage;
      stage.base = words.at(0);
      if (words.size() >= 3) stage.name = words[2];
      stages.push_back(stage);
      continue;
    }
    if (stages.empty()) continue;  // ARG before FROM
    Stage& stage = stages.back();
    if (keyword == "WORKDIR") {
      stage.workdir = words.at(0);
    } else if (keyword == "RUN") {
      const std::string run = instruction.substr(instruction.find_first_not_of(" \t") + 3);
      stage.runs.push_back(run);
      for (const std::string& p : AptInstallPackages(run)) stage.apt_packages.push_back(p);
    } else if (keyword == "COPY") {
      Copy copy;
      std::vector<std::string> args;
      for (const std::string& w : words) {
        if (StartsWith(w, "--from=")) {
          copy.from = w.substr(7);
        } else if (!StartsWith(w, "--")) {
          args.push_back(w);
        }
      }
      EXPECT_GE(args.size(), 2u) << "COPY without a source and a destination: " << instruction;
      if (args.size() < 2) continue;
      copy.dest = args.back();
      args.pop_back();
      copy.sources = args;
      stage.copies.push_back(copy);
    } else if (keyword == "ENV") {
      for (const std::string& w : words) {
        if (!StartsWith(w, "PATH=")) continue;
        std::stringstream dirs(w.substr(5));
        for (std::string d; std::getline(dirs, d, ':');) stage.path_dirs.push_back(d);
      }
    }
  }
  return stages;
}

const Stage* FindStage(const std::vector<Stage>& stages, const std::string& name) {
  for (const Stage& s : stages) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::string StripSlash(std::string s) {
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

// What a path in a container of `stage` is, from its COPY instructions:
// a file of the tree ("tree:REL"), a binary the build stage makes
// ("built:NAME"), or nothing.
std::optional<std::string> ResolveInImage(const std::vector<Stage>& stages, const Stage& stage,
                                          const std::string& container_path) {
  for (const Copy& copy : stage.copies) {
    const bool dest_is_dir = copy.dest.back() == '/' || copy.sources.size() > 1;
    for (const std::string& source : copy.sources) {
      if (copy.from.empty()) {
        const std::string relative = StripSlash(source);
        const bool source_is_dir = fs::is_directory(TreePath(relative));
        if (source_is_dir) {
          // COPY dir/ dest/ copies the folder's contents.
          const std::string dest = StripSlash(copy.dest) + "/";
          if (StartsWith(container_path, dest)) return "tree:" + relative + "/" + container_path.substr(dest.size());
        } else {
          const std::string target =
              dest_is_dir ? StripSlash(copy.dest) + "/" + fs::path(relative).filename().string() : copy.dest;
          if (target == container_path) return "tree:" + relative;
        }
      } else {
        const Stage* from = FindStage(stages, copy.from);
        if (from == nullptr) continue;
        const std::string target =
            dest_is_dir ? StripSlash(copy.dest) + "/" + fs::path(source).filename().string() : copy.dest;
        if (target != container_path) continue;
        const std::string bin_prefix = StripSlash(from->workdir) + "/build/bin/";
        if (StartsWith(source, bin_prefix)) return "built:" + source.substr(bin_prefix.size());
        const std::string src_prefix = StripSlash(from->workdir) + "/";
        if (StartsWith(source, src_prefix)) return "tree:" + source.substr(src_prefix.size());
      }
    }
  }
  return std::nullopt;
}

struct Dockerfile {
  std::vector<Stage> stages;
  Dockerfile() { stages = ParseDockerfile(ReadText(TreePath("docker/Dockerfile"))); }
};

TEST(DockerfileTest, StagesBuildWithTheInstallAndBuildScripts) {
  const Dockerfile file;
  const Stage* build = FindStage(file.stages, "build");
  const Stage* runtime = FindStage(file.stages, "runtime");
  const Stage* redis = FindStage(file.stages, "redis");
  ASSERT_NE(build, nullptr);
  ASSERT_NE(runtime, nullptr);
  ASSERT_NE(redis, nullptr);
  EXPECT_EQ(build->base, "debian:bookworm");
  EXPECT_EQ(runtime->base, "debian:bookworm-slim");
  EXPECT_EQ(redis->base, "debian:bookworm-slim");
  EXPECT_EQ(file.stages.back().name, "runtime") << "docker build without --target must give the runtime image";
  EXPECT_FALSE(build->workdir.empty());

  std::string runs;
  for (const std::string& r : build->runs) runs += r + "\n";
  EXPECT_NE(runs.find("scripts/install-deps.sh"), std::string::npos);
  EXPECT_NE(runs.find("scripts/build.sh"), std::string::npos);
  EXPECT_NE(runs.find("Release"), std::string::npos);
  EXPECT_TRUE(std::find(redis->apt_packages.begin(), redis->apt_packages.end(), "redis-server") !=
              redis->apt_packages.end());
  EXPECT_TRUE(std::find(runtime->apt_packages.begin(), runtime->apt_packages.end(), "redis-server") ==
              runtime->apt_packages.end())
      << "redis-server has its own image";
}

TEST(DockerfileTest, EveryPathItNamesIsInTheTree) {
  const Dockerfile file;
  const std::regex tree_path(R"(^(scripts|docker|configs|models|tools|clients)/[A-Za-z0-9_.\-/]*$)");
  for (const Stage& stage : file.stages) {
    for (const std::string& run : stage.runs) {
      for (const std::string& word : Words(run)) {
        if (!std::regex_match(word, tree_path)) continue;
        EXPECT_TRUE(fs::exists(TreePath(word))) << "stage " << stage.name << " runs " << word << ": not in the tree";
        if (word.ends_with(".sh")) {
          EXPECT_NE(fs::status(TreePath(word)).permissions() & fs::perms::owner_exec, fs::perms::none)
              << word << " is run directly: it must be executable";
        }
      }
    }
    for (const Copy& copy : stage.copies) {
      for (const std::string& source : copy.sources) {
        if (copy.from.empty()) {
          EXPECT_TRUE(fs::exists(TreePath(StripSlash(source)))) << "stage " << stage.name << " copies " << source;
          continue;
        }
        const Stage* from = FindStage(file.stages, copy.from);
        ASSERT_NE(from, nullptr) << "COPY --from=" << copy.from << ": no such stage";
        const std::string bin_prefix = StripSlash(from->workdir) + "/build/bin/";
        const std::string src_prefix = StripSlash(from->workdir) + "/";
        if (StartsWith(source, bin_prefix)) {
          const std::string name = source.substr(bin_prefix.size());
          EXPECT_TRUE(kOurBinaries.count(name)) << source << " is not one of ppml, ppml-frontend, ppml-worker, ppml-accel";
          EXPECT_TRUE(fs::exists(kBinDir + "/" + name)) << "the build makes no " << name;
        } else {
          ASSERT_TRUE(StartsWith(source, src_prefix)) << source << " is outside the build stage's tree";
          EXPECT_TRUE(fs::exists(TreePath(source.substr(src_prefix.size())))) << source;
        }
      }
    }
  }
}

TEST(DockerfileTest, TheHostBuildFolderStaysOutOfTheContext) {
  // BuildKit reads <Dockerfile>.dockerignore; build.sh would reuse a copied build/build.ninja.
  const std::string ignore = ReadText(TreePath("docker/Dockerfile.dockerignore"));
  std::set<std::string> patterns;
  std::istringstream in(ignore);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') patterns.insert(StripSlash(line));
  }
  EXPECT_TRUE(patterns.count("build")) << ignore;
  EXPECT_TRUE(patterns.count(".git")) << ignore;
}

// "NAME" of each line "NAME:ARCH: /path" or "NAME: /path" of `dpkg -S`; empty when unknown.
std::string OwningPackage(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(("dpkg -S '" + path + "' 2>/dev/null").c_str(), "r"), pclose);
  if (!pipe) return "";
  char line[4096];
  if (fgets(line, sizeof(line), pipe.get()) == nullptr) return "";
  std::string text(line);
  const size_t colon = text.find(':');
  return colon == std::string::npos ? "" : text.substr(0, colon);
}

TEST(DockerfileTest, RuntimePackagesHoldEveryLinkedLibrary) {
  if (std::system("command -v ldd >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "needs ldd and dpkg (Debian)";
  }
  const Dockerfile file;
  const Stage* runtime = FindStage(file.stages, "runtime");
  ASSERT_NE(runtime, nullptr);
  const std::set<std::string> installed(runtime->apt_packages.begin(), runtime->apt_packages.end());
  std::set<std::string> needed;
  for (const std::string& binary : kOurBinaries) {
    const std::string command = "ldd '" + kBinDir + "/" + binary + "'";
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
    ASSERT_TRUE(pipe);
    char line[4096];
    while (fgets(line, sizeof(line), pipe.get()) != nullptr) {
      const std::vector<std::string> words = Words(line);
      // "libx.so.1 => /lib/x86_64-linux-gnu/libx.so.1 (0x...)"
      if (words.size() < 3 || words[1] != "=>" || words[2][0] != '/') continue;
      // A host with a CUDA compiler builds ppml-accel's CUDA backend; the
      // image's build stage has none, so its ppml-accel links no CUDA library.
      if (binary == "ppml-accel" && words[0].starts_with("libcu")) continue;
      std::string package = OwningPackage(fs::canonical(words[2]).string());
      if (package.empty()) package = OwningPackage(words[2]);
      EXPECT_FALSE(package.empty()) << binary << " links " << words[2] << ", which no Debian package holds";
      if (!package.empty()) needed.insert(package);
    }
  }
  EXPECT_FALSE(needed.empty());
  for (const std::string& package : needed) {
    if (package == "libc6") continue;  // every Debian image has it
    EXPECT_TRUE(installed.count(package)) << "the runtime stage does not install " << package
                                          << " (a library of ppml, ppml-worker, ppml-frontend or ppml-accel)";
  }
}

// ---- compose.yaml -------------------------------------------------------------

// `over` on top of `base` as `docker compose -f BASE -f OVER` merges them:
// maps key by key, anything else (a command, a list of ports) replaced.
YAML::Node Merge(const YAML::Node& base, const YAML::Node& over) {
  if (!base || !base.IsMap() || !over.IsMap()) return YAML::Clone(over);
  YAML::Node out = YAML::Clone(base);
  for (const auto& it : over) {
    const std::string key = it.first.as<std::string>();
    out[key] = Merge(base[key], it.second);
  }
  return out;
}

// The two ways the README runs the stack: compose.yaml alone (the
// quickstart), and with compose.outsource.yaml on top (the accelerator).
struct Variant {
  std::string name;
  std::string overlay;        // a file on top of docker/compose.yaml, or empty
  std::string worker_config;  // the tree file its workers run with
  std::string outsource;      // their enclave.outsource.mode
};
const Variant kQuickstart{"Quickstart", "", "docker/worker.yaml", "off"};
const Variant kOutsource{"Outsource", "docker/compose.outsource.yaml", "docker/worker-outsource.yaml", "integrity"};

struct Compose {
  explicit Compose(const Variant& variant = kQuickstart) {
    if (!variant.overlay.empty()) root = Merge(root, YAML::LoadFile(TreePath(variant.overlay)));
  }
  YAML::Node root = YAML::LoadFile(TreePath("docker/compose.yaml"));
  Dockerfile dockerfile;

  YAML::Node services() const { return root["services"]; }
  std::vector<std::string> command(const YAML::Node& service) const {
    return service["command"].as<std::vector<std::string>>();
  }
  const Stage* stage(const YAML::Node& service) const {
    return service["build"] ? FindStage(dockerfile.stages, service["build"]["target"].as<std::string>("")) : nullptr;
  }
  // The tree file behind a path in the service's image ("" when none).
  std::string TreeFileIn(const YAML::Node& service, const std::string& container_path) const {
    const Stage* s = stage(service);
    if (s == nullptr) return "";
    const std::optional<std::string> resolved = ResolveInImage(dockerfile.stages, *s, container_path);
    return resolved && StartsWith(*resolved, "tree:") ? resolved->substr(5) : "";
  }
  // The services running `program` (command[0]).
  std::vector<std::string> Running(const std::string& program) const {
    std::vector<std::string> out;
    for (const auto& it : services()) {
      if (command(it.second).at(0) == program) out.push_back(it.first.as<std::string>());
    }
    return out;
  }
  // The tree file given to --config in the one service running `program`.
  std::string ConfigOf(const std::string& program) const {
    const std::vector<std::string> names = Running(program);
    EXPECT_EQ(names.size(), 1u) << program;
    if (names.empty()) return "";
    const YAML::Node service = services()[names[0]];
    const std::vector<std::string> argv = command(service);
    const auto flag = std::find(argv.begin(), argv.end(), "--config");
    EXPECT_TRUE(flag != argv.end() && flag + 1 != argv.end()) << program << " has no --config";
    if (flag == argv.end() || flag + 1 == argv.end()) return "";
    return TreeFileIn(service, *(flag + 1));
  }
};

class ComposeTest : public ::testing::TestWithParam<Variant> {};
INSTANTIATE_TEST_SUITE_P(Docker, ComposeTest, ::testing::Values(kQuickstart, kOutsource),
                         [](const ::testing::TestParamInfo<Variant>& info) { return info.param.name; });

TEST_P(ComposeTest, ServicesBuildFromTheDockerfile) {
  const Compose compose(GetParam());
  ASSERT_TRUE(compose.services().IsMap());
  for (const char* name : {"setup", "redis", "frontend", "worker"}) {
    EXPECT_TRUE(compose.services()[name]) << "no service " << name;
  }
  for (const auto& it : compose.services()) {
    const std::string name = it.first.as<std::string>();
    const YAML::Node build = it.second["build"];
    ASSERT_TRUE(build && build.IsMap()) << name << ": every image is built here";
    const fs::path context = fs::path(kSource) / "docker" / build["context"].as<std::string>();
    EXPECT_TRUE(fs::equivalent(context, kSource)) << name << ": the context must be the repository root";
    EXPECT_EQ(build["dockerfile"].as<std::string>(""), "docker/Dockerfile") << name;
    EXPECT_NE(compose.stage(it.second), nullptr) << name << ": target " << build["target"].as<std::string>("")
                                                 << " is no stage of docker/Dockerfile";
    EXPECT_TRUE(it.second["image"]) << name << ": name the image, so that services share it";
  }
}

TEST_P(ComposeTest, EveryCommandIsInItsImage) {
  const Compose compose(GetParam());
  for (const auto& it : compose.services()) {
    const std::string name = it.first.as<std::string>();
    const YAML::Node service = it.second;
    ASSERT_TRUE(service["command"] && service["command"].IsSequence())
        << name << ": give the command as a list (no shell)";
    EXPECT_FALSE(service["entrypoint"]) << name;
    const Stage* stage = compose.stage(service);
    ASSERT_NE(stage, nullptr) << name;
    const std::vector<std::string> argv = compose.command(service);
    ASSERT_FALSE(argv.empty()) << name;
    const std::string& program = argv[0];
    if (program == "redis-server") {
      EXPECT_TRUE(std::find(stage->apt_packages.begin(), stage->apt_packages.end(), "redis-server") !=
                  stage->apt_packages.end())
          << name << ": stage " << stage->name << " does not install redis-server";
    } else if (kOurBinaries.count(program)) {
      // On PATH: copied from the build stage into a folder of ENV PATH.
      bool found = false;
      for (const std::string& dir : stage->path_dirs) {
        const std::optional<std::string> resolved =
            ResolveInImage(compose.dockerfile.stages, *stage, StripSlash(dir) + "/" + program);
        found = found || (resolved && *resolved == "built:" + program);
      }
      EXPECT_TRUE(found) << name << ": stage " << stage->name << " has no " << program << " on its PATH";
    } else {
      const std::string tree = compose.TreeFileIn(service, program);
      EXPECT_TRUE(StartsWith(tree, "docker/") && tree.ends_with(".sh"))
          << name << ": " << program << " is none of our binaries, redis-server or a docker/ script";
      if (!tree.empty()) {
        EXPECT_TRUE(fs::exists(TreePath(tree))) << tree;
        EXPECT_NE(fs::status(TreePath(tree)).permissions() & fs::perms::owner_exec, fs::perms::none)
            << tree << " is the command of " << name << ": it must be executable";
      }
    }
    // Every other absolute path: in the image (so in the tree), or in the volume.
    for (size_t i = 1; i < argv.size(); ++i) {
      if (argv[i].empty() || argv[i][0] != '/' || InVolume(argv[i])) continue;
      const std::string tree = compose.TreeFileIn(service, argv[i]);
      EXPECT_FALSE(tree.empty()) << name << ": " << argv[i] << " is not copied into image " << stage->name;
      if (!tree.empty()) {
        EXPECT_TRUE(fs::exists(TreePath(tree))) << name << ": " << tree;
      }
    }
  }
  EXPECT_EQ(compose.ConfigOf("ppml-frontend"), "docker/frontend.yaml");
  EXPECT_EQ(compose.ConfigOf("ppml-worker"), GetParam().worker_config);
}

TEST_P(ComposeTest, VolumeAndStartOrder) {
  const Compose compose(GetParam());
  EXPECT_TRUE(compose.root["volumes"] && compose.root["volumes"]["ppml-state"]);
  for (const auto& it : compose.services()) {
    const std::string name = it.first.as<std::string>();
    if (compose.command(it.second).at(0) == "ppml-accel") {
      // Untrusted: nothing in the volume is meant for it.
      EXPECT_FALSE(it.second["volumes"]) << name << ": the accelerator gets no volume";
      continue;
    }
    const bool setup = compose.command(it.second).at(0).ends_with("setup.sh");
    std::vector<std::string> volumes;
    if (it.second["volumes"]) volumes = it.second["volumes"].as<std::vector<std::string>>();
    const std::string mount = "ppml-state:" + std::string(kVolume);
    EXPECT_EQ(volumes, std::vector<std::string>{setup ? mount : mount + ":ro"})
        << name << ": setup writes the volume, the services only read it";
    if (setup) continue;
    const YAML::Node after = it.second["depends_on"]["setup"];
    EXPECT_TRUE(after) << name << " must start after setup";
    if (after) {
      EXPECT_EQ(after["condition"].as<std::string>(""), "service_completed_successfully") << name;
    }
  }
  for (const char* program : {"ppml-frontend", "ppml-worker"}) {
    for (const std::string& name : compose.Running(program)) {
      EXPECT_TRUE(compose.services()[name]["depends_on"]["redis"]) << name << " must start after redis";
    }
  }
  // The workers connect to the accelerator when they load the model.
  const std::vector<std::string> accelerators = compose.Running("ppml-accel");
  EXPECT_EQ(accelerators.size(), GetParam().outsource == "off" ? 0u : 1u);
  for (const std::string& accelerator : accelerators) {
    for (const std::string& name : compose.Running("ppml-worker")) {
      EXPECT_TRUE(compose.services()[name]["depends_on"][accelerator]) << name << " must start after " << accelerator;
    }
  }
  EXPECT_EQ(compose.Running("/opt/ppml/docker/setup.sh").size(), 1u);
  EXPECT_EQ(compose.Running("redis-server").size(), 1u);
}

// ---- the configs ----------------------------------------------------------------

// Every scalar under `node` as "a.b[0].c" -> value.
void Leaves(const YAML::Node& node, const std::string& prefix, std::map<std::string, std::string>* out) {
  if (node.IsMap()) {
    for (const auto& it : node) Leaves(it.second, (prefix.empty() ? "" : prefix + ".") + it.first.as<std::string>(), out);
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) Leaves(node[i], prefix + "[" + std::to_string(i) + "]", out);
  } else if (node.IsScalar()) {
    (*out)[prefix] = node.Scalar();
  }
}

// The file's text with redis.password_file pointing at a file that exists
// (the loaders read it); the other paths need not exist to parse.
std::string WithPasswordFile(const std::string& relative, const TempDir& dir) {
  YAML::Node root = YAML::LoadFile(TreePath(relative));
  EXPECT_TRUE(InVolume(root["redis"]["password_file"].as<std::string>(""))) << relative;
  EXPECT_TRUE(WriteFile(dir.File("password"), "secret\n").ok());
  root["redis"]["password_file"] = dir.File("password");
  YAML::Emitter out;
  out << root;
  return out.c_str();
}

// The quickstart's settings under `sections`, but for `except` (key prefixes),
// are in `config` with the same values.
void ExpectQuickstartSettings(const std::string& config, const std::vector<std::string>& sections,
                              const std::vector<std::string>& except) {
  const YAML::Node quickstart = YAML::LoadFile(TreePath("configs/quickstart.yaml"));
  std::map<std::string, std::string> ours;
  Leaves(YAML::LoadFile(TreePath(config)), "", &ours);
  for (const std::string& section : sections) {
    std::map<std::string, std::string> theirs;
    Leaves(quickstart[section], section, &theirs);
    for (const auto& [key, value] : theirs) {
      if (std::any_of(except.begin(), except.end(), [&](const std::string& e) { return StartsWith(key, e); })) continue;
      EXPECT_EQ(ours.count(key) ? ours[key] : "(missing)", value) << config << ": " << key
                                                                  << " differs from configs/quickstart.yaml";
    }
  }
}

// The outsourcing mode the setup service provisions the enclave with
// (PPML_OUTSOURCE, setup.sh's default "off").
std::string ProvisionedOutsource(const Compose& compose) {
  const YAML::Node environment = compose.services()[compose.Running("/opt/ppml/docker/setup.sh").at(0)]["environment"];
  return environment && environment["PPML_OUTSOURCE"] ? environment["PPML_OUTSOURCE"].as<std::string>() : "off";
}

// The port of ppml-accel's --listen HOST:PORT in `service`'s command.
std::string ListenPort(const std::vector<std::string>& argv) {
  const auto flag = std::find(argv.begin(), argv.end(), "--listen");
  if (flag == argv.end() || flag + 1 == argv.end()) return "";
  return flag[1].substr(flag[1].rfind(':') + 1);
}

TEST(DockerConfigsTest, FrontendConfigLoadsAndMatchesTheQuickstart) {
  const Compose compose;
  const std::string file = compose.ConfigOf("ppml-frontend");
  ASSERT_FALSE(file.empty());
  TempDir dir("ppml-docker-test");
  auto config = frontend::ParseFrontendConfig(WithPasswordFile(file, dir), TreePath(file));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const YAML::Node quickstart = YAML::LoadFile(TreePath("configs/quickstart.yaml"));
  EXPECT_EQ(config->models, std::vector<std::string>{quickstart["model"]["name"].as<std::string>()});
  EXPECT_TRUE(config->tls.enabled);
  EXPECT_EQ(config->host, "0.0.0.0") << "reachable through the published port";
  EXPECT_TRUE(config->redis.tls);
  EXPECT_EQ(config->redis.host, "redis") << "the compose service";
  EXPECT_FALSE(config->redis.tls_options.cert_file.empty()) << "redis runs with tls-auth-clients yes";
  for (const std::string& path : {config->tls.cert_file, config->tls.key_file, config->redis.tls_options.ca_file,
                                  config->redis.tls_options.cert_file, config->redis.tls_options.key_file}) {
    EXPECT_TRUE(InVolume(path)) << path;
  }
  ExpectQuickstartSettings(file, {"frontend", "security"}, {"frontend.listen"});

  // Published on the port it listens on.
  const YAML::Node service = compose.services()[compose.Running("ppml-frontend").at(0)];
  bool published = false;
  for (const auto& port : service["ports"]) {
    const std::string text = port.as<std::string>();
    published = published || text.substr(text.rfind(':') + 1) == std::to_string(config->port);
  }
  EXPECT_TRUE(published) << "compose publishes no port " << config->port;
}

class DockerWorkerConfigTest : public ::testing::TestWithParam<Variant> {};
INSTANTIATE_TEST_SUITE_P(Docker, DockerWorkerConfigTest, ::testing::Values(kQuickstart, kOutsource),
                         [](const ::testing::TestParamInfo<Variant>& info) { return info.param.name; });

TEST_P(DockerWorkerConfigTest, LoadsAndMatchesTheQuickstart) {
  const Compose compose(GetParam());
  const std::string file = compose.ConfigOf("ppml-worker");
  ASSERT_FALSE(file.empty());
  TempDir dir("ppml-docker-test");
  auto config = worker::ParseWorkerConfig(WithPasswordFile(file, dir), TreePath(file));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const YAML::Node quickstart = YAML::LoadFile(TreePath("configs/quickstart.yaml"));
  EXPECT_EQ(config->model_name, quickstart["model"]["name"].as<std::string>());
  EXPECT_EQ(config->precision, quickstart["model"]["precision"].as<std::string>("fp32"));
  EXPECT_EQ(config->backend, worker::Backend::kEnclave);
  EXPECT_TRUE(config->redis.tls);
  EXPECT_EQ(config->redis.host, "redis") << "the compose service";
  EXPECT_FALSE(config->redis.tls_options.cert_file.empty()) << "redis runs with tls-auth-clients yes";
  for (const std::string& path : {config->package, config->enclave.platform_dir, config->enclave.sealed_keys,
                                  config->redis.tls_options.ca_file, config->redis.tls_options.cert_file,
                                  config->redis.tls_options.key_file}) {
    EXPECT_TRUE(InVolume(path)) << path;
  }
  ExpectQuickstartSettings(file, {"worker", "enclave"}, {});

  // Outsourcing: the mode setup.sh provisions with (it is measured) and the
  // accelerator service; everything else as in docker/worker.yaml.
  EXPECT_EQ(config->enclave.outsource.mode, GetParam().outsource);
  EXPECT_EQ(ProvisionedOutsource(compose), GetParam().outsource);
  const std::vector<std::string> accelerators = compose.Running("ppml-accel");
  if (!accelerators.empty()) {
    const std::string port = ListenPort(compose.command(compose.services()[accelerators[0]]));
    EXPECT_EQ(config->enclave.outsource.accelerator, accelerators[0] + ":" + port);
  }
  std::map<std::string, std::string> ours, quickstart_worker;
  Leaves(YAML::LoadFile(TreePath(file)), "", &ours);
  Leaves(YAML::LoadFile(TreePath(kQuickstart.worker_config)), "", &quickstart_worker);
  std::erase_if(ours, [](const auto& leaf) { return StartsWith(leaf.first, "enclave.outsource."); });
  EXPECT_EQ(ours, quickstart_worker) << file << " and " << kQuickstart.worker_config
                                     << " differ in more than enclave.outsource";

  // As many workers as the quickstart's serve.workers.
  int replicas = 0;
  for (const std::string& name : compose.Running("ppml-worker")) {
    const YAML::Node deploy = compose.services()[name]["deploy"];
    replicas += deploy && deploy["replicas"] ? deploy["replicas"].as<int>() : 1;
  }
  EXPECT_EQ(replicas, quickstart["serve"]["workers"].as<int>(2));
}

TEST(DockerConfigsTest, SetupSealsTheQuickstartModel) {
  // setup.sh's defaults: the volume, the quickstart's model file as the image holds it, its name.
  const Compose compose;
  const std::string script = ReadText(TreePath("docker/setup.sh"));
  auto default_of = [&](const std::string& variable) {
    std::smatch m;
    const std::regex pattern("\\$\\{" + variable + ":-([^}]*)\\}");
    return std::regex_search(script, m, pattern) ? m[1].str() : std::string("(none)");
  };
  const YAML::Node quickstart = YAML::LoadFile(TreePath("configs/quickstart.yaml"));
  EXPECT_EQ(default_of("PPML_STATE"), kVolume);
  EXPECT_EQ(default_of("PPML_MODEL_NAME"), quickstart["model"]["name"].as<std::string>());
  const std::vector<std::string> setups = compose.Running("/opt/ppml/docker/setup.sh");
  ASSERT_EQ(setups.size(), 1u);
  const std::string onnx = compose.TreeFileIn(compose.services()[setups[0]], default_of("PPML_MODEL_ONNX"));
  const fs::path quickstart_onnx = fs::path(TreePath("configs")) / quickstart["model"]["onnx"].as<std::string>();
  ASSERT_FALSE(onnx.empty()) << default_of("PPML_MODEL_ONNX") << " is not in the image";
  EXPECT_TRUE(fs::equivalent(TreePath(onnx), quickstart_onnx)) << onnx;
}

// ---- the stack, as compose runs it -----------------------------------------------

// `s` with the volume's path replaced by `state`.
std::string InState(const std::string& s, const std::string& state) {
  return InVolume(s) ? state + s.substr(kVolume.size()) : s;
}

void ReplaceVolumePaths(YAML::Node node, const std::string& state) {
  if (node.IsMap()) {
    for (auto it : node) ReplaceVolumePaths(it.second, state);
  } else if (node.IsSequence()) {
    for (auto item : node) ReplaceVolumePaths(item, state);
  } else if (node.IsScalar() && InVolume(node.Scalar())) {
    node = InState(node.Scalar(), state);
  }
}

std::string Emit(const YAML::Node& node) {
  YAML::Emitter out;
  out << node;
  return std::string(out.c_str()) + "\n";
}

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < give_up) {
    if (done()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return done();
}

std::string LogOf(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  return text.ok() ? *text : "";
}

// Runs `argv` to its end with a fresh `log`; its exit status (-1: did not end in time).
int RunFresh(std::vector<std::string> argv, const std::string& log, std::vector<std::string> env = {}) {
  std::error_code ignored;
  fs::remove(log, ignored);
  return ppml::testing::RunToEnd(std::move(argv), log, std::chrono::minutes(3), std::move(env));
}

// The last line of `log` that starts with '{' (a --json command's result).
std::string LastJsonLine(const std::string& log) {
  std::istringstream in(LogOf(log));
  std::string last;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] == '{') last = line;
  }
  return last;
}

std::string JsonString(const std::string& json, const std::string& key) {
  const std::string marker = "\"" + key + "\":\"";
  const size_t at = json.find(marker);
  if (at == std::string::npos) return "";
  const size_t start = at + marker.size();
  return json.substr(start, json.find('"', start) - start);
}

class DockerStackTest : public ::testing::TestWithParam<Variant> {};
INSTANTIATE_TEST_SUITE_P(Docker, DockerStackTest, ::testing::Values(kQuickstart, kOutsource),
                         [](const ::testing::TestParamInfo<Variant>& info) { return info.param.name; });

TEST_P(DockerStackTest, RunsAsComposeRunsIt) {
  const Compose compose(GetParam());
  TempDir dir("ppml-docker-stack");
  ASSERT_TRUE(dir.ok());
  const std::string state = dir.File("volume");
  const std::string path_env = "PATH=" + kBinDir + ":" + (std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin");

  // setup: its command, with the volume and the model where this machine has them.
  const std::string setup_service = compose.Running("/opt/ppml/docker/setup.sh").at(0);
  const std::string setup_script = TreePath(compose.TreeFileIn(compose.services()[setup_service], "/opt/ppml/docker/setup.sh"));
  const std::vector<std::string> setup_env = {path_env, "PPML_STATE=" + state,
                                              "PPML_MODEL_ONNX=" + TreePath("models/fashion_cnn.onnx"),
                                              "PPML_OUTSOURCE=" + ProvisionedOutsource(compose)};
  ASSERT_EQ(RunFresh({setup_script}, dir.File("setup.log"), setup_env), 0) << LogOf(dir.File("setup.log"));

  // Every volume path that compose and the configs name is there.
  std::vector<std::string> volume_paths;
  for (const auto& it : compose.services()) {
    for (const std::string& arg : compose.command(it.second)) {
      if (InVolume(arg)) volume_paths.push_back(arg);
    }
  }
  for (const std::string& config : {compose.ConfigOf("ppml-frontend"), compose.ConfigOf("ppml-worker")}) {
    std::map<std::string, std::string> leaves;
    Leaves(YAML::LoadFile(TreePath(config)), "", &leaves);
    for (const auto& [key, value] : leaves) {
      if (InVolume(value)) volume_paths.push_back(value);
    }
  }
  EXPECT_GE(volume_paths.size(), 10u);
  for (const std::string& path : volume_paths) {
    EXPECT_TRUE(fs::exists(InState(path, state))) << "setup.sh does not make " << path;
  }

  // A second `compose up` keeps the keys, the sealed model and the certificates.
  std::map<std::string, std::string> before;
  for (const auto& entry : fs::recursive_directory_iterator(state)) {
    if (entry.is_regular_file()) before[entry.path().string()] = LogOf(entry.path().string());
  }
  ASSERT_EQ(RunFresh({setup_script}, dir.File("setup2.log"), setup_env), 0) << LogOf(dir.File("setup2.log"));
  for (const auto& [path, content] : before) {
    EXPECT_EQ(LogOf(path), content) << path << " changed on the second run";
  }

  // redis: compose's arguments, on a free port of 127.0.0.1.
  const std::string redis_service = compose.Running("redis-server").at(0);
  Result<uint16_t> redis_port = PickFreePort();
  ASSERT_TRUE(redis_port.ok());
  std::vector<std::string> redis_argv;
  std::string container_port;
  const std::vector<std::string> redis_command = compose.command(compose.services()[redis_service]);
  for (size_t i = 0; i < redis_command.size(); ++i) {
    if (i > 0 && redis_command[i - 1] == "--tls-port") {
      container_port = redis_command[i];
      redis_argv.push_back(std::to_string(*redis_port));
    } else {
      redis_argv.push_back(InState(redis_command[i], state));
    }
  }
  for (const char* arg : {"--bind", "127.0.0.1", "--dir", dir.path().c_str()}) redis_argv.push_back(arg);
  ProcessOptions redis_options;
  redis_options.argv = redis_argv;
  redis_options.log_file = dir.File("redis.log");
  Result<ChildProcess> redis = ChildProcess::Start(std::move(redis_options));
  ASSERT_TRUE(redis.ok()) << redis.status().ToString();

  // The accelerator, when the variant has one: compose's command, listening
  // on a port of 127.0.0.1 the kernel picks, its metrics on a free one.
  std::string accelerator_in_compose, accelerator_here;
  std::optional<ChildProcess> accelerator;
  Result<uint16_t> accelerator_metrics_port = PickFreePort();
  ASSERT_TRUE(accelerator_metrics_port.ok());
  for (const std::string& service : compose.Running("ppml-accel")) {
    std::vector<std::string> argv = compose.command(compose.services()[service]);
    accelerator_in_compose = service + ":" + ListenPort(argv);
    argv[0] = kBinDir + "/" + argv[0];
    for (size_t i = 1; i < argv.size(); ++i) {
      if (argv[i - 1] == "--listen") argv[i] = "127.0.0.1:0";
      if (argv[i - 1] == "--metrics") argv[i] = "127.0.0.1:" + std::to_string(*accelerator_metrics_port);
    }
    ProcessOptions options;
    options.argv = argv;
    options.log_file = dir.File("accelerator.log");
    Result<ChildProcess> started = ChildProcess::Start(std::move(options));
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    accelerator = std::move(started).value();
    ASSERT_TRUE(WaitFor(
        [&] {
          const std::string log = LogOf(dir.File("accelerator.log"));
          const size_t at = log.find("ready: listen=");
          if (at == std::string::npos || log.find('\n', at) == std::string::npos) return false;
          accelerator_here = log.substr(at + 14, log.find('\n', at) - at - 14);
          return true;
        },
        20s))
        << LogOf(dir.File("accelerator.log"));
  }

  // The configs: the compose host names become 127.0.0.1 (TLS still checks the
  // name "redis"), listening ports are picked by the kernel.
  auto local_config = [&](const std::string& relative) {
    YAML::Node root = YAML::LoadFile(TreePath(relative));
    ReplaceVolumePaths(root, state);
    std::string url = root["redis"]["url"].as<std::string>();
    const std::string host_port = "redis:" + container_port;
    EXPECT_NE(url.find(host_port), std::string::npos) << relative << ": " << url;
    url.replace(url.find(host_port), host_port.size(), "127.0.0.1:" + std::to_string(*redis_port));
    root["redis"]["url"] = url;
    root["redis"]["tls"]["server_name"] = "redis";
    if (root["frontend"]) root["frontend"]["listen"] = YAML::Load("{host: 127.0.0.1, port: 0}");
    if (root["worker"]) root["worker"]["metrics"] = YAML::Load("{host: 127.0.0.1, port: 0}");
    if (root["enclave"] && root["enclave"]["outsource"]["accelerator"]) {
      EXPECT_EQ(root["enclave"]["outsource"]["accelerator"].as<std::string>(), accelerator_in_compose);
      root["enclave"]["outsource"]["accelerator"] = accelerator_here;
    }
    const std::string path = dir.File(fs::path(relative).filename().string());
    EXPECT_TRUE(WriteFile(path, Emit(root)).ok());
    return path;
  };
  const std::string frontend_config = local_config(compose.ConfigOf("ppml-frontend"));
  const std::string worker_config = local_config(compose.ConfigOf("ppml-worker"));

  // Redis answers our client as the services will reach it: TLS, client certificate, user ppml.
  auto worker_settings = worker::LoadWorkerConfig(worker_config);
  ASSERT_TRUE(worker_settings.ok()) << worker_settings.status().ToString();
  queue::RedisClient client(worker_settings->redis);
  ASSERT_TRUE(WaitFor([&] { return client.Command({"PING"}).ok(); }, 10s)) << LogOf(dir.File("redis.log"));

  // The front-end and the workers: compose's commands with the local configs.
  std::vector<ChildProcess> services;
  std::vector<std::string> logs;
  auto start = [&](const std::string& service, const std::string& config, const std::string& log) {
    std::vector<std::string> argv = compose.command(compose.services()[service]);
    argv[0] = kBinDir + "/" + argv[0];
    const auto flag = std::find(argv.begin(), argv.end(), "--config");
    ASSERT_TRUE(flag != argv.end() && flag + 1 != argv.end());
    *(flag + 1) = config;
    ProcessOptions options;
    options.argv = argv;
    options.log_file = dir.File(log);
    Result<ChildProcess> process = ChildProcess::Start(std::move(options));
    ASSERT_TRUE(process.ok()) << process.status().ToString();
    services.push_back(std::move(process).value());
    logs.push_back(dir.File(log));
  };
  start(compose.Running("ppml-frontend").at(0), frontend_config, "frontend.log");
  const YAML::Node quickstart = YAML::LoadFile(TreePath("configs/quickstart.yaml"));
  const int workers = quickstart["serve"]["workers"].as<int>(2);
  for (int i = 1; i <= workers; ++i) {
    start(compose.Running("ppml-worker").at(0), worker_config, "worker-" + std::to_string(i) + ".log");
  }
  auto all_logs = [&] {
    std::string text;
    for (const std::string& log : logs) text += "---- " + log + "\n" + LogOf(log);
    return text;
  };

  std::string url;
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string log = LogOf(logs[0]);
        const size_t line = log.find("event=frontend_listening");
        if (line == std::string::npos) return false;
        const size_t at = log.find("url=", line) + 4;
        url = log.substr(at, log.find_first_of(" \n", at) - at);
        return true;
      },
      30s))
      << all_logs();
  const std::string model = quickstart["model"]["name"].as<std::string>();
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string since = std::to_string(queue::UnixNowMs() - queue::kHeartbeatTtlMs);
        Result<queue::RedisReply> live = client.Command({"ZCOUNT", queue::WorkersKey(model), since, "+inf"});
        return live.ok() && live->is_integer() && live->integer() >= workers;
      },
      60s))
      << all_logs();

  // The client's side, with the CA and the platform key from the volume.
  const std::vector<std::string> connect = {"--url", url, "--ca", InState(std::string(kVolume) + "/certs/ca.crt", state),
                                            "--platform-pubkey",
                                            InState(std::string(kVolume) + "/platform/platform.pub.pem", state),
                                            "--model", model};
  std::vector<std::string> attest = {kBinDir + "/ppml", "attest"};
  attest.insert(attest.end(), connect.begin(), connect.end());
  attest.push_back("--json");
  ASSERT_EQ(RunFresh(attest, dir.File("attest.log")), 0) << LogOf(dir.File("attest.log")) << all_logs();
  const std::string measurement = JsonString(LastJsonLine(dir.File("attest.log")), "measurement");
  ASSERT_EQ(measurement.size(), 64u) << LogOf(dir.File("attest.log"));

  auto images = LoadDataset("fashion-mnist:test:1");
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  ASSERT_TRUE(WriteNpyFile(dir.File("x.npy"), images->images).ok());
  std::vector<std::string> infer = {kBinDir + "/ppml", "infer"};
  infer.insert(infer.end(), connect.begin(), connect.end());
  for (const std::string& arg : {std::string("--measurement"), measurement, std::string("--input"), dir.File("x.npy"),
                                 std::string("--json")}) {
    infer.push_back(arg);
  }
  ASSERT_EQ(RunFresh(infer, dir.File("infer.log")), 0) << LogOf(dir.File("infer.log")) << all_logs();
  const std::string answer = LastJsonLine(dir.File("infer.log"));
  EXPECT_NE(answer.find("\"argmax\":[" + std::to_string(images->labels.at(0)) + "]"), std::string::npos) << answer;

  if (accelerator) {
    // The workers outsourced the request's layers: the accelerator computed some.
    const std::string metrics = ppml::testing::Fetch(*accelerator_metrics_port, "GET", "/metrics").body;
    EXPECT_GT(ppml::testing::MetricValue(metrics, "ppml_accel_requests_total{type=\"compute\"}"), 0) << metrics;
    services.push_back(std::move(*accelerator));
    logs.push_back(dir.File("accelerator.log"));
  }

  // docker compose stop: SIGTERM, and each exits 0.
  for (ChildProcess& service : services) service.Signal(SIGTERM);
  for (size_t i = 0; i < services.size(); ++i) {
    const std::optional<int> status = services[i].Stop(15s);
    ASSERT_TRUE(status.has_value()) << logs[i];
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << logs[i] << ": " << DescribeExit(*status);
  }
  redis->Stop();
}

}  // namespace
}  // namespace ppml
