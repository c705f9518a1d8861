// One suspension-state lookup in mailsuspend next to what a hosting provider
// uses today, in one run, over the same accounts and the same random keys
// (bench_data.cpp: account_key, lookup_keys; hits and misses):
//   - mailsuspend StoreReader::lookup, and the full C API mailsuspend_check_login
//   - Redis GET over loopback TCP with hiredis, synchronous, one round trip
//     per lookup (what a host module would do); pipelined 64 deep as an extra
//   - tinycdb cdb_find on a cdb file holding the same accounts (Exim's
//     ${lookup{...}cdb{...}} keeps such a file open per process)
//   - SQLite point query: prepared statement, WAL, WITHOUT ROWID table keyed
//     by address; default page cache, and with mmap as an extra
// plus memory per account for each (memory/... entries, one iteration).
//
// The program starts its own redis-server on 127.0.0.1 (port
// $MAILSUSPEND_REDIS_PORT, default 26391) in a temporary directory with no
// persistence and stops it on exit.  cdb and SQLite files are built once under
// <bench_root>/compare/ and kept.  Sizes: $MAILSUSPEND_COMPARE_SIZES
// (default "1000000,10000000").  bench/results/2026-11-23.md "Against the alternatives" has the commands.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "bench_data.hpp"
#include "cdb_data.hpp"
#include "mailsuspend/mailsuspend.h"
#include "store.hpp"

namespace {

using bench::account_key;
using bench::cdb_file;
using bench::compare_dir;
using bench::kAccountState;
using bench::marker_says;
using bench::PackedState;
using bench::lookup_keys;
using mailsuspend::HotView;
using mailsuspend::LookupStatus;
using mailsuspend::StoreReader;

constexpr int kKeyMask = (1 << 20) - 1;  // lookup_keys holds 1 Mi keys
constexpr int kPipelineDepth = 64;

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "compare_bench: %s\n", what.c_str());
    std::exit(2);
}


uint64_t file_size(const std::string& path) {
    std::error_code ec;
    const auto s = std::filesystem::file_size(path, ec);
    return ec ? 0 : s;
}

// Resident bytes of every mapping of path in this process (/proc/self/smaps).
uint64_t mapped_rss(const std::string& path) {
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    bool in_mapping = false;
    uint64_t kb = 0;
    while (std::getline(smaps, line)) {
        const bool header = !line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
                            line.find('-') != std::string::npos && line.find(':') > line.find(' ');
        if (header) {
            in_mapping = line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0;
        } else if (in_mapping && line.rfind("Rss:", 0) == 0) {
            kb += std::stoull(line.substr(4));
        }
    }
    return kb * 1024;
}

// Runs fn in a forked child and returns the numbers it writes back, so a
// measurement sees only the child's own mappings and process.
struct Two {
    double a = -1, b = -1;
};

template <class Fn>
Two in_child2(Fn fn) {
    int fds[2];
    if (pipe(fds) != 0) die("pipe");
    const pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        close(fds[0]);
        const Two v = fn();
        const ssize_t n = write(fds[1], &v, sizeof v);
        _exit(n == sizeof v ? 0 : 1);
    }
    close(fds[1]);
    Two v;
    if (read(fds[0], &v, sizeof v) != sizeof v) v = Two{};
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return v;
}

template <class Fn>
double in_child(Fn fn) {
    return in_child2([&] { return Two{fn(), 0}; }).a;
}

// ---- redis-server, started and stopped by this program ----------------------

class RedisServer {
public:
    static RedisServer& get() {
        static RedisServer server;
        return server;
    }
    ~RedisServer() { stop(); }

    redisContext* context() {
        if (!ctx_) start();
        return ctx_;
    }

