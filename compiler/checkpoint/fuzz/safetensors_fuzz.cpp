//===- safetensors_fuzz.cpp - libFuzzer target for the checkpoint readers -===//
//
// Feeds arbitrary bytes to the safetensors parser and the config parser;
// both must return an error or succeed, never crash or read out of bounds.
//
//===----------------------------------------------------------------------===//
#include "Checkpoint.h"

#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  incnn::checkpoint::SafetensorsFile file;
  if (file.parse(data, size).empty()) {
    std::vector<float> values;
    for (const auto &[name, info] : file.tensors())
      (void)file.readFloat32(name, values);
  }
  incnn::checkpoint::ModelConfig config;
  (void)incnn::checkpoint::parseConfig(
      std::string(reinterpret_cast<const char *>(data), size), config);
  return 0;
}
