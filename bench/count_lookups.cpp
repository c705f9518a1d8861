// count_lookups: N lookups of one kind, for counting instructions and
// simulated cache misses with callgrind (bench/counts.py runs it; the VM
// has no hardware counters, and counts do not depend on the machine's load).
//
//   count_lookups SYSTEM KIND [LOOKUPS [ACCOUNTS]]
//     SYSTEM   store    StoreReader::lookup (the raw store)
//              map      std::unordered_map<std::string, HotView>::find (baseline)
//              cdb      tinycdb cdb_find + cdb_getdata on a cdb of the same accounts
//              login    mailsuspend_check_login(user, "imap", "192.0.2.7")
//              send     mailsuspend_check_send(sender, "192.0.2.7")
//              receive  mailsuspend_check_receive(recipient, 0)
//     KIND     hit (a stored account) or miss (an account never stored, in a
//              stored domain)
//     LOOKUPS  measured lookups (default 20000); as many others warm up first
//     ACCOUNTS data set size (default 1000000; bench_data.cpp builds it once)
//
// Everything is set up first (data set, map, keys), outside instrumentation.
// Then, under callgrind (--instr-atstart=no --collect-atstart=no),
// CALLGRIND_START_INSTRUMENTATION turns the cache simulation on, LOOKUPS
// other keys of the same kind warm up (code, stack and the structures' hot
// parts come into the simulated caches, as in a process that has been
// running a while), the counted keys are read once (touch), and
// CALLGRIND_TOGGLE_COLLECT brackets the LOOKUPS counted ones:
//   valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no
//       --cache-sim=yes count_lookups login miss
// Costs per lookup = callgrind's totals / LOOKUPS.  Keys are distinct and in
// random order; every key of one run is looked up once.  Hits of send and
// receive find the record but allow: the bench accounts have only imap and
// pop3 suspended.  Exits 1 when a lookup answered other than expected.
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else  // no valgrind headers: the program still runs, callgrind just counts all of it
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#define CALLGRIND_TOGGLE_COLLECT
#endif

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "bench_data.hpp"
#include "mailsuspend/mailsuspend.h"
#include "store.hpp"
#ifdef MAILSUSPEND_HAVE_CDB
#include "cdb_data.hpp"
#endif

namespace {

using mailsuspend::HotView;
using mailsuspend::LookupStatus;

constexpr const char* kClientIp = "192.0.2.7";

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "count_lookups: %s\n", what.c_str());
    std::exit(2);
}

// Each system answers lookup(key): 1 suspended (or denied), 0 absent (or
// allowed), -1 error.
struct Store {
    std::unique_ptr<mailsuspend::StoreReader> reader;
    HotView v;
    explicit Store(uint64_t n) {
        std::string error;
        reader = mailsuspend::StoreReader::open(bench::store_data(n).dir, error);
        if (!reader) die("StoreReader::open: " + error);
    }
    int lookup(const std::string& k) {
        const LookupStatus s = reader->lookup(k, v);
        return s == LookupStatus::found ? v.suspended != 0 : s == LookupStatus::absent ? 0 : -1;
    }
};

struct Map {
    const bench::Baseline& map;
    explicit Map(uint64_t n) : map(bench::baseline_data(n).map) {}
    int lookup(const std::string& k) {
        const auto it = map.find(k);
        return it == map.end() ? 0 : it->second.suspended != 0;
    }
};

enum class Check { login, send, receive };

template <Check check>
struct CApi {
    mailsuspend_handle* ms = nullptr;
    mailsuspend_result result{};
    explicit CApi(uint64_t n) {
        const char* error = nullptr;
        ms = mailsuspend_open(bench::config_file(bench::store_data(n)).c_str(), nullptr, nullptr, &error);
        if (!ms || error) die(std::string("mailsuspend_open: ") + (error ? error : "out of memory"));
    }
    ~CApi() { mailsuspend_close(&ms); }
    int lookup(const std::string& k) {
        if constexpr (check == Check::login) mailsuspend_check_login(ms, k.c_str(), "imap", kClientIp, &result);
        if constexpr (check == Check::send) mailsuspend_check_send(ms, k.c_str(), kClientIp, &result);
        if constexpr (check == Check::receive) mailsuspend_check_receive(ms, k.c_str(), 0, &result);
        return result.fail_policy ? -1 : result.verdict == MAILSUSPEND_DENY;
    }
};