    // Holds exactly the first n accounts (FLUSHALL and a pipelined load when
    // it holds another size); used_memory before/after gives bytes per key.
    void hold(uint64_t n) {
        redisContext* c = context();
        if (held_ == n) return;
        command("FLUSHALL");
        const uint64_t before = used_memory();
        const auto t0 = std::chrono::steady_clock::now();
        constexpr uint64_t kBatch = 10000;
        for (uint64_t i = 0; i < n; i += kBatch) {
            const uint64_t end = std::min(n, i + kBatch);
            for (uint64_t j = i; j < end; ++j) {
                const std::string key = account_key(j);
                redisAppendCommand(c, "SET %b %b", key.data(), key.size(), &kAccountState, sizeof kAccountState);
            }
            for (uint64_t j = i; j < end; ++j) {
                void* reply = nullptr;
                if (redisGetReply(c, &reply) != REDIS_OK) die(std::string("redis SET: ") + c->errstr);
                const auto* r = static_cast<redisReply*>(reply);
                if (r->type != REDIS_REPLY_STATUS) die("redis SET: unexpected reply");
                freeReplyObject(reply);
            }
        }
        held_ = n;
        used_bytes_ = used_memory() - before;
        std::fprintf(stderr, "compare_bench: redis loaded %llu keys in %.1f s\n",
                     static_cast<unsigned long long>(n),
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    uint64_t used_bytes() const { return used_bytes_; }
    static int port() {
        const char* env = std::getenv("MAILSUSPEND_REDIS_PORT");
        return env && *env ? std::atoi(env) : 26391;
    }
    uint64_t info_field(const std::string& name) {
        auto* r = static_cast<redisReply*>(redisCommand(context(), "INFO memory"));
        if (!r || r->type != REDIS_REPLY_STRING) die("redis INFO failed");
        std::istringstream in(std::string(r->str, r->len));
        freeReplyObject(r);
        std::string line;
        while (std::getline(in, line))
            if (line.rfind(name + ":", 0) == 0) return std::stoull(line.substr(name.size() + 1));
        die("redis INFO has no " + name);
    }
    uint64_t used_memory() { return info_field("used_memory"); }
    // The server's own CPU time so far (INFO cpu: used_cpu_sys + used_cpu_user), ns.
    double cpu_ns() {
        auto* r = static_cast<redisReply*>(redisCommand(context(), "INFO cpu"));
        if (!r || r->type != REDIS_REPLY_STRING) die("redis INFO cpu failed");
        std::istringstream in(std::string(r->str, r->len));
        freeReplyObject(r);
        std::string line;
        double s = 0;
        while (std::getline(in, line))
            if (line.rfind("used_cpu_sys:", 0) == 0 || line.rfind("used_cpu_user:", 0) == 0)
                s += std::stod(line.substr(line.find(':') + 1));
        return s * 1e9;
    }

    void stop() {
        if (ctx_) {
            redisReply* r = static_cast<redisReply*>(redisCommand(ctx_, "SHUTDOWN NOSAVE"));
            if (r) freeReplyObject(r);  // normally NULL: the server closed the connection
            redisFree(ctx_);
            ctx_ = nullptr;
        }
        if (pid_ > 0) {
            int status = 0;
            bool gone = false;
            for (int i = 0; i < 100 && !gone; ++i) {  // at most 5 s, then SIGKILL
                gone = waitpid(pid_, &status, WNOHANG) == pid_;
                if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
            if (!gone) {
                kill(pid_, SIGKILL);
                waitpid(pid_, &status, 0);
            }
            pid_ = -1;
        }
        if (!dir_.empty()) {
            std::error_code ec;
            std::filesystem::remove_all(dir_, ec);
            dir_.clear();
        }
    }

    // For a signal handler: the child must not outlive an interrupted run.
    static void kill_child() {
        if (get().pid_ > 0) kill(get().pid_, SIGTERM);
    }

private:
    RedisServer() = default;

    void start() {
        const std::string port = std::to_string(RedisServer::port());
        char tmpl[] = "/tmp/mailsuspend-redis-XXXXXX";
        if (!mkdtemp(tmpl)) die("mkdtemp");
        dir_ = tmpl;
        const std::string log = dir_ + "/redis.log";
        pid_ = fork();
        if (pid_ < 0) die("fork");
        if (pid_ == 0) {
            execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", port.c_str(),
                   "--save", "", "--appendonly", "no", "--dir", dir_.c_str(), "--daemonize", "no",
                   "--protected-mode", "yes", "--logfile", log.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        for (int i = 0; i < 200; ++i) {  // at most ~10 s
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                die("redis-server exited at start; see " + log);
            }
            redisContext* c = redisConnect("127.0.0.1", std::stoi(port));
            if (c && !c->err) {
                auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
                const bool ok = r && r->type == REDIS_REPLY_STATUS;
                if (r) freeReplyObject(r);
                if (ok) {
                    ctx_ = c;
                    std::fprintf(stderr, "compare_bench: redis-server %d on 127.0.0.1:%s\n", pid_, port.c_str());
                    return;
                }
            }
            if (c) redisFree(c);
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        die("redis-server did not answer on 127.0.0.1:" + port);
    }

    void command(const char* cmd) {
        auto* r = static_cast<redisReply*>(redisCommand(context(), cmd));
        if (!r || r->type == REDIS_REPLY_ERROR) die(std::string("redis ") + cmd + " failed");
        freeReplyObject(r);
    }

    pid_t pid_ = -1;
    std::string dir_;
    redisContext* ctx_ = nullptr;
    uint64_t held_ = 0;
    uint64_t used_bytes_ = 0;
};

// ---- cdb and SQLite files, built once and kept ------------------------------

void sqlite_exec(sqlite3* db, const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        const std::string msg = std::string(sql) + ": " + (err ? err : "?");
        sqlite3_free(err);
        die(msg);
    }
}

std::string sqlite_file(uint64_t n) {
    static std::map<uint64_t, std::string> ready;  // checked once per process
    if (ready.count(n)) return ready[n];
    const std::string path = compare_dir() + "/" + std::to_string(n) + ".sqlite";
    if (marker_says(path, n)) return ready[n] = path;
    std::filesystem::create_directories(compare_dir());
    std::fprintf(stderr, "compare_bench: building %s (once)\n", path.c_str());
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
    // Inserting in key order keeps the B-tree build sequential.
    std::vector<std::string> keys;
    keys.reserve(n);
    for (uint64_t i = 0; i < n; ++i) keys.push_back(account_key(i));
    std::sort(keys.begin(), keys.end());
    sqlite3* db = nullptr;
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) die("sqlite3_open " + path);
    sqlite_exec(db, "PRAGMA journal_mode=WAL");
    sqlite_exec(db, "PRAGMA synchronous=OFF");  // build only; a crash here just means a rebuild
    sqlite_exec(db, "PRAGMA cache_size=-262144");
    sqlite_exec(db,
                "CREATE TABLE accounts (address TEXT PRIMARY KEY NOT NULL, suspended INTEGER NOT NULL,"
                " mode INTEGER NOT NULL, min_expiry INTEGER NOT NULL) WITHOUT ROWID");
    sqlite_exec(db, "BEGIN");
    sqlite3_stmt* ins = nullptr;
    if (sqlite3_prepare_v2(db, "INSERT INTO accounts VALUES (?1, ?2, ?3, ?4)", -1, &ins, nullptr) != SQLITE_OK)
        die("prepare insert");
    for (const auto& key : keys) {
        sqlite3_bind_text(ins, 1, key.data(), int(key.size()), SQLITE_STATIC);
        sqlite3_bind_int(ins, 2, kAccountState.suspended);
        sqlite3_bind_int(ins, 3, kAccountState.mode);
        sqlite3_bind_int(ins, 4, 0);
        if (sqlite3_step(ins) != SQLITE_DONE) die(std::string("insert: ") + sqlite3_errmsg(db));
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    sqlite_exec(db, "COMMIT");
    sqlite_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_close(db);
    std::ofstream(path + ".done") << n << "\n";
    return ready[n] = path;
}

// ---- the systems: open once per process, warm, look up ------------------------

// The data set of n accounts (bench_data.cpp's layout), built or checked
// once by the parent (bench::store_data); an exec'd child only needs the path.
bool g_exec_child = false;

std::string store_dir(uint64_t n) {
    return g_exec_child ? bench::bench_root() + "/" + std::to_string(n) : bench::store_data(n).dir;
}

// The config file pointing at the data set, written once by the parent (not
// inside a timed open).
std::string config_path(uint64_t n) {
    if (g_exec_child) return store_dir(n) + ".conf";
    static std::map<uint64_t, std::string> paths;
    auto& p = paths[n];
    if (p.empty()) p = bench::config_file(bench::store_data(n));
    return p;
}

// warm_keys: how many of the 1 Mi hit and miss keys the warm pass looks up
// (all for the in-process mappings; Redis holds everything in its own RAM
// and a sync GET costs tens of us, SQLite's own page cache is 2 MB).
struct Store {
    static constexpr int warm_keys = kKeyMask + 1;
    std::unique_ptr<StoreReader> reader;
    HotView v;
    explicit Store(uint64_t n) {
        std::string error;
        reader = StoreReader::open(store_dir(n), error);
        if (!reader) die("StoreReader::open: " + error);
    }
    int lookup(const std::string& k) {  // 1 found, 0 absent, -1 error
        const LookupStatus s = reader->lookup(k, v);
        return s == LookupStatus::found ? v.suspended != 0 : s == LookupStatus::absent ? 0 : -1;
    }
};

struct CApi {
    static constexpr int warm_keys = kKeyMask + 1;
    mailsuspend_handle* ms = nullptr;
    mailsuspend_result result{};
    explicit CApi(uint64_t n) {
        const char* error = nullptr;
        ms = mailsuspend_open(config_path(n).c_str(), nullptr, nullptr, &error);
        if (!ms || error) die(std::string("mailsuspend_open: ") + (error ? error : "out of memory"));
    }
    ~CApi() { mailsuspend_close(&ms); }
    int lookup(const std::string& k) {
        mailsuspend_check_login(ms, k.c_str(), "imap", "192.0.2.7", &result);
        return result.fail_policy ? -1 : result.verdict == MAILSUSPEND_DENY;
    }
};

struct Cdb : bench::CdbReader {
    static constexpr int warm_keys = kKeyMask + 1;
    using CdbReader::CdbReader;
};

struct Sqlite {
    static constexpr int warm_keys = 1 << 16;
    sqlite3* db = nullptr;
    sqlite3_stmt* stmt = nullptr;
    Sqlite(uint64_t n, bool mmap) {
        const std::string path = sqlite_file(n);
        if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK)
            die("sqlite3_open " + path);
        sqlite_exec(db, "PRAGMA journal_mode=WAL");
        if (mmap) sqlite_exec(db, "PRAGMA mmap_size=4294967296");
        if (sqlite3_prepare_v3(db, "SELECT suspended, mode, min_expiry FROM accounts WHERE address = ?1", -1,
                               SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK)
            die(std::string("prepare: ") + sqlite3_errmsg(db));
    }
    ~Sqlite() {
        sqlite3_finalize(stmt);
        sqlite3_close(db);
    }
    int lookup(const std::string& k) {
        sqlite3_bind_text(stmt, 1, k.data(), int(k.size()), SQLITE_STATIC);
        const int rc = sqlite3_step(stmt);
        const int r = rc == SQLITE_ROW ? sqlite3_column_int(stmt, 0) != 0 : rc == SQLITE_DONE ? 0 : -1;
        sqlite3_reset(stmt);
        return r;
    }
};

struct Redis {
    static constexpr int warm_keys = 1 << 10;
    redisContext* c;
    bool own = false;
    explicit Redis(uint64_t n) : c(RedisServer::get().context()) { RedisServer::get().hold(n); }
    // A new connection, as a freshly forked mail process would make (the
    // server already holds the accounts).
    Redis(uint64_t, bool) : c(redisConnect("127.0.0.1", RedisServer::get().port())), own(true) {
        if (!c || c->err) die("redisConnect");
    }
    ~Redis() {
        if (own) redisFree(c);
    }
    int lookup(const std::string& k) {
        auto* r = static_cast<redisReply*>(redisCommand(c, "GET %b", k.data(), k.size()));
        if (!r) return -1;
        const int v = r->type == REDIS_REPLY_NIL ? 0
                      : r->type == REDIS_REPLY_STRING && r->len == sizeof(PackedState)
                          ? reinterpret_cast<const PackedState*>(r->str)->suspended != 0
                          : -1;
        freeReplyObject(r);
        return v;
    }
};

// One instance per system and size for the whole run, warmed by one pass over
// the hit and miss keys: a long-lived mail process has its pages mapped already.
template <class System, class... Args>
System& warm(uint64_t n, Args... args) {
    static std::map<std::pair<uint64_t, int>, std::unique_ptr<System>> instances;
    auto& s = instances[{n, (0 + ... + int(args))}];
    if (!s) {
        s = std::make_unique<System>(n, args...);
        for (bool hits : {true, false})
            for (int i = 0; i < System::warm_keys; ++i) benchmark::DoNotOptimize(s->lookup(lookup_keys(n, hits)[i]));
    }
    return *s;
}

// Redis runs in its own process: a client's CPU time misses the server's
// work, and wall time on a loaded machine includes waiting for a CPU.  The
// server's CPU per lookup (INFO cpu before/after) plus the client's CPU time
// is a lower bound of a GET that no scheduling noise inflates.
template <class System>
void server_cpu_per_lookup(benchmark::State& state, uint64_t lookups) {
    if constexpr (std::is_same_v<System, Redis>) {
        const double before = state.counters["server_cpu_ns"];
        state.counters["server_cpu_ns"] = (RedisServer::get().cpu_ns() - before) / double(lookups);
    }
}

template <class System>
void lookup_loop(benchmark::State& state, System& s, uint64_t n, bool hits) {
    const auto& keys = lookup_keys(n, hits);
    uint64_t i = 0, wrong = 0;
    if constexpr (std::is_same_v<System, Redis>) state.counters["server_cpu_ns"] = RedisServer::get().cpu_ns();
    for (auto _ : state) {
        const int r = s.lookup(keys[i++ & kKeyMask]);
        wrong += r != int(hits);
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["lookups_per_iteration"] = 1;
    server_cpu_per_lookup<System>(state, state.iterations());
    if (wrong) state.SkipWithError((std::to_string(wrong) + " lookups gave the wrong answer").c_str());
}

// 64 GETs written at once, then 64 replies read: not what a host module does
// (it needs the answer before it can reply), shown to separate the round
// trip from Redis's own work.
void redis_pipelined(benchmark::State& state, uint64_t n, bool hits) {
    redisContext* c = warm<Redis>(n).c;
    const auto& keys = lookup_keys(n, hits);
    uint64_t i = 0, wrong = 0;
    state.counters["server_cpu_ns"] = RedisServer::get().cpu_ns();
    for (auto _ : state) {
        for (int j = 0; j < kPipelineDepth; ++j) {
            const std::string& k = keys[(i + j) & kKeyMask];
            redisAppendCommand(c, "GET %b", k.data(), k.size());
        }
        for (int j = 0; j < kPipelineDepth; ++j) {
            void* reply = nullptr;
            if (redisGetReply(c, &reply) != REDIS_OK) return state.SkipWithError("redisGetReply");
            wrong += (static_cast<redisReply*>(reply)->type == REDIS_REPLY_STRING) != hits;
            freeReplyObject(reply);
        }
        i += kPipelineDepth;
    }
    state.SetItemsProcessed(state.iterations() * kPipelineDepth);
    state.counters["lookups_per_iteration"] = kPipelineDepth;
    server_cpu_per_lookup<Redis>(state, state.iterations() * kPipelineDepth);
    if (wrong) state.SkipWithError("pipelined GETs gave the wrong answer");
}

// ---- a new process: open + first lookup -----------------------------------------

uint64_t now_ns(clockid_t clock = CLOCK_MONOTONIC) {
    timespec ts;
    clock_gettime(clock, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

// A new process (this program exec'd again, MAILSUSPEND_FIRST=system:n)
// opens the system, looks one stored key up and times itself from main:
// Exim forks a process per SMTP connection and its lookups open files
// afresh.  Exec'd rather than forked so that copy-on-write faults of this
// large benchmark process are not counted.  Wall time, and the child's own
// CPU time (page faults included), which a loaded machine does not inflate:
// median -> counter cpu_us.
void first_lookup(benchmark::State& state, const std::string& system, uint64_t n) {
    std::vector<double> cpu;
    const std::string spec = system + ":" + std::to_string(n);
    for (auto _ : state) {
        int fds[2];
        if (pipe(fds) != 0) return state.SkipWithError("pipe");
        const pid_t pid = fork();
        if (pid < 0) return state.SkipWithError("fork");
        if (pid == 0) {
            close(fds[0]);
            setenv("MAILSUSPEND_FIRST", spec.c_str(), 1);
            setenv("MAILSUSPEND_FIRST_FD", std::to_string(fds[1]).c_str(), 1);
            execl("/proc/self/exe", "compare_bench", static_cast<char*>(nullptr));
            _exit(127);
        }
        close(fds[1]);
        Two t;
        if (read(fds[0], &t, sizeof t) != sizeof t) t = Two{};
        close(fds[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        if (t.a < 0) return state.SkipWithError("open + first lookup failed in the child");
        state.SetIterationTime(t.a / 1e9);
        cpu.push_back(t.b / 1e3);
    }
    std::sort(cpu.begin(), cpu.end());
    state.counters["cpu_us"] = cpu[cpu.size() / 2];
}

// The exec'd child of first_lookup.
int first_child(const std::string& spec, int fd) {
    g_exec_child = true;
    const std::string system = spec.substr(0, spec.find(':'));
    const uint64_t n = std::stoull(spec.substr(spec.find(':') + 1));
    const std::string key = account_key(n / 2);  // a stored account
    if (system == "cdb") cdb_file(n);            // marker checks, not timed
    if (system == "sqlite") sqlite_file(n);
    auto timed = [&](auto open_and_lookup) {
        const uint64_t w0 = now_ns(), c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
        const int r = open_and_lookup();
        const uint64_t w1 = now_ns(), c1 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
        return r == 1 ? Two{double(w1 - w0), double(c1 - c0)} : Two{};
    };
    Two t;
    if (system == "store") t = timed([&] { Store s(n); return s.lookup(key); });
    else if (system == "capi") t = timed([&] { CApi s(n); return s.lookup(key); });
    else if (system == "redis") t = timed([&] { Redis s(n, false); return s.lookup(key); });
    else if (system == "cdb") t = timed([&] { Cdb s(n); return s.lookup(key); });
    else if (system == "sqlite") t = timed([&] { Sqlite s(n, false); return s.lookup(key); });
    return write(fd, &t, sizeof t) == sizeof t ? 0 : 1;
}

// ---- memory per account -------------------------------------------------------

// Resident bytes of a file mapping after looking up every one of the n
// accounts in a fresh process (a full warm pass).
template <class System>
double warm_rss(uint64_t n, const std::string& path) {
    return in_child([&] {
        System s(n);
        for (uint64_t i = 0; i < n; ++i)
            if (s.lookup(account_key(i)) != 1) return -1.0;
        return double(mapped_rss(path));
    });
}

void memory(benchmark::State& state, const std::string& system, uint64_t n) {
    double file = 0, rss = -1;
    if (system == "mailsuspend") {
        const auto& d = bench::store_data(n);
        file = double(d.stats.file_bytes);
        rss = warm_rss<Store>(n, d.dir + "/store");
    } else if (system == "cdb") {
        const std::string path = cdb_file(n);
        file = double(file_size(path));
        rss = warm_rss<Cdb>(n, path);
    } else if (system == "sqlite") {
        const std::string path = sqlite_file(n);
        file = double(file_size(path) + file_size(path + "-wal"));
    } else if (system == "redis") {
        RedisServer::get().hold(n);
        file = double(RedisServer::get().used_bytes());  // used_memory growth for the n keys
        rss = double(RedisServer::get().info_field("used_memory_rss"));
    }
    for (auto _ : state) {
    }
    state.counters["bytes_per_account"] = file / double(n);
    if (rss >= 0) state.counters["rss_per_account"] = rss / double(n);
    if (rss < 0 && system != "sqlite") state.SkipWithError("warm pass failed");
}

std::vector<uint64_t> sizes() {
    const char* env = std::getenv("MAILSUSPEND_COMPARE_SIZES");
    std::vector<uint64_t> out;
    std::istringstream in(env && *env ? env : "1000000,10000000");
    std::string item;
    while (std::getline(in, item, ',')) out.push_back(std::stoull(item));
    return out;
}

void register_all() {
    for (uint64_t n : sizes()) {
        const std::string N = std::to_string(n);
        for (bool hits : {true, false}) {
            const std::string prefix = "lookup/" + N + (hits ? "/hit/" : "/miss/");
            auto reg = [&](const std::string& name, auto fn) {
                // Wall time: a Redis round trip waits for the server process.
                benchmark::RegisterBenchmark((prefix + name).c_str(), fn)->UseRealTime();
            };
            reg("mailsuspend_StoreReader", [=](benchmark::State& s) { lookup_loop(s, warm<Store>(n), n, hits); });
            reg("mailsuspend_check_login", [=](benchmark::State& s) { lookup_loop(s, warm<CApi>(n), n, hits); });
            reg("redis_GET", [=](benchmark::State& s) { lookup_loop(s, warm<Redis>(n), n, hits); });
            reg("redis_GET_pipelined64_extra", [=](benchmark::State& s) { redis_pipelined(s, n, hits); });
            reg("cdb_find", [=](benchmark::State& s) { lookup_loop(s, warm<Cdb>(n), n, hits); });
            reg("sqlite_select", [=](benchmark::State& s) { lookup_loop(s, warm<Sqlite>(n, false), n, hits); });
            reg("sqlite_select_mmap_extra", [=](benchmark::State& s) { lookup_loop(s, warm<Sqlite>(n, true), n, hits); });
        }
        auto first = [&](const std::string& name, const std::string& system) {
            benchmark::RegisterBenchmark(("first/" + N + "/" + name).c_str(),
                                         [=](benchmark::State& s) {
                                             // data sets ready before the child starts
                                             if (system == "redis") RedisServer::get().hold(n);
                                             config_path(n);
                                             cdb_file(n);
                                             sqlite_file(n);
                                             first_lookup(s, system, n);
                                         })
                ->UseManualTime()
                ->Iterations(200)
                ->Unit(benchmark::kMicrosecond);
        };
        first("mailsuspend_StoreReader", "store");
        first("mailsuspend_check_login", "capi");
        first("redis_GET", "redis");
        first("cdb_find", "cdb");
        first("sqlite_select", "sqlite");
        for (const char* system : {"mailsuspend", "redis", "cdb", "sqlite"}) {
            const std::string name = std::string("memory/") + N + "/" + system;
            benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) { memory(s, system, n); })
                ->Iterations(1)
                ->Repetitions(1);
        }
    }
}

// For callgrind / cachegrind: MAILSUSPEND_PROFILE=system:accounts:count[:hit|:miss]
// looks up count hit keys then count miss keys (or only one kind) with system
// (store, capi, cdb, sqlite) and exits; the difference between two counts is the per-lookup cost.
template <class System, class... Args>
int profile_loop(const std::string& which, uint64_t n, uint64_t count, Args... args) {
    System s(n, args...);
    uint64_t wrong = 0;
    for (bool hits : {true, false})
        if (which.empty() || which == (hits ? "hit" : "miss"))
        for (uint64_t i = 0; i < count; ++i) wrong += s.lookup(lookup_keys(n, hits)[i & kKeyMask]) != int(hits);
    std::printf("profile: %llu wrong\n", static_cast<unsigned long long>(wrong));
    return wrong ? 1 : 0;
}

int profile(const std::string& spec) {
    std::istringstream in(spec);
    std::string system, n, count, which;
    std::getline(in, system, ':');
    std::getline(in, n, ':');
    std::getline(in, count, ':');
    std::getline(in, which, ':');  // optional: hit or miss only
    const uint64_t accounts = std::stoull(n), lookups = std::stoull(count);
    lookup_keys(accounts, true);  // key generation before any lookup
    lookup_keys(accounts, false);
    if (system == "store") return profile_loop<Store>(which, accounts, lookups);
    if (system == "capi") return profile_loop<CApi>(which, accounts, lookups);
    if (system == "cdb") return profile_loop<Cdb>(which, accounts, lookups);
    if (system == "sqlite") return profile_loop<Sqlite>(which, accounts, lookups, false);
    die("MAILSUSPEND_PROFILE: unknown system " + system);
}

void on_signal(int sig) {
    RedisServer::kill_child();
    signal(sig, SIG_DFL);
    raise(sig);
}

}  // namespace

int main(int argc, char** argv) {
    if (const char* spec = std::getenv("MAILSUSPEND_FIRST"))
        return first_child(spec, std::atoi(std::getenv("MAILSUSPEND_FIRST_FD")));
    if (const char* spec = std::getenv("MAILSUSPEND_PROFILE")) return profile(spec);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    RedisServer::get().stop();
    benchmark::Shutdown();
    return 0;
}
