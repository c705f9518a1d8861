// Store benchmarks (bench/results/ has the runs and their reading):
//  - lookup of random keys, hits and misses, at 1 M and 10 M accounts, next
//    to the same lookups in an in-process std::unordered_map (the baseline);
//  - per-call latency percentiles of the same (each call timed with rdtscp);
//  - memory: store file bytes per account, and the map's heap per account;
//  - opening the store in a new process plus the first lookup, measured
//    inside a forked child and inside a freshly exec'd probe program.
#include <benchmark/benchmark.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <sys/mman.h>

#include <numeric>
#include <random>

#include <sched.h>
#include <signal.h>

#include <filesystem>

#include "bench_data.hpp"
#include "config.hpp"
#include "image.hpp"
#include "raw_store.hpp"
#include "codec.hpp"
#include "mailsuspend/mailsuspend.h"
#include "store.hpp"

extern char** environ;

namespace {

using bench::baseline_data;
using bench::lookup_keys;
using bench::store_data;
using mailsuspend::HotView;
using mailsuspend::LookupStatus;
using mailsuspend::StoreReader;

constexpr int64_t k1M = 1'000'000;
constexpr int64_t k10M = 10'000'000;
constexpr int kKeyMask = (1 << 20) - 1;

// One reader per data set for the whole run, warmed by one pass over the
// lookup keys: a long-lived Dovecot or Exim process has its pages mapped
// already; a fresh mapping pays a page fault (several us here) per new page,
// which BM_OpenFirstLookup_* measure instead.
StoreReader* warm_reader(uint64_t n) {
    static std::map<uint64_t, std::unique_ptr<StoreReader>> readers;
    auto& r = readers[n];
    if (!r) {
        std::string error;
        r = StoreReader::open(store_data(n).dir, error);
        if (!r) return nullptr;
        HotView v;
        for (bool hits : {true, false})
            for (const auto& k : lookup_keys(n, hits)) benchmark::DoNotOptimize(r->lookup(k, v));
    }
    return r.get();
}

StoreReader* open_reader(const bench::StoreData& d, benchmark::State& state) {
    StoreReader* r = warm_reader(d.accounts);
    if (!r) state.SkipWithError(("StoreReader::open " + d.dir).c_str());
    return r;
}

void store_counters(benchmark::State& state, const bench::StoreData& d) {
    state.counters["bytes_per_account"] = double(d.stats.file_bytes) / double(d.accounts);
    state.counters["loaded_bytes_per_account"] = double(d.loaded_file_bytes) / double(d.accounts);
    state.counters["file_MB"] = double(d.stats.file_bytes) / 1e6;
    state.counters["build_s"] = d.build_seconds;
}

void BM_StoreLookup(benchmark::State& state, bool hits) {
    const auto& d = store_data(state.range(0));
    const auto& keys = lookup_keys(state.range(0), hits);
    StoreReader* r = open_reader(d, state);
    if (!r) return;
    uint64_t i = 0, wrong = 0;
    HotView v;
    for (auto _ : state) {
        const LookupStatus s = r->lookup(keys[i++ & kKeyMask], v);
        wrong += s != (hits ? LookupStatus::found : LookupStatus::absent);
        benchmark::DoNotOptimize(v);
    }
    if (wrong) state.SkipWithError((std::to_string(wrong) + " lookups gave the wrong answer").c_str());
    store_counters(state, d);
}

void BM_MapLookup(benchmark::State& state, bool hits) {
    const auto& b = baseline_data(state.range(0));
    const auto& keys = lookup_keys(state.range(0), hits);
    uint64_t i = 0, wrong = 0;
    for (auto _ : state) {
        auto it = b.map.find(keys[i++ & kKeyMask]);
        wrong += (it != b.map.end()) != hits;
        benchmark::DoNotOptimize(it);
    }
    if (wrong) state.SkipWithError("map lookups gave the wrong answer");
    state.counters["heap_bytes_per_account"] = b.heap_bytes_per_account;
}

// --- per-call latency -------------------------------------------------------

double tsc_per_ns() {
    static const double ratio = [] {
        unsigned aux;
        const auto t0 = std::chrono::steady_clock::now();
        const uint64_t c0 = __rdtscp(&aux);
        while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(100)) {
        }
        const uint64_t c1 = __rdtscp(&aux);
        const auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
        return double(c1 - c0) / ns;
    }();
    return ratio;
}

