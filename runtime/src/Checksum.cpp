//===- Checksum.cpp - program file integrity checksum ---------------------===//
#include "Checksum.h"

#include <algorithm>
#include <cstring>

namespace incnn::runtime {

namespace {
constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ULL;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline uint64_t load64(const uint8_t *p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

inline uint64_t mixLane(uint64_t acc, uint64_t word) {
  return rotl(acc + word * kPrime2, 31) * kPrime1;
}
} // namespace

void Checksum::block(const uint8_t *p) {
  for (int i = 0; i < 4; ++i)
    lanes[i] = mixLane(lanes[i], load64(p + 8 * i));
}

void Checksum::update(const void *data, size_t size) {
  const uint8_t *p = static_cast<const uint8_t *>(data);
  total += size;
  if (numPending) {
    size_t take = std::min(size, sizeof(pending) - numPending);
    std::memcpy(pending + numPending, p, take);
    numPending += take;
    p += take;
    size -= take;
    if (numPending < sizeof(pending))
      return;
    block(pending);
    numPending = 0;
  }
  for (; size >= 32; p += 32, size -= 32)
    block(p);
  std::memcpy(pending, p, size);
  numPending = size;
}

uint64_t Checksum::finish() const {
  uint64_t h = rotl(lanes[0], 1) + rotl(lanes[1], 7) + rotl(lanes[2], 12) +
               rotl(lanes[3], 18);
  h ^= total * kPrime3;
  for (size_t i = 0; i < numPending; ++i)
    h = rotl(h ^ (pending[i] * kPrime3), 11) * kPrime1;
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime3;
  h ^= h >> 32;
  return h;
}

uint64_t programChecksum(const uint8_t *file, uint64_t size) {
  Checksum c;
  c.update(file, size < kChecksumOffset ? size : kChecksumOffset);
  if (size > kChecksumOffset + 8)
    c.update(file + kChecksumOffset + 8, size - kChecksumOffset - 8);
  return c.finish();
}

} // namespace incnn::runtime
