#include "harness.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <sstream>
#include <thread>

#include "config.hpp"
#include "image.hpp"
#include "store.hpp"

namespace stress {

using mailsuspend::Change;
using mailsuspend::Config;
using mailsuspend::HotView;
using mailsuspend::LookupStatus;
using mailsuspend::StoreReader;
using mailsuspend::StoreWriter;
using mailsuspend::TargetRecord;

namespace {

constexpr uint64_t kWatchdogNs = 10'000'000'000;       // a reader silent this long is hung
constexpr uint64_t kWriterWatchdogNs = 30'000'000'000; // no commit at all this long: hung
constexpr uint64_t kStallBoundNs = 10'000'000'000;     // generous bound on reader stalls

uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

void atomic_max(std::atomic<uint64_t>& a, uint64_t v) {
    uint64_t cur = a.load(std::memory_order_relaxed);
    while (cur < v && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
}
void atomic_max(std::atomic<uint32_t>& a, uint32_t v) {
    uint32_t cur = a.load();
    while (cur < v && !a.compare_exchange_weak(cur, v)) {
    }
}

void report(Shared& sh, const std::string& who, const std::string& what) {
    const uint32_t n = sh.error_count.fetch_add(1);
    if (n < kMaxErrors) {
        std::snprintf(sh.errors[n], sizeof sh.errors[n], "%s: %s", who.c_str(), what.c_str());
    }
}

Config make_config(const std::string& dir, uint64_t capacity) {
    Config cfg;
    cfg.store_path = dir;
    cfg.store_capacity = capacity;
    cfg.counter_capacity = 1024;
    cfg.read_group = "";
    cfg.write_group = "";
    cfg.audit_log = dir + "/audit.log";
    return cfg;
}

struct Context {
    const RunOptions& opt;
    Shared& sh;
    std::string dir;
    std::vector<std::string> keys;  // key 2g and 2g+1 form group g
};

// Version of key as stored; 0 when absent.  false (reported) when undecodable.
bool stored_version(Context& c, StoreWriter& w, uint32_t key_index, uint32_t& version,
                    const std::string& who) {
    TargetRecord rec;
    bool exists = false;
    if (!w.get(c.keys[key_index], rec, &exists)) {
        report(c.sh, who, "get(" + c.keys[key_index] + ") failed");
        return false;
    }
    version = 0;
    if (!exists) return true;
    std::string why;
    if (!decode_record(rec, c.keys[key_index], version, why)) {
        report(c.sh, who, "writer reads a bad record: " + why);
        return false;
    }
    return true;
}

// The version both keys of group g show to a writer; their batch must be whole.
bool group_version(Context& c, StoreWriter& w, uint32_t g, uint32_t& version,
                   const std::string& who) {
    uint32_t a = 0, b = 0;
    if (!stored_version(c, w, 2 * g, a, who) || !stored_version(c, w, 2 * g + 1, b, who)) return false;
    if (a != b) {
        report(c.sh, who, "batch torn after repair: '" + c.keys[2 * g] + "' at version " +
                              std::to_string(a) + " but '" + c.keys[2 * g + 1] + "' at " +
                              std::to_string(b));
        return false;
    }
    if (a > c.sh.max_intent[g].load()) {
        report(c.sh, who, "'" + c.keys[2 * g] + "' holds version " + std::to_string(a) +
                              " nobody attempted");
        return false;
    }
    version = a;
    return true;
}

std::vector<uint32_t> pick_groups(Context& c, std::mt19937_64& rng) {
    const uint32_t groups = c.opt.groups;
    uint32_t n = 1 + rng() % c.opt.max_batch_groups;
    if (int(rng() % 100) < c.opt.big_batch_percent) n = std::max<uint32_t>(32, groups / 4);
    n = std::min(n, groups);
    std::vector<uint32_t> picked;
    const uint32_t start = rng() % groups;
    const uint32_t stride = 1 + rng() % 7;
    for (uint32_t i = 0; picked.size() < n && i < groups * 8; ++i) {
        const uint32_t g = (start + i * stride) % groups;
        if (std::find(picked.begin(), picked.end(), g) == picked.end()) picked.push_back(g);
    }
    return picked;
}

// One commit of a few groups: intents first, then commit, then acks.
bool commit_step(Context& c, StoreWriter& w, std::mt19937_64& rng, const std::string& who) {
    const std::vector<uint32_t> groups = pick_groups(c, rng);
    std::vector<Change> changes;
    std::vector<std::pair<uint32_t, uint32_t>> versions;
    for (uint32_t g : groups) {
        uint32_t current = 0;
        if (!group_version(c, w, g, current, who)) return false;
        const uint32_t next = std::max(current, c.sh.max_intent[g].load()) + 1;
        if (next > kMaxVersion) continue;
        c.sh.max_intent[g].store(next);
        if (is_erase(next)) c.sh.max_erase_intent[g].store(next);
        changes.push_back(Change{make_image(c.keys[2 * g], next)});
        changes.push_back(Change{make_image(c.keys[2 * g + 1], next)});
        versions.emplace_back(g, next);
    }
    c.sh.commits_started.fetch_add(1);
    std::string error;
    if (w.commit(changes, error) == 0) {
        report(c.sh, who, "commit failed: " + error);
        return false;
    }
    for (auto [g, v] : versions) atomic_max(c.sh.max_acked[g], v);
    c.sh.commits_acked.fetch_add(1);
    return true;
}

uint64_t choose_rebuild_capacity(Context& c, std::mt19937_64& rng) {
    switch (rng() % 3) {
        case 0: return 0;  // current size
        case 1: return c.keys.size() * 2;
        default: return c.keys.size() * 4;
    }
}

[[noreturn]] void writer_main(Context& c, int id, uint64_t seed) {
    const std::string who = "writer " + std::to_string(id) + " (pid " + std::to_string(getpid()) + ")";
    std::mt19937_64 rng(seed);
    const Config cfg = make_config(c.dir, c.opt.initial_capacity);
    const bool crash_mode = c.opt.kills > 0;
    uint64_t done = 0;
    while (!c.sh.stop_writers.load() && (crash_mode || done < c.opt.commits_per_writer)) {
        std::string error;
        const uint64_t t0 = now_ns();
        auto w = StoreWriter::open(cfg, false, error);
        if (!w) {
            report(c.sh, who, "StoreWriter::open failed: " + error);
            _exit(1);
        }
        atomic_max(c.sh.max_open_ns, now_ns() - t0);
        c.sh.writer_opens.fetch_add(1);
        const int steps = 1 + rng() % 3;  // like a CLI run: open, a commit or few, close
        for (int s = 0; s < steps && (crash_mode || done < c.opt.commits_per_writer); ++s) {
            if (int(rng() % 100) < c.opt.rebuild_percent) {
                if (!w->rebuild(choose_rebuild_capacity(c, rng), error)) {
                    report(c.sh, who, "rebuild failed: " + error);
                    _exit(1);
                }
                c.sh.rebuilds.fetch_add(1);
                continue;
            }
            if (!commit_step(c, *w, rng, who)) _exit(1);
            ++done;
        }
    }
    _exit(0);
}

struct ReaderState {
    std::vector<uint32_t> last_version;  // per key, highest present version seen
    std::vector<uint64_t> last_seq;
};

// Checks one answer about key k; false (reported) on a bad one.
bool check_found(Context& c, ReaderState& st, uint32_t k, uint32_t version, uint64_t seq,
                 const std::string& who) {
    const uint32_t g = k / 2;
    // Load after the read: an intent is raised before its commit starts.
    const uint32_t attempted = c.sh.max_intent[g].load();
    if (version > attempted) {
        report(c.sh, who, "read '" + c.keys[k] + "' at version " + std::to_string(version) +
                              " but only " + std::to_string(attempted) + " were attempted");
        return false;
    }
    if (version < st.last_version[k]) {
        report(c.sh, who, "'" + c.keys[k] + "' went back from version " +
                              std::to_string(st.last_version[k]) + " to " + std::to_string(version));
        return false;
    }
    if (seq != 0) {
        if (seq < st.last_seq[k]) {
            report(c.sh, who, "'" + c.keys[k] + "' seq went back from " +
                                  std::to_string(st.last_seq[k]) + " to " + std::to_string(seq));
            return false;
        }
        st.last_seq[k] = seq;
    }
    st.last_version[k] = version;
    return true;
}

bool check_absent(Context& c, ReaderState& st, uint32_t k, const std::string& who) {
    const uint32_t g = k / 2;
    // Absent after seeing version v needs an erase attempted after v.
    if (st.last_version[k] != 0 && c.sh.max_erase_intent[g].load() <= st.last_version[k]) {
        report(c.sh, who, "'" + c.keys[k] + "' vanished after version " +
                              std::to_string(st.last_version[k]) + " with no erase attempted since");
        return false;
    }
    return true;
}

// One lookup (even calls: hot path) or full read (odd calls) of key k.
LookupStatus read_once(Context& c, StoreReader& r, ReaderState& st, uint32_t k, bool full,
                       const std::string& who, bool& ok) {
    ok = true;
    std::string why;
    uint32_t version = 0;
    if (!full) {
        HotView view;
        const LookupStatus s = r.lookup(c.keys[k], view);
        if (s == LookupStatus::found) {
            ok = decode_hot(view, c.keys[k], version, why);
            if (!ok) report(c.sh, who, "torn lookup: " + why);
            ok = ok && check_found(c, st, k, version, 0, who);
        } else if (s == LookupStatus::absent) {
            ok = check_absent(c, st, k, who);
        }
        return s;
    }
    TargetRecord rec;
    const LookupStatus s = r.read(c.keys[k], rec);
    if (s == LookupStatus::found) {
        ok = decode_record(rec, c.keys[k], version, why);
        if (!ok) report(c.sh, who, "torn read: " + why);
        ok = ok && check_found(c, st, k, version, rec.seq, who);
    } else if (s == LookupStatus::absent) {
        ok = check_absent(c, st, k, who);
    }
    return s;
}

// After the writers: every key must show final_version (0 = absent).
void reader_final_pass(Context& c, StoreReader& r, ReaderStats& rs, const std::string& who) {
    for (uint32_t k = 0; k < c.keys.size(); ++k) {
        const uint32_t expect = c.sh.final_version[k / 2].load();
        const bool expect_absent = expect == 0 || is_erase(expect);
        for (bool full : {false, true}) {
            HotView view;
            TargetRecord rec;
            const LookupStatus s = full ? r.read(c.keys[k], rec) : r.lookup(c.keys[k], view);
            uint32_t version = 0;
            std::string why;
            bool good = false;
            if (s == LookupStatus::absent) {
                good = expect_absent;
            } else if (s == LookupStatus::found) {
                good = (full ? decode_record(rec, c.keys[k], version, why)
                             : decode_hot(view, c.keys[k], version, why)) &&
                       !expect_absent && version == expect;
            }
            if (!good) {
                report(c.sh, who, std::string("final ") + (full ? "read" : "lookup") + " of '" +
                                      c.keys[k] + "' by a long-lived reader: status " +
                                      std::to_string(int(s)) + " version " + std::to_string(version) +
                                      ", expected " + std::to_string(expect) + "; reader on generation " +
                                      std::to_string(r.stats().generation) + " " + why);
                return;
            }
        }
        rs.final_checked.fetch_add(1);
    }
}

[[noreturn]] void reader_main(Context& c, int id, uint64_t seed) {
    const std::string who = "reader " + std::to_string(id);
    ReaderStats& rs = c.sh.readers[id];
    std::string error;
    auto r = StoreReader::open(c.dir, error);
    if (!r) {
        report(c.sh, who, "StoreReader::open failed: " + error);
        rs.done.store(1);
        _exit(1);
    }
    std::mt19937_64 rng(seed);
    ReaderState st{std::vector<uint32_t>(c.keys.size()), std::vector<uint64_t>(c.keys.size())};
    uint64_t last_usable = now_ns(), streak = 0, last_generation = 0, calls = 0;
    while (!c.sh.final_pass.load(std::memory_order_relaxed)) {
        const uint32_t k = rng() % c.keys.size();
        const uint64_t t0 = now_ns();
        bool ok = true;
        const LookupStatus s = read_once(c, *r, st, k, calls & 1, who, ok);
        const uint64_t t1 = now_ns();
        ++calls;
        rs.progress.fetch_add(1, std::memory_order_relaxed);
        atomic_max(rs.max_call_ns, t1 - t0);
        if (!ok) _exit(1);
        if (s == LookupStatus::unavailable) {
            rs.unavailable.fetch_add(1, std::memory_order_relaxed);
            atomic_max(rs.max_unavailable_streak, ++streak);
            atomic_max(rs.max_stall_ns, t1 - last_usable);
        } else {
            (s == LookupStatus::found ? rs.found : rs.absent).fetch_add(1, std::memory_order_relaxed);
            atomic_max(rs.max_stall_ns, t1 - last_usable);
            last_usable = t1;
            streak = 0;
        }
        if ((calls & 1023) == 0) {
            const uint64_t gen = r->stats().generation;
            if (gen != last_generation) rs.generations_seen.fetch_add(1);
            last_generation = gen;
        }
    }
    reader_final_pass(c, *r, rs, who);
    rs.done.store(1);
    _exit(0);
}

pid_t spawn(const std::function<void()>& body) {
    const pid_t pid = fork();
    if (pid == 0) {
        body();
        _exit(0);
    }
    return pid;
}

// Waits for pid up to timeout_ns; SIGKILLs it on timeout.  Returns the
// wait status, or -1 on timeout.
int wait_bounded(pid_t pid, uint64_t timeout_ns) {
    const uint64_t deadline = now_ns() + timeout_ns;
    int status = 0;
    while (true) {
        const pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (now_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

class Watchdog {
public:
    explicit Watchdog(Shared& sh, int readers) : sh_(sh), readers_(readers) {
        const uint64_t t = now_ns();
        for (int i = 0; i < readers; ++i) last_[i] = {sh.readers[i].progress.load(), t};
        commits_ = {sh.commits_acked.load(), t};
    }
    // false (reported) when a reader or all writers made no progress too long.
    bool ok() {
        const uint64_t t = now_ns();
        for (int i = 0; i < readers_; ++i) {
            const uint64_t p = sh_.readers[i].progress.load();
            if (p != last_[i].first || sh_.readers[i].done.load()) {
                last_[i] = {p, t};
            } else if (t - last_[i].second > kWatchdogNs) {
                report(sh_, "watchdog", "reader " + std::to_string(i) +
                                            " made no progress for 10 s (hung in lookup/read)");
                return false;
            }
        }
        const uint64_t c = sh_.commits_acked.load();
        if (c != commits_.first) {
            commits_ = {c, t};
        } else if (t - commits_.second > kWriterWatchdogNs) {
            report(sh_, "watchdog", "no writer acknowledged a commit for 30 s (writers hung)");
            return false;
        }
        return true;
    }

private:
    Shared& sh_;
    int readers_;
    std::pair<uint64_t, uint64_t> last_[kMaxReaders];
    std::pair<uint64_t, uint64_t> commits_;
};

void check_child_status(Shared& sh, const std::string& who, int status, bool kill_expected) {
    if (status == -1) {
        report(sh, who, "did not finish in time (hung)");
    } else if (WIFSIGNALED(status) && !(kill_expected && WTERMSIG(status) == SIGKILL)) {
        report(sh, who, "died of signal " + std::to_string(WTERMSIG(status)));
    } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        report(sh, who, "exited with status " + std::to_string(WEXITSTATUS(status)));
    }
}

// Crash mode: keep opt.writers writers alive, each SIGKILLed after a random delay.
int kill_loop(Context& c, Watchdog& dog, std::mt19937_64& rng) {
    struct Slot {
        pid_t pid = 0;
        uint64_t deadline = 0;
    };
    std::vector<Slot> slots(c.opt.writers);
    int kills = 0, spawned = 0;
    // Past the planned kills (a slow machine short of a floor below), writers
    // live up to 4 times longer, so the slow steps (a rebuild) can finish.
    auto start = [&](Slot& s) {
        const uint64_t seed = rng();
        const int id = spawned++;
        s.pid = spawn([&c, id, seed] { writer_main(c, id, seed); });
        const uint64_t delay_us = uint64_t(c.opt.max_kill_delay_us) * (kills < c.opt.kills ? 1 : 4);
        s.deadline = now_ns() + (rng() % delay_us) * 1000;
    };
    for (auto& s : slots) start(s);
    uint64_t acked_before = c.sh.commits_acked.load();
    int kills_without_ack = 0;
    // The floor of acknowledged commits is what makes a run mean something;
    // a slow machine (sanitizers, other jobs) reaches it with more kills
    // rather than failing for want of CPU.
    auto more = [&] {
        if (kills < c.opt.kills) return true;
        const bool short_of_floor =
            c.sh.commits_acked.load() < c.opt.min_acked || c.sh.rebuilds.load() < c.opt.min_rebuilds;
        return short_of_floor && kills < 4 * c.opt.kills;
    };
    while (more() && c.sh.error_count.load() == 0 && dog.ok()) {
        auto next = std::min_element(slots.begin(), slots.end(),
                                     [](auto& a, auto& b) { return a.deadline < b.deadline; });
        const uint64_t t = now_ns();
        if (next->deadline > t) {
            std::this_thread::sleep_for(std::chrono::nanoseconds(next->deadline - t));
        }
        // On a loaded machine writers may not get a commit through before
        // their random deadline: after 10 kills without one, let this writer
        // live until a commit is acknowledged (at most 2 s), so the run keeps
        // testing commits, not only opens.
        if (kills_without_ack >= 10) {
            const uint64_t until = now_ns() + 2'000'000'000;
            while (c.sh.commits_acked.load() == acked_before && now_ns() < until)
                std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        const uint64_t acked = c.sh.commits_acked.load();
        kills_without_ack = acked == acked_before ? kills_without_ack + 1 : 0;
        acked_before = acked;
        kill(next->pid, SIGKILL);
        int status = 0;
        waitpid(next->pid, &status, 0);
        check_child_status(c.sh, "writer", status, true);
        ++kills;
        start(*next);
    }
    for (auto& s : slots) {
        kill(s.pid, SIGKILL);
        int status = 0;
        waitpid(s.pid, &status, 0);
        check_child_status(c.sh, "writer", status, true);
        ++kills;
    }
    return kills;
}

// Normal mode: opt.writers writers each commit commits_per_writer times.
void run_writers(Context& c, Watchdog& dog, std::mt19937_64& rng) {
    std::vector<pid_t> pids;
    for (int i = 0; i < c.opt.writers; ++i) {
        const uint64_t seed = rng();
        pids.push_back(spawn([&c, i, seed] { writer_main(c, i, seed); }));
    }
    for (pid_t pid : pids) {
        int status = 0;
        while (waitpid(pid, &status, WNOHANG) == 0) {
            if (!dog.ok()) {
                for (pid_t p : pids) kill(p, SIGKILL);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        check_child_status(c.sh, "writer", status, false);
    }
}

// In a child (so a hang is caught): a later writer opens, check() passes,
// every acknowledged version survived, the end state is recorded in
// final_version, and one more commit goes through.
void final_writer(Context& c) {
    const std::string who = "final writer";
    std::string error;
    auto w = StoreWriter::open(make_config(c.dir, c.opt.initial_capacity), false, error);
    if (!w) {
        report(c.sh, who, "StoreWriter::open failed after the run: " + error);
        _exit(1);
    }
    std::vector<std::string> problems;
    if (!w->check(problems) || !problems.empty()) {
        std::string all;
        for (auto& p : problems) all += p + "; ";
        report(c.sh, who, "check() failed: " + all);
    }
    for (uint32_t g = 0; g < c.opt.groups; ++g) {
        uint32_t v = 0;
        if (!group_version(c, *w, g, v, who)) _exit(1);
        const uint32_t acked = c.sh.max_acked[g].load();
        const bool erased_since = c.sh.max_erase_intent[g].load() > acked;
        const bool lost = v == 0 ? (acked != 0 && !is_erase(acked) && !erased_since) : v < acked;
        if (lost) {
            report(c.sh, who, "acknowledged change lost: '" + c.keys[2 * g] + "' acked at version " +
                                  std::to_string(acked) + ", store has " + std::to_string(v));
        }
        const uint32_t exact = is_erase(acked) ? 0 : acked;
        if (c.opt.kills == 0 && v != exact) {
            report(c.sh, who, "without kills every commit was acknowledged, yet '" + c.keys[2 * g] +
                                  "' is at version " + std::to_string(v) + ", not " + std::to_string(exact));
        }
        c.sh.final_version[g].store(v);
    }
    // Every stored record is one of ours and decodes.
    size_t records = 0;
    w->for_each([&](const TargetRecord& rec) {
        ++records;
        auto it = std::find(c.keys.begin(), c.keys.end(), rec.key);
        uint32_t v = 0;
        std::string why;
        if (it == c.keys.end()) {
            report(c.sh, who, "unknown record '" + rec.key + "' in the store");
        } else if (!decode_record(rec, rec.key, v, why)) {
            report(c.sh, who, "corrupt record: " + why);
        } else if (v != c.sh.final_version[(it - c.keys.begin()) / 2].load()) {
            report(c.sh, who, "for_each shows '" + rec.key + "' at another version than get()");
        }
    });
    size_t present = 0;
    for (uint32_t g = 0; g < c.opt.groups; ++g) {
        const uint32_t v = c.sh.final_version[g].load();
        if (v != 0 && !is_erase(v)) present += 2;
    }
    if (records != present) {
        report(c.sh, who, "for_each visits " + std::to_string(records) + " records, get() finds " +
                              std::to_string(present));
    }
    // A later writer proceeds: one more commit on group 0.
    uint32_t v0 = 0;
    if (!group_version(c, *w, 0, v0, who)) _exit(1);
    const uint32_t next = std::max(v0, c.sh.max_intent[0].load()) + 1;
    c.sh.max_intent[0].store(next);
    if (is_erase(next)) c.sh.max_erase_intent[0].store(next);
    std::vector<Change> changes{Change{make_image(c.keys[0], next)}, Change{make_image(c.keys[1], next)}};
    if (w->commit(changes, error) == 0) {
        report(c.sh, who, "commit after the run failed: " + error);
        _exit(1);
    }
    c.sh.max_acked[0].store(next);
    c.sh.final_version[0].store(next);
    _exit(0);
}

void collect(Shared& sh, const RunOptions& opt, RunResult& res) {
    res.commits_started = sh.commits_started.load();
    res.commits_acked = sh.commits_acked.load();
    res.writer_opens = sh.writer_opens.load();
    res.rebuilds = sh.rebuilds.load();
    res.max_open_us = sh.max_open_ns.load() / 1000;
    for (int i = 0; i < opt.readers; ++i) {
        ReaderStats& rs = sh.readers[i];
        res.reader_calls += rs.progress.load();
        res.found += rs.found.load();
        res.absent += rs.absent.load();
        res.unavailable += rs.unavailable.load();
        res.max_stall_us = std::max(res.max_stall_us, rs.max_stall_ns.load() / 1000);
        res.max_call_us = std::max(res.max_call_us, rs.max_call_ns.load() / 1000);
        res.max_unavailable_streak = std::max(res.max_unavailable_streak, rs.max_unavailable_streak.load());
        if (rs.max_stall_ns.load() > kStallBoundNs)
            report(sh, "reader " + std::to_string(i), "stalled longer than 10 s without a usable answer");
        if (rs.progress.load() == 0) report(sh, "reader " + std::to_string(i), "made no lookups at all");
        if (rs.final_checked.load() != 2 * opt.groups && sh.error_count.load() == 0)
            report(sh, "reader " + std::to_string(i), "final pass incomplete: " +
                       std::to_string(rs.final_checked.load()) + " keys");
    }
}

}  // namespace

std::string RunResult::summary() const {
    std::ostringstream o;
    o << "seed=" << seed << " kills=" << kills << " commits_started=" << commits_started
      << " commits_acked=" << commits_acked << " writer_opens=" << writer_opens
      << " rebuilds=" << rebuilds << " max_writer_open_us=" << max_open_us
      << " reader_calls=" << reader_calls << " found=" << found << " absent=" << absent
      << " unavailable=" << unavailable << " max_unavailable_streak=" << max_unavailable_streak
      << " max_reader_stall_us=" << max_stall_us << " max_reader_call_us=" << max_call_us
      << " final_generation=" << final_generation << " final_seq=" << final_seq
      << " seconds=" << seconds;
    return o.str();
}

RunResult run_store_stress(const RunOptions& opt) {
    RunResult res;
    const uint64_t t_start = now_ns();
    res.seed = opt.seed ? opt.seed : std::random_device{}() | (uint64_t(std::random_device{}()) << 32);
    if (const char* s = std::getenv("STRESS_SEED")) res.seed = std::strtoull(s, nullptr, 10);
    std::mt19937_64 rng(res.seed);

    char tmpl[] = "/tmp/mailsuspend-stress-XXXXXX";
    if (!mkdtemp(tmpl)) {
        res.errors.push_back("mkdtemp failed");
        return res;
    }
    const std::string dir = tmpl;
    void* mem = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        res.errors.push_back("mmap failed");
        return res;
    }
    Shared& sh = *new (mem) Shared();
    Context c{opt, sh, dir, {}};
    for (uint32_t k = 0; k < 2 * opt.groups; ++k) c.keys.push_back(stress_key(k));

    {
        std::string error;
        auto w = StoreWriter::open(make_config(dir, opt.initial_capacity), true, error);
        if (!w) res.errors.push_back("creating the store failed: " + error);
    }
    if (res.errors.empty()) {
        std::vector<pid_t> readers;
        for (int i = 0; i < opt.readers; ++i) {
            const uint64_t seed = rng();
            readers.push_back(spawn([&c, i, seed] { reader_main(c, i, seed); }));
        }
        Watchdog dog(sh, opt.readers);
        if (opt.kills > 0) {
            res.kills = kill_loop(c, dog, rng);
        } else {
            run_writers(c, dog, rng);
        }
        sh.stop_writers.store(1);
        const pid_t fw = spawn([&c] { final_writer(c); });
        check_child_status(sh, "final writer", wait_bounded(fw, 60'000'000'000), false);
        sh.final_pass.store(1);
        for (int i = 0; i < opt.readers; ++i) {
            check_child_status(sh, "reader " + std::to_string(i), wait_bounded(readers[i], 30'000'000'000),
                               false);
        }
        collect(sh, opt, res);
        std::string error;
        if (auto r = StoreReader::open(dir, error)) {
            res.final_generation = r->stats().generation;
            res.final_seq = r->stats().seq;
        } else {
            report(sh, "parent", "StoreReader::open after the run failed: " + error);
        }
    }
    const uint32_t n = std::min<uint32_t>(sh.error_count.load(), kMaxErrors);
    for (uint32_t i = 0; i < n; ++i) res.errors.emplace_back(sh.errors[i]);
    if (sh.error_count.load() > kMaxErrors)
        res.errors.push_back("... and " + std::to_string(sh.error_count.load() - kMaxErrors) + " more");
    res.seconds = double(now_ns() - t_start) / 1e9;
    sh.~Shared();
    munmap(mem, sizeof(Shared));
    if (std::getenv("STRESS_KEEP")) {
        std::fprintf(stderr, "store kept in %s\n", dir.c_str());
    } else {
        std::filesystem::remove_all(dir);
    }
    return res;
}

}  // namespace stress
