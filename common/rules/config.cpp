#include "config.hpp"

// libconfig's C API, not its C++ wrapper: the same parser and syntax, but
// libconfig++ would pull libstdc++.so into every Dovecot mail process that
// loads the core (+1.1 ms of CPU per session, bench/results/2026-12-02.md
// "What a mail process pays to load the core"); the core module links the C++ runtime statically instead.
#include <libconfig.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "text.hpp"

namespace mailsuspend {

const std::string& text_of_limit(const Messages& messages, std::string_view limit) {
    if (limit == "domain_messages_per_hour" || limit == "domain_offdomain_recipients_per_day")
        return messages.domain_rate_suspended;
    if (limit == "unknown_recipients_per_hour") return messages.unknown_recipients;
    if (limit == "failed_share_percent") return messages.failed_share;
    if (limit == "login_ips_per_day") return messages.login_ips;
    return messages.rate_suspended;
}

const std::string& automatic_text(const Messages& messages, std::string_view reason) {
    constexpr std::string_view marker = "(limits.";
    const auto at = reason.rfind(marker);
    if (at == std::string_view::npos) return messages.rate_suspended;
    const std::string_view rest = reason.substr(at + marker.size());
    return text_of_limit(messages, rest.substr(0, rest.find(' ')));
}

namespace {

using Setting = const config_setting_t*;

bool is_int(Setting s) {
    const int t = config_setting_type(s);
    return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
}

bool is_collection(Setting s) {
    return config_setting_is_list(s) || config_setting_is_array(s);
}

Setting member(Setting group, const char* key) { return config_setting_get_member(group, key); }

// "a, b, c": the keys in alphabetical order, for an error.
std::string sorted_list(std::initializer_list<const char*> keys) {
    std::vector<std::string> sorted(keys.begin(), keys.end());
    std::sort(sorted.begin(), sorted.end());
    std::string list;
    for (const auto& k : sorted) list += (list.empty() ? "" : ", ") + k;
    return list;
}

// Reads typed values out of a parsed file, keeping the first error with its line.
class Reader {
public:
    explicit Reader(std::string file) : file_(std::move(file)) {}
    const std::string& error() const { return error_; }
    bool ok() const { return error_.empty(); }

    void fail(Setting s, const std::string& what) {
        if (!ok()) return;
        // what may quote a value from the file: the error reaches host logs as one line.
        error_ = sanitise_line(file_ + ":" + std::to_string(config_setting_source_line(s)) + ": " + path(s) +
                                   ": " + what,
                               1024);
    }

    // The key's setting when the group has it, else the group (for the error's line).
    static Setting at(Setting group, const char* key) {
        Setting s = member(group, key);
        return s ? s : group;
    }

    // Refuses keys a group does not know: a typo must not pass silently.
    // (A scan of the list, no set: every fresh Exim process reads the file.)
    void only_keys(Setting group, std::initializer_list<const char*> keys) {
        for (int i = 0; i < config_setting_length(group); ++i) {
            Setting child = config_setting_get_elem(group, i);
            const char* name = config_setting_name(child);
            const auto is_name = [name](const char* k) { return std::strcmp(k, name) == 0; };
            if (!name || std::none_of(keys.begin(), keys.end(), is_name))
                fail(child, "unknown setting (known here: " + sorted_list(keys) + ")");
        }
    }

    void string(Setting g, const char* key, std::string& out) {
        Setting s = member(g, key);
        if (!s) return;
        if (config_setting_type(s) != CONFIG_TYPE_STRING) return fail(s, "must be a string in quotes");
        out = config_setting_get_string(s);
    }

    void text(Setting g, const char* key, std::string& out) {
        Setting s = member(g, key);
        if (!s) return;
        if (config_setting_type(s) != CONFIG_TYPE_STRING) return fail(s, "must be a string in quotes");
        std::string value = config_setting_get_string(s);
        if (std::string bad; !check_free_text(value, kMaxMessageText, bad)) return fail(s, "text " + bad);
        // Exim's ACL tells "refuse" by a non-empty reply: a blank text would let mail through.
        if (value.find_first_not_of(' ') == std::string::npos)
            return fail(s, "must not be empty (it is the reply the client sees)");
        out = std::move(value);
    }

