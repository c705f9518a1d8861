// Session: every policy rule of a change, the audit log and host commands.
#include <sys/stat.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "counters.hpp"
#include "operations.hpp"
#include "spawn.hpp"
#include "store.hpp"
#include "text.hpp"
#include "test_util.hpp"

using namespace mailsuspend;
using namespace mailsuspend::test;
using nlohmann::json;

namespace {

constexpr int64_t kNow = 1790000000;
const Actor kRoot{0, "root"};
const Actor kPanel{1000, "panel"};

uint8_t bit(Service s) { return static_cast<uint8_t>(1u << static_cast<int>(s)); }

class OperationsTest : public ::testing::Test {
protected:
    TempDir dir;
    Config cfg;
    std::unique_ptr<StoreWriter> writer;

    void SetUp() override {
        cfg.store_path = dir / "store";
        cfg.store_capacity = 16;
        cfg.read_group = "";
        cfg.write_group = "";
        cfg.audit_log = dir / "audit.log";
        cfg.flush_command = "";
        cfg.fail_queued_command = "";
        open_writer();
    }

    void open_writer() {
        writer.reset();
        std::string error;
        writer = StoreWriter::open(cfg, true, error);
        ASSERT_TRUE(writer) << error;
    }

    // Runs body in a session at now and commits it; returns body's outcome.
    Outcome run(int64_t now, const Actor& actor, const std::function<Outcome(Session&)>& body,
                std::vector<std::string>* warnings = nullptr) {
        Session s(cfg, *writer, actor, now);
        Outcome o = body(s);
        if (!o.ok()) return o;
        std::vector<std::string> w;
        Outcome c = s.commit(w);
        if (warnings) *warnings = w;
        EXPECT_TRUE(c.ok()) << c.message;
        return o;
    }

    Outcome suspend(const std::string& target, const std::string& services, int64_t now = kNow,
                    const Actor& actor = kRoot, std::function<void(SuspendArgs&)> tweak = {}) {
        SuspendArgs a;
        a.target = target;
        std::string error;
        a.services = parse_service_list(services, error).value_or(0);
        if (tweak) tweak(a);
        return run(now, actor, [&](Session& s) { return s.suspend(a); });
    }

    Outcome unsuspend(const std::string& target, const std::string& services, int64_t now = kNow,
                      const Actor& actor = kRoot, std::function<void(UnsuspendArgs&)> tweak = {}) {
        UnsuspendArgs a;
        a.target = target;
        std::string error;
        a.services = parse_service_list(services, error).value_or(0);
        if (tweak) tweak(a);
        return run(now, actor, [&](Session& s) { return s.unsuspend(a); });
    }

    // The stored record (empty with exists=false when absent).
    TargetRecord stored(const std::string& key, bool* exists = nullptr) {
        TargetRecord r;
        EXPECT_TRUE(writer->get(key, r, exists));
        return r;
    }

    std::vector<json> audit() {
        std::vector<json> out;
        for (const auto& line : read_lines(cfg.audit_log)) out.push_back(json::parse(line));
        return out;
    }

    // A script that writes its argument count and arguments, one a line, to out.
    std::string recorder(const std::string& out, int exit_code = 0) {
        const std::string path = dir / ("rec" + std::to_string(exit_code) + ".sh");
        write_file(path, "#!/bin/sh\n{ echo \"$#\"; for a in \"$@\"; do echo \"$a\"; done; } >> '" + out +
                             "'\nexit " + std::to_string(exit_code) + "\n");
        ::chmod(path.c_str(), 0755);
        return path;
    }
};

}  // namespace

TEST_F(OperationsTest, SuspendAndUnsuspend) {
    Outcome o = suspend("Alice+x@Example.COM", "imap,pop3", kNow, kRoot,
                        [](SuspendArgs& a) { a.reason = "unpaid invoice"; });
    ASSERT_TRUE(o.ok()) << o.message;
    EXPECT_NE(o.message.find("alice@example.com"), std::string::npos) << o.message;
    TargetRecord r = stored("alice@example.com");
    EXPECT_EQ(r.in_force_mask(kNow), bit(Service::imap) | bit(Service::pop3));
    EXPECT_EQ(r.at(Service::imap).reason, "unpaid invoice");
    EXPECT_EQ(r.at(Service::imap).since, kNow);
    EXPECT_EQ(r.at(Service::imap).expires, 0);
    EXPECT_EQ(r.at(Service::imap).source, Source::admin);

    ASSERT_TRUE(unsuspend("alice@example.com", "imap").ok());
    r = stored("alice@example.com");
    EXPECT_EQ(r.in_force_mask(kNow), bit(Service::pop3));

    ASSERT_TRUE(unsuspend("alice@example.com", "all").ok());
    bool exists = true;
    stored("alice@example.com", &exists);
    EXPECT_FALSE(exists) << "a record with nothing left is erased";
}

