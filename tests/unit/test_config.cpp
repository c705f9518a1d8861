// mailsuspend.conf: defaults, every group, and errors that name file:line and key.
#include <gtest/gtest.h>

#include "config.hpp"
#include "test_util.hpp"

using namespace mailsuspend;
using namespace mailsuspend::test;

namespace {

class ConfigTest : public ::testing::Test {
protected:
    TempDir dir;
    std::string path = dir / "mailsuspend.conf";

    std::optional<Config> load(const std::string& text) {
        write_file(path, text);
        error.clear();
        return load_config(path, error);
    }

    // The file is refused; the error names file:line, and every fragment.
    void expect_error(const std::string& text, int line, std::initializer_list<std::string> fragments) {
        auto cfg = load(text);
        EXPECT_FALSE(cfg.has_value()) << "accepted:\n" << text;
        const std::string where = path + ":" + std::to_string(line) + ":";
        EXPECT_EQ(error.rfind(where, 0), 0u) << "error '" << error << "' does not start with " << where;
        for (const auto& f : fragments)
            EXPECT_NE(error.find(f), std::string::npos) << "error '" << error << "' lacks '" << f << "'";
    }

    std::string error;
};

}  // namespace

TEST_F(ConfigTest, EmptyFileGivesDefaults) {
    auto cfg = load("# nothing set\n");
    ASSERT_TRUE(cfg) << error;
    EXPECT_EQ(cfg->path, path);
    EXPECT_EQ(cfg->store_path, "/var/lib/mailsuspend");
    EXPECT_EQ(cfg->store_capacity, 100000u);
    EXPECT_EQ(cfg->fail_policy, FailPolicy::open);
    EXPECT_EQ(cfg->read_group, "mailsuspend");
    EXPECT_EQ(cfg->write_group, "Debian-exim");
    EXPECT_EQ(cfg->default_mode, DeliveryMode::queue);
    EXPECT_EQ(cfg->queue_expiry, 4 * 86400 + 8 * 3600);
    EXPECT_EQ(cfg->address.default_domain, "");
    EXPECT_EQ(cfg->address.subaddress_separator, "+");
    EXPECT_TRUE(cfg->webmail_hosts.empty());
    EXPECT_EQ(cfg->messages.send_suspended,
              "Permanent Failure: Your account has been suspended for a violation of the terms of "
              "usage. Please contact your system administrator.");
    EXPECT_EQ(cfg->messages.unavailable.find("suspended"), std::string::npos)
        << "the fail-closed text must not claim a suspension";
    EXPECT_TRUE(cfg->messages.include_reason);
    EXPECT_EQ(cfg->limits.messages_per_day, 600);
    EXPECT_EQ(cfg->self_service_interval, 90 * 86400);
}

TEST_F(ConfigTest, SendActionsAndTheEximCommand) {
    auto cfg = load("store: { };");
    ASSERT_TRUE(cfg) << error;
    EXPECT_EQ(cfg->limits.action, SendAction::refuse);
    EXPECT_EQ(cfg->spam_action, SendAction::refuse);
    EXPECT_EQ(cfg->exim_command, "/usr/sbin/exim4");
    cfg = load("limits: { action = \"hold\"; };\nspam: { action = \"hold\"; };\n"
               "delivery: { exim_command = \"/usr/sbin/exim4 -C /etc/x.conf\"; };");
    ASSERT_TRUE(cfg) << error;
    EXPECT_EQ(cfg->limits.action, SendAction::hold);
    EXPECT_EQ(cfg->spam_action, SendAction::hold);
    EXPECT_EQ(cfg->exim_command, "/usr/sbin/exim4 -C /etc/x.conf");
    EXPECT_FALSE(load("limits: { action = \"freeze\"; };"));
    EXPECT_NE(error.find("must be \"refuse\" or \"hold\""), std::string::npos) << error;
    EXPECT_NE(error.find("action"), std::string::npos) << error;
}

