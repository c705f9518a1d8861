// The C reader of the Dovecot sessions (common/reader/ms_light.h): the same
// store the C++ core writes, answered without the core.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <string>

#include "ms_light.h"
#include "store_fixture.hpp"

namespace mailsuspend::test {
namespace {

class LightReader : public StoreTest {
protected:
    ms_light* light = nullptr;

    void TearDown() override { ms_light_close(&light); }

    ms_light_answer ask(const std::string& key, Service s) {
        if (!light) light = ms_light_open(store_dir.c_str());
        return ms_light_check(light, key.data(), key.size(), static_cast<ms_service>(s));
    }
};

TEST_F(LightReader, AllowsWhatNothingFlagsAndAsksTheCoreForAFlag) {
    auto w = writer(true);
    TargetRecord domain = suspended_record("@example.org", Service::pop3);
    commit(*w, {suspended_record("bob@example.com", Service::imap), domain,
                suspended_record("send@example.com", Service::send)});
    EXPECT_EQ(ask("alice@example.com", Service::imap), MS_LIGHT_ALLOWED);
    EXPECT_EQ(ask("bob@example.com", Service::imap), MS_LIGHT_ASK_CORE);
    EXPECT_EQ(ask("bob@example.com", Service::pop3), MS_LIGHT_ALLOWED);
    EXPECT_EQ(ask("send@example.com", Service::imap), MS_LIGHT_ALLOWED);
    EXPECT_EQ(ask("carol@example.org", Service::pop3), MS_LIGHT_ASK_CORE) << "the domain's flag";
    EXPECT_EQ(ask("carol@example.org", Service::imap), MS_LIGHT_ALLOWED);
    EXPECT_EQ(ask("@example.org", Service::pop3), MS_LIGHT_ASK_CORE);
    EXPECT_EQ(ask("no-at-sign", Service::imap), MS_LIGHT_ASK_CORE);
    EXPECT_STREQ(ms_light_error(light), "");
}

TEST_F(LightReader, SeesChangesAndFollowsARebuiltGeneration) {
    auto w = writer(true);
    EXPECT_EQ(ask("bob@example.com", Service::imap), MS_LIGHT_ALLOWED);
    const uint64_t stamp = ms_light_change_stamp(light);
    EXPECT_NE(stamp, 0u);
    commit(*w, {suspended_record("bob@example.com", Service::imap)});
    EXPECT_NE(ms_light_change_stamp(light), stamp);
    EXPECT_EQ(ask("bob@example.com", Service::imap), MS_LIGHT_ASK_CORE);
    std::string error;
    ASSERT_TRUE(w->rebuild(1000, error)) << error;  // a new file: this mapping is retired
    TargetRecord lifted;
    lifted.key = "bob@example.com";
    commit(*w, {lifted});
    EXPECT_EQ(ask("bob@example.com", Service::imap), MS_LIGHT_ALLOWED);
    commit(*w, {suspended_record("bob@example.com", Service::imap)});
    EXPECT_EQ(ask("bob@example.com", Service::imap), MS_LIGHT_ASK_CORE);
}

TEST_F(LightReader, AnUnreadableStoreIsTheCoresToAnswer) {
    EXPECT_EQ(ask("bob@example.com", Service::imap), MS_LIGHT_ASK_CORE);
    EXPECT_NE(std::string(ms_light_error(light)).find("No such file"), std::string::npos)
        << ms_light_error(light);
    EXPECT_EQ(ms_light_change_stamp(light), 0u);
    init();
    const uint64_t bad_magic = 0;
    patch(0, &bad_magic, sizeof bad_magic);
    ms_light_close(&light);
    EXPECT_EQ(ask("bob@example.com", Service::imap), MS_LIGHT_ASK_CORE);
    EXPECT_NE(std::string(ms_light_error(light)).find("bad magic"), std::string::npos) << ms_light_error(light);
}

// As the core's reader (StoreTest.ReaderRefusesAStoreLeftMidChangeBeforeAReboot):
// the boot id is read only for a header marked mid-change, and a store a
// writer left mid-change before a reboot is the core's to answer (it applies
// the fail policy) until a writer repairs it.
TEST_F(LightReader, AStoreLeftMidChangeBeforeARebootIsTheCoresToAnswer) {
    {
        auto w = writer(true);
        commit(*w, {suspended_record("bob@example.com", Service::imap)});
    }
    const uint32_t dirty = 1;
    patch(offsetof(ms_store_header, dirty), &dirty, sizeof dirty);
    EXPECT_EQ(ask("alice@example.com", Service::imap), MS_LIGHT_ALLOWED)
        << "same boot: a live writer may simply be applying";
    const char other_boot[40] = "00000000-0000-0000-0000-000000000000";
    patch(offsetof(ms_store_header, boot_id), other_boot, sizeof other_boot);
    ms_light_close(&light);  // a session that maps the store now
    EXPECT_EQ(ask("alice@example.com", Service::imap), MS_LIGHT_ASK_CORE);
    EXPECT_NE(std::string(ms_light_error(light)).find("before a reboot"), std::string::npos)
        << ms_light_error(light);
    writer();  // the repair
    ms_light_close(&light);
    EXPECT_EQ(ask("alice@example.com", Service::imap), MS_LIGHT_ALLOWED);
    EXPECT_EQ(ask("bob@example.com", Service::imap), MS_LIGHT_ASK_CORE);
    EXPECT_STREQ(ms_light_error(light), "");
}

TEST_F(LightReader, AFileTruncatedUnderTheMappingIsNoCrash) {
    auto w = writer(true);
    commit(*w, {suspended_record("bob@example.com", Service::imap)});
    EXPECT_EQ(ask("alice@example.com", Service::imap), MS_LIGHT_ALLOWED);
    // Cut in place to the header alone: the slots' pages are gone (SIGBUS
    // on touch), and stat shows the change only after the next interval.
    ASSERT_EQ(::truncate(store_file.c_str(), 4096), 0);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(ask("alice@example.com", Service::imap), MS_LIGHT_ASK_CORE);
    EXPECT_NE(std::string(ms_light_error(light)), "");
}

TEST(Ticket, RoundTripsAndRefusesWhatIsNoTicket) {
    char buf[MS_TICKET_MAX];
    const std::string key = "bob@example.com";
    ASSERT_EQ(ms_ticket_format(buf, sizeof buf, MS_SERVICE_WEBMAIL, key.data(), key.size(), "/var/lib/ms x"), 1);
    EXPECT_STREQ(buf, "1 2 bob@example.com /var/lib/ms x");
    ms_ticket t{};
    ASSERT_EQ(ms_ticket_parse(buf, &t), 1);
    EXPECT_EQ(t.service, MS_SERVICE_WEBMAIL);
    EXPECT_EQ(std::string(t.key, t.key_len), key);
    EXPECT_STREQ(t.store_dir, "/var/lib/ms x");
    EXPECT_EQ(ms_ticket_format(buf, 20, MS_SERVICE_IMAP, key.data(), key.size(), "/var/lib/ms"), 0) << "too long";
    EXPECT_EQ(ms_ticket_format(buf, sizeof buf, MS_SERVICE_IMAP, "a b", 3, "/x"), 0);
    EXPECT_EQ(ms_ticket_format(buf, sizeof buf, MS_SERVICE_IMAP, key.data(), key.size(), "relative"), 0);
    for (const char* bad : {"", "1 0 bob@example.com", "2 0 bob@example.com /x", "1 7 bob@example.com /x",
                            "1 0  /x", "1 0 bob@example.com x", "1 00 bob@example.com /x"})
        EXPECT_EQ(ms_ticket_parse(bad, &t), 0) << bad;
    EXPECT_EQ(ms_ticket_parse(nullptr, &t), 0);
}

}  // namespace
}  // namespace mailsuspend::test
