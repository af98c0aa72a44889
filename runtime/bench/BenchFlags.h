//===- BenchFlags.h - command lines of the standalone kernel benches ------===//
//
// `--name N` integer flags, `--name` switches, `--isa avx2|avx512` (the exact
// kernels' table) and bare integers, as the attention and linear benches take
// them.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_BENCH_BENCHFLAGS_H
#define INCNN_RUNTIME_BENCH_BENCHFLAGS_H

#include "ExactAttention.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace incnn::runtime::bench {

struct BenchFlags {
  std::map<std::string, int64_t *> values; ///< "--name" -> its integer
  std::map<std::string, bool *> switches;  ///< "--name" -> set when given
  std::vector<int64_t> positional;         ///< bare integers, in order

  /// False (after a message) on an unavailable ISA.
  bool parse(int argc, char **argv) {
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      const char *next = i + 1 < argc ? argv[i + 1] : "0";
      if (auto it = values.find(arg); it != values.end()) {
        *it->second = std::atoll(next);
        ++i;
      } else if (auto sw = switches.find(arg); sw != switches.end()) {
        *sw->second = true;
      } else if (arg == "--isa") {
        ++i;
        if (!exact::setKernelIsa(next)) {
          std::fprintf(stderr, "ISA %s is not available\n", next);
          return false;
        }
      } else {
        positional.push_back(std::atoll(argv[i]));
      }
    }
    return true;
  }
};

} // namespace incnn::runtime::bench

#endif // INCNN_RUNTIME_BENCH_BENCHFLAGS_H