TEST_F(ConfigTest, EmptyGroupsGiveDefaults) {
    auto cfg = load("store: { };\ndelivery: { };\naddress: { };\nwebmail: { };\nmessages: { };\n"
                    "limits: { };\nspam: { };\nunblock: { };\n");
    ASSERT_TRUE(cfg) << error;
    EXPECT_EQ(cfg->store_path, "/var/lib/mailsuspend");
    EXPECT_EQ(cfg->queue_expiry, 4 * 86400 + 8 * 3600);
    EXPECT_EQ(cfg->limits.suspend_for, 86400);
}

TEST_F(ConfigTest, EveryGroupParsed) {
    auto cfg = load(R"(
store: { path = "/srv/ms"; capacity = 5000; counter_capacity = 300; fail_policy = "closed";
         read_group = "r"; write_group = "w"; audit_log = "/srv/audit"; };
delivery: { default_mode = "reject"; queue_expiry = "2d"; flush_command = "/bin/true {address}";
            fail_queued_command = ""; };
address: { default_domain = "example.net"; subaddress_separator = "-"; };
webmail: { hosts = [ "127.0.0.2", "2001:db8::/64" ]; };
messages: { login_denied = "no login"; unavailable = "gone"; send_suspended = "no send";
            rate_suspended = "slow down"; receive_rejected = "no mail";
            recipients_per_message = "too many"; include_reason = false; };
limits: { messages_per_day = 10; recipients_per_message = 5; offdomain_recipients_per_day = 7;
          offdomain_recipients_per_hour_per_ip = 3; suspend_for = "2h"; extend_on_attempt = false;
          escalate_after = 2; };
spam: { threshold = 4; window = "12h"; default_abuse_contact = "abuse@example.net";
        abuse_contacts = ( { domain = "example.org"; contact = "abuse@example.org"; } ); evidence_samples = 1;
        sendmail_command = "/bin/cat"; };
unblock: { self_service_interval = "30d"; };
)");
    ASSERT_TRUE(cfg) << error;
    EXPECT_EQ(cfg->store_path, "/srv/ms");
    EXPECT_EQ(cfg->store_capacity, 5000u);
    EXPECT_EQ(cfg->counter_capacity, 300u);
    EXPECT_EQ(cfg->fail_policy, FailPolicy::closed);
    EXPECT_EQ(cfg->read_group, "r");
    EXPECT_EQ(cfg->write_group, "w");
    EXPECT_EQ(cfg->audit_log, "/srv/audit");
    EXPECT_EQ(cfg->default_mode, DeliveryMode::reject);
    EXPECT_EQ(cfg->queue_expiry, 2 * 86400);
    EXPECT_EQ(cfg->flush_command, "/bin/true {address}");
    EXPECT_EQ(cfg->fail_queued_command, "");
    EXPECT_EQ(cfg->address.default_domain, "example.net");
    EXPECT_EQ(cfg->address.subaddress_separator, "-");
    ASSERT_EQ(cfg->webmail_hosts.size(), 2u);
    EXPECT_TRUE(cfg->is_webmail_host("127.0.0.2"));
    EXPECT_TRUE(cfg->is_webmail_host("2001:db8::5"));
    EXPECT_FALSE(cfg->is_webmail_host("127.0.0.3"));
    EXPECT_FALSE(cfg->is_webmail_host("not an ip"));
    EXPECT_FALSE(cfg->is_webmail_host(nullptr));
    EXPECT_EQ(cfg->messages.login_denied, "no login");
    EXPECT_EQ(cfg->messages.unavailable, "gone");
    EXPECT_EQ(cfg->messages.send_suspended, "no send");
    EXPECT_EQ(cfg->messages.rate_suspended, "slow down");
    EXPECT_EQ(cfg->messages.receive_rejected, "no mail");
    EXPECT_EQ(cfg->messages.recipients_per_message, "too many");
    EXPECT_FALSE(cfg->messages.include_reason);
    EXPECT_EQ(cfg->limits.messages_per_day, 10);
    EXPECT_EQ(cfg->limits.recipients_per_message, 5);
    EXPECT_EQ(cfg->limits.offdomain_recipients_per_day, 7);
    EXPECT_EQ(cfg->limits.offdomain_recipients_per_hour_per_ip, 3);
    EXPECT_EQ(cfg->limits.suspend_for, 7200);
    EXPECT_FALSE(cfg->limits.extend_on_attempt);
    EXPECT_EQ(cfg->limits.escalate_after, 2);
    EXPECT_EQ(cfg->spam_threshold, 4);
    EXPECT_EQ(cfg->spam_window, 12 * 3600);
    EXPECT_EQ(cfg->default_abuse_contact, "abuse@example.net");
    EXPECT_EQ(cfg->abuse_contacts.at("example.org"), "abuse@example.org");
    EXPECT_EQ(cfg->evidence_samples, 1);
    EXPECT_EQ(cfg->sendmail_command, "/bin/cat");
    EXPECT_EQ(cfg->self_service_interval, 30 * 86400);
}

