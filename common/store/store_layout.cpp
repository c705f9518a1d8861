// The CRC that guards a blob: part of the on-disk format.  (The key hash
// that places a record is the C reader's, ms_hash_key.)
#include "store_layout.hpp"

#include <cstring>

namespace mailsuspend {

namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "crc32 reads words little-endian");

// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) eight octets at a
// time ("slicing-by-8"): the same checksum as a table per octet in about a
// fifth of the instructions.  A denied check verifies a blob with it.
struct CrcTables {
    uint32_t t[8][256];
};

constexpr CrcTables make_crc_tables() {
    CrcTables x{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        x.t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
        for (int s = 1; s < 8; ++s) x.t[s][i] = (x.t[s - 1][i] >> 8) ^ x.t[0][x.t[s - 1][i] & 0xFF];
    return x;
}

constexpr CrcTables kCrc = make_crc_tables();

}  // namespace

uint32_t layout::crc32(const void* data, std::size_t len, uint32_t seed) {
    uint32_t c = seed ? seed : 0xFFFFFFFFu;  // seed: the register to start from
    const auto* p = static_cast<const unsigned char*>(data);
    for (; len >= 8; p += 8, len -= 8) {
        uint32_t lo, hi;
        std::memcpy(&lo, p, 4);
        std::memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = kCrc.t[7][lo & 0xFF] ^ kCrc.t[6][(lo >> 8) & 0xFF] ^ kCrc.t[5][(lo >> 16) & 0xFF] ^ kCrc.t[4][lo >> 24] ^
            kCrc.t[3][hi & 0xFF] ^ kCrc.t[2][(hi >> 8) & 0xFF] ^ kCrc.t[1][(hi >> 16) & 0xFF] ^ kCrc.t[0][hi >> 24];
    }
    for (; len > 0; --len) c = (c >> 8) ^ kCrc.t[0][(c ^ *p++) & 0xFF];
    return ~c;
}

}  // namespace mailsuspend
