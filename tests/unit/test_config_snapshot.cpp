// The config snapshot (config_snapshot.hpp): a fresh mail process reads the
// parse the CLI left, only while the file reads the same, and anything
// damaged, foreign or stale sends it back to the file.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_snapshot.hpp"
#include "test_util.hpp"

using namespace mailsuspend;
using namespace mailsuspend::test;

namespace {

// Every key of every group away from its default: a value the snapshot
// dropped would come back as the default and differ.
const char* const kEveryKey = R"(
store: { path = "/srv/ms"; capacity = 5000; counter_capacity = 300; fail_policy = "closed";
         read_group = "r"; write_group = "w"; login_group = "l"; login_capacity = 700;
         audit_log = "/srv/audit"; host_lock_wait_ms = 20; host_write_wait_ms = 90;
         admin_lock_timeout = "5m"; };
delivery: { default_mode = "reject"; queue_expiry = "2d"; flush_command = "/bin/true {address}";
            fail_queued_command = ""; exim_command = "/usr/local/sbin/exim -C /etc/x"; };
address: { default_domain = "example.net"; subaddress_separator = "-"; };
webmail: { hosts = [ "127.0.0.2", "2001:db8::/64" ]; };
messages: { login_denied = "no login"; unavailable = "gone"; send_suspended = "no send";
            rate_suspended = "slow down"; receive_rejected = "no mail";
            recipients_per_message = "too many"; ip_throttled = "wait"; domain_rate_suspended = "domain";
            unknown_recipients = "unknown"; failed_share = "bounces"; login_ips = "ips";
            include_reason = false; };
limits: { messages_per_day = 10; recipients_per_message = 5; offdomain_recipients_per_day = 7;
          offdomain_recipients_per_hour_per_ip = 3; domain_messages_per_hour = 11;
          domain_offdomain_recipients_per_day = 12; unknown_recipients_per_hour = 13;
          failed_share_percent = 14; failed_share_min_recipients = 15; login_ips_per_day = 16;
          login_ips_action = "logins"; suspend_for = "2h"; extend_on_attempt = false;
          escalate_after = 2; action = "hold"; };
spam: { threshold = 4; window = "12h"; default_abuse_contact = "abuse@example.net";
        abuse_contacts = ( { domain = "example.org"; contact = "abuse@example.org"; },
                           { domain = "example.com"; contact = "noc@example.com"; } );
        evidence_samples = 1; token_max_age = "7d"; sendmail_command = "/bin/cat"; action = "hold"; };
unblock: { self_service_interval = "30d"; };
doctor: { probe_address = "probe@example.net"; };
fleet: { sentinels = [ "10.0.0.1:26379", "[2001:db8::2]:26379" ]; master_name = "ms";
         node_id = "mx-1"; key_prefix = "ms:prod"; password_file = "/etc/mailsuspend/redis.pw";
         signing_key_file = "/etc/mailsuspend/fleet.key"; counters = "fleet"; stream_length = 5000; };
alerts: { webhook_url = "https://panel.example.com/hooks"; webhook_secret_file = "/etc/ms.secret";
          admin_address = "admin@example.net"; };
)";

class SnapshotTest : public ::testing::Test {
protected:
    TempDir dir;
    std::string path = dir / "mailsuspend.conf";
    std::string cache = dir / "cache";  // made by the first keep
    std::string why;

    std::string snapshot() const { return config_snapshot_path(path, cache); }

    Config parsed() {
        std::string error;
        auto cfg = load_config(path, error);
        EXPECT_TRUE(cfg) << error;
        return cfg ? *cfg : Config{};
    }

    // As the CLI does: with what load_config gave.
    SnapshotState keep_of(const std::string& config) {
        std::string error;
        const auto cfg = load_config(config, error);
        return keep_config_snapshot(config, cache, cfg ? &*cfg : nullptr, why);
    }
    void keep(SnapshotState expected) { EXPECT_EQ(keep_of(path), expected) << why; }
};

}  // namespace

TEST_F(SnapshotTest, KeepsEveryValueOfEveryGroup) {
    write_file(path, kEveryKey);
    keep(SnapshotState::written);
    keep(SnapshotState::current);
    const auto snap = read_config_snapshot(path, cache);
    ASSERT_TRUE(snap);
    const Config cfg = parsed();
    EXPECT_NE(cfg.messages, Config{}.messages);
    EXPECT_NE(cfg.limits, Config{}.limits);
    EXPECT_TRUE(*snap == cfg) << "a value did not survive the snapshot";
    EXPECT_EQ(snap->path, path);
}

TEST_F(SnapshotTest, KeepsTheShippedConfig) {
    write_file(path, read_file(MAILSUSPEND_SOURCE_DIR "/conf/mailsuspend.conf"));
    keep(SnapshotState::written);
    const auto snap = read_config_snapshot(path, cache);
    ASSERT_TRUE(snap);
    EXPECT_TRUE(*snap == parsed());
}