TEST_F(OperationsTest, UnsuspendNothingIsOk) {
    Outcome o = unsuspend("nobody@example.com", "all");
    EXPECT_TRUE(o.ok());
    EXPECT_NE(o.message.find("had none"), std::string::npos) << o.message;
    EXPECT_FALSE(std::filesystem::exists(cfg.audit_log)) << "nothing changed, nothing audited";
}

TEST_F(OperationsTest, SuspendWithDurationAndMode) {
    ASSERT_TRUE(suspend("@example.com", "receive", kNow, kRoot, [](SuspendArgs& a) {
                    a.duration = 3600;
                    a.mode = DeliveryMode::reject;
                }).ok());
    const TargetRecord r = stored("@example.com");
    EXPECT_EQ(r.at(Service::receive).expires, kNow + 3600);
    EXPECT_EQ(r.mode, DeliveryMode::reject);
    EXPECT_TRUE(r.at(Service::receive).in_force(kNow + 3599));
    EXPECT_FALSE(r.at(Service::receive).in_force(kNow + 3600));
}

TEST_F(OperationsTest, BadInputChangesNothing) {
    Session s(cfg, *writer, kRoot, kNow);
    SuspendArgs a;
    a.target = "not an address";
    a.services = bit(Service::imap);
    EXPECT_EQ(s.suspend(a).code, Exit::bad_input);
    a.target = "a@example.com";
    a.reason = "line\r\nInjected: yes";
    Outcome o = s.suspend(a);
    EXPECT_EQ(o.code, Exit::bad_input);
    EXPECT_NE(o.message.find("CR/LF"), std::string::npos) << o.message;
    a.reason = "";
    a.services = 0;
    EXPECT_EQ(s.suspend(a).code, Exit::bad_input);
    a.services = bit(Service::imap);
    a.duration = -1;
    EXPECT_EQ(s.suspend(a).code, Exit::bad_input);
    EXPECT_TRUE(s.empty());
    std::vector<std::string> w;
    EXPECT_TRUE(s.commit(w).ok());
    bool exists = true;
    stored("a@example.com", &exists);
    EXPECT_FALSE(exists);
    EXPECT_EQ(writer->stats().seq, 0u);
}

TEST_F(OperationsTest, HoldIsASendStateThatExcludesFailQueued) {
    ASSERT_TRUE(suspend("h@example.com", "send,imap", kNow, kRoot, [](SuspendArgs& a) { a.hold = true; }).ok());
    const TargetRecord r = stored("h@example.com");
    EXPECT_TRUE(r.at(Service::send).hold);
    EXPECT_FALSE(r.at(Service::imap).hold) << "only send holds";
    EXPECT_EQ(status_json(cfg, "h@example.com", &r, nullptr, kNow)["services"]["send"]["hold"], true);
    Outcome o = suspend("i@example.com", "imap", kNow, kRoot, [](SuspendArgs& a) { a.hold = true; });
    EXPECT_EQ(o.code, Exit::bad_input);
    EXPECT_NE(o.message.find("--hold needs the send service"), std::string::npos) << o.message;
    o = suspend("i@example.com", "send", kNow, kRoot, [](SuspendArgs& a) { a.hold = a.fail_queued = true; });
    EXPECT_EQ(o.code, Exit::bad_input);
    // A re-suspend without --hold refuses again.
    ASSERT_TRUE(suspend("h@example.com", "send", kNow, kRoot).ok());
    EXPECT_FALSE(stored("h@example.com").at(Service::send).hold);
}

