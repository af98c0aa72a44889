//===- program_loader_fuzz.cpp - libFuzzer target for the loader ----------===//
//
// Feeds arbitrary bytes to loadProgramFromBuffer. The input's checksum is
// rewritten first, so the parser and verifier behind it see every mutation
// (the checksum itself is tested by ProgramFile.EveryByteFlipIsCaught).
// Programs that load are verified by construction; small ones are also
// evaluated on a few tokens, so that "verified" means "safe to run".
//
//   incnn-program-loader-fuzz runtime/fuzz/corpus/program_loader \
//       -max_total_time=600
//
//===----------------------------------------------------------------------===//

#include "incnn/runtime/Program.h"
#include "incnn/runtime/Runtime.h"

#include "Checksum.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

using namespace incnn::runtime;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  if (size >= kProgramHeaderSize) {
    uint64_t sum = programChecksum(bytes.data(), size);
    std::memcpy(bytes.data() + kChecksumOffset, &sum, 8);
  }
  Program program;
  if (!loadProgramFromBuffer(bytes.data(), size, program).ok())
    return 0;
  // Keep evaluation cheap: bound the activation memory.
  int64_t floatsPerToken = 0;
  for (const ValueInfo &v : program.values)
    floatsPerToken += v.width;
  if (floatsPerToken > (1 << 16))
    return 0;
  Evaluator evaluator(program, EvaluatorOptions{1});
  std::vector<int32_t> tokens;
  for (int32_t i = 0; i < 3 && i < program.maxPositions; ++i)
    tokens.push_back(i % program.vocabSize);
  (void)evaluator.evaluate(tokens);
  return 0;
}
