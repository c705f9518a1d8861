// The signed change of the fleet (cli/fleet_change.cpp): what one node signs,
// another verifies and decodes to the same state; anything altered, signed
// with another key or published for another target is refused.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>

#include "fleet_change.hpp"
#include "fleet_redis.hpp"
#include "fleet_state.hpp"
#include "operations.hpp"
#include "store.hpp"
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

// The publisher's scan (fleet_state.hpp): with a mark it decodes only the
// records written since the last scan, and still finds every change of this
// node in (after, upto], also across a growth of the store (a new generation).
namespace {

void suspend_as(const Config& cfg, const std::string& target, Service service) {
    std::string error;
    auto w = StoreWriter::open(cfg, false, error);
    ASSERT_TRUE(w) << error;
    Session s(cfg, *w, Actor{0, "root"}, wall_now());
    SuspendArgs a;
    a.target = target;
    a.services = static_cast<uint8_t>(1u << static_cast<int>(service));
    ASSERT_TRUE(s.suspend(a).ok());
    std::vector<std::string> warnings;
    ASSERT_TRUE(s.commit(warnings).ok());
}

std::vector<std::string> keys_of(const std::vector<TargetRecord>& records) {
    std::vector<std::string> keys;
    for (const auto& r : records) keys.push_back(r.key);
    std::sort(keys.begin(), keys.end());
    return keys;
}

}  // namespace

TEST(FleetPublish, AMarkedScanFindsExactlyTheNewChangesAcrossGrowth) {
    TempDir dir;
    Config cfg = load_ok(write_config(dir.path()));
    cfg.fleet.enabled = true;
    cfg.fleet.node_id = "n1";
    std::string error;
    ASSERT_TRUE(StoreWriter::open(cfg, true, error)) << error;
    suspend_as(cfg, "a@example.com", Service::imap);
    suspend_as(cfg, "b@example.com", Service::imap);
    auto reader = StoreReader::open(cfg.store_path, error);
    ASSERT_TRUE(reader) << error;
    ArenaMark mark;
    std::vector<TargetRecord> out;
    uint64_t published = reader->stats().seq;
    ASSERT_TRUE(unpublished_changes(*reader, "n1", 0, published, out, &mark));
    EXPECT_EQ(keys_of(out), (std::vector<std::string>{"a@example.com", "b@example.com"}));
    EXPECT_GT(mark.offset, 0u);
    // Two more, one of them a change to a target already published.
    suspend_as(cfg, "a@example.com", Service::pop3);
    suspend_as(cfg, "c@example.com", Service::imap);
    const uint64_t upto = reader->stats().seq;
    ASSERT_TRUE(unpublished_changes(*reader, "n1", published, upto, out, &mark));
    EXPECT_EQ(keys_of(out), (std::vector<std::string>{"a@example.com", "c@example.com"}));
    published = upto;
    ASSERT_TRUE(unpublished_changes(*reader, "n1", published, reader->stats().seq, out, &mark));
    EXPECT_TRUE(out.empty()) << "nothing new: nothing found";
    // Past capacity (16) the store grows into a new generation with its own arena.
    const uint64_t generation = reader->stats().generation;
    for (int i = 0; i < 40; ++i) suspend_as(cfg, "g" + std::to_string(i) + "@example.com", Service::imap);
    // upto read as the agent does, from the mapping it has (the old
    // generation's last number); the rest is found by the next call.
    std::vector<std::string> found;
    for (int round = 0; round < 3; ++round) {
        const uint64_t upto_now = reader->stats().seq;
        ASSERT_TRUE(unpublished_changes(*reader, "n1", published, upto_now, out, &mark));
        for (const auto& r : out) found.push_back(r.key);
        published = upto_now;
    }
    EXPECT_GT(reader->stats().generation, generation);
    EXPECT_EQ(found.size(), 40u) << "every change since, in the new generation too, once";
    EXPECT_EQ(mark.generation, reader->stats().generation);
}

// The Redis password file is root-only like the fleet key: one others can
// read is refused before any connection is tried.
TEST(FleetRedis, APasswordFileOthersCanReadIsRefused) {
    TempDir dir;
    const std::string pw = dir.path() + "/redis.password";
    write_file(pw, "secret\n");
    ::chmod(pw.c_str(), 0644);
    FleetConfig f;
    f.enabled = true;
    f.redis = "127.0.0.1:1";  // nothing listens: the file must be refused first
    f.password_file = pw;
    std::string error;
    EXPECT_FALSE(Redis::connect(f, error));
    EXPECT_NE(error.find("readable by everyone"), std::string::npos) << error;
    ::chmod(pw.c_str(), 0600);
    error.clear();
    EXPECT_FALSE(Redis::connect(f, error));
    EXPECT_EQ(error.find("readable by everyone"), std::string::npos) << error;
}
