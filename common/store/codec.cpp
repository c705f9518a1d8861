#include "codec.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include "store_layout.hpp"

namespace mailsuspend {
namespace {

using layout::BlobHeader;

// Version 4 is what the store writes (layout 3): the smallest form, so a
// typical record fits one cache line (writer_table.cpp places it in one).
// Version 3 and 2 are the portable forms a fleet node sends (fleet_change.cpp):
// 3 for a record with a clock stamp or an origin, 2 otherwise, which every
// release since the fleet decodes.  Version 1 (the first release's looser
// form) is still decoded, so a journal or store written before keeps working.
constexpr uint16_t kBlobVersion = 4;
constexpr uint16_t kBlobVersionFleet = 3;
constexpr uint16_t kBlobVersionV2 = 2;
constexpr uint16_t kBlobVersionV1 = 1;
constexpr uint8_t kEndOfServices = 0xFF;
enum : uint8_t { kSuspended = 1, kLocked = 2, kFailQueued = 4 };

// Version 2 body (the key prefix is fixed by store_layout.hpp):
//   u8 key_len, key, u8 mode, u8 extras, varint seq,
//   [varint hlc, u8 len + origin]       if extras & kHasFleet (version 3 and 4)
//   [u32 last_self_unblock]             if extras & kHasSelfUnblock
//   [varint n, n x u32 auto-suspension] if extras & kHasAutoHistory
//   per stored service: u8 head, u32 since, [u32 expires], u8 source (| 0x10: hold),
//                       [varint len + reason, varint len + actor] unless kSameTexts
//   (the actor is always written empty and ignored when read: who acted is in
//   the audit log, which read_group cannot open; old records may hold one)
//   u8 0xFF
// head = index (bits 0-2) | flags << 3 | kHasExpiry | kSameTexts.  Services
// suspended together share reason and actor, so the second and later ones
// carry kSameTexts instead of the texts: that, varints and optional fields
// keep the typical record (two services, one reason) at 72 bytes.
// Version 4 has no actor, and kSameTexts | kHasExpiry (kSameEntry) means an
// entry that repeats the previous one's since, expires, source and reason:
// its head byte alone.  A record of two services suspended together by one
// command is 64 bytes for an address of 21 octets.
enum : uint8_t { kHasSelfUnblock = 1, kHasAutoHistory = 2, kHasFleet = 4 };
enum : uint8_t { kIndexBits = 0x07, kFlagShift = 3, kHasExpiry = 0x40, kSameTexts = 0x80 };
constexpr uint8_t kSameEntry = kHasExpiry | kSameTexts;  // version 4

// Times are stored as unsigned 32-bit epoch seconds (good to 2106; durations
// are capped at 50 years).
uint32_t to_u32(int64_t t) {
    return static_cast<uint32_t>(std::clamp<int64_t>(t, 0, std::numeric_limits<uint32_t>::max()));
}

template <typename T>
void put(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// LEB128: 7 bits a byte, low first.
void put_varint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out += static_cast<char>(static_cast<uint8_t>(v) | 0x80);
        v >>= 7;
    }
    out += static_cast<char>(v);
}

void put_text_varint(std::string& out, const std::string& s) {
    put_varint(out, s.size());
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
    bool varint(uint64_t& v) {
        v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (p_ == end_) return false;
            const uint8_t b = *p_++;
            v |= uint64_t{b & 0x7Fu} << shift;
            if ((b & 0x80) == 0) return shift < 63 || b <= 1;
        }
        return false;  // more than 10 bytes
    }
    bool skip(std::size_t len) {
        if (static_cast<std::size_t>(end_ - p_) < len) return false;
        p_ += len;
        return true;
    }
    bool view_varint(std::string_view& s) {
        uint64_t len = 0;
        if (!varint(len) || len > UINT16_MAX || static_cast<std::size_t>(end_ - p_) < len) return false;
        s = std::string_view(reinterpret_cast<const char*>(p_), static_cast<std::size_t>(len));
        p_ += len;
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
    bool text_varint(std::string& s) {
        uint64_t len = 0;
        return varint(len) && len <= UINT16_MAX && text(s, static_cast<std::size_t>(len));
    }
private:
    const unsigned char* p_;
    const unsigned char* end_;
};

uint8_t state_flags(const ServiceState& s) {
    return static_cast<uint8_t>((s.suspended ? kSuspended : 0) | (s.locked ? kLocked : 0) |
                                (s.fail_queued ? kFailQueued : 0));
}

void set_state_flags(ServiceState& s, uint8_t flags) {
    s.suspended = flags & kSuspended;
    s.locked = flags & kLocked;
    s.fail_queued = flags & kFailQueued;
}

// The source byte: the Source, and kHoldBit for a send suspension that holds
// mail (the head byte has no flag bit left).
constexpr uint8_t kHoldBit = 0x10;

uint8_t source_byte(const ServiceState& s) {
    return static_cast<uint8_t>(static_cast<uint8_t>(s.source) | (s.hold ? kHoldBit : 0));
}

bool set_source(ServiceState& s, uint8_t source) {
    s.hold = source & kHoldBit;
    source &= static_cast<uint8_t>(~kHoldBit);
    if (source > static_cast<uint8_t>(Source::self)) return false;
    s.source = static_cast<Source>(source);
    return true;
}

// The stored fields of one service entry, what kSameEntry repeats.
struct EntryFields {
    uint32_t since = 0, expires = 0;
    uint8_t source = 0;
    std::string_view reason;
};

EntryFields fields_of(const ServiceState& s) {
    return {to_u32(s.since), to_u32(s.expires), source_byte(s), s.reason};
}

bool same_fields(const EntryFields& a, const EntryFields& b) {
    return a.since == b.since && a.expires == b.expires && a.source == b.source && a.reason == b.reason;
}

// version: kBlobVersion (no actor, kSameEntry) or an older, portable one.
void encode_service(const ServiceState& s, int index, const ServiceState* previous, uint16_t version,
                    std::string& out) {
    const EntryFields f = fields_of(s);
    const uint8_t head = static_cast<uint8_t>(index | state_flags(s) << kFlagShift);
    if (version >= kBlobVersion && previous && same_fields(f, fields_of(*previous))) {
        put<uint8_t>(out, head | kSameEntry);
        return;
    }
    // In version 4, kSameTexts with kHasExpiry is kSameEntry: an entry
    // sharing only the reason but with its own expiry repeats the reason.
    const bool same_texts = previous && previous->reason == s.reason &&
                            (version < kBlobVersion || f.expires == 0);
    put<uint8_t>(out, static_cast<uint8_t>(head | (f.expires != 0 ? kHasExpiry : 0) | (same_texts ? kSameTexts : 0)));
    put<uint32_t>(out, f.since);
    if (f.expires != 0) put<uint32_t>(out, f.expires);
    put<uint8_t>(out, f.source);
    if (same_texts) return;
    put_text_varint(out, s.reason);
    if (version < kBlobVersion) put_text_varint(out, "");  // the actor
}

// One service entry into s.  *last holds the previous entry's fields (its
// reason a view into the blob) and becomes this entry's.
bool decode_service(Cursor& c, uint8_t head, uint16_t version, ServiceState& s, EntryFields& last,
                    bool& have_last) {
    set_state_flags(s, (head >> kFlagShift) & 0x07);
    EntryFields f;
    if (version >= kBlobVersion && (head & kSameEntry) == kSameEntry) {
        if (!have_last) return false;
        f = last;
    } else {
        if (!c.get(f.since) || ((head & kHasExpiry) && (!c.get(f.expires) || f.expires == 0)) ||
            !c.get(f.source))
            return false;
        if (head & kSameTexts) {
            if (!have_last) return false;
            f.reason = last.reason;
        } else {
            std::string_view actor;  // dropped (version 2 and 3 carry an empty one)
            if (!c.view_varint(f.reason) || (version < kBlobVersion && !c.view_varint(actor))) return false;
        }
    }
    if (!set_source(s, f.source)) return false;
    s.since = f.since;
    s.expires = f.expires;
    last = f;
    have_last = true;
    return true;
}

// The body into r; with only >= 0, only that service (and mode, seq): the
// key, the history and the other services' texts are stepped over, so a
// check that needs one service's reason allocates at most that.
bool decode_body(Cursor& c, TargetRecord& r, uint16_t version, int only) {
    uint8_t key_len = 0, mode = 0, extras = 0;
    const uint8_t known = kHasSelfUnblock | kHasAutoHistory | (version >= kBlobVersionFleet ? kHasFleet : 0);
    if (!c.get(key_len) || !(only < 0 ? c.text(r.key, key_len) : c.skip(key_len)) || !c.get(mode) ||
        mode > static_cast<uint8_t>(DeliveryMode::queue) || !c.get(extras) || (extras & ~known) != 0 ||
        !c.varint(r.seq))
        return false;
    r.mode = static_cast<DeliveryMode>(mode);
    if (extras & kHasFleet) {
        uint8_t origin_len = 0;
        if (!c.varint(r.hlc) || !c.get(origin_len) ||
            !(only < 0 ? c.text(r.origin, origin_len) : c.skip(origin_len)))
            return false;
    }
    if (extras & kHasSelfUnblock) {
        uint32_t t = 0;
        if (!c.get(t)) return false;
        r.last_self_unblock = t;
    }
    if (extras & kHasAutoHistory) {
        uint64_t n = 0;
        if (!c.varint(n) || n > UINT16_MAX) return false;
        if (only >= 0) {
            if (!c.skip(static_cast<std::size_t>(n) * sizeof(uint32_t))) return false;
        } else {
            r.auto_suspensions.resize(static_cast<std::size_t>(n));
            for (auto& t : r.auto_suspensions) {
                uint32_t v = 0;
                if (!c.get(v)) return false;
                t = v;
            }
        }
    }
    EntryFields last;
    bool have_last = false;
    uint8_t seen = 0;
    for (;;) {
        uint8_t head = 0;
        if (!c.get(head)) return false;
        if (head == kEndOfServices) return true;
        const uint8_t index = head & kIndexBits;
        if (index >= kServiceCount || (seen & (1u << index))) return false;
        seen |= static_cast<uint8_t>(1u << index);
        ServiceState scratch;
        const bool wanted = only < 0 || index == only;
        ServiceState& s = wanted ? r.services[index] : scratch;
        if (!decode_service(c, head, version, s, last, have_last)) return false;
        if (wanted) s.reason.assign(last.reason);
    }
}

// ---- version 1, read only
bool decode_service_v1(Cursor& c, TargetRecord& r, uint8_t index) {
    if (index >= kServiceCount) return false;
    ServiceState& s = r.services[index];
    uint8_t flags = 0, source = 0;
    uint32_t since = 0, expires = 0;
    if (!c.get(flags) || !c.get(since) || !c.get(expires) || !c.get(source) || !set_source(s, source))
        return false;
    s.since = since;
    s.expires = expires;
    set_state_flags(s, flags);
    std::string actor;  // dropped
    return c.text16(s.reason) && c.text16(actor);
}

bool decode_body_v1(Cursor& c, TargetRecord& r) {
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
        if (!decode_service_v1(c, r, index)) return false;
    }
}

