// The mailsuspend CLI, run as a separate process: exit codes, messages,
// JSON output, batch transactions.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include "raw_store.hpp"
#include "test_util.hpp"

using namespace mailsuspend::test;
using nlohmann::json;

namespace {

struct CliRun {
    int code = -1;
    std::string out, err;
    long max_rss_kib = 0;  // the run's peak resident set (wait4)
};

// Runs the CLI with args, stdin from the file in; waits for it.
CliRun run_cli_on(const TempDir& dir, const std::vector<std::string>& args, const std::string& in) {
    const std::string out = dir / "stdout", err = dir / "stderr";
    const pid_t pid = ::fork();
    if (pid == 0) {
        const int fi = ::open(in.c_str(), O_RDONLY);
        const int fo = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        const int fe = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fi < 0 || fo < 0 || fe < 0) ::_exit(126);
        ::dup2(fi, 0);
        ::dup2(fo, 1);
        ::dup2(fe, 2);
        std::vector<char*> argv{const_cast<char*>(MAILSUSPEND_CLI)};
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execv(MAILSUSPEND_CLI, argv.data());
        ::_exit(127);
    }
    CliRun r;
    int status = 0;
    struct rusage usage {};
    if (pid > 0 && ::wait4(pid, &status, 0, &usage) == pid) {
        r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        r.max_rss_kib = usage.ru_maxrss;
    }
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
}

// Runs the CLI with args, stdin from input; waits for it.
CliRun run_cli(const TempDir& dir, const std::vector<std::string>& args, const std::string& input = "") {
    write_file(dir / "stdin", input);
    return run_cli_on(dir, args, dir / "stdin");
}

const std::set<std::string> kServiceNames = {"imap", "pop3", "webmail", "send",
                                             "webmail_send", "receive", "sieve"};

std::set<std::string> keys_of(const json& j) {
    std::set<std::string> keys;
    for (const auto& [k, v] : j.items()) keys.insert(k);
    return keys;
}

class CliTest : public ::testing::Test {
protected:
    TempDir dir;
    ConfigText text;
    std::string config;

    void SetUp() override {
        config = write_config(dir.path(), text);
        const CliRun r = cli({"init"});
        ASSERT_EQ(r.code, 0) << r.err;
    }

    CliRun cli(std::vector<std::string> args, const std::string& input = "") {
        args.insert(args.begin(), {"--config", config});
        return run_cli(dir, args, input);
    }

    // As cli, with stdin from a file already written.
    CliRun cli_on(std::vector<std::string> args, const std::string& in) {
        args.insert(args.begin(), {"--config", config});
        return run_cli_on(dir, args, in);
    }

    // Runs and expects exit code; returns the run for more checks.
    CliRun expect(int code, std::vector<std::string> args, const std::string& input = "") {
        CliRun r = cli(std::move(args), input);
        EXPECT_EQ(r.code, code) << "stdout: " << r.out << "\nstderr: " << r.err;
        return r;
    }

    json status(const std::string& target) {
        const CliRun r = cli({"status", target, "--json"});
        EXPECT_EQ(r.code, 0) << r.err;
        return json::parse(r.out, nullptr, false);
    }

    json list() {
        const CliRun r = cli({"list", "--json"});
        EXPECT_EQ(r.code, 0) << r.err;
        return json::parse(r.out, nullptr, false);
    }

    std::string store_seq() {
        const CliRun r = cli({"check"});
        EXPECT_EQ(r.code, 0) << r.err;
        const auto at = r.out.find("change ");
        return at == std::string::npos ? "" : r.out.substr(at);
    }
};

void expect_has(const std::string& text, const std::string& fragment) {
    EXPECT_NE(text.find(fragment), std::string::npos) << "'" << text << "' lacks '" << fragment << "'";
}

}  // namespace

TEST_F(CliTest, InitIsIdempotent) {
    const CliRun r = expect(0, {"init"});
    expect_has(r.out, "store ready");
    EXPECT_EQ(list(), json::array());
}