TEST_F(OperationsTest, LockNeedsRootWithAdmin) {
    ASSERT_TRUE(suspend("a@example.com", "all", kNow, kRoot, [](SuspendArgs& a) { a.lock = true; }).ok());
    // Without --admin, even root is refused.
    Outcome o = unsuspend("a@example.com", "imap", kNow, kRoot);
    EXPECT_EQ(o.code, Exit::refused);
    EXPECT_NE(o.message.find("locked"), std::string::npos) << o.message;
    // --admin without root is refused.
    o = unsuspend("a@example.com", "imap", kNow, kPanel, [](UnsuspendArgs& a) { a.admin = true; });
    EXPECT_EQ(o.code, Exit::refused);
    EXPECT_EQ(stored("a@example.com").in_force_mask(kNow), kAllServicesMask) << "a refusal changes nothing";
    // Root with --admin lifts it.
    o = unsuspend("a@example.com", "imap", kNow, kRoot, [](UnsuspendArgs& a) { a.admin = true; });
    ASSERT_TRUE(o.ok()) << o.message;
    EXPECT_EQ(stored("a@example.com").in_force_mask(kNow), kAllServicesMask & ~bit(Service::imap));
}

TEST_F(OperationsTest, ResuspendKeepsTheLock) {
    ASSERT_TRUE(suspend("a@example.com", "send", kNow, kRoot, [](SuspendArgs& a) { a.lock = true; }).ok());
    ASSERT_TRUE(suspend("a@example.com", "send", kNow + 5, kPanel).ok());
    EXPECT_TRUE(stored("a@example.com").at(Service::send).locked);
    EXPECT_EQ(unsuspend("a@example.com", "send", kNow + 6, kPanel).code, Exit::refused);
}

TEST_F(OperationsTest, ResuspendCannotShortenALock) {
    // Locked with no end: a re-suspend --for by anyone keeps it permanent.
    ASSERT_TRUE(suspend("a@example.com", "send", kNow, kRoot, [](SuspendArgs& a) { a.lock = true; }).ok());
    ASSERT_TRUE(suspend("a@example.com", "send", kNow + 5, kPanel, [](SuspendArgs& a) { a.duration = 1; }).ok());
    ServiceState s = stored("a@example.com").at(Service::send);
    EXPECT_TRUE(s.locked);
    EXPECT_EQ(s.expires, 0);
    EXPECT_TRUE(s.in_force(kNow + 86400 * 365));
    // Locked until a date: a shorter re-suspend keeps the later end, a longer one extends it.
    ASSERT_TRUE(suspend("b@example.com", "send", kNow, kRoot, [](SuspendArgs& a) {
                    a.lock = true;
                    a.duration = 1000;
                }).ok());
    ASSERT_TRUE(suspend("b@example.com", "send", kNow + 1, kPanel, [](SuspendArgs& a) { a.duration = 10; }).ok());
    EXPECT_EQ(stored("b@example.com").at(Service::send).expires, kNow + 1000);
    ASSERT_TRUE(suspend("b@example.com", "send", kNow + 2, kPanel, [](SuspendArgs& a) { a.duration = 5000; }).ok());
    EXPECT_EQ(stored("b@example.com").at(Service::send).expires, kNow + 5002);
    // Not locked: a re-suspend sets the end it is given.
    ASSERT_TRUE(suspend("c@example.com", "send", kNow, kRoot, [](SuspendArgs& a) { a.duration = 1000; }).ok());
    ASSERT_TRUE(suspend("c@example.com", "send", kNow + 1, kPanel, [](SuspendArgs& a) { a.duration = 10; }).ok());
    EXPECT_EQ(stored("c@example.com").at(Service::send).expires, kNow + 11);
}

TEST_F(OperationsTest, AutomaticSuspensionHistoryKeepsOnlyTheEscalationWindow) {
    for (int day = 0; day < 100; ++day)
        ASSERT_TRUE(suspend("a@example.com", "send", kNow + day * 86400, Actor{101, "exim"},
                            [](SuspendArgs& a) { a.source = Source::rate; }).ok());
    const auto history = stored("a@example.com").auto_suspensions;
    ASSERT_EQ(history.size(), 30u) << "the last 30 days only";
    EXPECT_EQ(history.back(), kNow + 99 * 86400);
    EXPECT_GT(history.front(), kNow + 99 * 86400 - 30 * 86400);
}

TEST_F(OperationsTest, SelfServiceRefusedForAdminSuspension) {
    ASSERT_TRUE(suspend("a@example.com", "send").ok());
    Outcome o = unsuspend("a@example.com", "send", kNow + 10, kPanel,
                          [](UnsuspendArgs& a) { a.self_service = true; });
    EXPECT_EQ(o.code, Exit::refused);
    EXPECT_NE(o.message.find("administrator"), std::string::npos) << o.message;
    EXPECT_TRUE(stored("a@example.com").at(Service::send).in_force(kNow + 10));
}

