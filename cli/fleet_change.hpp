// A fleet change as it travels through Redis (issue 15): the whole state of
// one target after a change, with its clock stamp and origin, signed with the
// fleet key.  Text, so the publishing Lua script can compare stamps:
//
//   <hlc, 20 digits> SP <origin> SP <record blob, hex> SP <HMAC-SHA256, hex>
//
// The MAC covers everything before its own space.  The blob is the store's
// own record form (codec.hpp, version 3), which carries the stamp and the
// origin again: a change whose envelope and record disagree is refused.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "model.hpp"
#include "signing.hpp"

namespace mailsuspend::cli {

struct FleetKey {
    FleetKey() = default;
    explicit FleetKey(std::string key) : bytes(std::move(key)) {}
    std::string bytes;  // the key file's content, at least 32 bytes
    // The HMAC of text under this key (the pads hashed on first use).
    std::string mac_hex(std::string_view text) const;

private:
    mutable std::optional<HmacKey> ready_;
};

// Reads the fleet key (fleet.signing_key_file): at least 32 bytes, and not
// readable by others (a key anyone can read signs anything).
bool load_fleet_key(const std::string& path, FleetKey& key, std::string& error_r);

// The signed change for record r (r.hlc and r.origin set).
std::string encode_fleet_change(const TargetRecord& r, const FleetKey& key);

// Verifies and decodes a change published for target; false with why
// (bad signature, malformed, another target) in error_r: never applied.
bool decode_fleet_change(const std::string& change, const std::string& target, const FleetKey& key,
                         TargetRecord& r, std::string& error_r);

}  // namespace mailsuspend::cli
