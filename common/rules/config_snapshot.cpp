#include "config_snapshot.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "files.hpp"
#include "ms_read.h"

namespace mailsuspend {

namespace {

// A snapshot: kMagic, then the fields below in order, little-endian as
// this machine writes them (a snapshot never leaves the host that wrote it).
// The identity first: format, the size of each struct (a field added to one
// changes it, so an older snapshot is not read as the new one), the checksum
// of the defaults, the config's path, the host name fleet.node_id defaults to
// (default_node_id) and the config's text, each compared as it is; then the checksum
// (ms_hash_key) of the values, and the values.
constexpr char kMagic[8] = {'M', 'S', 'C', 'O', 'N', 'F', 'S', '1'};
constexpr uint32_t kFormat = 3;
constexpr std::size_t kMaxSnapshot = 4 << 20;

uint64_t struct_sizes() {
    return sizeof(Config) ^ sizeof(Messages) << 12 ^ sizeof(Limits) << 24 ^ uint64_t{sizeof(FleetConfig)} << 36 ^
           uint64_t{sizeof(AlertsConfig)} << 48 ^ uint64_t{sizeof(AddressRules)} << 56;
}

// Appends the fields.
struct Encoder {
    std::string out;
    void raw(const void* p, std::size_t n) { out.append(static_cast<const char*>(p), n); }
    void item(const std::string& s) {
        const uint32_t n = static_cast<uint32_t>(s.size());
        raw(&n, sizeof n);
        raw(s.data(), s.size());
    }
    void item(const int64_t& v) { raw(&v, sizeof v); }
    void item(const uint64_t& v) { raw(&v, sizeof v); }
    void item(const uint32_t& v) { raw(&v, sizeof v); }
    void item(const bool& v) { out.push_back(v ? 1 : 0); }
    template <class E>
    void choice(const E& v, E) {
        out.push_back(static_cast<char>(v));
    }
    void item(const Netmask& m) {
        raw(m.addr.data(), m.addr.size());
        item(int64_t{m.prefix});
    }
    template <class T>
    void item(const std::vector<T>& v) {
        item(uint32_t(v.size()));
        for (const T& e : v) item(e);
    }
    void item(const std::map<std::string, std::string>& m) {
        item(uint32_t(m.size()));
        for (const auto& [k, v] : m) item(k), item(v);
    }
};

// Reads them back; ok turns false at the first one that does not fit.
struct Decoder {
    const char* p;
    const char* end;
    bool ok = true;
    bool take(void* to, std::size_t n) {
        if (!ok || static_cast<std::size_t>(end - p) < n) return ok = false;
        std::memcpy(to, p, n);
        p += n;
        return true;
    }
    void item(std::string& s) {
        uint32_t n = 0;
        if (!take(&n, sizeof n) || static_cast<std::size_t>(end - p) < n) return void(ok = false);
        s.assign(p, n);
        p += n;
    }
    void item(int64_t& v) { take(&v, sizeof v); }
    void item(uint64_t& v) { take(&v, sizeof v); }
    void item(uint32_t& v) { take(&v, sizeof v); }
    void item(bool& v) {
        uint8_t b = 0;
        if (take(&b, 1) && b > 1) ok = false;
        v = b == 1;
    }
    template <class E>
    void choice(E& v, E last) {
        uint8_t b = 0;
        if (take(&b, 1) && b > static_cast<uint8_t>(last)) ok = false;
        v = static_cast<E>(b);
    }
    void item(Netmask& m) {
        int64_t prefix = 0;
        take(m.addr.data(), m.addr.size());
        item(prefix);
        if (prefix < 0 || prefix > 128) ok = false;
        m.prefix = static_cast<int>(prefix);
    }
    template <class T>
    void item(std::vector<T>& v) {
        uint32_t n = 0;
        item(n);
        for (uint32_t i = 0; ok && i < n; ++i) item(v.emplace_back());
    }
    void item(std::map<std::string, std::string>& m) {
        uint32_t n = 0;
        item(n);
        for (uint32_t i = 0; ok && i < n; ++i) {
            std::string k, v;
            item(k), item(v);
            m[std::move(k)] = std::move(v);
        }
    }
};

// Every value of a Config but its path, once, for both directions.  A field
// added to Config goes here too (the round-trip test sets every key).
template <class Io, class C>
void values(Io& io, C& c) {
    io.item(c.store_path), io.item(c.store_capacity), io.item(c.counter_capacity);
    io.choice(c.fail_policy, FailPolicy::closed);
    io.item(c.read_group), io.item(c.write_group), io.item(c.login_group), io.item(c.login_capacity);
    io.item(c.audit_log), io.item(c.host_lock_wait_ms), io.item(c.host_write_wait_ms);
    io.item(c.admin_lock_timeout);
    io.choice(c.default_mode, DeliveryMode::queue);
    io.item(c.queue_expiry), io.item(c.flush_command), io.item(c.fail_queued_command), io.item(c.exim_command);
    io.item(c.address.default_domain), io.item(c.address.subaddress_separator);
    io.item(c.webmail_hosts);
    auto& m = c.messages;
    io.item(m.unavailable), io.item(m.send_suspended), io.item(m.rate_suspended), io.item(m.receive_rejected);
    io.item(m.recipients_per_message), io.item(m.ip_throttled), io.item(m.domain_rate_suspended);
    io.item(m.unknown_recipients), io.item(m.failed_share), io.item(m.login_ips), io.item(m.login_denied);
    io.item(m.include_reason);
    auto& l = c.limits;
    io.item(l.messages_per_day), io.item(l.recipients_per_message), io.item(l.offdomain_recipients_per_day);
    io.item(l.offdomain_recipients_per_hour_per_ip), io.item(l.domain_messages_per_hour);
    io.item(l.domain_offdomain_recipients_per_day), io.item(l.unknown_recipients_per_hour);
    io.item(l.failed_share_percent), io.item(l.failed_share_min_recipients), io.item(l.login_ips_per_day);
    io.choice(l.login_ips_action, LoginIpsAction::logins);
    io.item(l.suspend_for), io.item(l.extend_on_attempt), io.item(l.escalate_after);
    io.choice(l.action, SendAction::hold);
    io.item(c.spam_threshold), io.item(c.spam_window), io.item(c.spam_token_max_age);
    io.item(c.default_abuse_contact), io.item(c.abuse_contacts), io.item(c.evidence_samples);
    io.choice(c.spam_action, SendAction::hold);
    io.item(c.sendmail_command), io.item(c.self_service_interval), io.item(c.probe_address);
    auto& f = c.fleet;
    io.item(f.enabled), io.item(f.redis), io.item(f.sentinels), io.item(f.master_name), io.item(f.node_id);
    io.item(f.key_prefix), io.item(f.password_file), io.item(f.signing_key_file);
    io.choice(f.counters, FleetConfig::Counters::fleet);
    io.item(f.stream_length);
    auto& a = c.alerts;
    io.item(a.enabled), io.item(a.webhook_url), io.item(a.webhook_secret_file), io.item(a.admin_address);
}

uint64_t checksum(std::string_view body) { return ms_hash_key(body.data(), body.size()); }

// Folds the values into one number without writing them out: what the
// fingerprint of the defaults needs, in every fresh process.
struct Hasher {
    uint64_t h = 0x6A09E667F3BCC909ULL;
    void mix(uint64_t v) { h = (h ^ v) * 0x9E3779B97F4A7C15ULL, h ^= h >> 29; }
    void item(const std::string& s) { mix(ms_hash_key(s.data(), s.size())); }
    void item(int64_t v) { mix(static_cast<uint64_t>(v)); }
    void item(uint64_t v) { mix(v); }
    void item(bool v) { mix(v ? 1 : 2); }
    template <class E>
    void choice(E v, E) {
        mix(static_cast<uint64_t>(v) + 3);
    }
    void item(const Netmask& m) { mix(ms_hash_key(reinterpret_cast<const char*>(m.addr.data()), m.addr.size()) ^ m.prefix); }
    template <class T>
    void item(const std::vector<T>& v) {
        mix(v.size());
        for (const T& e : v) item(e);
    }
    void item(const std::map<std::string, std::string>& m) {
        mix(m.size());
        for (const auto& [k, v] : m) item(k), item(v);
    }
};

// The values of a default Config, folded: a version whose defaults differ
// does not read the older version's snapshot (which holds them for every
// key the file leaves out).
uint64_t defaults_fingerprint(const Config& defaults) {
    Hasher h;
    values(h, defaults);
    return h.h;
}

}  // namespace

std::string detail::encode_config_snapshot(const std::string& path, std::string_view text, const Config& c) {
    Encoder w;
    w.raw(kMagic, sizeof kMagic);
    w.item(kFormat);
    w.item(struct_sizes());
    w.item(defaults_fingerprint(Config{}));
    w.item(path), w.item(default_node_id()), w.item(std::string(text));
    const std::size_t sum_at = w.out.size();
    w.out.append(sizeof(uint64_t), '\0');
    values(w, c);
    const uint64_t sum = checksum(std::string_view(w.out).substr(sum_at + sizeof sum));
    std::memcpy(w.out.data() + sum_at, &sum, sizeof sum);
    return std::move(w.out);
}

namespace {

// A Decoder past the magic and the identity's three numbers (ok false when
// bytes is no snapshot).
Decoder past_numbers(std::string_view bytes, uint32_t& format, uint64_t& sizes, uint64_t& defaults) {
    Decoder r{bytes.data(), bytes.data(), false};
    if (bytes.size() >= sizeof kMagic && std::memcmp(bytes.data(), kMagic, sizeof kMagic) == 0)
        r = Decoder{bytes.data() + sizeof kMagic, bytes.data() + bytes.size()};
    r.item(format), r.item(sizes), r.item(defaults);
    return r;
}

// The identity's string at r: the same as want?  Compared in place, so the
// config's text is not copied.
bool same_string(Decoder& r, std::string_view want) {
    uint32_t n = 0;
    r.item(n);
    if (!r.ok || n != want.size() || static_cast<std::size_t>(r.end - r.p) < n) return false;
    const bool same = std::memcmp(r.p, want.data(), n) == 0;
    r.p += n;
    return same;
}

// Into c (a default Config) the values of a snapshot made of this text at
// path on this host; false for anything else.
bool decode(std::string_view bytes, const std::string& path, std::string_view text, Config& c) {
    uint32_t format = 0;
    uint64_t sizes = 0, defaults = 0;
    Decoder r = past_numbers(bytes, format, sizes, defaults);
    if (!r.ok || format != kFormat || sizes != struct_sizes() || defaults != defaults_fingerprint(c)) return false;
    if (!same_string(r, path) || !same_string(r, default_node_id()) || !same_string(r, text)) return false;
    uint64_t sum = 0;
    if (!r.take(&sum, sizeof sum) || checksum({r.p, static_cast<std::size_t>(r.end - r.p)}) != sum) return false;
    values(r, c);
    c.path = path;
    return r.ok && r.p == r.end;
}

// The snapshot is the config's: a regular file of the config's owner that
// nobody else may write (the directory is root's; this is the second lock).
bool trusted(const struct stat& snapshot, const struct stat& config) {
    return S_ISREG(snapshot.st_mode) && snapshot.st_uid == config.st_uid && (snapshot.st_mode & 022) == 0;
}

bool read_config_text(const std::string& path, FileBytes& text, struct stat& st) {
    return read_small_file(path, text, {.stat_r = &st});
}

// A snapshot file, never through a symbolic link.
bool read_snapshot_file(const std::string& spath, FileBytes& bytes, struct stat* st) {
    return read_small_file(spath, bytes, {.limit = kMaxSnapshot, .follow_links = false, .stat_r = st});
}

// The snapshot's values when it is the current one for text.
bool read_current(const std::string& spath, const std::string& path, std::string_view text,
                  const struct stat& config, Config& c) {
    FileBytes bytes;
    struct stat st {};
    return read_snapshot_file(spath, bytes, &st) && trusted(st, config) && decode(bytes.view(), path, text, c);
}

// The config path a snapshot names, "" when it names none.
std::string path_named(const std::string& spath) {
    FileBytes bytes;
    if (!read_snapshot_file(spath, bytes, nullptr)) return "";
    uint32_t format = 0;
    uint64_t sizes = 0, defaults = 0;
    std::string path;
    Decoder r = past_numbers(bytes.view(), format, sizes, defaults);
    r.item(path);
    return r.ok ? path : "";
}

// Removes the snapshots of configs that are gone (the tests' temporary
// ones, a renamed file): nothing else would, and each is a file's worth.
void remove_orphans(const std::string& snapshot_dir) {
    DIR* d = ::opendir(snapshot_dir.c_str());
    if (!d) return;
    while (const dirent* e = ::readdir(d)) {
        if (std::strncmp(e->d_name, "config-", 7) != 0) continue;
        const std::string spath = snapshot_dir + "/" + e->d_name;
        const std::string path = path_named(spath);
        if (!path.empty() && ::access(path.c_str(), F_OK) != 0 && errno == ENOENT) ::unlink(spath.c_str());
    }
    ::closedir(d);
}

}  // namespace

std::string config_snapshot_path(const std::string& path, const std::string& snapshot_dir) {
    static const char hex[] = "0123456789abcdef";
    uint64_t h = ms_hash_key(path.data(), path.size());
    std::string name = snapshot_dir + "/config-0000000000000000";
    for (std::size_t i = name.size(); i-- > name.size() - 16; h >>= 4) name[i] = hex[h & 15];
    return name;
}

std::optional<Config> read_config_snapshot(const std::string& path, const std::string& snapshot_dir) {
    FileBytes text;
    struct stat st {};
    if (!read_config_text(path, text, st)) return std::nullopt;
    Config c;
    if (!read_current(config_snapshot_path(path, snapshot_dir), path, text.view(), st, c)) return std::nullopt;
    return c;
}

std::optional<Config> load_config_snapshot(const std::string& path, const std::string& snapshot_dir,
                                           std::string& error_r) {
    if (auto c = read_config_snapshot(path, snapshot_dir)) return c;
    return load_config(path, error_r);
}

SnapshotState keep_config_snapshot(const std::string& path, const std::string& snapshot_dir, const Config* parsed,
                                   std::string& why_r) {
    const std::string spath = config_snapshot_path(path, snapshot_dir);
    FileBytes bytes;
    struct stat st {};
    if (!read_config_text(path, bytes, st)) return why_r = path + ": " + std::strerror(errno), SnapshotState::not_kept;
    if (st.st_uid != ::geteuid())
        return why_r = "only the owner of " + path + " (uid " + std::to_string(st.st_uid) + ") keeps its snapshot",
               SnapshotState::not_kept;
    // libconfig reads a string only to its first NUL, a file perhaps not.
    const bool nul = bytes.view().find('\0') != std::string_view::npos;
    if (nul || bytes.view().find("@include") != std::string_view::npos) {
        ::unlink(spath.c_str());
        return why_r = path + (nul ? " holds a NUL octet" : " has an @include"), SnapshotState::not_kept;
    }
    // The caller's parse decides, not the snapshot's: after an upgrade that
    // reads the same text otherwise, the older snapshot goes.
    if (Config c; parsed && read_current(spath, path, bytes.view(), st, c) && c == *parsed)
        return SnapshotState::current;
    // The values written come from the text written (parsed may be of the
    // file as it was a moment ago); a text this version refuses has none.
    const std::string text(bytes.view());
    const auto cfg = load_config_text(path, text, why_r);
    if (!cfg) {
        ::unlink(spath.c_str());
        return SnapshotState::not_kept;
    }
    // 0755 whatever the umask (root's may be 077): the mail processes enter it.
    if (::mkdir(snapshot_dir.c_str(), 0755) == 0) ::chmod(snapshot_dir.c_str(), 0755);
    else if (errno != EEXIST)
        return why_r = "cannot create " + snapshot_dir + ": " + std::strerror(errno), SnapshotState::not_kept;
    // Readable by whom may read the config, no more.
    if (!replace_small_file(spath, detail::encode_config_snapshot(path, text, *cfg), st.st_mode & 0644, st.st_gid))
        return why_r = "cannot write " + spath + ": " + std::strerror(errno), SnapshotState::not_kept;
    remove_orphans(snapshot_dir);
    return SnapshotState::written;
}

}  // namespace mailsuspend
