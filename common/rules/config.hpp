// mailsuspend.conf (libconfig syntax), every key with its default.
// README.md, "Configuration", documents each key; conf/mailsuspend.conf
// is the annotated example.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "address.hpp"
#include "model.hpp"
#include "netmask.hpp"

namespace mailsuspend {

enum class FailPolicy { open, closed };

// A configured message (messages.*) is at most this long, UTF-8 without a
// control character or line break: the config reader refuses anything else,
// so a reply starts with it as it is.
constexpr std::size_t kMaxMessageText = 400;

struct Messages {
    // Refusals while the store cannot be read and store.fail_policy is closed:
    // nobody is known to be suspended, so no suspension text.
    std::string unavailable =
        "Your account status cannot be verified right now. Please try again later or "
        "contact your system administrator.";
    std::string send_suspended =
        "Permanent Failure: Your account has been suspended for a violation of the terms "
        "of usage. Please contact your system administrator.";
    std::string rate_suspended =
        "Permanent Failure: Your ability to send new mail has been suspended as a high "
        "volume of suspicious mail has been sent from your account recently. Please "
        "contact your IT administrator";
    std::string receive_rejected = "Mailbox unavailable: the account is suspended.";
    std::string recipients_per_message =
        "Permanent Failure: Too many recipients for one message. Please contact your IT "
        "administrator";
    // A message that takes its client IP over limits.offdomain_recipients_per_hour_per_ip:
    // the IP is throttled (temporary refusal), nobody is suspended.
    std::string ip_throttled =
        "Too much mail to other domains from your network address within the last hour. "
        "Please try again later.";
    // A message that takes its domain over limits.domain_messages_per_hour or
    // limits.domain_offdomain_recipients_per_day: send of the whole domain is suspended.
    std::string domain_rate_suspended =
        "Permanent Failure: Sending mail from your domain has been suspended as a high volume of "
        "mail has been sent from its accounts recently. Please contact your IT administrator";
    // Too many recipients refused as non-existent (limits.unknown_recipients_per_hour):
    // the pattern of a stolen password spraying guessed addresses.
    std::string unknown_recipients =
        "Permanent Failure: Your ability to send new mail has been suspended as your account "
        "has addressed many recipients that do not exist. Please contact your IT administrator";
    // Too much of the last hour's outbound mail bounced or was deferred
    // (limits.failed_share_percent), for a mailbox or its whole domain.
    std::string failed_share =
        "Permanent Failure: Sending mail has been suspended as much of the mail sent recently "
        "could not be delivered. Please contact your IT administrator";
    // Logins refused by limits.login_ips_per_day with login_ips_action = "logins",
    // and sending refused by that limit (either action).
    std::string login_ips =
        "Your account has been suspended as it was logged into from too many different network "
        "addresses within a day. Please contact your IT administrator";
    std::string login_denied = "Your account has been suspended. Please contact your system administrator.";
    bool include_reason = true;  // append the admin's reason: "<text> (<reason>)"
    bool operator==(const Messages&) const = default;
};

// The reject text of an automatic suspension: the text of the limit named
// in its reason ("... (limits.<name> = N)"), messages.rate_suspended for
// the mailbox limits and for spam.
const std::string& automatic_text(const Messages& messages, std::string_view reason);
const std::string& text_of_limit(const Messages& messages, std::string_view limit);

enum class LoginIpsAction : uint8_t { send, logins };

// What an automatic suspension of send (limits.action, spam.action) does with
// the account's mail: refuse it (5.7.13), or accept it and hold it in Exim's
// queue for the admin to release or delete (mailsuspend held / release).
enum class SendAction { refuse, hold };

struct Limits {
    int64_t messages_per_day = 600;
    int64_t recipients_per_message = 300;
    int64_t offdomain_recipients_per_day = 1000;
    int64_t offdomain_recipients_per_hour_per_ip = 500;
    // Summed over a domain's mailboxes; crossing one suspends send of the domain.  0 = off.
    int64_t domain_messages_per_hour = 0;
    int64_t domain_offdomain_recipients_per_day = 0;
    // Recipients refused at RCPT as non-existent for one authenticated sender
    // within an hour (counted by the Exim RCPT ACL).  0 = off.
    int64_t unknown_recipients_per_hour = 0;
    // Share (percent) of the remote recipients whose first delivery attempt
    // within the last hour bounced or deferred, per mailbox and per domain;
    // counted once failed_share_min_recipients have an outcome.  0 = off.
    int64_t failed_share_percent = 0;
    int64_t failed_share_min_recipients = 20;
    // Distinct client IPs that logged in successfully to one mailbox within
    // 24 h (counted by the Dovecot passdb; webmail hosts never count).  0 = off.
    int64_t login_ips_per_day = 0;
    // What crossing it suspends: send only, or send and every login service.
    LoginIpsAction login_ips_action = LoginIpsAction::send;
    int64_t suspend_for = 24 * 3600;
    bool extend_on_attempt = true;
    int64_t escalate_after = 3;
    SendAction action = SendAction::refuse;
    bool operator==(const Limits&) const = default;
};

// The fleet (issue 15): nodes that share their changes through Redis.
// enabled == false (no `fleet` group): a single node, nothing published.
struct FleetConfig {
    bool enabled = false;
    std::string redis;                   // "host:port" or "unix:/path"; empty with sentinels
    std::vector<std::string> sentinels;  // "host:port" each, with master_name
    std::string master_name;
    std::string node_id;                 // default: the host name
    std::string key_prefix = "mailsuspend";
    std::string password_file;           // "" = no AUTH
    std::string signing_key_file;        // required: every change is signed
    enum class Counters { node, fleet } counters = Counters::node;
    // About how many changes <prefix>:changes keeps (XADD MAXLEN ~): a node
    // further behind, or new, resynchronises from the snapshot.
    int64_t stream_length = 100000;
    bool operator==(const FleetConfig&) const = default;
};

// Alerts (issue 16, item 4): who hears about changes, told by `mailsuspend
// notify` (the CLI's agent, never a mail server's process).  enabled == false
// (no `alerts` group): nobody is told.
struct AlertsConfig {
    bool enabled = false;
    std::string webhook_url;          // http:// or https://; "" = no webhook
    std::string webhook_secret_file;  // the HMAC key; required with webhook_url
    std::string admin_address;        // gets a mail per automatic suspension; "" = none
    bool operator==(const AlertsConfig&) const = default;
};

// fleet.node_id when the file leaves it out: the host name up to its first dot.
std::string default_node_id();

// "host:port" (host may be "[v6]") -> host and port; false with why.
bool parse_host_port(const std::string& text, std::string& host, int& port, std::string& error_r);

struct Config {
    std::string path;  // where it was read from ("" = built-in defaults)

