//===- Checksum.h - program file integrity checksum --------------*- C++
//-*-===//
//
// A fast 64-bit checksum (four multiply-rotate lanes over 8-byte words, then
// an avalanche) that catches flipped or truncated bytes of a program file.
// It is not cryptographic: it guards against corruption, not tampering.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_CHECKSUM_H
#define INCNN_RUNTIME_CHECKSUM_H

#include <cstddef>
#include <cstdint>

namespace incnn::runtime {

/// Accumulates bytes in any chunking: the result depends only on the
/// concatenated bytes.
class Checksum {
public:
  void update(const void *data, size_t size);
  uint64_t finish() const;

private:
  void block(const uint8_t *p);
  uint64_t lanes[4] = {0x9E3779B185EBCA87ULL, 0xC2B2AE3D27D4EB4FULL,
                       0x165667B19E3779F9ULL, 0x85EBCA77C2B2AE63ULL};
  uint8_t pending[32] = {};
  size_t numPending = 0;
  uint64_t total = 0;
};

/// Bytes of the program header; the checksum lives at kChecksumOffset and
/// covers every other byte of the file.
inline constexpr uint64_t kProgramHeaderSize = 32;
inline constexpr uint64_t kChecksumOffset = 24;

/// The checksum of a whole program file image (its checksum field skipped).
uint64_t programChecksum(const uint8_t *file, uint64_t size);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_CHECKSUM_H
