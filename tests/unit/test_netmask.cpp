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

TEST(Netmask, Malformed) {
    for (const char* bad : {"", "192.0.2", "192.0.2.256", "192.0.2.1/33", "192.0.2.1/-1",
                            "192.0.2.1/", "192.0.2.1/8x", "2001:db8::/129", "2001:db8:::1",
                            "example.com", "10.0.0.0/8/8", " 10.0.0.1", "gggg::1"}) {
        EXPECT_FALSE(parse_netmask(bad).has_value()) << "'" << bad << "' accepted";
    }
    EXPECT_FALSE(parse_ip("10.0.0.0/8").has_value());
    EXPECT_FALSE(parse_ip(std::string(100, '1')).has_value());
}
