// The flags the oneDNN micro-benchmarks share: --threads, --batch, --seconds.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace ppml::bench {

struct BenchFlags {
  int threads = 2;
  int64_t batch = 16;
  double seconds = 1.0;
};

// Parses argv into `flags`; false (after saying why on stderr) on an unknown
// flag or a value that is not positive.
inline bool ParseBenchFlags(int argc, char** argv, const char* program, BenchFlags* flags) {
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s: %s needs a value\n", program, flag.c_str());
      return false;
    }
    if (flag == "--threads") flags->threads = std::atoi(argv[i + 1]);
    else if (flag == "--batch") flags->batch = std::atoll(argv[i + 1]);
    else if (flag == "--seconds") flags->seconds = std::atof(argv[i + 1]);
    else {
      std::fprintf(stderr, "%s: unknown flag %s (use --threads, --batch, --seconds)\n", program, flag.c_str());
      return false;
    }
  }
  if (flags->threads < 1 || flags->batch < 1 || flags->seconds <= 0) {
    std::fprintf(stderr, "%s: --threads, --batch and --seconds must be positive\n", program);
    return false;
  }
  return true;
}

}  // namespace ppml::bench