TEST_F(OperationsTest, SelfServiceOncePerInterval) {
    cfg.self_service_interval = 90 * 86400;
    for (Source source : {Source::rate, Source::spam}) {
        SCOPED_TRACE(std::string(source_name(source)));
        const std::string target = std::string(source_name(source)) + "@example.com";
        auto auto_suspend = [&](int64_t at) {
            ASSERT_TRUE(suspend(target, "send", at, Actor{101, "exim"},
                                [&](SuspendArgs& a) { a.source = source; }).ok());
        };
        auto self = [&](int64_t at) {
            return unsuspend(target, "send", at, kPanel, [](UnsuspendArgs& a) { a.self_service = true; });
        };
        auto_suspend(kNow);
        Outcome o = self(kNow + 60);
        ASSERT_TRUE(o.ok()) << o.message;
        EXPECT_FALSE(stored(target).at(Service::send).in_force(kNow + 60));
        EXPECT_EQ(stored(target).last_self_unblock, kNow + 60);

        auto_suspend(kNow + 86400);
        o = self(kNow + 2 * 86400);
        EXPECT_EQ(o.code, Exit::refused);
        EXPECT_NE(o.message.find(format_time(kNow + 60)), std::string::npos) << o.message;
        EXPECT_NE(o.message.find(format_time(kNow + 60 + 90 * 86400)), std::string::npos) << o.message;
        EXPECT_TRUE(stored(target).at(Service::send).in_force(kNow + 2 * 86400));

        // Once the interval has passed, it works again.
        o = self(kNow + 60 + 90 * 86400);
        EXPECT_TRUE(o.ok()) << o.message;
    }
}

TEST_F(OperationsTest, SweepLiftsExpiredAndAudits) {
    ASSERT_TRUE(suspend("short@example.com", "imap,receive", kNow, kRoot,
                        [](SuspendArgs& a) { a.duration = 60; }).ok());
    ASSERT_TRUE(suspend("long@example.com", "imap", kNow, kRoot, [](SuspendArgs& a) { a.duration = 86400; }).ok());
    ASSERT_TRUE(suspend("forever@example.com", "pop3").ok());
    const std::size_t lines_before = audit().size();

    int lifted = -1;
    Outcome o = run(kNow + 61, kRoot, [&](Session& s) { return s.sweep(lifted); });
    ASSERT_TRUE(o.ok()) << o.message;
    EXPECT_EQ(lifted, 2);
    bool exists = true;
    stored("short@example.com", &exists);
    EXPECT_FALSE(exists);
    EXPECT_TRUE(stored("long@example.com").at(Service::imap).suspended);
    EXPECT_TRUE(stored("forever@example.com").at(Service::pop3).suspended);

    const auto lines = audit();
    ASSERT_EQ(lines.size(), lines_before + 1);
    const json& line = lines.back();
    EXPECT_EQ(line["action"], "expire");
    EXPECT_EQ(line["target"], "short@example.com");
    EXPECT_EQ(line["services"], "imap,receive");
    EXPECT_TRUE(line["after"].empty()) << line.dump();
    EXPECT_TRUE(line["before"].contains("imap")) << line.dump();

    // A second sweep finds nothing.
    o = run(kNow + 62, kRoot, [&](Session& s) { return s.sweep(lifted); });
    EXPECT_EQ(lifted, 0);
}

TEST_F(OperationsTest, BatchIsOneCommit) {
    const uint64_t seq_before = writer->stats().seq;
    Session s(cfg, *writer, kRoot, kNow);
    SuspendArgs a;
    a.services = bit(Service::imap);
    for (const char* t : {"a@example.com", "b@example.com", "@example.org"}) {
        a.target = t;
        ASSERT_TRUE(s.suspend(a).ok());
    }
    a.target = "a@example.com";
    a.services = bit(Service::pop3);
    ASSERT_TRUE(s.suspend(a).ok());  // same target twice: one change
    ASSERT_TRUE(s.set_mode("b@example.com", DeliveryMode::discard).ok());
    EXPECT_EQ(writer->stats().seq, seq_before) << "nothing is stored before commit";
    std::vector<std::string> w;
    ASSERT_TRUE(s.commit(w).ok());
    EXPECT_TRUE(w.empty());
    EXPECT_EQ(writer->stats().seq, seq_before + 3) << "three targets changed";
    EXPECT_EQ(stored("a@example.com").in_force_mask(kNow), bit(Service::imap) | bit(Service::pop3));
    EXPECT_EQ(stored("b@example.com").mode, DeliveryMode::discard);
    const auto lines = audit();
    ASSERT_EQ(lines.size(), 5u) << "one audit line per operation";
    for (const auto& line : lines) EXPECT_EQ(line["seq"], seq_before + 3) << line.dump();
}