TEST_F(CliTest, SuspendStatusUnsuspend) {
    CliRun r = expect(0, {"suspend", "Alice@Example.com", "--service", "imap,pop3", "--reason", "unpaid"});
    expect_has(r.out, "alice@example.com");
    json s = status("alice@example.com");
    EXPECT_EQ(s["services"]["imap"]["suspended"], true);
    EXPECT_EQ(s["services"]["pop3"]["reason"], "unpaid");
    EXPECT_EQ(s["services"]["send"]["suspended"], false);
    r = expect(0, {"status", "alice@example.com"});
    expect_has(r.out, "SUSPENDED");
    expect_has(r.out, "unpaid");
    expect(0, {"unsuspend", "alice@example.com", "--service", "imap"});
    s = status("alice@example.com");
    EXPECT_EQ(s["services"]["imap"]["suspended"], false);
    EXPECT_EQ(s["services"]["pop3"]["suspended"], true);
    expect(0, {"unsuspend", "alice@example.com"});
    EXPECT_EQ(status("alice@example.com")["services"]["pop3"]["suspended"], false);
}

TEST_F(CliTest, StatusJsonShape) {
    const int64_t before = wall_now();
    expect(0, {"suspend", "a@example.com", "--service", "imap,receive", "--reason", "why", "--for", "1h",
               "--lock", "--mode", "discard"});
    expect(0, {"suspend", "@example.com", "--service", "send"});
    const int64_t after = wall_now();
    const json s = status("a@example.com");
    ASSERT_TRUE(s.is_object()) << s.dump();
    EXPECT_EQ(keys_of(s), (std::set<std::string>{"target", "delivery_mode", "origin", "stamp", "services"}));
    EXPECT_EQ(s["target"], "a@example.com");
    EXPECT_EQ(s["delivery_mode"], "discard");
    EXPECT_EQ(keys_of(s["services"]), kServiceNames);
    const std::set<std::string> fields = {"suspended", "reason", "since", "expires", "locked", "source", "scope"};
    for (const auto& [name, v] : s["services"].items()) {
        EXPECT_EQ(keys_of(v), fields) << name << ": " << v.dump();
        EXPECT_TRUE(v["suspended"].is_boolean()) << name;
        EXPECT_TRUE(v["locked"].is_boolean()) << name;
        if (v["suspended"] == false) {
            for (const char* f : {"reason", "since", "expires", "source", "scope"})
                EXPECT_TRUE(v[f].is_null()) << name << "." << f;
        }
    }
    const json& imap = s["services"]["imap"];
    EXPECT_EQ(imap["suspended"], true);
    EXPECT_EQ(imap["reason"], "why");
    ASSERT_TRUE(imap["since"].is_number_integer());
    EXPECT_GE(imap["since"].get<int64_t>(), before);
    EXPECT_LE(imap["since"].get<int64_t>(), after);
    EXPECT_EQ(imap["expires"].get<int64_t>(), imap["since"].get<int64_t>() + 3600);
    EXPECT_EQ(imap["locked"], true);
    EXPECT_EQ(imap["source"], "admin");
    EXPECT_EQ(imap["scope"], "mailbox");
    const json& send = s["services"]["send"];
    EXPECT_EQ(send["suspended"], true);
    EXPECT_EQ(send["scope"], "domain");
    EXPECT_TRUE(send["expires"].is_null());
    EXPECT_EQ(send["reason"], "");
    EXPECT_EQ(s["services"]["pop3"]["suspended"], false);
    // A domain target on its own.
    const json d = status("@Example.COM");
    EXPECT_EQ(d["target"], "@example.com");
    EXPECT_EQ(d["services"]["send"]["scope"], "domain");
    EXPECT_EQ(d["services"]["imap"]["suspended"], false);
    EXPECT_EQ(d["delivery_mode"], "queue") << "config default";
}

