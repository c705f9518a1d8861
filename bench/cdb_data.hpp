// The bench accounts (bench_data.hpp: account_key) in a tinycdb file, and a
// reader of it: what a provider's Exim keeps open per process with
// ${lookup{...}cdb{...}}.  Used by compare_bench and count_lookups; built
// only where tinycdb is installed (Debian: libcdb-dev).
#pragma once

#include <cdb.h>

#include <cstdint>
#include <string>

namespace bench {

// The state every compared system stores per account: what StoreReader's
// HotView carries (suspended bits, delivery mode, earliest expiry), 6 bytes.
// The bench accounts all have imap and pop3 suspended (bench_data.cpp).
struct PackedState {
    uint8_t suspended;
    uint8_t mode;
    uint8_t min_expiry[4];
};
static_assert(sizeof(PackedState) == 6);
constexpr PackedState kAccountState{0b11, 0, {0, 0, 0, 0}};

// Where the comparison files live: <bench_root>/compare.
std::string compare_dir();

// True when the file at path was fully built for n accounts (its
// <path>.done marker, written last, says n).
bool marker_says(const std::string& path, uint64_t n);

// <compare_dir>/<n>.cdb holding the n accounts, each with kAccountState;
// built once (and kept) when missing.  Aborts on failure.
std::string cdb_file(uint64_t n);

// cdb_file(n) opened for lookups.
struct CdbReader {
    explicit CdbReader(uint64_t n);
    ~CdbReader();
    CdbReader(const CdbReader&) = delete;
    CdbReader& operator=(const CdbReader&) = delete;
    // 1 suspended, 0 absent, -1 error.
    int lookup(const std::string& k) {
        const int r = cdb_find(&db, k.data(), unsigned(k.size()));
        if (r <= 0) return r;  // 0 absent, -1 error
        if (cdb_datalen(&db) != sizeof(PackedState)) return -1;
        return static_cast<const PackedState*>(cdb_getdata(&db))->suspended != 0;
    }

    int fd = -1;
    struct cdb db;
    std::string path;
};

}  // namespace bench