TEST_F(OperationsTest, AuditLinesAreJson) {
    ASSERT_TRUE(suspend("a@example.com", "send,receive", kNow, kPanel, [](SuspendArgs& a) {
                    a.reason = "phishing \xC3\xBC";
                    a.duration = 600;
                }).ok());
    ASSERT_TRUE(unsuspend("a@example.com", "send", kNow + 1, kRoot).ok());
    const auto lines = audit();
    ASSERT_EQ(lines.size(), 2u);
    const json& s = lines[0];
    EXPECT_EQ(s["time"], kNow);
    EXPECT_EQ(s["actor"]["uid"], 1000);
    EXPECT_EQ(s["actor"]["name"], "panel");
    EXPECT_EQ(s["action"], "suspend");
    EXPECT_EQ(s["target"], "a@example.com");
    EXPECT_EQ(s["services"], "send,receive");
    EXPECT_EQ(s["reason"], "phishing \xC3\xBC");
    EXPECT_EQ(s["seq"], 1);
    EXPECT_TRUE(s["before"].empty()) << s.dump();
    ASSERT_TRUE(s["after"].contains("send")) << s.dump();
    EXPECT_EQ(s["after"]["send"]["suspended"], true);
    EXPECT_EQ(s["after"]["send"]["expires"], kNow + 600);
    EXPECT_EQ(s["after"]["send"]["reason"], "phishing \xC3\xBC");

    const json& u = lines[1];
    EXPECT_EQ(u["action"], "unsuspend");
    EXPECT_EQ(u["actor"]["uid"], 0);
    EXPECT_EQ(u["services"], "send");
    EXPECT_EQ(u["seq"], 2);
    EXPECT_TRUE(u["before"].contains("send"));
    EXPECT_FALSE(u["after"].contains("send"));
    EXPECT_TRUE(u["after"].contains("receive"));

    struct stat st {};
    ASSERT_EQ(::stat(cfg.audit_log.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0640u);
}

// Issue 12 item 3: a change is not acknowledged (nor made) without its audit line.
TEST_F(OperationsTest, AuditFailureChangesNothing) {
    cfg.audit_log = dir / "no/such/dir/audit.log";
    open_writer();
    SuspendArgs a;
    a.target = "a@example.com";
    a.services = bit(Service::imap);
    Session session(cfg, *writer, kRoot, kNow);
    ASSERT_TRUE(session.suspend(a).ok());
    std::vector<std::string> warnings;
    const Outcome o = session.commit(warnings);
    EXPECT_EQ(o.code, Exit::failure);
    EXPECT_NE(o.message.find("nothing changed: the audit log cannot record it"), std::string::npos) << o.message;
    EXPECT_NE(o.message.find("No such file or directory"), std::string::npos) << o.message;
    EXPECT_FALSE(stored("a@example.com").at(Service::imap).suspended);
}

TEST_F(OperationsTest, SetMode) {
    Outcome o = run(kNow, kRoot, [](Session& s) { return s.set_mode("A@Example.com", DeliveryMode::discard); });
    ASSERT_TRUE(o.ok()) << o.message;
    EXPECT_EQ(stored("a@example.com").mode, DeliveryMode::discard);
    o = run(kNow, kRoot, [](Session& s) { return s.set_mode("bad target", DeliveryMode::discard); });
    EXPECT_EQ(o.code, Exit::bad_input);
}

// What a spawn reports: "" when it worked, else its error (never empty).
std::string failure_of(bool ok, const std::string& error) {
    EXPECT_EQ(ok, error.empty()) << error;
    return ok ? "" : error;
}

std::string run_command_error(const std::string& templ, const std::string& address,
                              const std::string& address_regex = {}) {
    std::string error;
    const bool ok = run_command(templ, address, error, address_regex);
    return failure_of(ok, error);
}

std::string run_program_error(std::vector<std::string> args, std::string_view input = {}) {
    std::string error;
    const bool ok = run_program(std::move(args), error, input);
    return failure_of(ok, error);
}

TEST_F(OperationsTest, RunCommandPassesAddressAsOneArgument) {
    const std::string out = dir / "args.txt";
    const std::string script = recorder(out);
    EXPECT_EQ(run_command_error(script + " -Rff {address}", "we ird$(touch x)@example.com"), "");
    const auto lines = read_lines(out);
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[0], "2");
    EXPECT_EQ(lines[1], "-Rff");
    EXPECT_EQ(lines[2], "we ird$(touch x)@example.com");
    EXPECT_FALSE(std::filesystem::exists("x"));
}

