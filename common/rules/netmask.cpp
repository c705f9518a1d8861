#include "netmask.hpp"

#include <arpa/inet.h>

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

bool Netmask::contains(const std::array<uint8_t, 16>& ip) const {
    int bits = prefix;
    for (int i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
        const uint8_t m = bits >= 8 ? 0xFF : static_cast<uint8_t>(0xFF << (8 - bits));
        if ((ip[i] & m) != (addr[i] & m)) return false;
    }
    return true;
}

}  // namespace mailsuspend
