// Helper of store_bench (BM_OpenFirstLookup_Exec): a new process that opens
// the store and looks one key up, timing that from main().
// Usage: store_open_probe STORE_DIR KEY        ->  "ok <ns>" on stdout
//        store_open_probe CONFIG USER capi      (through the C API: open + check_login)
#include <time.h>

#include <cstdio>
#include <string>

#include "mailsuspend/mailsuspend.h"
#include "store.hpp"

static unsigned long long now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

int main(int argc, char** argv) {
    if (argc == 4 && std::string(argv[3]) == "capi") {
        const unsigned long long t0 = now_ns();
        const char* error = nullptr;
        struct mailsuspend_handle* ms = mailsuspend_open(argv[1], nullptr, nullptr, &error);
        mailsuspend_result result;
        mailsuspend_check_login(ms, argv[2], "imap", "192.0.2.7", &result);
        const unsigned long long t1 = now_ns();
        if (error || result.verdict != MAILSUSPEND_DENY) {
            std::printf("failed %s\n", error ? error : "not denied");
            return 1;
        }
        std::printf("ok %llu\n", t1 - t0);
        mailsuspend_close(&ms);
        return 0;
    }
    if (argc != 3) {
        std::fprintf(stderr, "usage: store_open_probe STORE_DIR KEY | CONFIG USER capi\n");
        return 2;
    }
    const unsigned long long t0 = now_ns();
    std::string error;
    auto reader = mailsuspend::StoreReader::open(argv[1], error);
    mailsuspend::HotView view;
    const bool found = reader && reader->lookup(argv[2], view) == mailsuspend::LookupStatus::found;
    const unsigned long long t1 = now_ns();
    if (!found) {
        std::printf("failed %s\n", reader ? "lookup" : error.c_str());
        return 1;
    }
    std::printf("ok %llu\n", t1 - t0);
    return 0;
}
