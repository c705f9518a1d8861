// Scaling with concurrent processes (Dovecot and Exim run many single-threaded
// processes against one store): 1, 2, 4, 8, 16 forked processes each doing a
// fixed number of
//   - StoreReader::lookup of random stored accounts (the 1 M or 10 M data set
//     of bench_data.cpp, the same keys as store_bench and compare_bench),
//   - Counters::add on ONE key shared by all processes (worst case: every CAS
//     on the same cache line), and on distinct keys (4096 per process).
// Every process opens its own reader / counter mapping and warms it before a
// common start signal.  Reported per process count: aggregate ops/s (all
// operations / wall time from the start signal to the last finish) and the
// median per-process ops/s, median of --reps runs.  The shared-key counter
// total is checked afterwards: it must equal processes x ops (no lost update).
//
//   scaling_bench [--accounts N] [--ops N] [--counter-ops N] [--reps N]
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "bench_data.hpp"
#include "counters.hpp"
#include "store.hpp"

namespace {

using mailsuspend::CounterKind;
using mailsuspend::Counters;
using mailsuspend::HotView;
using mailsuspend::LookupStatus;
using mailsuspend::StoreReader;

constexpr int kProcessCounts[] = {1, 2, 4, 8, 16};
constexpr uint64_t kDistinctKeysPerProcess = 4096;
constexpr int kKeyMask = (1 << 20) - 1;

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "scaling_bench: %s\n", what.c_str());
    std::exit(2);
}