TEST_F(CliTest, ListJson) {
    expect(0, {"suspend", "a@example.com", "--service", "imap"});
    expect(0, {"suspend", "@example.org", "--service", "receive"});
    expect(0, {"set-mode", "b@example.com", "reject"});  // a record with nothing suspended
    json all = list();
    ASSERT_TRUE(all.is_array()) << all.dump();
    std::set<std::string> targets;
    for (const auto& r : all) {
        targets.insert(r["target"].get<std::string>());
        EXPECT_EQ(keys_of(r["services"]), kServiceNames);
    }
    EXPECT_EQ(targets, (std::set<std::string>{"a@example.com", "@example.org"}));
    CliRun r = expect(0, {"list", "--service", "receive", "--json"});
    json filtered = json::parse(r.out);
    ASSERT_EQ(filtered.size(), 1u);
    EXPECT_EQ(filtered[0]["target"], "@example.org");
    EXPECT_EQ(filtered[0]["services"]["receive"]["scope"], "domain");
    r = expect(0, {"list"});
    expect_has(r.out, "a@example.com");
    r = expect(2, {"list", "--service", "smtp"});
    expect_has(r.err, "smtp");
}

TEST_F(CliTest, UnknownServiceExit2) {
    const CliRun r = expect(2, {"suspend", "a@example.com", "--service", "imap,smtp"});
    expect_has(r.err, "'smtp'");
    EXPECT_EQ(list(), json::array());
    expect(2, {"unsuspend", "a@example.com", "--service", "bogus"});
}

TEST_F(CliTest, MalformedTargetExit2) {
    for (const char* bad : {"not an address", "a@-bad-.com", "\"q r\"@example.com", "alice"}) {
        const CliRun r = expect(2, {"suspend", bad, "--service", "imap"});
        expect_has(r.err, "invalid target");
    }
    // Not UTF-8: refused, so that JSON output of the whole store keeps working.
    const CliRun r = expect(2, {"suspend", "\xFF\xFE@example.com", "--service", "imap"});
    expect_has(r.err, "UTF-8");
    expect(2, {"status", "a b@example.com"});
    expect(2, {"can-delete", "bad@@example.com"});
    EXPECT_EQ(list(), json::array());
}

// libidn2 is loaded on the first non-ASCII domain (address.cpp).  A broken
// one (here a libidn2.so.0 without its functions, found first through
// LD_LIBRARY_PATH) refuses international domains with the reason and leaves
// ASCII ones working.
TEST_F(CliTest, InternationalDomainWithoutUsableLibidn2Exit2WithReason) {
    ::setenv("LD_LIBRARY_PATH", MAILSUSPEND_FAKE_IDN2_DIR, 1);
    const CliRun idn = cli({"suspend", "bob@b\xC3\xBC" "cher.example", "--service", "imap"});
    const CliRun ascii = cli({"suspend", "bob@example.com", "--service", "imap"});
    ::unsetenv("LD_LIBRARY_PATH");
    EXPECT_EQ(idn.code, 2) << idn.err;
    expect_has(idn.err, "libidn2.so.0 lacks idn2_to_ascii_8z");
    EXPECT_EQ(ascii.code, 0) << ascii.err;
    const json all = list();
    ASSERT_EQ(all.size(), 1u) << all.dump();
    EXPECT_EQ(all[0].value("target", ""), "bob@example.com") << all.dump();
    // With the real libidn2 the same address is taken, as its A-label.
    expect(0, {"suspend", "bob@b\xC3\xBC" "cher.example", "--service", "imap"});
    EXPECT_EQ(status("bob@xn--bcher-kva.example").value("target", ""), "bob@xn--bcher-kva.example");
}

TEST_F(CliTest, LineBreakInReasonChangesNothing) {
    expect(0, {"suspend", "a@example.com", "--service", "imap", "--reason", "first"});
    const json before = status("a@example.com");
    const std::string seq = store_seq();
    CliRun r = expect(2, {"suspend", "a@example.com", "--service", "all", "--reason", "bad\r\nX-Header: 1"});
    expect_has(r.err, "reason");
    expect_has(r.err, "CR/LF");
    r = expect(2, {"suspend", "a@example.com", "--service", "all", "--reason", "bell\a"});
    expect_has(r.err, "control");
    EXPECT_EQ(status("a@example.com"), before);
    EXPECT_EQ(store_seq(), seq);
    r = expect(2, {"--actor", "panel\nroot", "suspend", "a@example.com", "--service", "all"});
    expect_has(r.err, "--actor");
    EXPECT_EQ(status("a@example.com"), before);
}

