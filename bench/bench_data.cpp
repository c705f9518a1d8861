#include "bench_data.hpp"

#include "counters.hpp"

#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "config.hpp"

namespace bench {

using mailsuspend::Change;
using mailsuspend::Config;
using mailsuspend::HotView;
using mailsuspend::LookupStatus;
using mailsuspend::Service;
using mailsuspend::StoreReader;
using mailsuspend::StoreWriter;
using mailsuspend::TargetRecord;

namespace {

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "bench: %s\n", what.c_str());
    std::exit(2);
}

constexpr uint64_t kBatch = 100'000;

// A typical suspended mailbox: imap and pop3 off by an admin, with a reason.
TargetRecord account_record(uint64_t i) {
    TargetRecord r;
    r.key = account_key(i);
    for (Service s : {Service::imap, Service::pop3}) {
        auto& st = r.at(s);
        st.suspended = true;
        st.since = 1'700'000'000 + int64_t(i % 100000);
        st.reason = "unpaid invoice";
    }
    return r;
}

Config bench_config(const std::string& dir, uint64_t n) {
    Config cfg;
    cfg.store_path = dir;
    cfg.store_capacity = n;
    cfg.read_group = "";
    cfg.write_group = "";
    cfg.audit_log = dir + "/audit.log";
    return cfg;
}

// The data set is usable when a reader opens it and the first and last
// accounts are found; the marker file is written only after a full build.
bool usable(const std::string& dir, uint64_t n, uint64_t& loaded_bytes) {
    std::ifstream marker(dir + "/bench-accounts");
    uint64_t m = 0;
    if (!(marker >> m >> loaded_bytes) || m != n) return false;
    std::string error;
    auto r = StoreReader::open(dir, error);
    if (!r) return false;
    HotView v;
    return r->lookup(account_key(0), v) == LookupStatus::found &&
           r->lookup(account_key(n - 1), v) == LookupStatus::found &&
           r->lookup(account_key(n), v) == LookupStatus::absent;
}

double build(const std::string& dir, uint64_t n) {
    uint64_t loaded_bytes = 0;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const auto t0 = std::chrono::steady_clock::now();
    std::string error;
    auto w = StoreWriter::open(bench_config(dir, n), true, error);
    if (!w) die("StoreWriter::open(" + dir + "): " + error);
    std::vector<Change> changes;
    for (uint64_t i = 0; i < n; i += kBatch) {
        changes.clear();
        for (uint64_t j = i; j < std::min(n, i + kBatch); ++j) changes.push_back(Change{account_record(j)});
        if (w->commit(changes, error) == 0) die("commit at account " + std::to_string(i) + ": " + error);
        if ((i / kBatch) % 10 == 9) std::fprintf(stderr, "bench: %s: %llu accounts\n", dir.c_str(),
                                                 static_cast<unsigned long long>(i + kBatch));
    }
    loaded_bytes = w->stats().file_bytes;
    if (!w->rebuild(n, error)) die("rebuild: " + error);
    w.reset();
    std::ofstream(dir + "/bench-accounts") << n << " " << loaded_bytes << "\n";
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::string account_key(uint64_t i) {
    return "u" + std::to_string(i) + "@d" + std::to_string(i % 5000) + ".example";
}

std::string bench_root() {
    const char* env = std::getenv("MAILSUSPEND_BENCH_DIR");
    return env && *env ? env : "/var/tmp/mailsuspend-bench";
}

const StoreData& store_data(uint64_t n) {
    static std::map<uint64_t, StoreData> cache;
    auto it = cache.find(n);
    if (it != cache.end()) return it->second;
    StoreData d;
    d.accounts = n;
    d.dir = bench_root() + "/" + std::to_string(n);
    if (!usable(d.dir, n, d.loaded_file_bytes)) {
        std::fprintf(stderr, "bench: building %llu accounts in %s (once; kept for later runs)\n",
                     static_cast<unsigned long long>(n), d.dir.c_str());
        d.build_seconds = build(d.dir, n);
        std::fprintf(stderr, "bench: built in %.1f s\n", d.build_seconds);
        if (!usable(d.dir, n, d.loaded_file_bytes)) die("the store just built is not usable: " + d.dir);
    }
    std::string error;
    auto r = StoreReader::open(d.dir, error);
    if (!r) die(error);
    d.stats = r->stats();
    return cache.emplace(n, d).first->second;
}

std::string config_file(const StoreData& d) {
    const std::string path = d.dir + ".conf";
    // The counters file, as `mailsuspend init` makes it: the C API's send
    // checks read it (the rate limits, and whether the outbox holds anything).
    std::string error;
    if (!mailsuspend::Counters::open(d.dir, true, 1024, error)) throw std::runtime_error("counters: " + error);
    std::ofstream(path) << "store: { path = \"" << d.dir << "\"; capacity = " << d.accounts
                        << "; read_group = \"\"; write_group = \"\"; audit_log = \"" << d.dir
                        << "/audit.log\"; };\n";
    return path;
}

const std::vector<std::string>& lookup_keys(uint64_t n, bool hits) {
    static std::map<std::pair<uint64_t, bool>, std::vector<std::string>> cache;
    auto& keys = cache[{n, hits}];
    if (keys.empty()) {
        std::mt19937_64 rng(n * 2 + hits);
        keys.reserve(1 << 20);
        for (int i = 0; i < (1 << 20); ++i) keys.push_back(account_key(hits ? rng() % n : n + rng() % n));
    }
    return keys;
}

static std::map<uint64_t, BaselineData> baselines;

const BaselineData& baseline_data(uint64_t n) {
    auto it = baselines.find(n);
    if (it != baselines.end()) return it->second;
    BaselineData& b = baselines[n];
    const auto heap = [] { const auto m = mallinfo2(); return m.uordblks + m.hblkhd; };
    const size_t before = heap();
    b.map.reserve(n);
    for (uint64_t i = 0; i < n; ++i) {
        HotView v;
        v.suspended = 0b11;
        b.map.emplace(account_key(i), v);
    }
    b.heap_bytes_per_account = double(heap() - before) / double(n);
    return b;
}

void drop_baseline(uint64_t n) { baselines.erase(n); }

}  // namespace bench