TEST_F(ConfigTest, DurationAsSeconds) {
    auto cfg = load("delivery: { queue_expiry = 3600; };\nunblock: { self_service_interval = 0; };\n");
    ASSERT_TRUE(cfg) << error;
    EXPECT_EQ(cfg->queue_expiry, 3600);
    EXPECT_EQ(cfg->self_service_interval, 0);
}

TEST_F(ConfigTest, SyntaxError) {
    expect_error("store: {\n  path = \"/srv/ms\"\n  capacity = ;\n};\n", 3, {"syntax error"});
}

TEST_F(ConfigTest, UnknownKeyTypo) {
    expect_error("store: {\n  path = \"/srv/ms\";\n  capacty = 10;\n};\n", 3,
                 {"store.capacty", "unknown setting", "capacity"});
}

TEST_F(ConfigTest, UnknownGroup) {
    expect_error("\nstroe: { path = \"/srv/ms\"; };\n", 2, {"stroe", "unknown setting"});
}

TEST_F(ConfigTest, GroupThatIsNotAGroup) {
    expect_error("delivery = 5;\n", 1, {"delivery", "must be a group"});
}

TEST_F(ConfigTest, WrongType) {
    expect_error("store: {\n  capacity = \"big\";\n};\n", 2, {"store.capacity", "whole number"});
    expect_error("store: {\n  path = 5;\n};\n", 2, {"store.path", "string"});
    expect_error("messages: {\n  include_reason = \"yes\";\n};\n", 2,
                 {"messages.include_reason", "true or false"});
    expect_error("webmail: {\n  hosts = \"127.0.0.1\";\n};\n", 2, {"webmail.hosts", "list"});
}

TEST_F(ConfigTest, OutOfRange) {
    expect_error("store: {\n  capacity = 3;\n};\n", 2, {"store.capacity", "between 16"});
    expect_error("address: {\n  subaddress_separator = \"++\";\n};\n", 2,
                 {"address.subaddress_separator", "one character"});
}

TEST_F(ConfigTest, EmptyReplyTextRefused) {
    expect_error("messages: {\n  send_suspended = \"\";\n};\n", 2, {"messages.send_suspended", "empty"});
    expect_error("messages: {\n\n  receive_rejected = \"   \";\n};\n", 3, {"messages.receive_rejected", "empty"});
}

TEST_F(ConfigTest, BadFailPolicy) {
    expect_error("store: {\n  path = \"/srv/ms\";\n  fail_policy = \"half\";\n};\n", 3,
                 {"store.fail_policy", "\"open\" or \"closed\""});
}