TEST_F(CliTest, BadDurationExit2) {
    CliRun r = expect(2, {"suspend", "a@example.com", "--service", "imap", "--for", "4x"});
    expect_has(r.err, "--for");
    expect(2, {"suspend", "a@example.com", "--service", "imap", "--for", "0"});
    expect(2, {"suspend", "a@example.com", "--service", "imap", "--for", ""});
    expect(2, {"suspend", "a@example.com", "--service", "imap", "--mode", "bounce"});
    expect(2, {"set-mode", "a@example.com", "bounce"});
    EXPECT_EQ(list(), json::array());
}

TEST_F(CliTest, UsageErrorsExit2) {
    expect(2, {});
    expect(2, {"frobnicate"});
    expect(2, {"suspend", "a@example.com"});  // --service is required
    expect(2, {"suspend", "a@example.com", "--service", "imap", "--no-such-flag"});
    EXPECT_EQ(cli({"--help"}).code, 0);
}

TEST_F(CliTest, MissingStoreExit1) {
    const std::string other = dir / "other";
    ::mkdir(other.c_str(), 0700);
    const std::string cfg = write_config(other);
    const std::vector<std::vector<std::string>> commands = {
        {"suspend", "a@example.com", "--service", "imap"},
        {"unsuspend", "a@example.com"},
        {"status", "a@example.com"},
        {"list"},
        {"check"},
        {"sweep"}};
    for (auto args : commands) {
        args.insert(args.begin(), {"--config", cfg});
        const CliRun r = run_cli(dir, args);
        EXPECT_EQ(r.code, 1) << args[2] << ": " << r.err;
        expect_has(r.err, "mailsuspend init");
    }
}

TEST_F(CliTest, LockedWithoutAdminExit3) {
    ASSERT_EQ(::geteuid(), 0u) << "this test runs the CLI as root (the lock is root's)";
    expect(0, {"suspend", "a@example.com", "--service", "all", "--lock", "--reason", "fraud"});
    CliRun r = expect(3, {"unsuspend", "a@example.com"});
    expect_has(r.err, "locked");
    EXPECT_EQ(status("a@example.com")["services"]["imap"]["suspended"], true);
    expect(0, {"unsuspend", "a@example.com", "--service", "imap", "--admin"});
    const json s = status("a@example.com");
    EXPECT_EQ(s["services"]["imap"]["suspended"], false);
    EXPECT_EQ(s["services"]["pop3"]["locked"], true);
}

TEST_F(CliTest, SelfServiceRefusedForAdminSuspension) {
    expect(0, {"suspend", "a@example.com", "--service", "send"});
    const CliRun r = expect(3, {"unsuspend", "a@example.com", "--self-service"});
    expect_has(r.err, "administrator");
}

TEST_F(CliTest, CanDelete) {
    expect(0, {"can-delete", "a@example.com"});
    expect(0, {"suspend", "a@example.com", "--service", "imap"});
    CliRun r = expect(3, {"can-delete", "a@example.com"});
    expect_has(r.err, "imap");
    expect(0, {"unsuspend", "a@example.com"});
    expect(0, {"can-delete", "a@example.com"});
    // A suspended domain holds its mailboxes too.
    expect(0, {"suspend", "@example.com", "--service", "receive"});
    expect(3, {"can-delete", "a@example.com"});
}

