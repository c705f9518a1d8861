#include "image.hpp"

#include <bit>

namespace stress {

using mailsuspend::DeliveryMode;
using mailsuspend::kServiceCount;
using mailsuspend::ServiceState;
using mailsuspend::Source;

uint32_t key_hash(std::string_view key) {
    uint32_t h = 2166136261u;  // FNV-1a
    for (unsigned char c : key) {
        h ^= c;
        h *= 16777619u;
    }
    return h;
}

uint8_t suspended_mask(std::string_view key, uint32_t version) {
    // 1..127: a present record always has at least one suspended service.
    return static_cast<uint8_t>(1 + (key_hash(key) + version * 37u) % 127u);
}

DeliveryMode mode_of(std::string_view key, uint32_t version) {
    return static_cast<DeliveryMode>(1 + (key_hash(key) + version) % 4u);
}

static std::string reason_of(std::string_view key, uint32_t version, int service) {
    std::string reason = "k=" + std::string(key) + " v=" + std::to_string(version) +
                         " s=" + std::to_string(service);
    // Lengths vary with the version so records move inside the arena.
    reason.append((key_hash(key) + version + service) % 5 * 25, 'x');
    return reason;
}

TargetRecord make_image(const std::string& key, uint32_t version) {
    TargetRecord rec;
    rec.key = key;
    if (version == 0 || is_erase(version)) return rec;
    const uint8_t mask = suspended_mask(key, version);
    for (int i = 0; i < kServiceCount; ++i) {
        if (!(mask & (1u << i))) continue;
        ServiceState& s = rec.services[i];
        s.suspended = true;
        s.locked = (version + i) % 3 == 0;
        s.fail_queued = i == static_cast<int>(mailsuspend::Service::send) && version % 2 == 1;
        s.since = 1'700'000'000 + version;
        s.expires = int64_t{kExpiryBase} + int64_t{version} * 8 + i;
        s.source = static_cast<Source>((version + i) % 4);
        s.reason = reason_of(key, version, i);
    }
    rec.mode = mode_of(key, version);
    rec.last_self_unblock = 1'600'000'000 + version;
    for (uint32_t i = 0; i < version % 3; ++i) rec.auto_suspensions.push_back(1'650'000'000 + version + i);
    return rec;
}

// The version an expiry of service i encodes, or 0.
static uint32_t version_from_expiry(int64_t expires, int service) {
    const int64_t x = expires - int64_t{kExpiryBase} - service;
    if (x <= 0 || x % 8 != 0 || x / 8 > kMaxVersion) return 0;
    return static_cast<uint32_t>(x / 8);
}

bool decode_record(const TargetRecord& rec, std::string_view key, uint32_t& version,
                   std::string& why) {
    if (rec.key != key) {
        why = "record of '" + rec.key + "' returned for '" + std::string(key) + "'";
        return false;
    }
    int first = -1;
    for (int i = 0; i < kServiceCount && first < 0; ++i)
        if (rec.services[i].suspended) first = i;
    if (first < 0) {
        why = "present record of '" + rec.key + "' has no suspended service";
        return false;
    }
    version = version_from_expiry(rec.services[first].expires, first);
    if (version == 0 || is_erase(version)) {
        why = "record of '" + rec.key + "' has an expiry no version wrote: " +
              std::to_string(rec.services[first].expires);
        return false;
    }
    TargetRecord expected = make_image(std::string(key), version);
    expected.seq = rec.seq;
    if (!(expected == rec)) {
        why = "record of '" + rec.key + "' mixes fields of version " + std::to_string(version) +
              " with others (torn read or corrupt record)";
        return false;
    }
    return true;
}

bool decode_hot(const HotView& view, std::string_view key, uint32_t& version, std::string& why) {
    const int first = std::countr_zero(static_cast<unsigned>(view.suspended));
    version = first < kServiceCount ? version_from_expiry(view.min_expiry, first) : 0;
    if (version == 0 || is_erase(version)) {
        why = "hot view of '" + std::string(key) + "' has mask " + std::to_string(view.suspended) +
              " and min_expiry " + std::to_string(view.min_expiry) + ": no version wrote that";
        return false;
    }
    if (view.suspended != suspended_mask(key, version) || view.mode != mode_of(key, version)) {
        why = "hot view of '" + std::string(key) + "' mixes version " + std::to_string(version) +
              " with another (mask " + std::to_string(view.suspended) + ", mode " +
              std::to_string(static_cast<int>(view.mode)) + ")";
        return false;
    }
    return true;
}

std::string stress_key(uint32_t index) {
    if (index % 10 == 0) return "@d" + std::to_string(index) + ".stress.example";
    return "user" + std::to_string(index) + "@stress.example";
}

}  // namespace stress