TEST_F(ConfigTest, BadDefaultMode) {
    expect_error("delivery: {\n\n  default_mode = \"bounce\";\n};\n", 3,
                 {"delivery.default_mode", "deliver, discard, reject, queue"});
    // "default" names the absence of a mode; it is not a mode one can set.
    expect_error("delivery: {\n  default_mode = \"default\";\n};\n", 2, {"delivery.default_mode"});
}

TEST_F(ConfigTest, BadDuration) {
    expect_error("delivery: {\n  queue_expiry = \"4x\";\n};\n", 2, {"delivery.queue_expiry", "unit 'x'"});
    expect_error("limits: {\n  suspend_for = \"0s\";\n};\n", 2, {"limits.suspend_for", "positive"});
    expect_error("unblock: {\n  self_service_interval = 1.5;\n};\n", 2,
                 {"unblock.self_service_interval", "duration"});
}

TEST_F(ConfigTest, BadWebmailHost) {
    expect_error("webmail: {\n  hosts = [ \"127.0.0.2\",\n            \"127.0.0.300\" ];\n};\n", 3,
                 {"webmail.hosts", "127.0.0.300", "not an IP address or CIDR"});
    expect_error("webmail: {\n  hosts = [ \"webmail.example.com\" ];\n};\n", 2,
                 {"webmail.hosts", "webmail.example.com"});
}

TEST_F(ConfigTest, LineBreakInMessageText) {
    expect_error("messages: {\n  include_reason = true;\n  unavailable = \"Gone\\r\\nX-Injected: 1\";\n};\n", 3,
                 {"messages.unavailable", "CR/LF"});
    expect_error("messages: {\n  login_denied = \"a\\tb\";\n};\n", 2, {"messages.login_denied", "control"});
}

TEST_F(ConfigTest, RelativeStorePath) {
    expect_error("store: {\n  capacity = 100;\n  path = \"var/lib/mailsuspend\";\n};\n", 3,
                 {"store.path", "absolute"});
    expect_error("store: {\n  path = \"\";\n};\n", 2, {"store.path", "absolute"});
}

TEST_F(ConfigTest, FirstErrorWins) {
    expect_error("store: {\n  capacity = 3;\n  fail_policy = \"half\";\n};\n", 2, {"store.capacity"});
}

TEST_F(ConfigTest, MissingFile) {
    error.clear();
    const std::string missing = dir / "nope.conf";
    EXPECT_FALSE(load_config(missing, error).has_value());
    EXPECT_NE(error.find(missing), std::string::npos) << error;
    EXPECT_NE(error.find("cannot read"), std::string::npos) << error;
}

TEST_F(ConfigTest, ShippedExampleLoads) {
    const std::string example = std::string(MAILSUSPEND_SOURCE_DIR) + "/conf/mailsuspend.conf";
    std::string err;
    auto cfg = load_config(example, err);
    ASSERT_TRUE(cfg) << err;
    EXPECT_EQ(cfg->store_path, "/var/lib/mailsuspend");
    EXPECT_EQ(cfg->queue_expiry, 4 * 86400 + 8 * 3600);
}

TEST_F(ConfigTest, DoctorProbeAddress) {
    auto defaults = load("# nothing set\n");
    ASSERT_TRUE(defaults) << error;
    EXPECT_EQ(defaults->probe_address, "mailsuspend-probe@probe.invalid");
    auto cfg = load("doctor: { probe_address = \"probe@example.net\"; };\n");
    ASSERT_TRUE(cfg) << error;
    EXPECT_EQ(cfg->probe_address, "probe@example.net");
    // A domain would suspend every mailbox of it for the probe's duration.
    expect_error("doctor: { probe_address = \"@example.net\"; };\n", 1, {"doctor.probe_address", "mailbox"});
    expect_error("doctor: {\n  probe_address = \"not an address\";\n};\n", 2, {"doctor.probe_address", "not an address"});
    expect_error("doctor: { probe = \"x@example.net\"; };\n", 1, {"doctor.probe", "unknown setting"});
}