    void integer(Setting g, const char* key, int64_t& out, int64_t min, int64_t max) {
        Setting s = member(g, key);
        if (!s) return;
        if (!is_int(s)) return fail(s, "must be a whole number");
        const int64_t v = config_setting_get_int64(s);
        if (v < min || v > max)
            return fail(s, "must be between " + std::to_string(min) + " and " + std::to_string(max));
        out = v;
    }

    void boolean(Setting g, const char* key, bool& out) {
        Setting s = member(g, key);
        if (!s) return;
        if (config_setting_type(s) != CONFIG_TYPE_BOOL) return fail(s, "must be true or false");
        out = config_setting_get_bool(s) != 0;
    }

    // A duration: "4d8h" or a number of seconds.
    void duration(Setting g, const char* key, int64_t& out, bool zero_ok) {
        Setting s = member(g, key);
        if (!s) return;
        int64_t v = 0;
        if (config_setting_type(s) == CONFIG_TYPE_STRING) {
            std::string why;
            auto d = parse_duration(config_setting_get_string(s), why);
            if (!d) return fail(s, why);
            v = *d;
        } else if (is_int(s)) {
            v = config_setting_get_int64(s);
        } else {
            return fail(s, "must be a duration like \"24h\" or \"4d8h\"");
        }
        if (v < 0 || (v == 0 && !zero_ok)) return fail(s, "must be a positive duration");
        out = v;
    }

