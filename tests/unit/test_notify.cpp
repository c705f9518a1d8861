// The pieces of `mailsuspend notify` (issue 16, item 4): the position file,
// the audit log follower across restarts, rotations and a log cut back, the
// webhook signature, the secret file's checks, and which audit lines mail
// the admin.  tests/notify runs the whole agent against a real receiver.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>

#include "audit_follow.hpp"
#include "notify_alert.hpp"
#include "notify_webhook.hpp"
#include "test_util.hpp"

using namespace mailsuspend;
using namespace mailsuspend::cli;
using namespace mailsuspend::test;

namespace {

uint64_t inode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_ino;
}

void append(const std::string& path, const std::string& text) {
    std::FILE* f = std::fopen(path.c_str(), "ab");
    ASSERT_TRUE(f);
    std::fputs(text.c_str(), f);
    std::fclose(f);
}

// Every line the follower has now, in order.
std::vector<std::string> drain(AuditFollower& f, std::string* notes = nullptr) {
    std::vector<std::string> out;
    std::string line, note;
    for (int i = 0; i < 100; ++i) {
        const bool got = f.next(line, note);
        if (notes && !note.empty()) *notes += note + "\n";
        if (!got) break;
        out.push_back(line);
    }
    return out;
}

using Lines = std::vector<std::string>;

}  // namespace

TEST(NotifyPosition, MissingFileIsTheStartAndSavedOneComesBack) {
    TempDir dir;
    NotifyPosition p{9, 9};
    std::string error;
    ASSERT_TRUE(load_notify_position(dir.path(), p, error)) << error;
    EXPECT_EQ(p, (NotifyPosition{0, 0}));
    ASSERT_TRUE(save_notify_position(dir.path(), NotifyPosition{123456789012ULL, 4096}, error)) << error;
    EXPECT_EQ(read_file(dir / "notify-position"), "123456789012 4096\n");
    ASSERT_TRUE(load_notify_position(dir.path(), p, error)) << error;
    EXPECT_EQ(p, (NotifyPosition{123456789012ULL, 4096}));
    EXPECT_FALSE(std::filesystem::exists(dir / "notify-position.new"));
}

TEST(NotifyPosition, DamagedFileIsRefusedWithTheFix) {
    TempDir dir;
    write_file(dir / "notify-position", "garbage\n");
    NotifyPosition p;
    std::string error;
    EXPECT_FALSE(load_notify_position(dir.path(), p, error));
    EXPECT_NE(error.find("damaged"), std::string::npos) << error;
}

TEST(AuditFollower, ReturnsCompleteLinesOnlyAndPositionAfterEach) {
    TempDir dir;
    const std::string log = dir / "audit.log";
    AuditFollower f(log, {});
    EXPECT_TRUE(drain(f).empty()) << "no log yet";
    write_file(log, "{\"a\":1}\n{\"b\":2}\n{\"c\":");
    EXPECT_EQ(drain(f), (Lines{"{\"a\":1}", "{\"b\":2}"}));
    EXPECT_EQ(f.position(), (NotifyPosition{inode(log), 16}));
    append(log, "3}\n");
    EXPECT_EQ(drain(f), (Lines{"{\"c\":3}"}));
    EXPECT_EQ(f.position().offset, 24u);
}

TEST(AuditFollower, RestartGoesOnFromTheSavedPosition) {
    TempDir dir;
    const std::string log = dir / "audit.log";
    write_file(log, "one\ntwo\nthree\n");
    AuditFollower f(log, NotifyPosition{inode(log), 4});
    EXPECT_EQ(drain(f), (Lines{"two", "three"}));
}

TEST(AuditFollower, RotationFinishesTheOldFileThenReadsTheNewFromItsStart) {
    TempDir dir;
    const std::string log = dir / "audit.log";
    write_file(log, "one\n");
    AuditFollower f(log, {});
    EXPECT_EQ(drain(f), (Lines{"one"}));
    append(log, "two\n");
    ASSERT_EQ(std::rename(log.c_str(), (log + ".1").c_str()), 0);
    write_file(log, "three\n");
    std::string notes;
    EXPECT_EQ(drain(f, &notes), (Lines{"two", "three"}));
    EXPECT_NE(notes.find("rotated"), std::string::npos) << notes;
    EXPECT_EQ(f.position(), (NotifyPosition{inode(log), 6}));
}

TEST(AuditFollower, RotatedWhileStoppedIsFinishedFromDotOne) {
    TempDir dir;
    const std::string log = dir / "audit.log";
    write_file(log, "one\ntwo\n");
    const NotifyPosition saved{inode(log), 4};
    ASSERT_EQ(std::rename(log.c_str(), (log + ".1").c_str()), 0);
    write_file(log, "three\n");
    AuditFollower f(log, saved);
    EXPECT_EQ(drain(f), (Lines{"two", "three"}));
}

