// The layout's two functions: the key hash that places a record in the slot
// table and the CRC that guards a blob.  Both are part of the on-disk format.
#include "store_layout.hpp"

#include <boost/crc.hpp>

#include <cstring>

namespace mailsuspend {

uint64_t layout::hash_key(const char* key, std::size_t len) {
    // 64-bit multiply-xorshift over 8-byte words (stable: part of the layout).
    constexpr uint64_t kMul = 0x9E3779B97F4A7C15ULL;
    uint64_t h = 0x6A09E667F3BCC909ULL ^ (len * kMul);
    std::size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        std::memcpy(&w, key + i, 8);
        h = (h ^ w) * kMul;
        h ^= h >> 29;
    }
    uint64_t tail = 0;
    std::memcpy(&tail, key + i, len - i);
    h = (h ^ tail) * kMul;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ULL;
    h ^= h >> 32;
    return h;
}

uint32_t layout::crc32(const void* data, std::size_t len, uint32_t seed) {
    boost::crc_32_type crc;
    if (seed) crc.reset(seed);
    crc.process_bytes(data, len);
    return crc.checksum();
}

}  // namespace mailsuspend