uint64_t now_ns(clockid_t clock = CLOCK_MONOTONIC) {
    timespec ts;
    clock_gettime(clock, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

struct Options {
    uint64_t accounts = 1'000'000;
    uint64_t ops = 1'000'000;          // lookups per process
    uint64_t counter_ops = 1'000'000;  // Counters::add per process
    int reps = 3;
};

// What a child reports: when it started and finished, and whether every
// operation gave the expected answer.
struct ChildReport {
    uint64_t start_ns = 0;
    uint64_t end_ns = 0;
    uint64_t cpu_ns = 0;  // the child's CPU time in the timed loop
    uint64_t wrong = 1;
};

// A workload: setup(p) runs before the start signal (open, warm) and returns
// the timed loop for process p, which returns its count of wrong answers.
using Workload = std::function<std::function<uint64_t()>(int process)>;

struct RunResult {
    double aggregate_ops_s = 0;
    double per_process_ops_s = 0;  // median over processes
    double cpu_ns_per_op = 0;      // median over processes: load-proof cost of one operation
};

RunResult run_once(int processes, uint64_t ops, const Workload& workload) {
    int start[2], ready[2];
    if (pipe(start) != 0 || pipe(ready) != 0) die("pipe");
    std::vector<int> results(processes);
    std::vector<pid_t> pids(processes);
    for (int p = 0; p < processes; ++p) {
        int fds[2];
        if (pipe(fds) != 0) die("pipe");
        pids[p] = fork();
        if (pids[p] < 0) die("fork");
        if (pids[p] == 0) {
            close(start[1]);
            close(ready[0]);
            close(fds[0]);
            ChildReport rep;
            auto loop = workload(p);
            char c = 'r';
            if (write(ready[1], &c, 1) != 1) _exit(3);
            if (read(start[0], &c, 1) != 0) _exit(3);  // EOF: the parent said go
            rep.start_ns = now_ns();
            const uint64_t cpu0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
            rep.wrong = loop();
            rep.cpu_ns = now_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
            rep.end_ns = now_ns();
            _exit(write(fds[1], &rep, sizeof rep) == sizeof rep ? 0 : 4);
        }
        close(fds[1]);
        results[p] = fds[0];
    }
    close(start[0]);
    close(ready[1]);
    // Every child has opened and warmed before the common start signal.
    for (int p = 0; p < processes; ++p) {
        char c;
        if (read(ready[0], &c, 1) != 1) die("a child died while warming");
    }
    close(ready[0]);
    const uint64_t go = now_ns();
    close(start[1]);
    uint64_t last_end = go;
    std::vector<double> per_process, cpu;
    for (int p = 0; p < processes; ++p) {
        ChildReport rep;
        if (read(results[p], &rep, sizeof rep) != sizeof rep) die("a child died");
        close(results[p]);
        if (rep.wrong) die("a child got " + std::to_string(rep.wrong) + " wrong answers");
        last_end = std::max(last_end, rep.end_ns);
        per_process.push_back(double(ops) / (double(rep.end_ns - rep.start_ns) / 1e9));
        cpu.push_back(double(rep.cpu_ns) / double(ops));
    }
    for (pid_t pid : pids) {
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("a child failed");
    }
    std::sort(per_process.begin(), per_process.end());
    std::sort(cpu.begin(), cpu.end());
    RunResult r;
    r.cpu_ns_per_op = cpu[cpu.size() / 2];
    r.aggregate_ops_s = double(ops) * processes / (double(last_end - go) / 1e9);
    r.per_process_ops_s = per_process[per_process.size() / 2];
    return r;
}

void report(const char* name, uint64_t ops, int reps, const Workload& workload,
            const std::function<void(int processes)>& before = {},
            const std::function<void(int processes)>& after = {}) {
    std::printf("\n%s (%llu ops per process, median of %d runs)\n", name,
                static_cast<unsigned long long>(ops), reps);
    double load[3] = {0, 0, 0};
    getloadavg(load, 3);
    std::printf("(load average before: %.1f)\n\n", load[0]);
    std::printf("| processes | aggregate ops/s | per-process ops/s | aggregate vs 1 process | CPU ns per op |\n");
    std::printf("|---:|---:|---:|---:|---:|\n");
    double one = 0;
    for (int processes : kProcessCounts) {
        std::vector<RunResult> runs;
        for (int i = 0; i < reps; ++i) {
            if (before) before(processes);
            runs.push_back(run_once(processes, ops, workload));
            if (after) after(processes);
        }
        auto median = [&](double RunResult::*field) {
            std::vector<double> v;
            for (const auto& r : runs) v.push_back(r.*field);
            std::sort(v.begin(), v.end());
            return v[v.size() / 2];
        };
        const double agg = median(&RunResult::aggregate_ops_s);
        if (processes == 1) one = agg;
        std::printf("| %d | %.2f M | %.2f M | %.2fx | %.0f |\n", processes, agg / 1e6,
                    median(&RunResult::per_process_ops_s) / 1e6, agg / one, median(&RunResult::cpu_ns_per_op));
        std::fflush(stdout);
    }
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        const uint64_t v = std::strtoull(argv[i + 1], nullptr, 10);
        if (v == 0) die("bad value for " + flag);
        if (flag == "--accounts") o.accounts = v;
        else if (flag == "--ops") o.ops = v;
        else if (flag == "--counter-ops") o.counter_ops = v;
        else if (flag == "--reps") o.reps = int(v);
        else die("unknown option " + flag);
    }
    if (argc % 2 == 0) die("usage: scaling_bench [--accounts N] [--ops N] [--counter-ops N] [--reps N]");
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    const auto& data = bench::store_data(o.accounts);
    const auto& keys = bench::lookup_keys(o.accounts, true);  // built before fork: shared
    std::printf("scaling_bench: %ld CPUs online, store %s (%llu accounts)\n", sysconf(_SC_NPROCESSORS_ONLN),
                data.dir.c_str(), static_cast<unsigned long long>(o.accounts));

    // Lookups: process p walks the random hit keys from its own offset.
    report("StoreReader::lookup, random stored accounts", o.ops, o.reps, [&](int p) {
        std::string error;
        auto reader = std::shared_ptr<StoreReader>(StoreReader::open(data.dir, error));
        if (!reader) die("StoreReader::open: " + error);
        const uint64_t offset = uint64_t(p) << 16;
        HotView v;
        for (uint64_t i = 0; i < std::min<uint64_t>(o.ops, kKeyMask + 1); ++i)  // warm
            reader->lookup(keys[(offset + i) & kKeyMask], v);
        return std::function<uint64_t()>([reader, offset, &keys, ops = o.ops] {
            HotView hv;
            uint64_t wrong = 0;
            for (uint64_t i = 0; i < ops; ++i)
                wrong += reader->lookup(keys[(offset + i) & kKeyMask], hv) != LookupStatus::found;
            return wrong;
        });
    });

    // Counters live in their own directory, created afresh for this run.
    const std::string dir = bench::bench_root() + "/compare/counters";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    {
        std::string error;
        if (!Counters::open(dir, true, 16 * kDistinctKeysPerProcess * 2, error)) die("Counters::open: " + error);
    }
    const int64_t now = time(nullptr);  // one bucket for the whole run
    auto counter_workload = [&](bool shared) {
        return [&, shared](int p) {
            std::string error;
            auto counters = std::shared_ptr<Counters>(Counters::open(dir, false, 0, error));
            if (!counters) die("Counters::open: " + error);
            std::vector<std::string> own;
            for (uint64_t i = 0; i < (shared ? 1 : kDistinctKeysPerProcess); ++i)
                own.push_back(shared ? "shared@example.com" : bench::account_key(p * kDistinctKeysPerProcess + i));
            return std::function<uint64_t()>([counters, own = std::move(own), ops = o.counter_ops, now] {
                uint64_t wrong = 0;
                const uint64_t mask = own.size() - 1;  // 1 or a power of two
                for (uint64_t i = 0; i < ops; ++i)
                    wrong += counters->add(own[i & mask], CounterKind::messages, 1, now) < 0;
                return wrong;
            });
        };
    };
    std::string error;
    auto check = Counters::open(dir, false, 0, error);
    if (!check) die("Counters::open: " + error);
    report("Counters::add, one key shared by all processes", o.counter_ops, o.reps, counter_workload(true),
           [&](int) { check->reset("shared@example.com", CounterKind::messages); },
           [&](int processes) {
               const int64_t total = check->total("shared@example.com", CounterKind::messages, now);
               if (total != int64_t(o.counter_ops) * processes)
                   die("shared counter total " + std::to_string(total) + ", expected " +
                       std::to_string(o.counter_ops * processes));
           });
    report("Counters::add, distinct keys (4096 per process)", o.counter_ops, o.reps, counter_workload(false),
           [&](int) {
               for (uint64_t k = 0; k < 16 * kDistinctKeysPerProcess; ++k)
                   check->reset(bench::account_key(k), CounterKind::messages);
           },
           [&](int processes) {
               int64_t total = 0;
               for (uint64_t k = 0; k < processes * kDistinctKeysPerProcess; ++k)
                   total += check->total(bench::account_key(k), CounterKind::messages, now);
               if (total != int64_t(o.counter_ops) * processes)
                   die("distinct counter total " + std::to_string(total) + ", expected " +
                       std::to_string(o.counter_ops * processes));
           });
    std::filesystem::remove_all(dir);
    return 0;
}