TEST_F(ConfigTest, DomainLimitsAndTriggersAreOffByDefaultAndEachHasItsText) {
    auto cfg = load("limits: { domain_messages_per_hour = 40; unknown_recipients_per_hour = 7; };\n"
                    "messages: { unknown_recipients = \"stop guessing\"; };\n");
    ASSERT_TRUE(cfg) << error;
    EXPECT_EQ(Config{}.limits.domain_messages_per_hour, 0);
    EXPECT_EQ(Config{}.limits.domain_offdomain_recipients_per_day, 0);
    EXPECT_EQ(Config{}.limits.unknown_recipients_per_hour, 0);
    EXPECT_EQ(cfg->limits.domain_messages_per_hour, 40);
    EXPECT_EQ(cfg->limits.unknown_recipients_per_hour, 7);
    const Messages& m = cfg->messages;
    // The text of an automatic suspension follows the limit its reason names.
    EXPECT_EQ(&automatic_text(m, "automatic: 8 recipients refused as non-existent within 1h "
                                 "(limits.unknown_recipients_per_hour = 7)"), &m.unknown_recipients);
    EXPECT_EQ(&automatic_text(m, "automatic: 41 messages from the domain's mailboxes within 1h "
                                 "(limits.domain_messages_per_hour = 40); repeated, so permanent"),
              &m.domain_rate_suspended);
    EXPECT_EQ(&text_of_limit(m, "domain_offdomain_recipients_per_day"), &m.domain_rate_suspended);
    EXPECT_EQ(&automatic_text(m, "automatic: 6 messages within 24h (limits.messages_per_day = 5)"), &m.rate_suspended);
    EXPECT_EQ(&automatic_text(m, "automatic: spam reports about 3 distinct message(s)"), &m.rate_suspended);
    EXPECT_EQ(m.unknown_recipients, "stop guessing");
}

// ---- fleet (issue 15)

TEST_F(ConfigTest, NoFleetGroupIsASingleNode) {
    auto cfg = load("store = { path = \"/tmp/x\"; };\n");
    ASSERT_TRUE(cfg) << error;
    EXPECT_FALSE(cfg->fleet.enabled);
}

TEST_F(ConfigTest, FleetGroupWithDefaults) {
    auto cfg = load("fleet = { redis = \"127.0.0.1:6379\"; signing_key_file = \"/etc/mailsuspend/fleet.key\"; };\n");
    ASSERT_TRUE(cfg) << error;
    EXPECT_TRUE(cfg->fleet.enabled);
    EXPECT_EQ(cfg->fleet.redis, "127.0.0.1:6379");
    EXPECT_EQ(cfg->fleet.key_prefix, "mailsuspend");
    EXPECT_FALSE(cfg->fleet.node_id.empty());  // the host name
    EXPECT_EQ(cfg->fleet.counters, FleetConfig::Counters::node);
    EXPECT_EQ(cfg->fleet.stream_length, 100000);
}

TEST_F(ConfigTest, FleetGroupEveryKey) {
    auto cfg = load(
        "fleet = { sentinels = [ \"10.0.0.1:26379\", \"[2001:db8::2]:26379\" ]; master_name = \"ms\";\n"
        "  node_id = \"mx-1\"; key_prefix = \"ms:prod\"; password_file = \"/etc/mailsuspend/redis.pw\";\n"
        "  signing_key_file = \"/etc/mailsuspend/fleet.key\"; counters = \"fleet\"; stream_length = 5000; };\n");
    ASSERT_TRUE(cfg) << error;
    EXPECT_EQ(cfg->fleet.sentinels, (std::vector<std::string>{"10.0.0.1:26379", "[2001:db8::2]:26379"}));
    EXPECT_EQ(cfg->fleet.master_name, "ms");
    EXPECT_EQ(cfg->fleet.node_id, "mx-1");
    EXPECT_EQ(cfg->fleet.key_prefix, "ms:prod");
    EXPECT_EQ(cfg->fleet.password_file, "/etc/mailsuspend/redis.pw");
    EXPECT_EQ(cfg->fleet.counters, FleetConfig::Counters::fleet);
    EXPECT_EQ(cfg->fleet.stream_length, 5000);
}

