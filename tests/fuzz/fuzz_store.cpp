// Opening a damaged store (store.hpp): the store file and the journal come
// from the input (format: store_image.hpp).  Every path a mail process or
// `mailsuspend` takes on such a directory runs:
//  - StoreReader::open, stats, lookup/read of fixed keys, for_each, and
//    lookup/read of every key for_each returned (what Exim and Dovecot do);
//  - StoreWriter::open (repair after a dead writer, journal replay, the
//    after-a-reboot salvage), check, for_each, get;
//  - with CommitChange: a commit, then a fresh reader must find exactly the
//    committed record (an acknowledged change is never lost, even in a store
//    that was damaged before).
// Errors are fine; crashes, hangs, sanitizer reports and a lost commit are not.
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config.hpp"
#include "fuzz_util.hpp"
#include "store.hpp"
#include "store_image.hpp"

using namespace mailsuspend;

namespace {

const char* const kFixedKeys[] = {"user@example.com", "@example.com", "a@b", "@b"};

void read_everything(const std::string& dir) {
    std::string error;
    auto reader = StoreReader::open(dir, error);
    if (!reader) {
        if (error.empty()) fuzz::violated("StoreReader::open failed without a reason");
        return;
    }
    (void)reader->stats();
    HotView view;
    TargetRecord record;
    for (const char* key : kFixedKeys) {
        (void)reader->lookup(key, view);
        (void)reader->read(key, record);
    }
    std::vector<std::string> keys;
    (void)reader->for_each([&](const TargetRecord& r) { keys.push_back(r.key); });
    for (const auto& key : keys) {
        (void)reader->lookup(key, view);
        (void)reader->read(key, record);
    }
    (void)reader->replaced();
}

TargetRecord sample_change() {
    TargetRecord r;
    r.key = "fuzz@example.com";
    r.mode = DeliveryMode::reject;
    ServiceState& s = r.at(Service::imap);
    s.suspended = true;
    s.since = 1700000000;
    s.reason = "fuzz";
    return r;
}

void write_and_read_back(const Config& cfg, StoreWriter& writer) {
    std::vector<Change> changes{{sample_change()}};
    std::string error;
    const uint64_t seq = writer.commit(changes, error);
    if (seq == 0) {
        if (error.empty()) fuzz::violated("commit failed without a reason");
        return;
    }
    auto reader = StoreReader::open(cfg.store_path, error);
    if (!reader) fuzz::violated("no reader after a successful commit", error);
    TargetRecord back;
    const LookupStatus st = reader->read(changes[0].record.key, back);
    if (st != LookupStatus::found) fuzz::violated("committed record not found", reader->last_error());
    if (!(back == changes[0].record)) fuzz::violated("committed record read back differently");
}

void write_everything(const std::string& dir, bool commit) {
    Config cfg;
    cfg.store_path = dir;
    cfg.read_group = "";
    cfg.write_group = "";
    cfg.store_capacity = 16;
    std::string error;
    auto writer = StoreWriter::open(cfg, false, error);
    if (!writer) {
        if (error.empty()) fuzz::violated("StoreWriter::open failed without a reason");
        return;
    }
    std::vector<std::string> report;
    (void)writer->check(report);
    (void)writer->for_each([](const TargetRecord&) {});
    TargetRecord r;
    (void)writer->get("user@example.com", r);
    (void)writer->stats();
    if (commit) write_and_read_back(cfg, *writer);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string dir = fuzz::scratch_dir("store");
    const fuzz::Image img = fuzz::decode(data, size);
    for (const char* leftover : {"/store.new", "/store.retiring"}) ::unlink((dir + leftover).c_str());
    fuzz::write_file(dir + "/store", img.store.data(), img.store.size());
    fuzz::write_file(dir + "/journal", img.journal.data(), img.journal.size());
    fuzz::write_file(dir + "/lock", "", 0);
    read_everything(dir);
    write_everything(dir, img.flags & fuzz::CommitChange);
    read_everything(dir);  // after the writer's repair
    return 0;
}