TEST_F(OperationsTest, RunCommandFillsTheAddressRegex) {
    const std::string out = dir / "regex-args.txt";
    EXPECT_EQ(run_command_error(recorder(out) + " -Rrff {address_regex} {address}", "a@example.com", "(?i)^a$"), "");
    const auto lines = read_lines(out);
    ASSERT_EQ(lines.size(), 4u);
    EXPECT_EQ(lines[2], "(?i)^a$");
    EXPECT_EQ(lines[3], "a@example.com");
}

TEST_F(OperationsTest, RunCommandReportsFailure) {
    const std::string failing = recorder(dir / "f.txt", 7);
    const std::string e = run_command_error(failing + " {address}", "a@example.com");
    EXPECT_NE(e.find("exited with status 7"), std::string::npos) << e;
    const std::string missing = run_command_error(dir / "no-such-program {address}", "a@example.com");
    EXPECT_NE(missing.find("cannot run"), std::string::npos) << missing;
    EXPECT_EQ(run_command_error("", "a@example.com"), "") << "no command configured";
}

// The one spawn helper (queue commands and the notice MTA): input on stdin,
// stdout not the caller's, the start of stderr in the error, no relative path.
TEST_F(OperationsTest, RunProgramFeedsStdinAndReportsStderr) {
    const std::string copy = dir / "copy.sh", out = dir / "stdin.txt";
    write_file(copy, "#!/bin/sh\ncat > \"$1\"\necho to-stdout\n");
    ::chmod(copy.c_str(), 0755);
    EXPECT_EQ(run_program_error(command_words(copy + " {file}", {{"{file}", out}}), "the message\n"), "");
    EXPECT_EQ(read_lines(out), std::vector<std::string>{"the message"});
    const std::string noisy = dir / "noisy.sh";
    write_file(noisy, "#!/bin/sh\necho 'bad\trecipient' >&2\nexit 3\n");
    ::chmod(noisy.c_str(), 0755);
    const std::string e = run_program_error({noisy});
    EXPECT_NE(e.find("exited with status 3: bad"), std::string::npos) << e;
    EXPECT_NE(run_program_error({"sh", "-c", "true"}).find("not an absolute path"), std::string::npos);
    EXPECT_NE(run_program_error({}), "");
}

TEST_F(OperationsTest, LiftingReceiveFlushesTheQueue) {
    const std::string out = dir / "flush.txt";
    cfg.flush_command = recorder(out) + " -Rff {address}";
    open_writer();
    ASSERT_TRUE(suspend("a+tag@example.com", "receive").ok());
    EXPECT_FALSE(std::filesystem::exists(out)) << "suspending does not flush";
    ASSERT_TRUE(unsuspend("a@example.com", "imap").ok());
    EXPECT_FALSE(std::filesystem::exists(out)) << "nothing to flush";
    ASSERT_TRUE(unsuspend("a@example.com", "receive").ok());
    const auto lines = read_lines(out);
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[2], "a@example.com");
}

TEST_F(OperationsTest, FailingFlushIsAWarningAndTheChangeStands) {
    cfg.flush_command = recorder(dir / "f.txt", 1) + " {address}";
    open_writer();
    ASSERT_TRUE(suspend("a@example.com", "receive").ok());
    std::vector<std::string> warnings;
    UnsuspendArgs a;
    a.target = "a@example.com";
    ASSERT_TRUE(run(kNow, kRoot, [&](Session& s) { return s.unsuspend(a); }, &warnings).ok());
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("queue flush for a@example.com failed"), std::string::npos) << warnings[0];
    bool exists = true;
    stored("a@example.com", &exists);
    EXPECT_FALSE(exists);
}