TEST_F(ConfigTest, FleetUnixSocket) {
    auto cfg = load("fleet = { redis = \"unix:/run/redis/redis.sock\"; signing_key_file = \"/k\"; };\n");
    ASSERT_TRUE(cfg) << error;
    EXPECT_EQ(cfg->fleet.redis, "unix:/run/redis/redis.sock");
}

TEST_F(ConfigTest, FleetBadValuesAreNamed) {
    const std::string key = " signing_key_file = \"/k\";";
    expect_error("fleet = {\n redis = \"localhost\";" + key + " };\n", 2, {"fleet.redis", "host:port"});
    expect_error("fleet = {\n redis = \"h:0\";" + key + " };\n", 2, {"fleet.redis", "1 to 65535"});
    expect_error("fleet = {\n redis = \"h:99999\";" + key + " };\n", 2, {"fleet.redis", "1 to 65535"});
    expect_error("fleet = {\n redis = \"::1:6379\";" + key + " };\n", 2, {"fleet.redis", "brackets"});
    expect_error("fleet = {\n redis = \"unix:run/redis.sock\";" + key + " };\n", 2, {"fleet.redis", "absolute"});
    expect_error("fleet = {" + key + "\n };\n", 1, {"fleet", "needs redis"});
    expect_error("fleet = { redis = \"h:1\";\n sentinels = [\"h:2\"]; master_name = \"m\";" + key + " };\n", 2,
                 {"fleet.sentinels", "not both"});
    expect_error("fleet = {\n sentinels = [\"h:2\"];" + key + " };\n", 1, {"master_name"});
    expect_error("fleet = {\n sentinels = [\"h\"]; master_name = \"m\";" + key + " };\n", 2,
                 {"fleet.sentinels.[0]", "host:port"});
    expect_error("fleet = { redis = \"h:1\";\n master_name = \"m\";" + key + " };\n", 2,
                 {"fleet.master_name", "sentinels"});
    expect_error("fleet = { redis = \"h:1\";\n node_id = \"a b\";" + key + " };\n", 2, {"fleet.node_id", "a b"});
    expect_error("fleet = { redis = \"h:1\";\n key_prefix = \"\";" + key + " };\n", 2, {"fleet.key_prefix"});
    expect_error("fleet = { redis = \"h:1\";\n password_file = \"pw\";" + key + " };\n", 2,
                 {"fleet.password_file", "absolute"});
    expect_error("fleet = { redis = \"h:1\";\n counters = \"cluster\";" + key + " };\n", 2,
                 {"fleet.counters", "\"node\" or \"fleet\""});
    expect_error("fleet = { redis = \"h:1\";\n stream_length = 10;" + key + " };\n", 2,
                 {"fleet.stream_length", "1000"});
    expect_error("fleet = {\n redis = \"h:1\"; };\n", 1, {"signing_key_file"});
    expect_error("fleet = { redis = \"h:1\";\n nodes = 3;" + key + " };\n", 2, {"fleet.nodes", "unknown"});
}

// ---- alerts (issue 16, item 4)

TEST_F(ConfigTest, NoAlertsGroupTellsNobody) {
    auto cfg = load("store = { path = \"/tmp/x\"; };\n");
    ASSERT_TRUE(cfg) << error;
    EXPECT_FALSE(cfg->alerts.enabled);
    EXPECT_TRUE(cfg->alerts.webhook_url.empty());
    EXPECT_TRUE(cfg->alerts.admin_address.empty());
}