    Setting group(Setting root, const char* name) {
        Setting g = member(root, name);
        if (!g) return nullptr;
        if (!config_setting_is_group(g)) {
            fail(g, "must be a group: " + std::string(name) + " = { ... };");
            return nullptr;
        }
        return g;
    }

private:
    // "webmail.hosts.[1]", as libconfig++'s Setting::getPath() spells it.
    static std::string path(Setting s) {
        std::string p;
        for (; s && !config_setting_is_root(s); s = config_setting_parent(s)) {
            const char* name = config_setting_name(s);
            const std::string part = name ? name : "[" + std::to_string(config_setting_index(s)) + "]";
            p = p.empty() ? part : part + "." + p;
        }
        return p.empty() ? "(top)" : p;
    }
    std::string file_;
    std::string error_;
};

void read_store(Reader& r, Setting g, Config& c) {
    r.only_keys(g, {"path", "capacity", "counter_capacity", "fail_policy", "read_group",
                    "write_group", "login_group", "login_capacity", "audit_log", "host_lock_wait_ms", "host_write_wait_ms",
                    "admin_lock_timeout"});
    r.string(g, "path", c.store_path);
    if (c.store_path.empty() || c.store_path.front() != '/')
        r.fail(Reader::at(g, "path"), "must be an absolute path");
    int64_t cap = static_cast<int64_t>(c.store_capacity);
    r.integer(g, "capacity", cap, 16, 1LL << 31);
    c.store_capacity = static_cast<uint64_t>(cap);
    int64_t ccap = static_cast<int64_t>(c.counter_capacity);
    r.integer(g, "counter_capacity", ccap, 16, 1LL << 28);
    c.counter_capacity = static_cast<uint64_t>(ccap);
    std::string policy = c.fail_policy == FailPolicy::open ? "open" : "closed";
    r.string(g, "fail_policy", policy);
    if (policy == "open") c.fail_policy = FailPolicy::open;
    else if (policy == "closed") c.fail_policy = FailPolicy::closed;
    else r.fail(Reader::at(g, "fail_policy"), "must be \"open\" or \"closed\"");
    r.string(g, "read_group", c.read_group);
    r.string(g, "write_group", c.write_group);
    r.string(g, "login_group", c.login_group);
    int64_t lcap = static_cast<int64_t>(c.login_capacity);
    r.integer(g, "login_capacity", lcap, 16, 1LL << 28);
    c.login_capacity = static_cast<uint64_t>(lcap);
    r.string(g, "audit_log", c.audit_log);
    // Tens of milliseconds: a mail server's process never waits longer (README, "Locks").
    r.integer(g, "host_lock_wait_ms", c.host_lock_wait_ms, 0, 1000);
    r.integer(g, "host_write_wait_ms", c.host_write_wait_ms, 0, 5000);
    r.duration(g, "admin_lock_timeout", c.admin_lock_timeout, false);
}

void read_delivery(Reader& r, Setting g, Config& c) {
    r.only_keys(g, {"default_mode", "queue_expiry", "flush_command", "fail_queued_command", "exim_command"});
    std::string mode(mode_name(c.default_mode));
    r.string(g, "default_mode", mode);
    if (auto m = parse_mode(mode)) c.default_mode = *m;
    else r.fail(Reader::at(g, "default_mode"), "must be one of deliver, discard, reject, queue");
    r.duration(g, "queue_expiry", c.queue_expiry, false);
    r.string(g, "flush_command", c.flush_command);
    r.string(g, "fail_queued_command", c.fail_queued_command);
    r.string(g, "exim_command", c.exim_command);
}

void read_send_action(Reader& r, Setting g, SendAction& action) {
    std::string name = action == SendAction::hold ? "hold" : "refuse";
    r.string(g, "action", name);
    if (name == "refuse") action = SendAction::refuse;
    else if (name == "hold") action = SendAction::hold;
    else r.fail(Reader::at(g, "action"), "must be \"refuse\" or \"hold\"");
}

void read_address(Reader& r, Setting g, Config& c) {
    r.only_keys(g, {"default_domain", "subaddress_separator"});
    r.string(g, "default_domain", c.address.default_domain);
    r.string(g, "subaddress_separator", c.address.subaddress_separator);
    if (c.address.subaddress_separator.size() > 1)
        r.fail(Reader::at(g, "subaddress_separator"), "must be one character or empty");
}

void read_webmail(Reader& r, Setting g, Config& c) {
    r.only_keys(g, {"hosts"});
    Setting hosts = member(g, "hosts");
    if (!hosts) return;
    if (!is_collection(hosts))
        return r.fail(hosts, "must be a list of addresses: [ \"192.0.2.10\", \"2001:db8::/64\" ]");
    for (int i = 0; i < config_setting_length(hosts); ++i) {
        Setting h = config_setting_get_elem(hosts, i);
        if (config_setting_type(h) != CONFIG_TYPE_STRING) return r.fail(h, "must be a string in quotes");
        const char* text = config_setting_get_string(h);
        auto mask = parse_netmask(text);
        if (!mask) return r.fail(h, "'" + std::string(text) + "' is not an IP address or CIDR");
        c.webmail_hosts.push_back(*mask);
    }
}

void read_messages(Reader& r, Setting g, Config& c) {
    r.only_keys(g, {"unavailable", "send_suspended", "rate_suspended", "receive_rejected",
                    "recipients_per_message", "ip_throttled", "domain_rate_suspended", "unknown_recipients",
                    "failed_share", "login_ips", "login_denied", "include_reason"});
    auto& m = c.messages;
    r.text(g, "unavailable", m.unavailable);
    r.text(g, "send_suspended", m.send_suspended);
    r.text(g, "rate_suspended", m.rate_suspended);
    r.text(g, "receive_rejected", m.receive_rejected);
    r.text(g, "recipients_per_message", m.recipients_per_message);
    r.text(g, "ip_throttled", m.ip_throttled);
    r.text(g, "domain_rate_suspended", m.domain_rate_suspended);
    r.text(g, "unknown_recipients", m.unknown_recipients);
    r.text(g, "failed_share", m.failed_share);
    r.text(g, "login_ips", m.login_ips);
    r.text(g, "login_denied", m.login_denied);
    r.boolean(g, "include_reason", m.include_reason);
}

void read_limits(Reader& r, Setting g, Config& c) {
    r.only_keys(g, {"messages_per_day", "recipients_per_message", "offdomain_recipients_per_day",
                    "offdomain_recipients_per_hour_per_ip", "domain_messages_per_hour",
                    "domain_offdomain_recipients_per_day", "unknown_recipients_per_hour", "failed_share_percent",
                    "failed_share_min_recipients", "login_ips_per_day",
                    "login_ips_action", "suspend_for", "extend_on_attempt", "escalate_after", "action"});
    auto& l = c.limits;
    constexpr int64_t kMax = 1LL << 31;
    r.integer(g, "messages_per_day", l.messages_per_day, 0, kMax);
    r.integer(g, "recipients_per_message", l.recipients_per_message, 0, kMax);
    r.integer(g, "offdomain_recipients_per_day", l.offdomain_recipients_per_day, 0, kMax);
    r.integer(g, "offdomain_recipients_per_hour_per_ip", l.offdomain_recipients_per_hour_per_ip, 0, kMax);
    r.integer(g, "domain_messages_per_hour", l.domain_messages_per_hour, 0, kMax);
    r.integer(g, "domain_offdomain_recipients_per_day", l.domain_offdomain_recipients_per_day, 0, kMax);
    r.integer(g, "unknown_recipients_per_hour", l.unknown_recipients_per_hour, 0, kMax);
    r.integer(g, "failed_share_percent", l.failed_share_percent, 0, 99);  // "more than P %": 100 could never cross
    r.integer(g, "failed_share_min_recipients", l.failed_share_min_recipients, 1, kMax);
    r.integer(g, "login_ips_per_day", l.login_ips_per_day, 0, kMax);
    std::string action = l.login_ips_action == LoginIpsAction::logins ? "logins" : "send";
    r.string(g, "login_ips_action", action);
    if (action == "send") l.login_ips_action = LoginIpsAction::send;
    else if (action == "logins") l.login_ips_action = LoginIpsAction::logins;
    else r.fail(Reader::at(g, "login_ips_action"), "must be \"send\" or \"logins\"");
    r.duration(g, "suspend_for", l.suspend_for, false);
    r.boolean(g, "extend_on_attempt", l.extend_on_attempt);
    r.integer(g, "escalate_after", l.escalate_after, 0, 1000);
    read_send_action(r, g, l.action);
}

void read_spam(Reader& r, Setting g, Config& c) {
    r.only_keys(g, {"threshold", "window", "default_abuse_contact", "abuse_contacts",
                    "evidence_samples", "sendmail_command", "token_max_age", "action"});
    r.integer(g, "threshold", c.spam_threshold, 0, 1000000);
    r.duration(g, "window", c.spam_window, false);
    r.duration(g, "token_max_age", c.spam_token_max_age, false);
    r.string(g, "default_abuse_contact", c.default_abuse_contact);
    r.integer(g, "evidence_samples", c.evidence_samples, 0, 100);
    r.string(g, "sendmail_command", c.sendmail_command);
    read_send_action(r, g, c.spam_action);
    Setting contacts = member(g, "abuse_contacts");
    if (!contacts) return;
    // libconfig names cannot hold dots, so domains are values:
    // abuse_contacts = ( { domain = "example.com"; contact = "abuse@example.com"; } );
    if (!is_collection(contacts))
        return r.fail(contacts, "must be a list: ( { domain = \"example.com\"; contact = \"abuse@example.com\"; } )");
    for (int i = 0; i < config_setting_length(contacts); ++i) {
        Setting entry = config_setting_get_elem(contacts, i);
        if (!config_setting_is_group(entry)) return r.fail(entry, "must be a group { domain = ...; contact = ...; }");
        r.only_keys(entry, {"domain", "contact"});
        std::string domain, contact;
        r.string(entry, "domain", domain);
        r.string(entry, "contact", contact);
        if (domain.empty() || contact.empty()) return r.fail(entry, "needs both domain and contact");
        c.abuse_contacts[domain] = contact;
    }
}

void read_unblock(Reader& r, Setting g, Config& c) {
    r.only_keys(g, {"self_service_interval"});
    r.duration(g, "self_service_interval", c.self_service_interval, true);
}

// The probe must be a mailbox the address rules accept (a domain "@x" would
// suspend a whole domain during the probe).
void read_doctor(Reader& r, Setting g, Config& c) {
    r.only_keys(g, {"probe_address"});
    r.string(g, "probe_address", c.probe_address);
    std::string why;
    const std::string key = normalise(c.probe_address, c.address, why);
    if (key.empty()) return r.fail(Reader::at(g, "probe_address"), "not an address: " + why);
    if (key.front() == '@') r.fail(Reader::at(g, "probe_address"), "must be a mailbox, not a domain");
}

bool only_chars(const std::string& s, const char* extra) {
    return std::all_of(s.begin(), s.end(), [&](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               std::strchr(extra, ch) != nullptr;
    });
}

// A Redis address: "host:port" or "unix:/absolute/path".
bool valid_redis_address(const std::string& text, std::string& why) {
    if (text.rfind("unix:", 0) == 0) {
        if (text.size() > 5 && text[5] == '/') return true;
        why = "a unix socket needs an absolute path: \"unix:/run/redis/redis.sock\"";
        return false;
    }
    std::string host;
    int port = 0;
    return parse_host_port(text, host, port, why);
}

void read_absolute_path(Reader& r, Setting g, const char* key, std::string& out) {
    r.string(g, key, out);
    if (member(g, key) && (out.empty() || out.front() != '/'))
        r.fail(Reader::at(g, key), "must be an absolute path");
}

void read_sentinels(Reader& r, Setting g, FleetConfig& f) {
    Setting list = member(g, "sentinels");
    if (!list) return;
    if (!is_collection(list) || config_setting_length(list) == 0)
        return r.fail(list, "must be a list of \"host:port\": [ \"10.0.0.1:26379\", \"10.0.0.2:26379\" ]");
    for (int i = 0; i < config_setting_length(list); ++i) {
        Setting s = config_setting_get_elem(list, i);
        if (config_setting_type(s) != CONFIG_TYPE_STRING) return r.fail(s, "must be a string in quotes");
        std::string host, why;
        int port = 0;
        if (!parse_host_port(config_setting_get_string(s), host, port, why)) return r.fail(s, why);
        f.sentinels.push_back(config_setting_get_string(s));
    }
}

// fleet: where Redis is, who this node is, the keys.  Every value that reaches
// Redis keys or the signed changes is checked here, so the agent trusts it.
void read_fleet(Reader& r, Setting g, Config& c) {
    r.only_keys(g, {"redis", "sentinels", "master_name", "node_id", "key_prefix", "password_file",
                    "signing_key_file", "counters", "stream_length"});
    FleetConfig& f = c.fleet;
    f.enabled = true;
    r.string(g, "redis", f.redis);
    if (std::string why; member(g, "redis") && !valid_redis_address(f.redis, why))
        r.fail(Reader::at(g, "redis"), "'" + f.redis + "': " + why);
    read_sentinels(r, g, f);
    r.string(g, "master_name", f.master_name);
    if (member(g, "redis") && member(g, "sentinels"))
        r.fail(Reader::at(g, "sentinels"), "give either redis or sentinels, not both");
    else if (!member(g, "redis") && !member(g, "sentinels"))
        r.fail(g, "needs redis = \"host:port\" (or sentinels with master_name)");
    else if (member(g, "sentinels") && f.master_name.empty())
        r.fail(Reader::at(g, "master_name"), "sentinels need master_name (the name Sentinel monitors)");
    else if (member(g, "master_name") && !member(g, "sentinels"))
        r.fail(Reader::at(g, "master_name"), "master_name is for sentinels; with redis leave it out");
    if (!f.master_name.empty() && !only_chars(f.master_name, "._-"))
        r.fail(Reader::at(g, "master_name"), "may hold only letters, digits, '.', '_' and '-'");
    f.node_id = default_node_id();
    r.string(g, "node_id", f.node_id);
    if (f.node_id.empty() || f.node_id.size() > 64 || !only_chars(f.node_id, "._-"))
        r.fail(Reader::at(g, "node_id"), "must be 1 to 64 letters, digits, '.', '_' or '-' ('" +
                                             f.node_id.substr(0, 80) + "')");
    r.string(g, "key_prefix", f.key_prefix);
    if (f.key_prefix.empty() || f.key_prefix.size() > 64 || !only_chars(f.key_prefix, "._:-"))
        r.fail(Reader::at(g, "key_prefix"), "must be 1 to 64 letters, digits, '.', '_', ':' or '-'");
    read_absolute_path(r, g, "password_file", f.password_file);
    read_absolute_path(r, g, "signing_key_file", f.signing_key_file);
    if (!member(g, "signing_key_file"))
        r.fail(g, "needs signing_key_file: every change is signed with the fleet key");
    std::string counters = "node";
    r.string(g, "counters", counters);
    if (counters == "node") f.counters = FleetConfig::Counters::node;
    else if (counters == "fleet") f.counters = FleetConfig::Counters::fleet;
    else r.fail(Reader::at(g, "counters"), "must be \"node\" or \"fleet\"");
    r.integer(g, "stream_length", f.stream_length, 1000, 1LL << 32);
}

// A webhook URL: http or https, a host, no space or control character (it
// goes to libcurl as given and into the log).
bool valid_webhook_url(const std::string& url, std::string& why) {
    const std::size_t scheme_end = url.find("://");
    const std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
    if (scheme != "http" && scheme != "https")
        return why = "must start with http:// or https://", false;
    const std::size_t host_start = scheme_end + 3;
    const std::size_t host_end = url.find_first_of("/?#", host_start);
    const std::string authority = url.substr(host_start, host_end - host_start);
    if (authority.empty() || authority.front() == ':' || authority.front() == '@')
        return why = "has no host (\"https://panel.example.com/hooks/mailsuspend\")", false;
    if (url.size() > 2000) return why = "is longer than 2000 characters", false;
    for (char ch : url)
        if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f)
            return why = "must not hold spaces or control characters (percent-encode them)", false;
    return true;
}

// alerts: where changes are told.  The secret file's owner and mode are
// checked by `mailsuspend notify` when it reads it (root-only).
void read_alerts(Reader& r, Setting g, Config& c) {
    r.only_keys(g, {"webhook_url", "webhook_secret_file", "admin_address"});
    AlertsConfig& a = c.alerts;
    a.enabled = true;
    r.string(g, "webhook_url", a.webhook_url);
    if (std::string why; member(g, "webhook_url") && !valid_webhook_url(a.webhook_url, why))
        r.fail(Reader::at(g, "webhook_url"), "'" + a.webhook_url.substr(0, 200) + "' " + why);
    read_absolute_path(r, g, "webhook_secret_file", a.webhook_secret_file);
    if (member(g, "webhook_url") && !member(g, "webhook_secret_file"))
        r.fail(g, "webhook_url needs webhook_secret_file: every POST is signed");
    else if (member(g, "webhook_secret_file") && !member(g, "webhook_url"))
        r.fail(Reader::at(g, "webhook_secret_file"), "webhook_secret_file is for webhook_url, which is not set");
    r.string(g, "admin_address", a.admin_address);
    if (member(g, "admin_address")) {
        std::string why;
        const std::string key = normalise(a.admin_address, c.address, why);
        if (key.empty()) r.fail(Reader::at(g, "admin_address"), "not an address: " + why);
        else if (key.front() == '@') r.fail(Reader::at(g, "admin_address"), "must be a mailbox, not a domain");
        else if (!only_chars(a.admin_address, "!#$%&'*+-/=?^_`{|}~.@"))
            r.fail(Reader::at(g, "admin_address"), "must be a plain address (user@example.com)");
    }
    if (!member(g, "webhook_url") && !member(g, "admin_address"))
        r.fail(g, "needs webhook_url or admin_address (or leave the group out)");
}

}  // namespace