TEST_F(OperationsTest, FailQueuedRunsItsCommand) {
    const std::string out = dir / "fq.txt";
    cfg.fail_queued_command = recorder(out) + " -Sff {address}";
    open_writer();
    ASSERT_TRUE(suspend("a@example.com", "send", kNow, kRoot, [](SuspendArgs& a) { a.fail_queued = true; }).ok());
    EXPECT_TRUE(stored("a@example.com").at(Service::send).fail_queued);
    const auto lines = read_lines(out);
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[1], "-Sff");
    EXPECT_EQ(lines[2], "a@example.com");
}

TEST_F(OperationsTest, StatusJsonShowsEffectiveState) {
    TargetRecord mailbox, domain;
    mailbox.key = "a@example.com";
    domain.key = "@example.com";
    mailbox.at(Service::imap) = ServiceState{true, true, false, kNow, 0, Source::admin, "mine"};
    domain.at(Service::send) = ServiceState{true, false, false, kNow, kNow + 10, Source::rate, ""};
    domain.mode = DeliveryMode::discard;
    const json j = status_json(cfg, "a@example.com", &mailbox, &domain, kNow);
    EXPECT_EQ(j["target"], "a@example.com");
    EXPECT_EQ(j["delivery_mode"], "discard");
    EXPECT_EQ(j["services"].size(), 7u);
    EXPECT_EQ(j["services"]["imap"]["scope"], "mailbox");
    EXPECT_EQ(j["services"]["imap"]["locked"], true);
    EXPECT_EQ(j["services"]["send"]["scope"], "domain");
    EXPECT_EQ(j["services"]["send"]["source"], "rate");
    EXPECT_EQ(j["services"]["send"]["expires"], kNow + 10);
    EXPECT_EQ(j["services"]["pop3"]["suspended"], false);
    EXPECT_TRUE(j["services"]["pop3"]["scope"].is_null());
    const json later = status_json(cfg, "a@example.com", &mailbox, &domain, kNow + 10);
    EXPECT_EQ(later["services"]["send"]["suspended"], false) << "expiry honoured at read time";
    const json none = status_json(cfg, "a@example.com", nullptr, nullptr, kNow);
    EXPECT_EQ(none["delivery_mode"], "queue") << "config default";
}

// reset-usage goes through the same commit as store changes: one audit log,
// its line after the records' (and without their seq: counters are not journaled).
TEST_F(OperationsTest, ResetUsageCommitsWithStoreChangesAndIsAudited) {
    std::string error;
    auto counters = Counters::open(cfg.store_path, true, 16, error);
    ASSERT_TRUE(counters) << error;
    counters->add("a@example.com", CounterKind::messages, 4, kNow);
    counters->add("192.0.2.1", CounterKind::ip_offdomain_rcpts, 2, kNow);
    SuspendArgs a;
    a.target = "b@example.com";
    a.services = bit(Service::imap);
    Outcome o = run(kNow, kPanel, [&](Session& s) {
        Outcome r = s.suspend(a);
        return r.ok() ? s.reset_usage("A@Example.com", "192.0.2.1") : r;
    });
    ASSERT_TRUE(o.ok()) << o.message;
    EXPECT_EQ(counters->total("a@example.com", CounterKind::messages, kNow), 0);
    EXPECT_EQ(counters->total("192.0.2.1", CounterKind::ip_offdomain_rcpts, kNow), 0);
    const auto lines = audit();
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0]["action"], "suspend");
    EXPECT_TRUE(lines[0].contains("seq"));
    EXPECT_EQ(lines[1]["action"], "reset-usage");
    EXPECT_EQ(lines[1]["target"], "a@example.com");
    EXPECT_EQ(lines[1]["ip"], "192.0.2.1");
    EXPECT_EQ(lines[1]["actor"]["name"], "panel");
    EXPECT_EQ(lines[1]["before"]["messages_per_day"], 4);
    EXPECT_EQ(lines[1]["before"]["offdomain_recipients_per_hour_per_ip"], 2);
    EXPECT_EQ(lines[1]["after"]["messages_per_day"], 0);
    EXPECT_FALSE(lines[1].contains("seq"));
    // Alone, with nothing counted, it is still audited: the admin asked for it.
    ASSERT_TRUE(run(kNow, kRoot, [](Session& s) { return s.reset_usage("c@example.com", ""); }).ok());
    EXPECT_EQ(audit().size(), 3u);
    // A domain with an IP (an IP's count is a mailbox's business) is refused before anything is queued.
    Session s(cfg, *writer, kRoot, kNow);
    EXPECT_EQ(s.reset_usage("@example.com", "192.0.2.1").code, Exit::bad_input);
}