TEST_F(CliTest, BatchAppliesAllInOneTransaction) {
    const std::string input =
        R"({"op":"suspend","target":"a@example.com","services":["imap","pop3"],"reason":"r1"})" "\n"
        "\n"
        R"({"op":"suspend","target":"@example.org","services":"receive","for":"24h","mode":"discard"})" "\n"
        R"({"op":"set-mode","target":"b@example.com","mode":"reject"})" "\n"
        R"({"op":"unsuspend","target":"c@example.com"})" "\n";
    const CliRun r = expect(0, {"batch"}, input);
    expect_has(r.out, "applied 4");
    EXPECT_EQ(status("a@example.com")["services"]["pop3"]["reason"], "r1");
    EXPECT_EQ(status("x@example.org")["services"]["receive"]["scope"], "domain");
    EXPECT_EQ(status("x@example.org")["delivery_mode"], "discard");
    EXPECT_EQ(status("b@example.com")["delivery_mode"], "reject");
    // One transaction: every audit line carries the same change number.
    std::set<int64_t> seqs;
    for (const auto& line : read_lines(dir / "audit.log")) seqs.insert(json::parse(line)["seq"].get<int64_t>());
    EXPECT_EQ(seqs.size(), 1u);
}

TEST_F(CliTest, BatchBadLineAppliesNothing) {
    const std::string good = R"({"op":"suspend","target":"a@example.com","services":"imap"})" "\n";
    struct Case {
        std::string line;
        std::string fragment;
    };
    const Case cases[] = {
        {"{not json\n", "not valid JSON"},
        {R"({"op":"explode","target":"a@example.com"})" "\n", "unknown op 'explode'"},
        {R"({"op":"suspend","target":"b@example.com","services":"imap","colour":"red"})" "\n",
         "unknown field 'colour'"},
        {R"({"op":"suspend","target":"b@example.com","services":"imap,smtp"})" "\n", "smtp"},
        {R"({"op":"suspend","target":"b@example.com","services":"imap","reason":"a\nb"})" "\n", "CR/LF"},
        {R"({"op":"suspend","target":"b@example.com","services":5})" "\n", "wrong type"},
        {R"(["op","suspend"])" "\n", "not a JSON object"},
        {R"({"op":"suspend","target":"b@example.com","services":"imap","for":""})" "\n", "--for"},
        {R"({"op":"suspend","target":"b@example.com","services":"imap","for":"4x"})" "\n", "--for"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.line);
        const CliRun r = expect(2, {"batch"}, good + good + c.line + good);
        expect_has(r.err, "line 3");
        expect_has(r.err, c.fragment);
        expect_has(r.err, "nothing applied");
        EXPECT_EQ(list(), json::array());
    }
    EXPECT_TRUE(read_lines(dir / "audit.log").empty()) << "nothing applied, nothing audited";
}

// Issue 12, item 11: a key given twice took the last value silently.
TEST_F(CliTest, BatchDuplicateKeyIsAnError) {
    const std::string good = R"({"op":"suspend","target":"a@example.com","services":"imap"})" "\n";
    for (const std::string line :
         {R"({"op":"suspend","target":"b@example.com","services":"imap","target":"c@example.com"})",
          R"({"op":"suspend","target":"b@example.com","services":"imap","reason":"x","reason":"y"})",
          R"({"op":"suspend","op":"unsuspend","target":"b@example.com"})"}) {
        SCOPED_TRACE(line);
        const CliRun r = expect(2, {"batch"}, good + good + line + "\n");
        expect_has(r.err, "line 3");
        expect_has(r.err, "given twice");
        expect_has(r.err, "nothing applied");
        EXPECT_EQ(list(), json::array());
    }
    // The same key in two different objects is no duplicate (an object in an
    // array of services would be refused for its type, not for its keys).
    expect(0, {"batch"}, good + R"({"op":"suspend","target":"b@example.com","services":"imap"})" "\n");
}

