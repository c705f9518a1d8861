#include "outbox.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "address.hpp"
#include "files.hpp"
#include "config.hpp"
#include "policy.hpp"
#include "store.hpp"
#include "store_layout.hpp"

namespace mailsuspend {

namespace {


Actor outbox_actor() {
    Actor a;
    a.uid = 0;
    a.name = "exim (outbox)";
    return a;
}

bool parse(const Config& cfg, const std::string& text, OutboxEntry& e, std::string& error_r) {
    const auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object() || !j.contains("op") || !j.contains("key") || !j.contains("time") ||
        !j["op"].is_string() || !j["key"].is_string() || !j["time"].is_number_integer()) {
        error_r = "not an outbox entry";
        return false;
    }
    const std::string op = j["op"];
    if (op == "rate-suspend") e.op = OutboxOp::rate_suspend;
    else if (op == "extend") e.op = OutboxOp::extend;
    else {
        error_r = "unknown operation";
        return false;
    }
    e.key = j["key"];
    e.time = j["time"];
    if (j.contains("why") && j["why"].is_string()) e.why = j["why"];
    // Send always; at most the login services besides (never receive).
    constexpr uint8_t kAllowed = kAllServicesMask & ~(1u << static_cast<int>(Service::receive));
    if (j.contains("services") && j["services"].is_number_unsigned() && j["services"] <= kAllowed)
        e.services = static_cast<uint8_t>((j["services"].get<unsigned>() & kAllowed) | kSendMask);
    // Only a mailbox key as Exim writes it: anything else is not ours.
    std::string error;
    const std::string normalised = normalise(e.key, cfg.address, error);
    if (normalised.empty() || normalised != e.key || e.key.front() == '@') {
        error_r = "not a mailbox key";
        return false;
    }
    return true;
}

}  // namespace

std::string outbox_dir(const Config& cfg) { return cfg.store_path + "/outbox"; }

bool create_outbox(const Config& cfg, std::string& error_r) {
    const std::string dir = outbox_dir(cfg);
    const auto failed = [&] { return error_r = dir + ": " + std::strerror(errno), false; };
    if (::mkdir(dir.c_str(), 02770) != 0 && errno != EEXIST) return failed();
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return failed();
    bool ok = true;
    if (!cfg.write_group.empty()) {
        const struct group* gr = ::getgrnam(cfg.write_group.c_str());
        if (!gr) error_r = dir + ": group '" + cfg.write_group + "' does not exist", ok = false;
        else if (::fchown(fd, 0, gr->gr_gid) != 0) ok = failed();
    }
    if (ok && ::fchmod(fd, 02770) != 0) ok = failed();
    ::close(fd);
    return ok;
}

bool outbox_put(const Config& cfg, const OutboxEntry& entry, std::string& error_r, Counters* counters) {
    const std::string dir = outbox_dir(cfg);
    char final_path[4096];
    const bool suspend = entry.op == OutboxOp::rate_suspend;
    if (!outbox_entry_path(cfg.store_path, suspend ? kSuspendPrefix : kExtendPrefix, entry.key, final_path, sizeof final_path))
        return error_r = "outbox path too long", false;
    nlohmann::json j = {{"op", suspend ? "rate-suspend" : "extend"},
                        {"key", entry.key},
                        {"why", entry.why},
                        {"time", entry.time}};
    if (suspend && entry.services != kSendMask) j["services"] = entry.services;
    const std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    static unsigned serial = 0;
    const std::string tmp = dir + "/.new." + std::to_string(::getpid()) + "." + std::to_string(++serial);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0660);
    if (fd < 0) return error_r = dir + ": " + std::strerror(errno), false;
    // Whatever the host's umask (Dovecot's auth process hands entries on too):
    // every writer of write_group must be able to read and apply it.
    (void)::fchmod(fd, 0660);
    const ssize_t n = ::write(fd, text.data(), text.size());
    const int write_errno = errno;
    ::close(fd);
    bool ok = false;
    if (n != static_cast<ssize_t>(text.size())) {
        error_r = tmp + ": " + std::strerror(n < 0 ? write_errno : ENOSPC);
    } else if (suspend) {
        // Counted in before it can be seen: a send check that reads 0 skips the outbox.
        if (counters) counters->note_outbox_suspensions(+1);
        // link, not rename: a pending suspension of this key is kept as it is.
        const bool linked = ::link(tmp.c_str(), final_path) == 0;
        ok = linked || errno == EEXIST;
        if (!ok) error_r = std::string(final_path) + ": " + std::strerror(errno);
        if (!linked && counters) counters->note_outbox_suspensions(-1);  // counted when it was linked
    } else {
        ok = ::rename(tmp.c_str(), final_path) == 0;
        if (!ok) error_r = std::string(final_path) + ": " + std::strerror(errno);
    }
    ::unlink(tmp.c_str());
    return ok;
}

