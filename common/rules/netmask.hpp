// IPv4/IPv6 addresses and CIDR masks (webmail.hosts).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace mailsuspend {

struct Netmask {
    std::array<uint8_t, 16> addr{};  // IPv4 stored as ::ffff:a.b.c.d
    int prefix = 128;                // in the 128-bit space
    bool contains(const std::array<uint8_t, 16>& ip) const;
    bool operator==(const Netmask&) const = default;
};

// "192.0.2.10", "2001:db8::/32", "10.0.0.0/8"; nullopt when malformed.
std::optional<Netmask> parse_netmask(std::string_view text);
std::optional<std::array<uint8_t, 16>> parse_ip(std::string_view text);

}  // namespace mailsuspend