void encode_as(const TargetRecord& r, bool portable, std::string& out) {
    const bool fleet = r.hlc != 0 || !r.origin.empty();
    const uint16_t version = !portable ? kBlobVersion : fleet ? kBlobVersionFleet : kBlobVersionV2;
    const std::size_t start = out.size();
    out.append(sizeof(BlobHeader), '\0');
    put<uint8_t>(out, static_cast<uint8_t>(r.key.size()));
    out += r.key;
    put<uint8_t>(out, static_cast<uint8_t>(r.mode));
    const uint32_t self_unblock = to_u32(r.last_self_unblock);
    put<uint8_t>(out, static_cast<uint8_t>((self_unblock != 0 ? kHasSelfUnblock : 0) |
                                           (r.auto_suspensions.empty() ? 0 : kHasAutoHistory) |
                                           (fleet ? kHasFleet : 0)));
    put_varint(out, r.seq);
    if (fleet) {
        put_varint(out, r.hlc);
        put<uint8_t>(out, static_cast<uint8_t>(std::min<std::size_t>(r.origin.size(), 255)));
        out.append(r.origin, 0, 255);
    }
    if (self_unblock != 0) put<uint32_t>(out, self_unblock);
    if (!r.auto_suspensions.empty()) {
        put_varint(out, r.auto_suspensions.size());
        for (int64_t t : r.auto_suspensions) put<uint32_t>(out, to_u32(t));
    }
    const ServiceState* previous = nullptr;
    for (int i = 0; i < kServiceCount; ++i) {
        if (r.services[i] == ServiceState{}) continue;
        encode_service(r.services[i], i, previous, version, out);
        previous = &r.services[i];
    }
    put<uint8_t>(out, kEndOfServices);
    out.append((8 - (out.size() - start) % 8) % 8, '\0');
    BlobHeader h{layout::kBlobMagic, version, static_cast<uint32_t>(out.size() - start), 0};
    h.crc = layout::crc32(out.data() + start + sizeof h, h.length - sizeof h);
    std::memcpy(out.data() + start, &h, sizeof h);
}

}  // namespace