// Issue 12, item 11: a 200 MB line used 788 MB of memory before exit 2.
TEST_F(CliTest, BatchLineAndInputAreBounded) {
    const std::string good = R"({"op":"suspend","target":"a@example.com","services":"imap"})" "\n";
    // A line just within 64 KiB is parsed (and refused for its content, not its size).
    const std::string fits = R"({"op":"suspend","target":"b@example.com","services":"imap","reason":")" +
                             std::string(65536 - 80, 'r') + "\"}";
    ASSERT_LE(fits.size(), 65536u);
    CliRun r = expect(2, {"batch"}, good + fits + "\n");
    expect_has(r.err, "line 2: reason");
    // One octet more is refused by size, naming the line; so is a 20 MB line,
    // in bounded memory: its run peaks within 8 MiB of the run above.  The
    // input is written in pieces, never held here: a forked child's peak
    // counts its parent's pages up to exec.  (Compared, not absolute, because
    // sanitizer builds start far larger.)
    const long baseline_kib = r.max_rss_kib;
    ASSERT_GT(baseline_kib, 0);
    for (const std::size_t size : {std::size_t{65537}, std::size_t{20} << 20}) {
        const std::string in = dir / "long-line";
        {
            std::ofstream f(in, std::ios::binary);
            f << good << good << R"({"op":"suspend","reason":")";
            const std::string piece(4096, 'x');
            for (std::size_t left = size; left > 0; left -= std::min(left, piece.size()))
                f.write(piece.data(), static_cast<std::streamsize>(std::min(left, piece.size())));
            f << "\"}\n";
        }
        r = cli_on({"batch"}, in);
        EXPECT_EQ(r.code, 2) << r.err;
        expect_has(r.err, "line 3: longer than 65536 octets (nothing applied)");
        EXPECT_LT(r.max_rss_kib, baseline_kib + 8 * 1024) << "KiB at peak, against " << baseline_kib;
    }
    // The whole input: at most 100,000 lines and 32 MiB.
    std::string many;
    for (int i = 0; i < 100001; ++i) many += "\n";
    r = expect(2, {"batch"}, many);
    expect_has(r.err, "line 100001: more than 100000 lines");
    std::string big;
    const std::string filler = " " + std::string(60000, ' ') + "\n";  // blank lines, within the line limit
    while (big.size() <= (std::size_t{32} << 20)) big += filler;
    r = expect(2, {"batch"}, big);
    expect_has(r.err, "input longer than 33554432 octets");
    EXPECT_EQ(list(), json::array());
}

// Issue 12, item 10: error messages quoted input with raw ESC and NUL bytes.
TEST_F(CliTest, ErrorsNeverEchoControlCharacters) {
    const std::vector<std::vector<std::string>> commands = {
        {"status", "bo\x1b[2Jb x@example.com"},
        {"status", "bob\x1b]0;owned\x07"},
        {"suspend", "a@example.com", "--service", "\x1b[31mimap"},
        {"suspend", "a@example.com", "--service", "imap", "--for", "1\x1b" "d"},
        {"suspend", "a@example.com", "--service", "imap", "--reason", "x\xE2\x80\xAEy"},
        {"suspend", "a@ex\xE2\x80\xAE" "ample.com", "--service", "imap"},
    };
    for (const auto& args : commands) {
        SCOPED_TRACE(args[1]);
        const CliRun r = expect(2, args);
        EXPECT_FALSE(r.err.empty());
        for (const char c : r.err) EXPECT_TRUE(c == '\n' || static_cast<unsigned char>(c) >= 0x20) << r.err;
        EXPECT_EQ(r.err.find("\xE2\x80\xAE"), std::string::npos) << r.err;
    }
    const CliRun r = expect(2, {"status", "bo\x1b" "b x@example.com"});
    expect_has(r.err, "bo\\x1bb x@example.com");
    const CliRun batch = expect(2, {"batch"}, std::string("{\"op\":\"x\x1b\x00\"}\n", 13));
    for (const char c : batch.err) EXPECT_TRUE(c == '\n' || static_cast<unsigned char>(c) >= 0x20) << batch.err;
}

TEST_F(CliTest, BatchRefusedLineAppliesNothing) {
    expect(0, {"suspend", "locked@example.com", "--service", "imap", "--lock"});
    const std::string input =
        R"({"op":"suspend","target":"a@example.com","services":"imap"})" "\n"
        R"({"op":"unsuspend","target":"locked@example.com"})" "\n";
    const CliRun r = expect(3, {"batch"}, input);
    expect_has(r.err, "line 2");
    EXPECT_EQ(status("a@example.com")["services"]["imap"]["suspended"], false);
}