// Ticks an empty timed section costs (median), subtracted from samples.
uint64_t timer_overhead() {
    static const uint64_t overhead = [] {
        std::vector<uint64_t> s(100000);
        unsigned aux;
        for (auto& x : s) {
            const uint64_t a = __rdtscp(&aux);
            _mm_lfence();
            const uint64_t b = __rdtscp(&aux);
            x = b - a;
        }
        std::nth_element(s.begin(), s.begin() + s.size() / 2, s.end());
        return s[s.size() / 2];
    }();
    return overhead;
}

template <class Lookup>
void latency_loop(benchmark::State& state, const std::vector<std::string>& keys, Lookup lookup) {
    std::vector<uint64_t> samples;
    samples.reserve(state.max_iterations);
    const uint64_t overhead = timer_overhead();
    unsigned aux;
    uint64_t i = 0;
    for (auto _ : state) {
        const std::string& key = keys[i++ & kKeyMask];
        const uint64_t a = __rdtscp(&aux);
        _mm_lfence();
        lookup(key);
        const uint64_t b = __rdtscp(&aux);
        samples.push_back(b - a > overhead ? b - a - overhead : 0);
    }
    std::sort(samples.begin(), samples.end());
    const double per_ns = tsc_per_ns();
    auto pct = [&](double p) { return double(samples[size_t(p * (samples.size() - 1))]) / per_ns; };
    state.counters["p50_ns"] = pct(0.50);
    state.counters["p90_ns"] = pct(0.90);
    state.counters["p99_ns"] = pct(0.99);
    state.counters["p999_ns"] = pct(0.999);
}

void BM_StoreLookupLatency(benchmark::State& state, bool hits) {
    const auto& d = store_data(state.range(0));
    StoreReader* r = open_reader(d, state);
    if (!r) return;
    HotView v;
    latency_loop(state, lookup_keys(state.range(0), hits), [&](const std::string& k) {
        benchmark::DoNotOptimize(r->lookup(k, v));
    });
    store_counters(state, d);
}

void BM_MapLookupLatency(benchmark::State& state, bool hits) {
    const auto& b = baseline_data(state.range(0));
    latency_loop(state, lookup_keys(state.range(0), hits), [&](const std::string& k) {
        benchmark::DoNotOptimize(b.map.find(k));
    });
}

// --- the host's view: the C API ---------------------------------------------

// mailsuspend_check_login as Dovecot calls it: normalise the user, look up
// the mailbox and its domain, decide, format the reply text.
void BM_CApiCheckLogin(benchmark::State& state, bool hits) {
    static std::map<uint64_t, struct mailsuspend_handle*> handles;  // one per data set, warmed
    const auto& d = store_data(state.range(0));
    const auto& keys = lookup_keys(state.range(0), hits);
    mailsuspend_result result;
    struct mailsuspend_handle*& ms = handles[d.accounts];
    if (!ms) {
        const char* error = nullptr;
        ms = mailsuspend_open(bench::config_file(d).c_str(), nullptr, nullptr, &error);
        if (!ms || error) return state.SkipWithError(error ? error : "mailsuspend_open");
        for (bool h : {true, false})
            for (const auto& k : lookup_keys(d.accounts, h))
                mailsuspend_check_login(ms, k.c_str(), "imap", "192.0.2.7", &result);
    }
    uint64_t i = 0, wrong = 0;
    for (auto _ : state) {
        mailsuspend_check_login(ms, keys[i++ & kKeyMask].c_str(), "imap", "192.0.2.7", &result);
        wrong += (result.verdict == MAILSUSPEND_DENY) != hits || result.fail_policy;
    }
    if (wrong) state.SkipWithError((std::to_string(wrong) + " checks gave the wrong verdict").c_str());
}

