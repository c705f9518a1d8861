// Helpers shared by the unit tests: temporary directories, config files,
// a store ready to use.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "config.hpp"
#include "store.hpp"

namespace mailsuspend::test {

// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
public:
    TempDir() {
        std::string templ = (std::filesystem::temp_directory_path() / "ms-unit-XXXXXX").string();
        if (!::mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
        path_ = templ;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

inline void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path);
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// A config for dir: store under dir/store, audit log dir/audit.log, groups
// left alone, host commands off.  extra is appended (whole groups) and
// groups named in it replace the defaults given here.
struct ConfigText {
    std::string store_extra;     // more keys inside store: { }
    std::string delivery = "delivery: { flush_command = \"\"; fail_queued_command = \"\"; };";
    std::string rest;            // further groups
};

inline std::string config_text(const std::string& dir, const ConfigText& t = {}) {
    return "store: { path = \"" + dir + "/store\"; capacity = 16; read_group = \"\"; "
           "write_group = \"\"; audit_log = \"" + dir + "/audit.log\"; " + t.store_extra + " };\n" +
           t.delivery + "\n" + t.rest + "\n";
}

// Writes dir/mailsuspend.conf and returns its path.
inline std::string write_config(const std::string& dir, const ConfigText& t = {}) {
    const std::string path = dir + "/mailsuspend.conf";
    write_file(path, config_text(dir, t));
    return path;
}

inline Config load_ok(const std::string& path) {
    std::string error;
    auto cfg = load_config(path, error);
    if (!cfg) throw std::runtime_error("config: " + error);
    return *cfg;
}

inline int64_t wall_now() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace mailsuspend::test