TEST_F(CliTest, MalformedConfigExit2WithFileLine) {
    write_file(config, "store: {\n  path = \"/tmp/x\";\n  capacity = \"lots\";\n};\n");
    CliRun r = expect(2, {"status", "a@example.com"});
    expect_has(r.err, config + ":3:");
    expect_has(r.err, "store.capacity");
    write_file(config, "store: {\n  path = \"/tmp/x\";\n  capacity = = 5;\n};\n");
    r = expect(2, {"suspend", "a@example.com", "--service", "imap"});
    expect_has(r.err, config + ":3:");
}

TEST_F(CliTest, UnsuspendReceiveRunsFlushCommand) {
    const std::string out = dir / "flush.out";
    const std::string script = dir / "flush.sh";
    write_file(script, "#!/bin/sh\necho \"$#:$1:$2\" >> '" + out + "'\n");
    ::chmod(script.c_str(), 0755);
    text.delivery = "delivery: { flush_command = \"" + script + " -Rff {address}\"; fail_queued_command = \"\"; };";
    config = write_config(dir.path(), text);
    expect(0, {"suspend", "a@example.com", "--service", "receive"});
    EXPECT_FALSE(std::filesystem::exists(out));
    expect(0, {"unsuspend", "A@example.com"});
    EXPECT_EQ(read_file(out), "2:-Rff:a@example.com\n");
    // Leaving queue mode releases held mail to the new mode at once; entering
    // it does not, nor does a target that holds no mail (receive not suspended).
    expect(0, {"suspend", "b@example.com", "--service", "receive", "--mode", "queue"});
    expect(0, {"set-mode", "c@example.com", "discard"});
    expect(0, {"set-mode", "b@example.com", "queue"});
    EXPECT_EQ(read_file(out), "2:-Rff:a@example.com\n");
    expect(0, {"set-mode", "b@example.com", "discard"});
    EXPECT_EQ(read_file(out), "2:-Rff:a@example.com\n2:-Rff:b@example.com\n");
    expect(0, {"set-mode", "b@example.com", "reject"});  // not from queue: nothing held
    EXPECT_EQ(read_file(out), "2:-Rff:a@example.com\n2:-Rff:b@example.com\n");
}

TEST_F(CliTest, SweepAndCheck) {
    expect(0, {"suspend", "a@example.com", "--service", "imap", "--for", "1s"});
    const int64_t suspended_by = wall_now();
    expect(0, {"suspend", "b@example.com", "--service", "imap"});
    // Expiry needs the clock to pass it; 1 s is the smallest duration.
    while (wall_now() < suspended_by + 1) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(status("a@example.com")["services"]["imap"]["suspended"], false) << "expired at read time";
    CliRun r = expect(0, {"sweep"});
    expect_has(r.out, "lifted 1");
    bool expired_line = false;
    for (const auto& line : read_lines(dir / "audit.log"))
        expired_line |= json::parse(line)["action"] == "expire";
    EXPECT_TRUE(expired_line);
    r = expect(0, {"check"});
    expect_has(r.out, "consistent");
    r = expect(0, {"rebuild", "--capacity", "100"});
    expect_has(r.out, "generation 2");
    EXPECT_EQ(status("b@example.com")["services"]["imap"]["suspended"], true);
}

