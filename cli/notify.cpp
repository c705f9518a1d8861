// The alerts agent: follows the audit log (audit_follow.hpp) and, line by
// line in log order, POSTs each line to alerts.webhook_url (notify_webhook.hpp)
// and mails alerts.admin_address about each automatic suspension
// (notify_alert.hpp).  A line counts as delivered when every configured
// receiver took it; only then is the position saved.  Until then it is
// retried with backoff (1 s doubling to 60 s): nothing later overtakes it.
#include "notify.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <memory>

#include "agent.hpp"
#include "audit_follow.hpp"
#include "notice.hpp"
#include "notify_alert.hpp"
#include "notify_webhook.hpp"
#include "outcome.hpp"
#include "store.hpp"

namespace mailsuspend::cli {
namespace {

constexpr int64_t kPollMs = 200;  // how soon a new audit line is seen when idle
constexpr int64_t kFirstRetryMs = 1000;
constexpr int64_t kMaxRetryMs = 60'000;
constexpr int64_t kStoredWaitMs = 10'000;

void log(const std::string& line) { agent_log("notify", {line}); }

// The audit lines of a change are written before its journal, and cut back
// off the log when the journal write fails (audit.cpp).  So a line with a
// store sequence number goes out once the store has that change: a line
// taken back in between is never sent.  Without a readable store, or after
// kStoredWaitMs (a store rebuilt meanwhile), it goes out as it is.
class StoredCheck {
public:
    explicit StoredCheck(const Config& cfg) : cfg_(cfg) {}
    // false: the line was taken back (skip it).
    bool wait_until_stored(const std::string& line, const AuditFollower& follower);

private:
    uint64_t store_seq();
    const Config& cfg_;
    std::unique_ptr<StoreReader> reader_;
};

uint64_t StoredCheck::store_seq() {
    std::string error;
    if (reader_ && reader_->replaced()) reader_.reset();
    if (!reader_) reader_ = StoreReader::open(cfg_.store_path, error);
    return reader_ ? reader_->stats().seq : UINT64_MAX;
}

bool StoredCheck::wait_until_stored(const std::string& line, const AuditFollower& follower) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("seq") || !j["seq"].is_number_unsigned()) return true;
    const uint64_t seq = j["seq"].get<uint64_t>();
    for (int64_t waited = 0; waited < kStoredWaitMs && !stop_requested(); waited += 20) {
        if (store_seq() >= seq) return true;
        if (!follower.line_still_there()) {
            log("a line of change " + std::to_string(seq) + " was taken back (its journal write failed): not sent");
            return false;
        }
        sleep_unless_stopped(20);
    }
    return true;
}

class Notifier {
public:
    Notifier(const Config& cfg, std::unique_ptr<Webhook> webhook) : cfg_(cfg), webhook_(std::move(webhook)) {}
    // Delivers line to every receiver, retrying until all took it; false
    // when asked to stop first.
    bool deliver(const std::string& line);

private:
    bool send_mail(const std::string& line, std::string& error_r);
    const Config& cfg_;
    std::unique_ptr<Webhook> webhook_;
};

bool Notifier::send_mail(const std::string& line, std::string& error_r) {
    AutomaticSuspension s;
    if (cfg_.alerts.admin_address.empty() || !automatic_suspension(line, s)) return true;
    if (!run_sendmail(cfg_.sendmail_command, cfg_.alerts.admin_address, alert_mail(cfg_, s), error_r)) {
        error_r = "mail to " + cfg_.alerts.admin_address + " not sent: " + error_r;
        return false;
    }
    log("told " + cfg_.alerts.admin_address + " about the automatic suspension of " + s.target);
    return true;
}

bool Notifier::deliver(const std::string& line) {
    bool posted = !webhook_, mailed = false;
    int64_t backoff = kFirstRetryMs;
    while (!stop_requested()) {
        std::string error;
        if (!posted) posted = webhook_->post(line, error);
        if (posted && !mailed) mailed = send_mail(line, error);
        if (posted && mailed) return true;
        log(error + "; retrying in " + std::to_string(backoff / 1000) + " s");
        sleep_unless_stopped(backoff);
        backoff = std::min(backoff * 2, kMaxRetryMs);
    }
    return false;
}

}  // namespace

int cmd_notify(const Options& o) {
    int code = 0;
    auto cfg = load_agent_config(
        o.config, [](const Config& c) { return c.alerts.enabled; }, "has no alerts group: nobody to notify", code);
    if (!cfg) return code;
    std::string error;
    std::unique_ptr<Webhook> webhook;
    if (!cfg->alerts.webhook_url.empty()) {
        std::string secret;
        if (!load_webhook_secret(cfg->alerts.webhook_secret_file, secret, error) || !load_curl(error))
            return std::cerr << "mailsuspend: " << error << "\n", static_cast<int>(Exit::failure);
        webhook = std::make_unique<Webhook>(cfg->alerts.webhook_url, std::move(secret));
    }
    NotifyPosition position;
    if (!load_notify_position(cfg->store_path, position, error))
        return std::cerr << "mailsuspend: " << error << "\n", static_cast<int>(Exit::failure);
    install_stop_signals();
    Notifier notifier(*cfg, std::move(webhook));
    AuditFollower follower(cfg->audit_log, position);
    StoredCheck stored(*cfg);
    log("following " + cfg->audit_log + " from offset " + std::to_string(position.offset));
    while (!stop_requested()) {
        std::string line, note;
        const bool got = follower.next(line, note);
        if (!note.empty()) log(note);
        if (!got) {
            sleep_unless_stopped(kPollMs);
            continue;
        }
        if (!stored.wait_until_stored(line, follower)) continue;
        if (!notifier.deliver(line)) break;
        // Not saved (a full disk): the line goes out again after a restart.
        if (!save_notify_position(cfg->store_path, follower.position(), error)) log(error);
    }
    log("stopped");
    return 0;
}

}  // namespace mailsuspend::cli
