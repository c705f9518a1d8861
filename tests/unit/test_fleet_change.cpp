// The signed change of the fleet (cli/fleet_change.cpp): what one node signs,
// another verifies and decodes to the same state; anything altered, signed
// with another key or published for another target is refused.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>

#include "fleet_change.hpp"
#include "test_util.hpp"

using namespace mailsuspend;
using namespace mailsuspend::cli;
using namespace mailsuspend::test;

namespace {

TargetRecord sample() {
    TargetRecord r;
    r.key = "a@example.com";
    r.at(Service::imap) = ServiceState{true, true, false, 1795432998, 0, Source::admin, "unpaid"};
    r.mode = DeliveryMode::reject;
    r.hlc = hlc_next(0, 1795432998123);
    r.origin = "mx-1";
    r.seq = 77;
    return r;
}

FleetKey key_of(char fill) { return FleetKey{std::string(32, fill)}; }

bool decodes(const std::string& change, const std::string& target, const FleetKey& key, std::string& why) {
    TargetRecord r;
    return decode_fleet_change(change, target, key, r, why);
}

}  // namespace

TEST(FleetChange, RoundTripWithoutTheLocalSequenceNumber) {
    const std::string change = encode_fleet_change(sample(), key_of('k'));
    char stamp[32];
    std::snprintf(stamp, sizeof stamp, "%020llu ", static_cast<unsigned long long>(sample().hlc));
    EXPECT_EQ(change.substr(0, 21), stamp);  // the stamp the publishing script compares
    TargetRecord r;
    std::string why;
    ASSERT_TRUE(decode_fleet_change(change, "a@example.com", key_of('k'), r, why)) << why;
    TargetRecord expected = sample();
    expected.seq = 0;
    EXPECT_EQ(r, expected);
}

TEST(FleetChange, AnythingAlteredOrSignedWithAnotherKeyIsRefused) {
    const std::string change = encode_fleet_change(sample(), key_of('k'));
    std::string why;
    EXPECT_FALSE(decodes(change, "a@example.com", key_of('x'), why));
    EXPECT_NE(why.find("bad signature"), std::string::npos) << why;
    for (std::size_t at : {std::size_t{3}, std::size_t{22}, change.size() / 2, change.size() - 1}) {
        std::string altered = change;
        altered[at] = altered[at] == '1' ? '2' : '1';
        EXPECT_FALSE(decodes(altered, "a@example.com", key_of('k'), why)) << at;
    }
    EXPECT_FALSE(decodes("unsigned", "a@example.com", key_of('k'), why));
    EXPECT_FALSE(decodes("", "a@example.com", key_of('k'), why));
}

TEST(FleetChange, AChangeHoldsOnlyItsOwnTarget) {
    const std::string change = encode_fleet_change(sample(), key_of('k'));
    std::string why;
    EXPECT_FALSE(decodes(change, "b@example.com", key_of('k'), why));
    EXPECT_NE(why.find("b@example.com"), std::string::npos) << why;
}

TEST(FleetChange, TheKeyFileMustBeLongAndPrivate) {
    TempDir dir;
    const std::string path = dir / "fleet.key";
    FleetKey key;
    std::string why;
    write_file(path, std::string(31, 'k'));
    ::chmod(path.c_str(), 0600);
    EXPECT_FALSE(load_fleet_key(path, key, why));
    EXPECT_NE(why.find("at least 32"), std::string::npos) << why;
    write_file(path, std::string(32, 'k'));
    ::chmod(path.c_str(), 0644);
    EXPECT_FALSE(load_fleet_key(path, key, why));
    EXPECT_NE(why.find("readable by everyone"), std::string::npos) << why;
    ::chmod(path.c_str(), 0600);
    EXPECT_TRUE(load_fleet_key(path, key, why)) << why;
    EXPECT_EQ(key.bytes.size(), 32u);
    EXPECT_FALSE(load_fleet_key(dir / "missing", key, why));
}
