// `mailsuspend metrics`: the Prometheus text exposition format (version
// 0.0.4) on stdout, or written atomically for node_exporter's textfile
// collector.  Gauges of the store are computed now; event counters are read
// from the hosts' counters files (common/store/metrics.hpp).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <iostream>
#include <sstream>

#include "commands.hpp"
#include "config.hpp"
#include "files.hpp"
#include "metrics.hpp"
#include "model.hpp"
#include "operations.hpp"
#include "store.hpp"

namespace mailsuspend::cli {
namespace {

using metrics::HostClass;

// One family: HELP and TYPE, then its samples.  A counter's HELP and TYPE
// name its samples' name, _total included (the text format 0.0.4).
class Exposition {
public:
    void family(const std::string& name, const char* type, const char* help) {
        out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
    }
    // labels: already formatted, e.g. service="imap" (values are our own words: nothing to escape).
    void sample(const std::string& name, const std::string& labels, double value) {
        out_ << name;
        if (!labels.empty()) out_ << '{' << labels << '}';
        out_ << ' ' << value << '\n';
    }
    void sample(const std::string& name, const std::string& labels, uint64_t value) {
        out_ << name;
        if (!labels.empty()) out_ << '{' << labels << '}';
        out_ << ' ' << value << '\n';
    }
    std::string text() const { return out_.str(); }

private:
    std::ostringstream out_;
};

std::string label(const char* name, std::string_view value) {
    return std::string(name) + "=\"" + std::string(value) + '"';
}

constexpr const char* kSourceNames[] = {"admin", "rate", "spam", "self"};

void store_gauges(const Config& cfg, Exposition& e) {
    std::string error;
    auto reader = StoreReader::open(cfg.store_path, error);
    // Suspended targets per service and source, as in force now.
    uint64_t suspended[kServiceCount][4] = {};
    const int64_t now = static_cast<int64_t>(std::time(nullptr));
    const bool up = reader && reader->for_each([&](const TargetRecord& r) {
        for (int s = 0; s < kServiceCount; ++s) {
            const ServiceState& state = r.at(static_cast<Service>(s));
            const int source = static_cast<int>(state.source);
            if (state.in_force(now) && source < 4) ++suspended[s][source];
        }
    });
    if (!up) std::cerr << "mailsuspend: store unavailable: " << (reader ? reader->last_error() : error) << "\n";
    e.family("mailsuspend_store_up", "gauge", "1 when the store could be read for this export, else 0.");
    e.sample("mailsuspend_store_up", "", uint64_t{up ? 1u : 0u});
    if (!up) return;
    e.family("mailsuspend_suspended_targets", "gauge",
             "Mailboxes and domains with the service suspended now, by who suspended it.");
    for (int s = 0; s < kServiceCount; ++s)
        for (int src = 0; src < 4; ++src)
            e.sample("mailsuspend_suspended_targets",
                     label("service", service_name(static_cast<Service>(s))) + ',' + label("source", kSourceNames[src]),
                     suspended[s][src]);
    const StoreStats st = reader->stats();
    e.family("mailsuspend_store_generation", "gauge", "Generation of the store file (bumped by every rebuild).");
    e.sample("mailsuspend_store_generation", "", st.generation);
    e.family("mailsuspend_store_capacity_targets", "gauge", "Targets the current generation was sized for.");
    e.sample("mailsuspend_store_capacity_targets", "", st.capacity);
    e.family("mailsuspend_store_records", "gauge", "Records (mailboxes and domains) in the store.");
    e.sample("mailsuspend_store_records", "", st.used_slots);
    e.family("mailsuspend_store_fill_ratio", "gauge",
             "Records over capacity; a write past 1 makes the store grow (a new generation).");
    e.sample("mailsuspend_store_fill_ratio", "", st.capacity ? double(st.used_slots) / double(st.capacity) : 0.0);
    e.family("mailsuspend_store_arena_fill_ratio", "gauge", "Record space used over its size.");
    e.sample("mailsuspend_store_arena_fill_ratio", "", st.arena_bytes ? double(st.arena_used) / double(st.arena_bytes) : 0.0);
}

// The counters of both host classes (zeros for a file that cannot be read).
struct Counts {
    metrics::Snapshot of[metrics::kHostClasses] = {};
    bool up[metrics::kHostClasses] = {};
    uint64_t at(HostClass c, int slot) const { return of[static_cast<int>(c)][slot]; }
};

Counts read_counts(const Config& cfg) {
    Counts c;
    for (int i = 0; i < metrics::kHostClasses; ++i) {
        std::string error;
        auto snapshot = metrics::read(metrics::path_of(cfg.store_path, static_cast<HostClass>(i)), error);
        if (!snapshot) {
            std::cerr << "mailsuspend: " << error << " (run `mailsuspend init`)\n";
            continue;
        }
        c.of[i] = *snapshot;
        c.up[i] = true;
    }
    return c;
}

void per_service(Exposition& e, const Counts& c, const char* name, const char* help, int base) {
    e.family(std::string(name) + "_total", "counter", help);
    for (const Service s : {Service::imap, Service::pop3, Service::webmail, Service::sieve})
        e.sample(std::string(name) + "_total", label("service", service_name(s)),
                 c.at(HostClass::dovecot, base + static_cast<int>(s)));
}

template <std::size_t N>
void per_word(Exposition& e, const Counts& c, const char* name, const char* help, const char* key,
              const char* const (&words)[N], int base, std::size_t count = N) {
    e.family(std::string(name) + "_total", "counter", help);
    for (std::size_t i = 0; i < count; ++i)
        // Exim's, and Dovecot's own causes (login_ips_per_day): a slot is only ever counted by one class.
        e.sample(std::string(name) + "_total", label(key, words[i]),
                 c.at(HostClass::exim, base + static_cast<int>(i)) + c.at(HostClass::dovecot, base + static_cast<int>(i)));
}

void counters(const Config& cfg, Exposition& e) {
    const Counts c = read_counts(cfg);
    e.family("mailsuspend_counters_up", "gauge",
             "1 when the host class's counters file could be read; 0: its counters below read 0.");
    for (int i = 0; i < metrics::kHostClasses; ++i)
        e.sample("mailsuspend_counters_up", label("host", metrics::class_name(static_cast<HostClass>(i))),
                 uint64_t{c.up[i] ? 1u : 0u});
    per_service(e, c, "mailsuspend_logins_denied", "Logins refused by the Dovecot passdb.", metrics::kLoginDenied);
    per_service(e, c, "mailsuspend_sessions_ended", "Live IMAP/POP3 sessions ended on suspension.",
                metrics::kSessionEnded);
    per_word(e, c, "mailsuspend_sends_refused", "Refused MAIL FROM or DATA of a sender, by reason.", "reason",
             metrics::kSendRefusalNames, metrics::kSendRefused);
    per_word(e, c, "mailsuspend_received", "Recipients handled per receive mode (queue: one per deferral).",
             "mode", metrics::kReceiveModeNames, metrics::kReceive);
    e.family("mailsuspend_auto_suspensions_total", "counter", "Automatic suspensions of send, by cause.");
    for (std::size_t i = 0; i < std::size(metrics::kAutoCauseNames); ++i) {
        const int slot = metrics::auto_suspension_slot(static_cast<metrics::AutoCause>(i));
        e.sample("mailsuspend_auto_suspensions_total", label("cause", metrics::kAutoCauseNames[i]),
                 c.at(HostClass::exim, slot) + c.at(HostClass::dovecot, slot));
    }
    e.family("mailsuspend_spam_reports_total", "counter", "Spam reports recorded.");
    e.sample("mailsuspend_spam_reports_total", "", c.at(HostClass::exim, metrics::kSpamReports));
    e.family("mailsuspend_fail_policy_decisions_total", "counter",
             "Checks decided by store.fail_policy because the store could not be read, by host and policy.");
    for (int i = 0; i < metrics::kHostClasses; ++i)
        for (int closed = 0; closed < 2; ++closed)
            e.sample("mailsuspend_fail_policy_decisions_total",
                     label("host", metrics::class_name(static_cast<HostClass>(i))) + ',' +
                         label("policy", closed ? "closed" : "open"),
                     c.of[i][metrics::kFailPolicy + closed]);
    e.family("mailsuspend_last_sweep_timestamp_seconds", "gauge",
             "When `mailsuspend sweep` last ran (Unix time; 0: never since init).");
    e.sample("mailsuspend_last_sweep_timestamp_seconds", "", c.at(HostClass::exim, metrics::kLastSweep));
}

// Replaces dir/mailsuspend.prom whole, so the collector never reads half a
// file (the temporary name does not end in .prom: the collector ignores it).
bool write_textfile(const std::string& dir, const std::string& text, std::string& error_r) {
    const std::string path = dir + "/mailsuspend.prom";
    if (replace_small_file(path, text, 0644)) return true;
    return error_r = path + ": " + std::strerror(errno), false;
}

}  // namespace

int cmd_metrics(const Options& o) {
    std::string error;
    auto cfg = load_config(o.config, error);
    if (!cfg) {
        std::cerr << "mailsuspend: " << error << "\n";
        return static_cast<int>(Exit::bad_input);
    }
    Exposition e;
    store_gauges(*cfg, e);
    counters(*cfg, e);
    if (!o.textfile) {
        std::cout << e.text();
        return 0;
    }
    if (std::string w; !write_textfile(o.textfile_dir, e.text(), w)) {
        std::cerr << "mailsuspend: " << w << "\n";
        return static_cast<int>(Exit::failure);
    }
    return 0;
}

}  // namespace mailsuspend::cli