// Issue 12, item 12: a lifted suspension's reason stays in the superseded
// record image, in the store file the read group (every mail process) can
// read, until the sweep (every minute) rewrites the store; a reason still in
// force stays, and the journal and audit log are writers-only (0660).
TEST_F(CliTest, SweepRemovesLiftedReasonsFromTheReadableStore) {
    const std::string store = dir / "store/store";
    const auto store_holds = [&](const std::string& text) { return read_file(store).find(text) != std::string::npos; };
    expect(0, {"suspend", "a@example.com", "--service", "imap", "--reason", "lifted-secret-7f3a"});
    expect(0, {"suspend", "b@example.com", "--service", "imap", "--reason", "still-in-force-91c2"});
    expect(0, {"suspend", "c@example.com", "--service", "send", "--reason", "replaced-secret-2d4e"});
    expect(0, {"suspend", "c@example.com", "--service", "send", "--reason", "new-reason"});
    expect(0, {"unsuspend", "a@example.com"});
    EXPECT_TRUE(store_holds("lifted-secret-7f3a")) << "the state before the sweep";
    EXPECT_TRUE(store_holds("replaced-secret-2d4e"));
    expect(0, {"sweep"});
    EXPECT_FALSE(store_holds("lifted-secret-7f3a"));
    EXPECT_FALSE(store_holds("replaced-secret-2d4e"));
    EXPECT_TRUE(store_holds("still-in-force-91c2"));
    EXPECT_EQ(status("b@example.com")["services"]["imap"]["reason"], "still-in-force-91c2");
    EXPECT_EQ(status("c@example.com")["services"]["send"]["reason"], "new-reason");
    for (const char* writers_only : {"journal", "lock", "counters"}) {
        struct stat st {};
        if (::stat((dir / ("store/" + std::string(writers_only))).c_str(), &st) == 0) {
            EXPECT_EQ(st.st_mode & 07777, 0660u) << writers_only;
        }
    }
    // Nothing pending: a second sweep leaves the generation alone.
    const std::string generation = expect(0, {"check"}).out;
    expect(0, {"sweep"});
    EXPECT_EQ(expect(0, {"check"}).out, generation);
}

// The readers' tags damaged (every one cleared): a suspended mailbox reads
// as not suspended until the sweep (every minute) sets them from the
// records again, says so, and `check` named the damage meanwhile.
TEST_F(CliTest, SweepRepairsDamagedReaderTags) {
    expect(0, {"suspend", "a@example.com", "--service", "imap", "--reason", "kept"});
    {
        stress::RawStore raw(dir / "store/store");
        ASSERT_TRUE(raw.ok());
        for (uint64_t i = 0; i < raw.header().slot_count; ++i) raw.tag(i) = 0;
    }
    EXPECT_NE(expect(1, {"check"}).err.find("readers cannot find record a@example.com"), std::string::npos);
    EXPECT_EQ(status("a@example.com")["services"]["imap"]["suspended"], false) << "setup: the damage hides it";
    EXPECT_NE(expect(0, {"sweep"}).err.find("repaired the readers' tags or domain filter of 1 slot(s)"),
              std::string::npos);
    EXPECT_EQ(status("a@example.com")["services"]["imap"]["reason"], "kept");
    expect(0, {"check"});
}

TEST_F(CliTest, CorruptStoreExit1WithReason) {
    expect(0, {"suspend", "a@example.com", "--service", "imap"});
    const std::string store = dir / "store/store";
    {
        const int fd = ::open(store.c_str(), O_WRONLY);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::pwrite(fd, "NOTASTORE", 9, 0), 9);
        ::close(fd);
    }
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"status", "a@example.com"}, {"list"}, {"suspend", "b@example.com", "--service", "imap"}}) {
        const CliRun r = expect(1, args);
        expect_has(r.err, "magic");
    }
}

TEST_F(CliTest, MissingConfigFileExit2) {
    const std::string missing = dir / "missing.conf";
    const CliRun r = run_cli(dir, {"--config", missing, "status", "a@example.com"});
    EXPECT_EQ(r.code, 2) << r.err;
    expect_has(r.err, missing);
}

TEST_F(CliTest, AuditRecordsActor) {
    expect(0, {"--actor", "panel:alice", "suspend", "a@example.com", "--service", "send", "--reason", "abuse"});
    const auto lines = read_lines(dir / "audit.log");
    ASSERT_EQ(lines.size(), 1u);
    const json line = json::parse(lines[0]);
    EXPECT_EQ(line["actor"]["uid"], ::getuid());
    expect_has(line["actor"]["name"].get<std::string>(), "panel:alice");
    EXPECT_EQ(line["action"], "suspend");
    EXPECT_EQ(line["target"], "a@example.com");
    EXPECT_EQ(line["services"], "send");
    EXPECT_EQ(line["reason"], "abuse");
    EXPECT_TRUE(line["before"].empty());
    EXPECT_EQ(line["after"]["send"]["suspended"], true);
    EXPECT_TRUE(line["seq"].is_number_integer());
    EXPECT_TRUE(line["time"].is_number_integer());
}