bool parse_host_port(const std::string& text, std::string& host, int& port, std::string& error_r) {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
        error_r = "must be \"host:port\"";
        return false;
    }
    host = text.substr(0, colon);
    if (host.front() == '[') {
        if (host.size() < 3 || host.back() != ']') {
            error_r = "an IPv6 address goes in brackets: \"[2001:db8::1]:6379\"";
            return false;
        }
        host = host.substr(1, host.size() - 2);
    } else if (host.find(':') != std::string::npos) {
        error_r = "an IPv6 address goes in brackets: \"[2001:db8::1]:6379\"";
        return false;
    }
    const std::string digits = text.substr(colon + 1);
    port = 0;
    for (char ch : digits) {
        if (ch < '0' || ch > '9' || port > 65535) {
            error_r = "port '" + digits + "' is not a number from 1 to 65535";
            return false;
        }
        port = port * 10 + (ch - '0');
    }
    if (port < 1 || port > 65535) {
        error_r = "port '" + digits + "' is not a number from 1 to 65535";
        return false;
    }
    return true;
}

std::string default_node_id() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0) return {};
    std::string s(name);
    return s.substr(0, s.find('.'));
}

bool Config::is_webmail_host(const char* ip) const {
    if (!ip || webmail_hosts.empty()) return false;
    const auto parsed = parse_ip(ip);
    if (!parsed) return false;
    return std::any_of(webmail_hosts.begin(), webmail_hosts.end(),
                       [&](const Netmask& m) { return m.contains(*parsed); });
}