TEST_F(SnapshotTest, AnEditedFileIsParsedUntilTheSnapshotIsWrittenAgain) {
    write_file(path, "limits: { messages_per_day = 10; };\n");
    keep(SnapshotState::written);
    write_file(path, "limits: { messages_per_day = 11; };\n");
    EXPECT_FALSE(read_config_snapshot(path, cache));
    std::string error;
    const auto cfg = load_config_snapshot(path, cache, error);
    ASSERT_TRUE(cfg) << error;
    EXPECT_EQ(cfg->limits.messages_per_day, 11);
    keep(SnapshotState::written);
    ASSERT_TRUE(read_config_snapshot(path, cache));
    EXPECT_EQ(read_config_snapshot(path, cache)->limits.messages_per_day, 11);
}

TEST_F(SnapshotTest, AnyDamagedOrCutSnapshotIsNotRead) {
    write_file(path, kEveryKey);
    keep(SnapshotState::written);
    const std::string good = read_file(snapshot());
    const Config cfg = parsed();
    for (std::size_t i = 0; i < good.size(); i += 7) {
        std::string bad = good;
        bad[i] = static_cast<char>(bad[i] ^ 0x01);
        write_file(snapshot(), bad);
        EXPECT_FALSE(read_config_snapshot(path, cache)) << "a flipped bit at " << i << " was read";
        std::string error;
        const auto loaded = load_config_snapshot(path, cache, error);
        ASSERT_TRUE(loaded) << error;
        EXPECT_TRUE(*loaded == cfg);
    }
    for (std::size_t n = 0; n < good.size(); n += 5) {
        write_file(snapshot(), good.substr(0, n));
        EXPECT_FALSE(read_config_snapshot(path, cache)) << "a snapshot cut at " << n << " was read";
    }
    write_file(snapshot(), good + "x");
    EXPECT_FALSE(read_config_snapshot(path, cache)) << "trailing bytes were read";
}

TEST_F(SnapshotTest, OnlyASnapshotOfTheConfigsOwnerThatNobodyElseMayWriteIsRead) {
    ASSERT_EQ(::geteuid(), 0u) << "this test gives the snapshot to another owner (root only)";
    write_file(path, kEveryKey);
    keep(SnapshotState::written);
    ASSERT_TRUE(read_config_snapshot(path, cache));
    ASSERT_EQ(::chmod(snapshot().c_str(), 0664), 0);
    EXPECT_FALSE(read_config_snapshot(path, cache)) << "a group-writable snapshot was read";
    ASSERT_EQ(::chmod(snapshot().c_str(), 0644), 0);
    ASSERT_TRUE(read_config_snapshot(path, cache));
    ASSERT_EQ(::chown(snapshot().c_str(), 65534, static_cast<gid_t>(-1)), 0);
    EXPECT_FALSE(read_config_snapshot(path, cache)) << "another user's snapshot was read";
    // And the CLI, as the config's owner, replaces it.
    keep(SnapshotState::written);
    EXPECT_TRUE(read_config_snapshot(path, cache));
}