// 2 * count distinct keys of one kind in random order: the first half warms
// up, the second is measured.
std::vector<std::string> distinct_keys(uint64_t accounts, bool hits, uint64_t count) {
    std::mt19937_64 rng(accounts * 2 + hits);
    std::unordered_set<uint64_t> seen;
    std::vector<std::string> keys;
    keys.reserve(2 * count);
    while (keys.size() < 2 * count) {
        const uint64_t i = (hits ? 0 : accounts) + rng() % accounts;
        if (seen.insert(i).second) keys.push_back(bench::account_key(i));
    }
    return keys;
}

template <class System>
uint64_t run_lookups(System& s, const std::string* keys, uint64_t count, int expected) {
    uint64_t as_expected = 0;
    for (uint64_t i = 0; i < count; ++i) as_expected += s.lookup(keys[i]) == expected;
    return as_expected;
}

// Reads every key once, so the counted lookups find their keys in the
// simulated caches as a mail process finds the name it has just parsed.
// Without it each counted lookup also paid for the harness's cold key: about
// 1.5 LL misses (the string and its heap octets), in every row alike.
uint64_t touch(const std::string* keys, uint64_t count) {
    uint64_t sum = 0;
    for (uint64_t i = 0; i < count; ++i)
        for (const char c : keys[i]) sum += static_cast<unsigned char>(c);
    return sum;
}

template <class System>
int run(const char* system, bool hits, uint64_t lookups, uint64_t accounts, int expected) {
    System s(accounts);
    const std::vector<std::string> keys = distinct_keys(accounts, hits, lookups);
    CALLGRIND_START_INSTRUMENTATION;  // the simulated caches start here
    const uint64_t warm = run_lookups(s, keys.data(), lookups, expected);
    volatile uint64_t touched = touch(keys.data() + lookups, lookups);
    (void)touched;
    CALLGRIND_TOGGLE_COLLECT;  // counted: these lookups only
    const uint64_t good = run_lookups(s, keys.data() + lookups, lookups, expected);
    CALLGRIND_TOGGLE_COLLECT;
    CALLGRIND_STOP_INSTRUMENTATION;
    std::printf("count_lookups: system=%s kind=%s accounts=%llu lookups=%llu as_expected=%llu/%llu\n", system,
                hits ? "hit" : "miss", static_cast<unsigned long long>(accounts),
                static_cast<unsigned long long>(lookups), static_cast<unsigned long long>(warm + good),
                static_cast<unsigned long long>(2 * lookups));
    return warm + good == 2 * lookups ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3 || argc > 5) {
        std::fprintf(stderr, "usage: count_lookups store|map|cdb|login|send|receive hit|miss [LOOKUPS [ACCOUNTS]]\n");
        return 2;
    }
    const std::string system = argv[1], kind = argv[2];
    if (kind != "hit" && kind != "miss") die("KIND is hit or miss, not " + kind);
    const bool hits = kind == "hit";
    const uint64_t lookups = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 20000;
    const uint64_t accounts = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 1000000;
    if (accounts < 4 * lookups) die("ACCOUNTS must be at least 4 x LOOKUPS (distinct keys)");
    // A hit is a suspended account for the raw lookups and for a login (imap
    // is suspended); send and receive are not, so every check allows.
    const int found = hits ? 1 : 0;
    if (system == "store") return run<Store>(argv[1], hits, lookups, accounts, found);
    if (system == "map") return run<Map>(argv[1], hits, lookups, accounts, found);
    if (system == "login") return run<CApi<Check::login>>(argv[1], hits, lookups, accounts, found);
    if (system == "send") return run<CApi<Check::send>>(argv[1], hits, lookups, accounts, 0);
    if (system == "receive") return run<CApi<Check::receive>>(argv[1], hits, lookups, accounts, 0);
#ifdef MAILSUSPEND_HAVE_CDB
    if (system == "cdb") return run<bench::CdbReader>(argv[1], hits, lookups, accounts, found);
#else
    if (system == "cdb") die("built without tinycdb (install libcdb-dev and configure again)");
#endif
    die("unknown SYSTEM " + system);
}