namespace {

struct ConfigFile {
    config_t parsed;
    ConfigFile() { config_init(&parsed); }
    ~ConfigFile() { config_destroy(&parsed); }
    ConfigFile(const ConfigFile&) = delete;
    ConfigFile& operator=(const ConfigFile&) = delete;
};

std::string parse_error(const config_t& parsed, const std::string& path) {
    if (config_error_type(&parsed) == CONFIG_ERR_FILE_IO)
        return path + ": cannot read the file (missing or no permission)";
    const char* file = config_error_file(&parsed);
    const char* text = config_error_text(&parsed);
    return std::string(file ? file : path.c_str()) + ":" + std::to_string(config_error_line(&parsed)) + ": " +
           (text ? text : "syntax error");
}

// The groups of a parsed file into a Config.
std::optional<Config> read_groups(ConfigFile& file, const std::string& path, std::string& error_r) {
    Config c;
    c.path = path;
    Reader r(path);
    Setting root = config_root_setting(&file.parsed);
    r.only_keys(root, {"store", "delivery", "address", "webmail", "messages", "limits", "spam", "unblock",
                       "doctor", "fleet", "alerts"});
    using GroupReader = void (*)(Reader&, Setting, Config&);
    const std::pair<const char*, GroupReader> groups[] = {
        {"store", read_store},     {"delivery", read_delivery}, {"address", read_address},
        {"webmail", read_webmail}, {"messages", read_messages}, {"limits", read_limits},
        {"spam", read_spam},       {"unblock", read_unblock},     {"doctor", read_doctor},
        {"fleet", read_fleet},     {"alerts", read_alerts}};
    for (const auto& [name, reader] : groups)
        if (Setting g = r.group(root, name)) reader(r, g, c);
    if (!r.ok()) {
        error_r = r.error();
        return std::nullopt;
    }
    return c;
}

}  // namespace

std::optional<Config> load_config(const std::string& path, std::string& error_r) {
    ConfigFile file;
    if (config_read_file(&file.parsed, path.c_str()) != CONFIG_TRUE) {
        error_r = parse_error(file.parsed, path);
        return std::nullopt;
    }
    return read_groups(file, path, error_r);
}

std::optional<Config> load_config_text(const std::string& path, const std::string& text, std::string& error_r) {
    ConfigFile file;
    if (config_read_string(&file.parsed, text.c_str()) != CONFIG_TRUE) {
        error_r = parse_error(file.parsed, path);
        return std::nullopt;
    }
    return read_groups(file, path, error_r);
}

}  // namespace mailsuspend
