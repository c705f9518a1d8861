// The usage view (issue 11 item 6) over counts the Exim module made through
// the C API (mailsuspend_count_message): `mailsuspend usage --json` shows
// each count, its limit and when it falls back; `reset-usage` clears them in
// the counters Exim shares, audited; bad targets exit 2, nothing written.
#include <nlohmann/json.hpp>

#include "counters.hpp"
#include "policy_fixture.hpp"

using namespace mailsuspend;
using namespace policy_test;
using nlohmann::json;

namespace {

class UsageTest : public PolicyFixture {
protected:
    int64_t first = 0, last = 0;  // when the counted messages were sent

    mailsuspend_result send(struct mailsuspend_handle* h, const char* sender, std::vector<const char*> rcpts,
                            const char* ip = "192.0.2.10") {
        mailsuspend_result r{};
        if (!first) first = wall_now();
        mailsuspend_count_message(h, sender, ip, rcpts.data(), static_cast<unsigned>(rcpts.size()), &r);
        last = wall_now();
        return r;
    }

    // Three messages of a@example.com, each to one local and two off-domain
    // recipients from 192.0.2.10: 3 of 5 messages, 6 of 8 off-domain per
    // day, 6 of 6 off-domain per hour from the IP (at its limit).
    void send_three() {
        auto* h = open_handle();
        for (int i = 0; i < 3; ++i)
            ASSERT_EQ(send(h, "a@example.com", {"b@example.com", "x@other.test", "y@third.test"}).verdict,
                      MAILSUSPEND_ALLOW);
    }

    json usage(std::vector<std::string> args) {
        args.insert(args.begin(), "usage");
        args.push_back("--json");
        EXPECT_EQ(run_cli(args), 0) << cli_output;
        const json j = json::parse(cli_output, nullptr, false);
        EXPECT_FALSE(j.is_discarded()) << cli_output;
        return j;
    }

    // A fall-back time is when the bucket of a send time leaves the window.
    void expect_falls_back_after_sending(const json& c, int64_t bucket, int64_t window) {
        ASSERT_TRUE(c["falls_back"].is_array()) << c.dump();
        ASSERT_FALSE(c["falls_back"].empty()) << c.dump();
        int64_t sum = 0, previous = 0;
        for (const auto& d : c["falls_back"]) {
            const int64_t at = d["at"].get<int64_t>();
            EXPECT_EQ(at % bucket, 0) << "on a bucket boundary: " << c.dump();
            EXPECT_GE(at, (first / bucket) * bucket + window) << c.dump();
            EXPECT_LE(at, (last / bucket) * bucket + window) << c.dump();
            EXPECT_GT(at, previous) << "oldest first";
            previous = at;
            sum += d["by"].get<int64_t>();
        }
        EXPECT_EQ(sum, c["count"].get<int64_t>()) << "the drops add up to the count";
        EXPECT_EQ(c["clear_at"], previous);
    }

    int64_t counted(const std::string& key, CounterKind kind) {
        std::string error;
        auto c = Counters::open(dir + "/store", false, 0, error);
        EXPECT_TRUE(c) << error;
        return c ? c->total(key, kind, wall_now()) : -1;
    }
};

}  // namespace

TEST_F(UsageTest, ShowsEachCountAgainstItsLimitAndWhenItFallsBack) {
    send_three();
    const json u = usage({"A+news@Example.com", "--ip", "192.0.2.10"});
    EXPECT_EQ(u["target"], "a@example.com");
    EXPECT_EQ(u["ip"], "192.0.2.10");
    const json& m = u["counters"]["messages_per_day"];
    EXPECT_EQ(m["count"], 3);
    EXPECT_EQ(m["limit"], 5);
    EXPECT_EQ(m["window"], 86400);
    EXPECT_TRUE(m["under_limit_at"].is_null()) << "under its limit now";
    expect_falls_back_after_sending(m, 3600, 86400);
    const json& d = u["counters"]["offdomain_recipients_per_day"];
    EXPECT_EQ(d["count"], 6);
    EXPECT_EQ(d["limit"], 8);
    expect_falls_back_after_sending(d, 3600, 86400);
    const json& ip = u["counters"]["offdomain_recipients_per_hour_per_ip"];
    EXPECT_EQ(ip["key"], "192.0.2.10");
    EXPECT_EQ(ip["count"], 6);
    EXPECT_EQ(ip["limit"], 6);
    EXPECT_EQ(ip["window"], 3600);
    expect_falls_back_after_sending(ip, 300, 3600);
    // At the limit: it says when one more may pass, and it is the first drop.
    ASSERT_FALSE(ip["under_limit_at"].is_null()) << ip.dump();
    EXPECT_EQ(ip["under_limit_at"], ip["falls_back"][0]["at"]);
    // Without --ip, only the mailbox's counters.
    const json plain = usage({"a@example.com"});
    EXPECT_TRUE(plain["ip"].is_null());
    EXPECT_FALSE(plain["counters"].contains("offdomain_recipients_per_hour_per_ip"));
    // The text view says the same.
    ASSERT_EQ(run_cli({"usage", "a@example.com", "--ip", "192.0.2.10"}), 0) << cli_output;
    EXPECT_NE(cli_output.find("messages_per_day: 3 of 5"), std::string::npos) << cli_output;
    EXPECT_NE(cli_output.find("offdomain_recipients_per_hour_per_ip (192.0.2.10): 6 of 6"), std::string::npos)
        << cli_output;
    EXPECT_NE(cli_output.find("AT THE LIMIT"), std::string::npos) << cli_output;
}

