// IP addresses and CIDR masks (webmail.hosts).
#include <gtest/gtest.h>

#include "netmask.hpp"

using namespace mailsuspend;

namespace {

std::array<uint8_t, 16> ip(const char* text) {
    auto p = parse_ip(text);
    EXPECT_TRUE(p.has_value()) << text;
    return p.value_or(std::array<uint8_t, 16>{});
}

bool in(const char* mask, const char* addr) {
    auto m = parse_netmask(mask);
    EXPECT_TRUE(m.has_value()) << mask;
    return m && m->contains(ip(addr));
}

}  // namespace

TEST(Netmask, SingleIpv4) {
    EXPECT_TRUE(in("192.0.2.10", "192.0.2.10"));
    EXPECT_FALSE(in("192.0.2.10", "192.0.2.11"));
    EXPECT_EQ(parse_netmask("192.0.2.10")->prefix, 128);
}

TEST(Netmask, Ipv4Cidr) {
    EXPECT_TRUE(in("10.0.0.0/8", "10.255.1.2"));
    EXPECT_FALSE(in("10.0.0.0/8", "11.0.0.1"));
    EXPECT_TRUE(in("192.0.2.128/25", "192.0.2.200"));
    EXPECT_FALSE(in("192.0.2.128/25", "192.0.2.127"));
    EXPECT_EQ(parse_netmask("10.0.0.0/8")->prefix, 96 + 8);
    // /0 of IPv4 is all of IPv4 but no IPv6.
    EXPECT_TRUE(in("0.0.0.0/0", "203.0.113.9"));
    EXPECT_FALSE(in("0.0.0.0/0", "2001:db8::1"));
}

TEST(Netmask, Ipv6) {
    EXPECT_TRUE(in("2001:db8::1", "2001:db8::1"));
    EXPECT_TRUE(in("2001:db8::1", "2001:0db8:0000::0001"));
    EXPECT_FALSE(in("2001:db8::1", "2001:db8::2"));
    EXPECT_TRUE(in("2001:db8::/32", "2001:db8:ffff::1"));
    EXPECT_FALSE(in("2001:db8::/32", "2001:db9::1"));
    EXPECT_TRUE(in("2001:db8:0:1::/64", "2001:db8:0:1:abcd::1"));
    EXPECT_FALSE(in("2001:db8:0:1::/64", "2001:db8:0:2::1"));
    EXPECT_TRUE(in("::/0", "2001:db8::1"));
}

TEST(Netmask, Ipv4InsideIpv6Space) {
    // IPv4 is held as ::ffff:a.b.c.d: a mapped IPv6 client matches an IPv4 entry.
    EXPECT_TRUE(in("127.0.0.2", "::ffff:127.0.0.2"));
    EXPECT_TRUE(in("10.0.0.0/8", "::ffff:10.1.2.3"));
    EXPECT_TRUE(in("::ffff:10.0.0.0/104", "10.9.9.9"));
    EXPECT_FALSE(in("127.0.0.2", "::2"));
    EXPECT_FALSE(in("2001:db8::/32", "127.0.0.1"));
}

// contains() compares 64 bits at a time: the same answer as the octet-by-octet
// definition for every prefix length, with addresses that differ in one bit.
TEST(Netmask, EveryPrefixLengthAgreesWithTheOctetDefinition) {
    const auto by_octets = [](const Netmask& m, const std::array<uint8_t, 16>& a) {
        int bits = m.prefix;
        for (std::size_t i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
            const uint8_t mask = bits >= 8 ? 0xFF : static_cast<uint8_t>(0xFF << (8 - bits));
            if ((a[i] & mask) != (m.addr[i] & mask)) return false;
        }
        return true;
    };
    Netmask m;
    for (std::size_t i = 0; i < 16; ++i) m.addr[i] = static_cast<uint8_t>(0x5A ^ (i * 37));
    for (int prefix = 0; prefix <= 128; ++prefix) {
        m.prefix = prefix;
        EXPECT_TRUE(m.contains(m.addr)) << prefix;
        for (int bit = 0; bit < 128; ++bit) {
            auto a = m.addr;
            a[static_cast<std::size_t>(bit / 8)] ^= static_cast<uint8_t>(0x80 >> (bit % 8));
            EXPECT_EQ(m.contains(a), by_octets(m, a)) << "prefix " << prefix << " bit " << bit;
            EXPECT_EQ(m.contains(a), bit >= prefix) << "prefix " << prefix << " bit " << bit;
        }
    }
}

TEST(Netmask, Malformed) {
    for (const char* bad : {"", "192.0.2", "192.0.2.256", "192.0.2.1/33", "192.0.2.1/-1",
                            "192.0.2.1/", "192.0.2.1/8x", "2001:db8::/129", "2001:db8:::1",
                            "example.com", "10.0.0.0/8/8", " 10.0.0.1", "gggg::1"}) {
        EXPECT_FALSE(parse_netmask(bad).has_value()) << "'" << bad << "' accepted";
    }
    EXPECT_FALSE(parse_ip("10.0.0.0/8").has_value());
    EXPECT_FALSE(parse_ip(std::string(100, '1')).has_value());
}
