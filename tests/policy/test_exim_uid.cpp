// The automatic suspension is written by the Exim process itself, which
// runs as Debian-exim, not root: store files are group-writable by
// store.write_group.  A child drops to nobody with the write group as its
// only extra group and crosses a limit; the suspension must be stored.
// Needs root to change uid: without it the test FAILS (never skips).
#include <grp.h>
#include <pwd.h>
#include <sys/wait.h>

#include "policy_fixture.hpp"

using namespace mailsuspend;
using namespace policy_test;

namespace {

constexpr const char* kGroup = "Debian-exim";  // exim4-base creates it; the test needs the real one

class EximUidTest : public PolicyFixture {
protected:
    std::string extra_config() const override {
        return "limits: { messages_per_day = 2; suspend_for = \"1h\"; };\n";
    }
    void SetUp() override {
        ASSERT_EQ(::geteuid(), 0u) << "this test must run as root (it drops to nobody to act as Exim)";
        ASSERT_NE(::getgrnam(kGroup), nullptr) << "group " << kGroup << " missing: install exim4-base";
        PolicyFixture::SetUp();
        // Re-create the store (and the audit log) with the write group.
        std::string text = read_file(config_path);
        const std::string from = "read_group = \"\"; write_group = \"\";";
        text.replace(text.find(from), from.size(),
                     std::string("read_group = \"") + kGroup + "\"; write_group = \"" + kGroup + "\";");
        write_file(config_path, text);
        std::filesystem::remove_all(dir + "/store");
        ::chmod(dir.c_str(), 0755);
        ::chmod(config_path.c_str(), 0644);
        std::filesystem::remove(dir + "/audit.log");
        ASSERT_EQ(run_cli({"init"}), 0) << cli_output;  // creates the audit log for the group
        ::chmod(mail_dir.c_str(), 0777);  // the fake sendmail runs as nobody too
    }
};

TEST_F(EximUidTest, AnUnprivilegedProcessInWriteGroupSuspendsKeepsSamplesAndMakesTokens) {
    // Root's CLI makes the mailbox's evidence directory first, under a usual umask:
    // Exim must still be able to add to it.
    ::umask(022);
    write_file(dir + "/report.eml", "Subject: reported by a panel\n\nspam\n");
    ASSERT_EQ(run_cli({"report-spam", "a@example.com", "--evidence", dir + "/report.eml"}), 0) << cli_output;
    write_file(dir + "/child.log", "", 0666);
    write_file(dir + "/sendmail-args", "", 0666);  // the fake sendmail runs as nobody
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        const gid_t group = ::getgrnam(kGroup)->gr_gid;
        const passwd* nobody = ::getpwnam("nobody");
        if (!nobody || ::setgroups(1, &group) != 0 || ::setgid(nobody->pw_gid) != 0 || ::setuid(nobody->pw_uid) != 0)
            ::_exit(10);
        // The host's log goes to a file the parent shows on failure.
        static FILE* log = std::fopen((dir + "/child.log").c_str(), "w");
        auto logger = [](void*, mailsuspend_log_level, const char* msg) {
            if (log) std::fprintf(log, "%s\n", msg), std::fflush(log);
        };
        struct mailsuspend_handle* h = mailsuspend_open(config_path.c_str(), logger, nullptr, nullptr);
        const char* rcpt[] = {"b@example.com"};
        mailsuspend_result r{};
        for (int i = 0; i < 3; ++i) mailsuspend_count_message(h, "a@example.com", "192.0.2.1", rcpt, 1, &r);
        if (r.verdict != MAILSUSPEND_DENY) ::_exit(11);
        if (mailsuspend_keep_sample(h, "a@example.com", "Subject: x\n\ny\n", 14) != 1) ::_exit(12);
        char token[MAILSUSPEND_TOKEN_MAX];
        if (mailsuspend_sender_token(h, "a@example.com", token, sizeof token) <= 0) ::_exit(13);
        mailsuspend_close(&h);
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "10: cannot drop privileges, 11: not refused, 12: sample not kept, "
                                         "13: no token (key not readable by the group)";
    SCOPED_TRACE("child log:\n" + read_file(dir + "/child.log"));
    const ServiceState s = record("a@example.com").at(Service::send);
    EXPECT_TRUE(s.suspended) << "the unprivileged process could not write the store";
    EXPECT_EQ(s.source, Source::rate);
    EXPECT_NE(read_file(dir + "/audit.log").find("\"name\":\"exim\""), std::string::npos);
    EXPECT_TRUE(mails().empty()) << "the unprivileged (host) process sends no notice";
    // The sweep (root, as the timer runs it) sends the notice the host left pending.
    ASSERT_EQ(run_cli({"sweep"}), 0) << cli_output;
    const auto sent = mails();
    ASSERT_EQ(sent.size(), 1u) << "the AUP notice, sent by the sweep";
    EXPECT_NE(sent[0].find("(sending limits)"), std::string::npos);
    // Both samples went out (root's and Exim's, written by the unprivileged process) and were removed.
    EXPECT_NE(sent[0].find("2 sample message(s) are attached"), std::string::npos) << sent[0];
    int samples_left = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir + "/store/evidence/a@example.com"))
        samples_left += e.path().filename().string().rfind("sample-", 0) == 0;
    EXPECT_EQ(samples_left, 0);
}

}  // namespace
