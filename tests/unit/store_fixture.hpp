// The store tests' fixture (test_store.cpp, test_store_tags.cpp): a store
// in a temporary directory, its writer and reader, and bytes patched in place.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "store.hpp"
#include "test_util.hpp"

namespace mailsuspend::test {

inline uint8_t bit(Service s) { return static_cast<uint8_t>(1u << static_cast<int>(s)); }

inline TargetRecord suspended_record(const std::string& key, Service s, const std::string& reason = "r") {
    TargetRecord r;
    r.key = key;
    r.at(s).suspended = true;
    r.at(s).since = 1700000000;
    r.at(s).reason = reason;
    return r;
}

class StoreTest : public ::testing::Test {
protected:
    TempDir dir;
    Config cfg;
    std::string store_dir = dir / "store";
    std::string store_file = store_dir + "/store";

    void SetUp() override {
        cfg.store_path = store_dir;
        cfg.store_capacity = 16;
        cfg.read_group = "";
        cfg.write_group = "";
        cfg.audit_log = dir / "audit.log";
    }

    // convert: open a store of the previous layout to convert it (rebuild's open).
    std::unique_ptr<StoreWriter> writer(bool init = false, bool convert = false) {
        std::string error;
        auto w = StoreWriter::open(cfg, init, error, nullptr, convert);
        EXPECT_TRUE(w) << error;
        return w;
    }

    std::unique_ptr<StoreReader> reader() {
        std::string error;
        auto r = StoreReader::open(store_dir, error);
        EXPECT_TRUE(r) << error;
        return r;
    }

    uint64_t commit(StoreWriter& w, std::vector<TargetRecord> records) {
        std::vector<Change> changes;
        for (auto& r : records) changes.push_back({std::move(r)});
        std::string error;
        const uint64_t seq = w.commit(changes, error);
        EXPECT_NE(seq, 0u) << error;
        return seq;
    }

    void init() { writer(true); }

    // Overwrites bytes of the store file at offset.
    void patch(off_t offset, const void* data, std::size_t n) {
        const int fd = ::open(store_file.c_str(), O_WRONLY);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::pwrite(fd, data, n, offset), static_cast<ssize_t>(n));
        ::close(fd);
    }

    std::string reader_error() {
        std::string error;
        auto r = StoreReader::open(store_dir, error);
        EXPECT_FALSE(r) << "a damaged store was opened";
        return error;
    }
};

}  // namespace mailsuspend::test