int outbox_apply(const Config& cfg, StoreWriter& writer, std::vector<std::string>& warnings, Counters* counters,
                 std::vector<std::string>* done, std::size_t max) {
    const std::string dir = outbox_dir(cfg);
    DIR* d = ::opendir(dir.c_str());
    if (!d) return 0;  // no outbox (a store made before it existed): nothing pending
    struct Pending {
        std::string name;
        OutboxEntry entry;
        ino_t ino;
    };
    std::vector<Pending> pending;
    while (const dirent* de = ::readdir(d)) {
        const std::string name = de->d_name;
        if (name.rfind(kSuspendPrefix, 0) != 0 && name.rfind(kExtendPrefix, 0) != 0) continue;
        const std::string path = dir + "/" + name;
        std::string text, why;
        Pending p{name, {}, 0};
        struct stat st {};
        if (!read_small_file(path, text, {.limit = 65535, .follow_links = false, .stat_r = &st})) continue;  // gone meanwhile, or not a plain file
        p.ino = st.st_ino;
        if (!parse(cfg, text, p.entry, why)) {
            warnings.push_back("outbox entry " + path + " set aside as bad." + name + ": " + why);
            if (::rename(path.c_str(), (dir + "/bad." + name).c_str()) == 0 && counters &&
                name.rfind(kSuspendPrefix, 0) == 0)
                counters->note_outbox_suspensions(-1);
            continue;
        }
        pending.push_back(std::move(p));
    }
    ::closedir(d);
    // Oldest first; a suspension before an extension of the same moment.
    std::sort(pending.begin(), pending.end(), [](const Pending& a, const Pending& b) {
        return a.entry.time != b.entry.time ? a.entry.time < b.entry.time : a.entry.op < b.entry.op;
    });
    int applied = 0;
    for (const Pending& p : pending) {
        if (static_cast<std::size_t>(applied) >= max) break;
        const OutboxEntry& e = p.entry;
        Outcome o;
        if (e.op == OutboxOp::rate_suspend) {
            AutoSuspension out;
            o = suspend_automatically(cfg, writer, outbox_actor(), e.key, Source::rate, e.why, e.time, out, warnings,
                                      e.services);
        } else {
            bool extended = false;
            o = extend_rate_suspension(cfg, writer, outbox_actor(), e.key, e.time, extended, warnings);
            if (o.ok() && o.message.empty()) o.message = "rate suspension of " + e.key + " needed no extension";
        }
        const std::string path = dir + "/" + p.name;
        if (!o.ok()) {
            warnings.push_back("outbox entry " + path + " not applied (kept for the next writer): " + o.message);
            break;  // the store cannot take changes now: keep the order
        }
        // Removed only if it is still the entry applied (an extension may have replaced it).
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0 && st.st_ino == p.ino && ::unlink(path.c_str()) == 0 &&
            e.op == OutboxOp::rate_suspend && counters)
            counters->note_outbox_suspensions(-1);
        ++applied;
        if (done) done->push_back("from the outbox: " + o.message);
    }
    if (counters) {
        uint64_t left = 0;
        for (std::size_t i = static_cast<std::size_t>(applied); i < pending.size(); ++i)
            left += pending[i].entry.op == OutboxOp::rate_suspend;
        counters->raise_outbox_suspensions(left);
    }
    return applied;
}

int outbox_apply(const Config& cfg, StoreWriter& writer, std::vector<std::string>& warnings,
                 std::vector<std::string>* done, std::size_t max) {
    std::string error;  // no counters file: nothing to count into
    const auto counters = Counters::open(cfg.store_path, false, 0, error);
    return outbox_apply(cfg, writer, warnings, counters.get(), done, max);
}

}  // namespace mailsuspend