// ---- the fleet (issue 15): local changes stamped, others' applied last-writer-wins

TEST_F(OperationsTest, OnASingleNodeNothingIsStamped) {
    suspend("a@example.com", "imap");
    EXPECT_EQ(stored("a@example.com").hlc, 0u);
    EXPECT_EQ(stored("a@example.com").origin, "");
}

TEST_F(OperationsTest, InAFleetEveryChangeIsStampedAndALiftIsKept) {
    cfg.fleet.enabled = true;
    cfg.fleet.node_id = "n1";
    suspend("a@example.com", "imap");
    const TargetRecord suspended = stored("a@example.com");
    EXPECT_EQ(suspended.origin, "n1");
    EXPECT_GT(suspended.hlc, 0u);
    unsuspend("a@example.com", "all");
    bool exists = false;
    const TargetRecord lifted = stored("a@example.com", &exists);
    EXPECT_TRUE(exists);  // the lift's stamp must stay to beat older suspensions
    EXPECT_GT(lifted.hlc, suspended.hlc);
    EXPECT_GT(lifted.seq, suspended.seq);
    EXPECT_EQ(lifted.in_force_mask(kNow), 0);
}

TEST_F(OperationsTest, AnotherNodesChangeAppliesOnlyWhenNewer) {
    cfg.fleet.enabled = true;
    cfg.fleet.node_id = "n1";
    suspend("a@example.com", "send");
    const TargetRecord local = stored("a@example.com");
    TargetRecord remote;
    remote.key = "a@example.com";
    remote.at(Service::imap) = ServiceState{true, false, false, kNow, 0, Source::admin, "from n2"};
    remote.origin = "n2";
    const Actor fleet{0, "fleet:n2"};
    auto apply = [&](const TargetRecord& state) {
        bool applied = false;
        run(kNow, fleet, [&](Session& s) { return s.apply_fleet_change(state, applied); });
        return applied;
    };
    remote.hlc = local.hlc - 1;  // older: ignored
    EXPECT_FALSE(apply(remote));
    EXPECT_EQ(stored("a@example.com").origin, "n1");
    remote.hlc = local.hlc + 1;  // newer: its whole state replaces ours
    EXPECT_TRUE(apply(remote));
    const TargetRecord now = stored("a@example.com");
    EXPECT_EQ(now.origin, "n2");
    EXPECT_EQ(now.hlc, remote.hlc);
    EXPECT_TRUE(now.at(Service::imap).suspended);
    EXPECT_FALSE(now.at(Service::send).suspended);
    const std::size_t lines = audit().size();
    EXPECT_FALSE(apply(remote));  // the same change again: nothing
    EXPECT_EQ(audit().size(), lines);
    EXPECT_EQ(audit().back()["action"], "fleet-apply");
    EXPECT_EQ(audit().back()["actor"]["name"], "fleet:n2");
    EXPECT_EQ(audit().back()["origin"], "n2");
}

TEST_F(OperationsTest, ALocalChangeAfterAnotherNodesIsLaterEvenWithASlowClock) {
    cfg.fleet.enabled = true;
    cfg.fleet.node_id = "n1";
    TargetRecord remote;
    remote.key = "a@example.com";
    remote.at(Service::imap) = ServiceState{true, false, false, kNow, 0, Source::admin, ""};
    remote.origin = "n2";
    remote.hlc = hlc_next(0, int64_t{1} << 45);  // a clock far ahead of ours
    bool applied = false;
    run(kNow, Actor{0, "fleet:n2"}, [&](Session& s) { return s.apply_fleet_change(remote, applied); });
    ASSERT_TRUE(applied);
    unsuspend("a@example.com", "imap");
    EXPECT_EQ(stored("a@example.com").hlc, remote.hlc + 1);
    EXPECT_EQ(stored("a@example.com").origin, "n1");
}