TEST_F(ConfigTest, AlertsGroupEveryKey) {
    auto cfg = load(
        "alerts = { webhook_url = \"https://panel.example.com:8443/hooks/ms?x=1\";\n"
        "  webhook_secret_file = \"/etc/mailsuspend/webhook.secret\"; admin_address = \"postmaster@example.com\"; };\n");
    ASSERT_TRUE(cfg) << error;
    EXPECT_TRUE(cfg->alerts.enabled);
    EXPECT_EQ(cfg->alerts.webhook_url, "https://panel.example.com:8443/hooks/ms?x=1");
    EXPECT_EQ(cfg->alerts.webhook_secret_file, "/etc/mailsuspend/webhook.secret");
    EXPECT_EQ(cfg->alerts.admin_address, "postmaster@example.com");
    cfg = load("alerts = { admin_address = \"abuse@example.com\"; };\n");
    ASSERT_TRUE(cfg) << error;
    EXPECT_TRUE(cfg->alerts.webhook_url.empty()) << "mail alone is enough";
}

TEST_F(ConfigTest, AlertsErrorsNameTheKey) {
    const std::string secret = " webhook_secret_file = \"/etc/s\";";
    expect_error("alerts = {\n webhook_url = \"ftp://h/x\";" + secret + " };\n", 2,
                 {"alerts.webhook_url", "http:// or https://"});
    expect_error("alerts = {\n webhook_url = \"https:///x\";" + secret + " };\n", 2, {"alerts.webhook_url", "no host"});
    expect_error("alerts = {\n webhook_url = \"http://h/a b\";" + secret + " };\n", 2,
                 {"alerts.webhook_url", "spaces"});
    expect_error("alerts = {\n webhook_url = \"http://h/\"; };\n", 1, {"webhook_secret_file", "signed"});
    expect_error("alerts = {\n webhook_url = \"http://h/\";\n webhook_secret_file = \"secret\"; };\n", 3,
                 {"alerts.webhook_secret_file", "absolute path"});
    expect_error("alerts = {\n webhook_secret_file = \"/etc/s\"; };\n", 2, {"webhook_url, which is not set"});
    expect_error("alerts = {\n admin_address = \"@example.com\"; };\n", 2, {"alerts.admin_address", "mailbox"});
    expect_error("alerts = {\n admin_address = \"not an address\"; };\n", 2,
                 {"alerts.admin_address", "not an address"});
    expect_error("alerts = {\n};\n", 1, {"alerts", "webhook_url or admin_address"});
    expect_error("alerts = {\n admin_address = \"a@example.com\";\n url = \"x\"; };\n", 3, {"alerts.url", "unknown"});
}

TEST_F(ConfigTest, FailedShareIsOffByDefaultHasItsTextAndAPercentBelowAHundred) {
    EXPECT_EQ(Config{}.limits.failed_share_percent, 0);
    EXPECT_EQ(Config{}.limits.failed_share_min_recipients, 20);
    auto cfg = load("limits: { failed_share_percent = 30; failed_share_min_recipients = 50; };\n"
                    "messages: { failed_share = \"too many bounces\"; };\n");
    ASSERT_TRUE(cfg) << error;
    EXPECT_EQ(cfg->limits.failed_share_percent, 30);
    EXPECT_EQ(cfg->limits.failed_share_min_recipients, 50);
    const Messages& m = cfg->messages;
    EXPECT_EQ(m.failed_share, "too many bounces");
    EXPECT_EQ(&automatic_text(m, "automatic: 16 of 50 remote recipients bounced or deferred within 1h "
                                 "(limits.failed_share_percent = 30)"),
              &m.failed_share);
    // "More than 100 %" could never happen; a minimum of 0 would judge a share of nothing.
    expect_error("limits: { failed_share_percent = 100; };\n", 1, {"limits.failed_share_percent"});
    expect_error("limits: { failed_share_min_recipients = 0; };\n", 1, {"limits.failed_share_min_recipients"});
}