    // store
    std::string store_path = "/var/lib/mailsuspend";
    uint64_t store_capacity = 100000;  // targets (mailboxes + domains)
    uint64_t counter_capacity = 100000;  // accounts and IPs with live counters
    FailPolicy fail_policy = FailPolicy::open;
    std::string read_group = "mailsuspend";
    std::string write_group = "Debian-exim";
    // The group of Dovecot's auth process (Debian: user and group dovecot):
    // it writes <store>/logins and <store>/login-counters (limits.login_ips_per_day)
    // and hands the trigger's suspensions to <store>/outbox.
    std::string login_group = "dovecot";
    uint64_t login_capacity = 100000;  // (mailbox, client IP) pairs seen within a day
    std::string audit_log = "/var/log/mailsuspend/audit.log";
    // How long a mail server's process (Exim) waits for the writer lock
    // before handing its change to the outbox (milliseconds).
    int64_t host_lock_wait_ms = 50;
    // How long a mail server's process waits for the detached writer that
    // makes its change (lock and disk together) before it goes on and leaves
    // the writer to finish alone (milliseconds).
    int64_t host_write_wait_ms = 250;
    // How long an admin command waits for the writer lock (seconds).
    int64_t admin_lock_timeout = 60;

    // delivery
    DeliveryMode default_mode = DeliveryMode::queue;
    int64_t queue_expiry = 4 * 86400 + 8 * 3600;
    std::string flush_command = "/usr/sbin/exim4 -Rrff {address_regex}";
    std::string fail_queued_command = "/usr/sbin/exim4 -Srff {address_regex}";
    // The Exim that `held` and `release` ask (no shell; options may follow,
    // e.g. -C FILE): -bP spool_directory, -M to deliver, -Mrm to delete.
    std::string exim_command = "/usr/sbin/exim4";

    AddressRules address;
    std::vector<Netmask> webmail_hosts;
    Messages messages;
    Limits limits;

    // spam reports and notices (issue 5)
    int64_t spam_threshold = 5;
    int64_t spam_window = 24 * 3600;
    // An ARF report whose sender token is older than this is refused: a
    // complaint comes within days, a replayed old token is not one.
    int64_t spam_token_max_age = 30 * 86400;
    std::string default_abuse_contact;
    std::map<std::string, std::string> abuse_contacts;  // domain -> address
    int64_t evidence_samples = 3;
    SendAction spam_action = SendAction::refuse;
    std::string sendmail_command = "/usr/sbin/sendmail -t -oi";
    int64_t self_service_interval = 90 * 86400;

    // mailsuspend doctor: the reserved address its live probe suspends for a
    // moment (all services, source admin, actor "doctor") and then lifts.
    std::string probe_address = "mailsuspend-probe@probe.invalid";

    FleetConfig fleet;
    AlertsConfig alerts;

    bool is_webmail_host(const char* ip) const;
    bool operator==(const Config&) const = default;
};

// Reads path; on failure returns nullopt and error_r names file, line and problem.
std::optional<Config> load_config(const std::string& path, std::string& error_r);
// The same for text already read from path (path names it in errors).
std::optional<Config> load_config_text(const std::string& path, const std::string& text, std::string& error_r);

}  // namespace mailsuspend
