#include "codec.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include "store_layout.hpp"

namespace mailsuspend {
namespace {

using layout::BlobHeader;

constexpr uint16_t kBlobVersion = 1;
constexpr uint8_t kEndOfServices = 0xFF;
enum : uint8_t { kSuspended = 1, kLocked = 2, kFailQueued = 4 };

// Times are stored as unsigned 32-bit epoch seconds (good to 2106; durations
// are capped at 50 years) to keep a typical record near 64 bytes.
uint32_t to_u32(int64_t t) {
    return static_cast<uint32_t>(std::clamp<int64_t>(t, 0, std::numeric_limits<uint32_t>::max()));
}

template <typename T>
void put(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

void put_text(std::string& out, const std::string& s) {
    put<uint16_t>(out, static_cast<uint16_t>(s.size()));
    out += s;
}

// Bounds-checked reading over a blob body.
class Cursor {
public:
    Cursor(const unsigned char* p, std::size_t n) : p_(p), end_(p + n) {}
    template <typename T>
    bool get(T& v) {
        if (static_cast<std::size_t>(end_ - p_) < sizeof v) return false;
        std::memcpy(&v, p_, sizeof v);
        p_ += sizeof v;
        return true;
    }
    bool text(std::string& s, std::size_t len) {
        if (static_cast<std::size_t>(end_ - p_) < len) return false;
        s.assign(reinterpret_cast<const char*>(p_), len);
        p_ += len;
        return true;
    }
    bool text16(std::string& s) {
        uint16_t len = 0;
        return get(len) && text(s, len);
    }
private:
    const unsigned char* p_;
    const unsigned char* end_;
};

void encode_service(const ServiceState& s, int index, std::string& out) {
    put<uint8_t>(out, static_cast<uint8_t>(index));
    put<uint8_t>(out, static_cast<uint8_t>((s.suspended ? kSuspended : 0) | (s.locked ? kLocked : 0) |
                                           (s.fail_queued ? kFailQueued : 0)));
    put<uint32_t>(out, to_u32(s.since));
    put<uint32_t>(out, to_u32(s.expires));
    put<uint8_t>(out, static_cast<uint8_t>(s.source));
    put_text(out, s.reason);
    put_text(out, s.actor);
}

bool decode_service(Cursor& c, TargetRecord& r, uint8_t index) {
    if (index >= kServiceCount) return false;
    ServiceState& s = r.services[index];
    uint8_t flags = 0, source = 0;
    uint32_t since = 0, expires = 0;
    if (!c.get(flags) || !c.get(since) || !c.get(expires) || !c.get(source)) return false;
    s.since = since;
    s.expires = expires;
    if (source > static_cast<uint8_t>(Source::self)) return false;
    s.suspended = flags & kSuspended;
    s.locked = flags & kLocked;
    s.fail_queued = flags & kFailQueued;
    s.source = static_cast<Source>(source);
    return c.text16(s.reason) && c.text16(s.actor);
}

bool decode_body(Cursor& c, TargetRecord& r) {
    uint8_t key_len = 0, mode = 0;
    uint16_t n_auto = 0;
    uint32_t last_self_unblock = 0;
    if (!c.get(key_len) || !c.text(r.key, key_len) || !c.get(mode) ||
        mode > static_cast<uint8_t>(DeliveryMode::queue) || !c.get(last_self_unblock) ||
        !c.get(r.seq) || !c.get(n_auto))
        return false;
    r.mode = static_cast<DeliveryMode>(mode);
    r.last_self_unblock = last_self_unblock;
    r.auto_suspensions.resize(n_auto);
    for (auto& t : r.auto_suspensions) {
        uint32_t v = 0;
        if (!c.get(v)) return false;
        t = v;
    }
    for (uint8_t index = 0;;) {
        if (!c.get(index)) return false;
        if (index == kEndOfServices) return true;
        if (!decode_service(c, r, index)) return false;
    }
}

}  // namespace

void encode_record(const TargetRecord& r, std::string& out) {
    const std::size_t start = out.size();
    out.append(sizeof(BlobHeader), '\0');
    put<uint8_t>(out, static_cast<uint8_t>(r.key.size()));
    out += r.key;
    put<uint8_t>(out, static_cast<uint8_t>(r.mode));
    put<uint32_t>(out, to_u32(r.last_self_unblock));
    put<uint64_t>(out, r.seq);
    put<uint16_t>(out, static_cast<uint16_t>(r.auto_suspensions.size()));
    for (int64_t t : r.auto_suspensions) put<uint32_t>(out, to_u32(t));
    for (int i = 0; i < kServiceCount; ++i)
        if (r.services[i] != ServiceState{}) encode_service(r.services[i], i, out);
    put<uint8_t>(out, kEndOfServices);
    out.append((8 - (out.size() - start) % 8) % 8, '\0');
    BlobHeader h{layout::kBlobMagic, kBlobVersion, static_cast<uint32_t>(out.size() - start), 0};
    h.crc = layout::crc32(out.data() + start + sizeof h, h.length - sizeof h);
    std::memcpy(out.data() + start, &h, sizeof h);
}

std::size_t blob_length(const unsigned char* p, std::size_t avail) {
    BlobHeader h;
    if (avail < sizeof h) return 0;
    std::memcpy(&h, p, sizeof h);
    if (h.magic != layout::kBlobMagic || h.version != kBlobVersion || h.length < sizeof h ||
        h.length > avail || h.length % 8 != 0)
        return 0;
    return h.length;
}

bool decode_record(const unsigned char* p, std::size_t avail, TargetRecord& r, std::string& error) {
    const std::size_t len = blob_length(p, avail);
    if (len == 0) {
        error = "record has a bad magic number, version or length";
        return false;
    }
    BlobHeader h;
    std::memcpy(&h, p, sizeof h);
    if (layout::crc32(p + sizeof h, len - sizeof h) != h.crc) {
        error = "record checksum mismatch";
        return false;
    }
    r = TargetRecord{};
    Cursor c(p + sizeof h, len - sizeof h);
    if (!decode_body(c, r)) {
        error = "record body is malformed";
        return false;
    }
    return true;
}

uint8_t suspended_mask(const TargetRecord& r) {
    uint8_t mask = 0;
    for (int i = 0; i < kServiceCount; ++i)
        if (r.services[i].suspended) mask |= static_cast<uint8_t>(1u << i);
    return mask;
}

uint32_t min_expiry(const TargetRecord& r) {
    int64_t earliest = 0;
    for (const auto& s : r.services)
        if (s.suspended && s.expires != 0 && (earliest == 0 || s.expires < earliest))
            earliest = s.expires;
    return static_cast<uint32_t>(std::min<int64_t>(earliest, std::numeric_limits<uint32_t>::max()));
}

}  // namespace mailsuspend