// --- opening in a new process ----------------------------------------------

uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

// A forked child opens the store and looks one key up; it times itself.
void BM_OpenFirstLookup_Fork(benchmark::State& state) {
    const auto& d = store_data(state.range(0));
    const std::string key = bench::account_key(state.range(0) / 2);
    for (auto _ : state) {
        int fds[2];
        if (pipe(fds) != 0) return state.SkipWithError("pipe");
        const pid_t pid = fork();
        if (pid == 0) {
            const uint64_t t0 = now_ns();
            std::string error;
            auto r = StoreReader::open(d.dir, error);
            HotView v;
            const bool ok = r && r->lookup(key, v) == LookupStatus::found;
            const uint64_t t1 = now_ns();
            const uint64_t msg[2] = {t1 - t0, ok};
            ssize_t n = write(fds[1], msg, sizeof msg);
            _exit(n == sizeof msg ? 0 : 1);
        }
        close(fds[1]);
        uint64_t msg[2] = {0, 0};
        const ssize_t n = read(fds[0], msg, sizeof msg);
        close(fds[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        if (n != sizeof msg || !msg[1]) return state.SkipWithError("child failed to open/look up");
        state.SetIterationTime(double(msg[0]) / 1e9);
    }
    store_counters(state, d);
}

// A freshly exec'd probe (store_open_probe) opens the store and looks one key
// up, timing itself from main(); spawn_to_exit_us is the whole process life.
// range(1) = 1: through the C API as a host does it (mailsuspend_open reads
// the config file, then mailsuspend_check_login).
void BM_OpenFirstLookup_Exec(benchmark::State& state) {
    const auto& d = store_data(state.range(0));
    const std::string key = bench::account_key(state.range(0) / 3);
    const bool capi = state.range(1) == 1;
    const std::string target = capi ? bench::config_file(d) : d.dir;
    double total_life = 0;
    for (auto _ : state) {
        int fds[2];
        if (pipe(fds) != 0) return state.SkipWithError("pipe");
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        posix_spawn_file_actions_addclose(&fa, fds[0]);
        const char* argv[] = {MAILSUSPEND_PROBE_PATH, target.c_str(), key.c_str(), capi ? "capi" : nullptr,
                              nullptr};
        pid_t pid = 0;
        const uint64_t t0 = now_ns();
        const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, const_cast<char**>(argv), environ);
        posix_spawn_file_actions_destroy(&fa);
        close(fds[1]);
        if (rc != 0) {
            close(fds[0]);
            return state.SkipWithError("posix_spawn store_open_probe");
        }
        char buf[64] = {};
        const ssize_t n = read(fds[0], buf, sizeof buf - 1);
        close(fds[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        total_life += double(now_ns() - t0);
        unsigned long long ns = 0;
        if (n <= 0 || std::sscanf(buf, "ok %llu", &ns) != 1 || !WIFEXITED(status) || WEXITSTATUS(status))
            return state.SkipWithError(("probe failed: " + std::string(buf)).c_str());
        state.SetIterationTime(double(ns) / 1e9);
    }
    state.counters["spawn_to_exit_us"] = total_life / 1e3 / double(state.iterations());
    store_counters(state, d);
}

// --- floors and breakdowns --------------------------------------------------

// One dependent random memory access over a buffer the size of the store
// file: what any cold lookup costs on this machine at least.  range(1) = 1
// asks for transparent huge pages (fewer TLB misses).
void BM_RandomAccessFloor(benchmark::State& state) {
    const size_t bytes = size_t(state.range(0));
    const size_t lines = bytes / 64;
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return state.SkipWithError("mmap");
    if (state.range(1)) madvise(mem, bytes, MADV_HUGEPAGE);
    auto* next = static_cast<uint64_t*>(mem);  // next[line * 8] = index of the next line
    std::vector<uint32_t> order(lines);
    std::iota(order.begin(), order.end(), 0u);
    std::mt19937_64 rng(42);
    for (size_t i = lines - 1; i > 0; --i) std::swap(order[i], order[rng() % i]);  // one cycle
    for (size_t i = 0; i < lines; ++i) next[size_t(order[i]) * 8] = order[(i + 1) % lines];
    uint64_t at = order[0];
    for (auto _ : state) {
        at = next[at * 8];
        benchmark::DoNotOptimize(at);
    }
    munmap(mem, bytes);
}

// The same lookups over 1024 keys only: every line is in cache, what is left
// is the code path (hash, probe, seqlock, key compare).
void BM_StoreLookupHot(benchmark::State& state) {
    const auto& d = store_data(state.range(0));
    const auto& keys = lookup_keys(state.range(0), true);
    StoreReader* r = open_reader(d, state);
    if (!r) return;
    uint64_t i = 0;
    HotView v;
    for (auto _ : state) {
        benchmark::DoNotOptimize(r->lookup(keys[i++ & 1023], v));
        benchmark::DoNotOptimize(v);
    }
}

void BM_MapLookupHot(benchmark::State& state) {
    const auto& b = baseline_data(state.range(0));
    const auto& keys = lookup_keys(state.range(0), true);
    uint64_t i = 0;
    for (auto _ : state) benchmark::DoNotOptimize(b.map.find(keys[i++ & 1023]));
}

// Encoded size of one record in the arena, by shape: 0 = one service, no
// reason; 1 = imap+pop3 with a reason (the shape the data sets use);
// 2 = every service ("all") with a reason.  slot_bytes is a slot's share at
// the table's maximum load.
void BM_RecordBytes(benchmark::State& state) {
    mailsuspend::TargetRecord r;
    r.key = bench::account_key(123456);
    const int shape = int(state.range(0));
    for (int i = 0; i < mailsuspend::kServiceCount; ++i) {
        if (shape == 0 && i > 0) break;
        if (shape == 1 && i > 1) break;
        auto& s = r.services[i];
        s.suspended = true;
        s.since = 1'700'000'000;
        if (shape > 0) {
            s.reason = "unpaid invoice";
        }
    }
    std::string blob;
    for (auto _ : state) {
        blob.clear();
        mailsuspend::encode_record(r, blob);
        benchmark::DoNotOptimize(blob);
    }
    state.counters["blob_bytes"] = double(blob.size());
    state.counters["slot_bytes"] = 32 / 0.8;
    state.counters["bytes_per_account"] = double(blob.size()) + 32 / 0.8;
}

// --- a writer that died inside a slot write ----------------------------------

// How long a lookup takes to give up on a slot a dead writer left locked
// (seqlock odd for good) and answer "unavailable", alone on its CPU
// (range(0) = 0) or sharing it with a busy process (range(0) = 1), as a
// Dovecot or Exim process on a loaded server would.
void BM_LookupDeadWriterSlot(benchmark::State& state) {
    const std::string dir = bench::bench_root() + "/deadslot";
    std::filesystem::remove_all(dir);
    mailsuspend::Config cfg;
    cfg.store_path = dir;
    cfg.store_capacity = 16;
    cfg.read_group = "";
    cfg.write_group = "";
    cfg.audit_log = dir + "/audit.log";
    const std::string key = stress::stress_key(1);
    {
        std::string error;
        auto w = mailsuspend::StoreWriter::open(cfg, true, error);
        if (!w) return state.SkipWithError(error.c_str());
        std::vector<mailsuspend::Change> changes{mailsuspend::Change{stress::make_image(key, 1)}};
        if (!w->commit(changes, error)) return state.SkipWithError(error.c_str());
    }
    {
        stress::RawStore raw(dir + "/store");
        const int64_t i = raw.slot_of(key);
        if (i < 0) return state.SkipWithError("slot not found");
        raw.slot(i).word0.store(raw.slot(i).word0.load() + (uint64_t{1} << 32));
    }
    std::string error;
    auto r = StoreReader::open(dir, error);
    if (!r) return state.SkipWithError(error.c_str());
    cpu_set_t one, all;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_getaffinity(0, sizeof all, &all);
    pid_t hog = 0;
    if (state.range(0) == 1) {
        sched_setaffinity(0, sizeof one, &one);
        hog = fork();
        if (hog == 0) {
            for (uint64_t x = 0;;) benchmark::DoNotOptimize(++x);
        }
    }
    uint64_t wrong = 0;
    for (auto _ : state) {
        HotView v;
        const uint64_t t0 = now_ns();
        wrong += r->lookup(key, v) != LookupStatus::unavailable;
        state.SetIterationTime(double(now_ns() - t0) / 1e9);
    }
    if (hog) {
        kill(hog, SIGKILL);
        waitpid(hog, nullptr, 0);
        sched_setaffinity(0, sizeof all, &all);
    }
    std::filesystem::remove_all(dir);
    if (wrong) state.SkipWithError("a lookup on a dead writer's slot did not say unavailable");
}

// Releases the 10 M baseline map after its last use.
void BM_DropBaseline(benchmark::State& state) {
    for (auto _ : state) {
    }
    bench::drop_baseline(state.range(0));
}

}  // namespace

BENCHMARK(BM_RecordBytes)->DenseRange(0, 2);
BENCHMARK(BM_RandomAccessFloor)->Args({224 << 20, 0})->Args({224 << 20, 1})->Args({int64_t{2144} << 20, 0});

BENCHMARK(BM_LookupDeadWriterSlot)->Arg(0)->Arg(1)->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);

BENCHMARK(BM_OpenFirstLookup_Fork)->Arg(k1M)->Arg(k10M)->UseManualTime()->Iterations(300)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_OpenFirstLookup_Exec)->Args({k1M, 0})->Args({k10M, 0})->Args({k1M, 1})->UseManualTime()->Iterations(200)->Unit(benchmark::kMicrosecond);