TEST_F(SnapshotTest, TheSnapshotIsNoMoreReadableThanTheConfig) {
    write_file(path, kEveryKey);
    ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
    keep(SnapshotState::written);
    struct stat st {};
    ASSERT_EQ(::stat(snapshot().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0640u);
}

TEST_F(SnapshotTest, ASymbolicLinkIsNotFollowed) {
    write_file(path, kEveryKey);
    keep(SnapshotState::written);
    const std::string real = dir / "elsewhere";
    ASSERT_EQ(::rename(snapshot().c_str(), real.c_str()), 0);
    ASSERT_EQ(::symlink(real.c_str(), snapshot().c_str()), 0);
    EXPECT_FALSE(read_config_snapshot(path, cache));
}

TEST_F(SnapshotTest, AnIncludeHasNoSnapshotAndRemovesTheOldOne) {
    write_file(path, "limits: { messages_per_day = 10; };\n");
    keep(SnapshotState::written);
    write_file(dir / "more.conf", "unblock: { self_service_interval = \"30d\"; };\n");
    write_file(path, "limits: { messages_per_day = 10; };\n@include \"" + (dir / "more.conf") + "\"\n");
    keep(SnapshotState::not_kept);
    EXPECT_NE(why.find("@include"), std::string::npos) << why;
    EXPECT_NE(::access(snapshot().c_str(), F_OK), 0) << "the old snapshot is still there";
    std::string error;
    const auto cfg = load_config_snapshot(path, cache, error);
    ASSERT_TRUE(cfg) << error;
    EXPECT_EQ(cfg->self_service_interval, 30 * 86400);
}

TEST_F(SnapshotTest, ABadFileHasNoSnapshotAndKeepsItsError) {
    write_file(path, "limits: { messages_per_day = 10; };\n");
    keep(SnapshotState::written);
    write_file(path, "limits: { messages_per_day = -1; };\n");
    keep(SnapshotState::not_kept);
    EXPECT_NE(why.find("limits.messages_per_day"), std::string::npos) << why;
    std::string error;
    EXPECT_FALSE(load_config_snapshot(path, cache, error));
    EXPECT_NE(error.find(path + ":1:"), std::string::npos) << error;
}

TEST_F(SnapshotTest, AMissingConfigIsAnErrorWhateverTheSnapshot) {
    write_file(path, "limits: { messages_per_day = 10; };\n");
    keep(SnapshotState::written);
    ASSERT_EQ(::unlink(path.c_str()), 0);
    keep(SnapshotState::not_kept);
    std::string error;
    EXPECT_FALSE(load_config_snapshot(path, cache, error));
    EXPECT_NE(error.find("cannot read the file"), std::string::npos) << error;
}

TEST_F(SnapshotTest, EachConfigPathHasItsOwnSnapshot) {
    EXPECT_NE(config_snapshot_path("/etc/mailsuspend/mailsuspend.conf", cache),
              config_snapshot_path("/etc/mailsuspend/other.conf", cache));
    EXPECT_EQ(config_snapshot_path(path, cache).rfind(cache + "/config-", 0), 0u);
}

TEST_F(SnapshotTest, WritingOneRemovesTheSnapshotsOfConfigsThatAreGone) {
    const std::string other = dir / "other.conf";
    write_file(other, "limits: { messages_per_day = 10; };\n");
    ASSERT_EQ(keep_of(other), SnapshotState::written) << why;
    write_file(path, "limits: { messages_per_day = 12; };\n");
    keep(SnapshotState::written);
    EXPECT_EQ(::access(config_snapshot_path(other, cache).c_str(), F_OK), 0) << "a live config's snapshot went";
    ASSERT_EQ(::unlink(other.c_str()), 0);
    write_file(path, "limits: { messages_per_day = 13; };\n");
    keep(SnapshotState::written);
    EXPECT_NE(::access(config_snapshot_path(other, cache).c_str(), F_OK), 0) << "an orphan stayed";
    EXPECT_TRUE(read_config_snapshot(path, cache));
}

TEST_F(SnapshotTest, AFileWithANulOctetHasNoSnapshot) {
    write_file(path, std::string("limits: { messages_per_day = 10; };\n# \0 limits: { x = 1; };\n", 60));
    keep(SnapshotState::not_kept);
    EXPECT_NE(why.find("NUL"), std::string::npos) << why;
    EXPECT_FALSE(read_config_snapshot(path, cache));
}

TEST_F(SnapshotTest, ASnapshotThatDiffersFromThisParseIsWrittenAgain) {
    // As an older version would have left it: the same text, other values
    // (another default, another reading of a key).
    write_file(path, "limits: { messages_per_day = 10; };\n");
    const std::string text = read_file(path);
    Config older = parsed();
    older.limits.messages_per_day = 999;
    ASSERT_EQ(::mkdir(cache.c_str(), 0755), 0);
    write_file(snapshot(), detail::encode_config_snapshot(path, text, older));
    ASSERT_EQ(::chmod(snapshot().c_str(), 0644), 0);
    ASSERT_TRUE(read_config_snapshot(path, cache));
    EXPECT_EQ(read_config_snapshot(path, cache)->limits.messages_per_day, 999);  // until the CLI runs
    keep(SnapshotState::written);
    ASSERT_TRUE(read_config_snapshot(path, cache));
    EXPECT_EQ(read_config_snapshot(path, cache)->limits.messages_per_day, 10);
    keep(SnapshotState::current);
}

TEST_F(SnapshotTest, ASnapshotOfATextThisVersionRefusesIsRemoved) {
    write_file(path, "limits: { messages_per_day = -1; };\n");
    ASSERT_EQ(::mkdir(cache.c_str(), 0755), 0);
    write_file(snapshot(), detail::encode_config_snapshot(path, read_file(path), Config{}));
    ASSERT_EQ(::chmod(snapshot().c_str(), 0644), 0);
    keep(SnapshotState::not_kept);
    EXPECT_NE(::access(snapshot().c_str(), F_OK), 0) << "the older version's snapshot is still read";
    std::string error;
    EXPECT_FALSE(load_config_snapshot(path, cache, error));
}

TEST_F(SnapshotTest, OnlyTheConfigsOwnerKeepsItsSnapshot) {
    ASSERT_EQ(::geteuid(), 0u) << "this test gives the config to another owner (root only)";
    write_file(path, "limits: { messages_per_day = 10; };\n");
    ASSERT_EQ(::chown(path.c_str(), 65534, static_cast<gid_t>(-1)), 0);
    keep(SnapshotState::not_kept);
    EXPECT_NE(why.find("owner"), std::string::npos) << why;
    EXPECT_NE(::access(snapshot().c_str(), F_OK), 0) << "root wrote a snapshot of another user's config";
}

TEST_F(SnapshotTest, TheDirectoryIsMadeForTheMailProcessesWhateverTheUmask) {
    write_file(path, "limits: { messages_per_day = 10; };\n");
    const mode_t old = ::umask(077);
    keep(SnapshotState::written);
    ::umask(old);
    struct stat st {};
    ASSERT_EQ(::stat(cache.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0755u);
}
