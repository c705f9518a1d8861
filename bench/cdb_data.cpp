#include "cdb_data.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "bench_data.hpp"

namespace bench {

namespace {

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "bench: %s\n", what.c_str());
    std::exit(2);
}

}  // namespace

std::string compare_dir() { return bench_root() + "/compare"; }

bool marker_says(const std::string& path, uint64_t n) {
    std::ifstream in(path + ".done");
    uint64_t m = 0;
    return (in >> m) && m == n;
}

std::string cdb_file(uint64_t n) {
    static std::map<uint64_t, std::string> ready;  // checked once per process
    if (ready.count(n)) return ready[n];
    const std::string path = compare_dir() + "/" + std::to_string(n) + ".cdb";
    if (marker_says(path, n)) return ready[n] = path;
    std::filesystem::create_directories(compare_dir());
    std::fprintf(stderr, "bench: building %s (once)\n", path.c_str());
    const std::string tmp = path + ".tmp";
    const int fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open " + tmp);
    cdb_make cm;
    if (cdb_make_start(&cm, fd) != 0) die("cdb_make_start");
    for (uint64_t i = 0; i < n; ++i) {
        const std::string key = account_key(i);
        if (cdb_make_add(&cm, key.data(), key.size(), &kAccountState, sizeof kAccountState) != 0)
            die("cdb_make_add");
    }
    if (cdb_make_finish(&cm) != 0 || fsync(fd) != 0) die("cdb_make_finish");
    close(fd);
    std::filesystem::rename(tmp, path);
    std::ofstream(path + ".done") << n << "\n";
    return ready[n] = path;
}

CdbReader::CdbReader(uint64_t n) : path(cdb_file(n)) {
    fd = open(path.c_str(), O_RDONLY);
    if (fd < 0 || cdb_init(&db, fd) != 0) die("cdb_init " + path);
}

CdbReader::~CdbReader() {
    cdb_free(&db);
    close(fd);
}

}  // namespace bench