TEST_F(UsageTest, ResetClearsTheCountersEximSharesAndIsAudited) {
    send_three();
    ASSERT_EQ(run_cli({"--actor", "panel:joe", "reset-usage", "a@example.com", "--ip", "192.0.2.10"}), 0)
        << cli_output;
    const json u = usage({"a@example.com", "--ip", "192.0.2.10"});
    for (const auto& [name, c] : u["counters"].items()) {
        EXPECT_EQ(c["count"], 0) << name;
        EXPECT_TRUE(c["falls_back"].empty()) << name;
        EXPECT_TRUE(c["clear_at"].is_null()) << name;
    }
    EXPECT_EQ(counted("a@example.com", CounterKind::messages), 0);
    EXPECT_EQ(counted("192.0.2.10", CounterKind::ip_offdomain_rcpts), 0);
    // One audit line, through the same log as every change.
    json line;
    for (std::string text = read_file(dir + "/audit.log"); !text.empty();) {
        const auto nl = text.find('\n');
        const json j = json::parse(text.substr(0, nl), nullptr, false);
        if (j.is_object() && j["action"] == "reset-usage") line = j;
        text = nl == std::string::npos ? "" : text.substr(nl + 1);
    }
    ASSERT_TRUE(line.is_object()) << read_file(dir + "/audit.log");
    EXPECT_EQ(line["target"], "a@example.com");
    EXPECT_EQ(line["ip"], "192.0.2.10");
    EXPECT_NE(line["actor"]["name"].get<std::string>().find("panel:joe"), std::string::npos) << line.dump();
    EXPECT_EQ(line["before"]["messages_per_day"], 3);
    EXPECT_EQ(line["before"]["offdomain_recipients_per_day"], 6);
    EXPECT_EQ(line["before"]["offdomain_recipients_per_hour_per_ip"], 6);
    EXPECT_EQ(line["after"]["messages_per_day"], 0);
    EXPECT_EQ(line["after"]["offdomain_recipients_per_hour_per_ip"], 0);
    EXPECT_GE(line["time"].get<int64_t>(), first);
    // Exim's counting starts afresh: five more messages pass before the limit.
    auto* h = open_handle();
    for (int i = 0; i < 5; ++i)
        EXPECT_EQ(send(h, "a@example.com", {"b@example.com"}).verdict, MAILSUSPEND_ALLOW) << "message " << i + 1;
    EXPECT_EQ(send(h, "a@example.com", {"b@example.com"}).verdict, MAILSUSPEND_DENY);
}

TEST_F(UsageTest, ResetWithoutIpLeavesTheSharedIpCount) {
    send_three();
    ASSERT_EQ(run_cli({"reset-usage", "a@example.com"}), 0) << cli_output;
    EXPECT_EQ(counted("a@example.com", CounterKind::messages), 0);
    EXPECT_EQ(counted("a@example.com", CounterKind::offdomain_rcpts), 0);
    EXPECT_EQ(counted("192.0.2.10", CounterKind::ip_offdomain_rcpts), 6) << "other mailboxes share it";
}

TEST_F(UsageTest, BadTargetsAndAddressesExit2AndChangeNothing) {
    send_three();
    const std::string audit_before = read_file(dir + "/audit.log");
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"usage", "not an address"},
             {"usage", "@example.com", "--ip", "192.0.2.10"},
             {"usage", "a@example.com", "--ip", "192.0.2"},
             {"usage"},
             {"reset-usage", "a@@example.com"},
             {"reset-usage", "@example.com", "--ip", "192.0.2.10"},
             {"reset-usage", "a@example.com", "--ip", "not-an-ip"},
             {"reset-usage"}}) {
        std::string joined;
        for (const auto& a : args) joined += a + " ";
        EXPECT_EQ(run_cli(args), 2) << joined << ": " << cli_output;
        EXPECT_FALSE(cli_output.empty()) << joined << ": says why";
    }
    EXPECT_EQ(read_file(dir + "/audit.log"), audit_before);
    EXPECT_EQ(counted("a@example.com", CounterKind::messages), 3);
}

TEST_F(UsageTest, MissingCountersExit1) {
    ASSERT_EQ(::unlink((dir + "/store/counters").c_str()), 0);
    EXPECT_EQ(run_cli({"usage", "a@example.com"}), 1) << cli_output;
    EXPECT_NE(cli_output.find("counters"), std::string::npos) << cli_output;
    EXPECT_EQ(run_cli({"reset-usage", "a@example.com"}), 1) << cli_output;
}