BENCHMARK_CAPTURE(BM_StoreLookup, hit, true)->Arg(k1M);
BENCHMARK_CAPTURE(BM_MapLookup, hit, true)->Arg(k1M);
BENCHMARK_CAPTURE(BM_StoreLookup, miss, false)->Arg(k1M);
BENCHMARK_CAPTURE(BM_MapLookup, miss, false)->Arg(k1M);
BENCHMARK_CAPTURE(BM_CApiCheckLogin, hit, true)->Arg(k1M);
BENCHMARK_CAPTURE(BM_CApiCheckLogin, miss, false)->Arg(k1M);
BENCHMARK(BM_StoreLookupHot)->Arg(k1M);
BENCHMARK(BM_MapLookupHot)->Arg(k1M);
BENCHMARK_CAPTURE(BM_StoreLookupLatency, hit, true)->Arg(k1M)->Iterations(1 << 21);
BENCHMARK_CAPTURE(BM_MapLookupLatency, hit, true)->Arg(k1M)->Iterations(1 << 21);
BENCHMARK_CAPTURE(BM_StoreLookupLatency, miss, false)->Arg(k1M)->Iterations(1 << 21);
BENCHMARK_CAPTURE(BM_MapLookupLatency, miss, false)->Arg(k1M)->Iterations(1 << 21);

BENCHMARK_CAPTURE(BM_StoreLookup, hit, true)->Arg(k10M);
BENCHMARK_CAPTURE(BM_MapLookup, hit, true)->Arg(k10M);
BENCHMARK_CAPTURE(BM_StoreLookup, miss, false)->Arg(k10M);
BENCHMARK_CAPTURE(BM_MapLookup, miss, false)->Arg(k10M);
BENCHMARK_CAPTURE(BM_StoreLookupLatency, hit, true)->Arg(k10M)->Iterations(1 << 21);
BENCHMARK_CAPTURE(BM_MapLookupLatency, hit, true)->Arg(k10M)->Iterations(1 << 21);
BENCHMARK_CAPTURE(BM_StoreLookupLatency, miss, false)->Arg(k10M)->Iterations(1 << 21);
BENCHMARK_CAPTURE(BM_MapLookupLatency, miss, false)->Arg(k10M)->Iterations(1 << 21);
BENCHMARK(BM_DropBaseline)->Arg(k10M)->Iterations(1);

BENCHMARK_MAIN();