void encode_record(const TargetRecord& r, std::string& out) { encode_as(r, false, out); }

void encode_portable_record(const TargetRecord& r, std::string& out) { encode_as(r, true, out); }

std::size_t blob_length(const unsigned char* p, std::size_t avail) {
    BlobHeader h;
    if (avail < sizeof h) return 0;
    std::memcpy(&h, p, sizeof h);
    if (h.magic != layout::kBlobMagic || h.version < kBlobVersionV1 || h.version > kBlobVersion ||
        h.length < sizeof h ||
        h.length > avail || h.length % 8 != 0)
        return 0;
    return h.length;
}

bool decode_record(const unsigned char* p, std::size_t avail, TargetRecord& r, std::string& error_r,
                   int only_service) {
    const std::size_t len = blob_length(p, avail);
    if (len == 0) {
        error_r = "record has a bad magic number, version or length";
        return false;
    }
    BlobHeader h;
    std::memcpy(&h, p, sizeof h);
    if (layout::crc32(p + sizeof h, len - sizeof h) != h.crc) {
        error_r = "record checksum mismatch";
        return false;
    }
    r = TargetRecord{};
    Cursor c(p + sizeof h, len - sizeof h);
    if (!(h.version >= kBlobVersionV2 ? decode_body(c, r, h.version, only_service) : decode_body_v1(c, r))) {
        error_r = "record body is malformed";
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