TEST(AuditFollower, CutBackLogGoesOnFromItsNewEnd) {
    TempDir dir;
    const std::string log = dir / "audit.log";
    write_file(log, "one\ntwo\n");
    AuditFollower f(log, {});
    EXPECT_EQ(drain(f).size(), 2u);
    EXPECT_TRUE(f.line_still_there());
    ASSERT_EQ(::truncate(log.c_str(), 4), 0);  // undo_audit: a change that was not stored
    EXPECT_FALSE(f.line_still_there()) << "the line returned last was taken back";
    std::string notes;
    EXPECT_TRUE(drain(f, &notes).empty());
    EXPECT_NE(notes.find("cut back"), std::string::npos) << notes;
    append(log, "three\n");
    EXPECT_EQ(drain(f), (Lines{"three"}));
}

// The signature a receiver computes: HMAC-SHA256 (RFC 4231, test case 2).
TEST(WebhookSignature, IsHmacSha256OfTheBodyInHex) {
    EXPECT_EQ(webhook_signature("Jefe", "what do ya want for nothing?"),
              "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    EXPECT_NE(webhook_signature("Jefe", "what do ya want for nothing!"),
              webhook_signature("Jefe", "what do ya want for nothing?"));
}

TEST(WebhookSecret, MustBeRootOnlyAndLongEnough) {
    TempDir dir;
    const std::string path = dir / "secret";
    write_file(path, "0123456789abcdef0123\n");
    std::string secret, error;
    ::chmod(path.c_str(), 0640);
    EXPECT_FALSE(load_webhook_secret(path, secret, error));
    EXPECT_NE(error.find("chmod 0600"), std::string::npos) << error;
    ::chmod(path.c_str(), 0600);
    ASSERT_TRUE(load_webhook_secret(path, secret, error)) << error;
    EXPECT_EQ(secret, "0123456789abcdef0123") << "the final newline is not part of it";
    write_file(path, "short\n");
    EXPECT_FALSE(load_webhook_secret(path, secret, error));
    EXPECT_NE(error.find("at least 16"), std::string::npos) << error;
    EXPECT_FALSE(load_webhook_secret(dir / "missing", secret, error));
}

TEST(NotifyAlert, AutomaticSuspensionsMailAdminSuspensionsDoNot) {
    const std::string rate =
        R"j({"time":100,"actor":{"uid":0,"name":"exim"},"action":"suspend","target":"a@example.com",)j"
        R"j("services":"send","reason":"automatic: 6 messages within 24h (limits.messages_per_day = 5)","seq":7,)j"
        R"j("before":{},"after":{"send":{"suspended":true,"reason":"automatic: 6 messages within 24h )j"
        R"j((limits.messages_per_day = 5)","since":100,"expires":86500,"locked":false,"source":"rate",)j"
        R"j("scope":"mailbox"}}})j";
    AutomaticSuspension s;
    ASSERT_TRUE(automatic_suspension(rate, s));
    EXPECT_EQ(s.target, "a@example.com");
    EXPECT_EQ(s.source, "rate");
    EXPECT_EQ(s.expires, 86500);
    EXPECT_EQ(s.seq, 7u);
    Config cfg;
    cfg.alerts.admin_address = "postmaster@example.com";
    const std::string mail = alert_mail(cfg, s);
    EXPECT_EQ(mail.rfind("To: postmaster@example.com\n", 0), 0u) << mail;
    for (const char* part : {"6 messages within 24h (limits.messages_per_day = 5)", "/evidence/a@example.com",
                             "seq 7", "Auto-Submitted: auto-generated"})
        EXPECT_NE(mail.find(part), std::string::npos) << part << " not in\n" << mail;

    std::string admin = rate;
    admin.replace(admin.find("\"source\":\"rate\""), 15, "\"source\":\"admin\"");
    EXPECT_FALSE(automatic_suspension(admin, s)) << "an admin's suspension";
    std::string lifted = rate;
    lifted.replace(lifted.find("\"action\":\"suspend\""), 18, "\"action\":\"unsuspend\"");
    EXPECT_FALSE(automatic_suspension(lifted, s));
    EXPECT_FALSE(automatic_suspension("not json", s));
}

TEST(NotifyAlert, EscalationSaysLockedAndHowToLift) {
    AutomaticSuspension s;
    s.target = "b@example.com";
    s.source = "spam";
    s.locked = true;
    s.reason = "automatic: 5 spam reports within 24h (spam.threshold = 5); repeated, so permanent";
    Config cfg;
    cfg.alerts.admin_address = "postmaster@example.com";
    const std::string mail = alert_mail(cfg, s);
    EXPECT_NE(mail.find("escalated"), std::string::npos) << mail;
    EXPECT_NE(mail.find("--service send --admin"), std::string::npos) << mail;
}
