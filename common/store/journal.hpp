// The write-ahead journal <store.path>/journal: entries (complete record
// blobs, each with its sequence number) and a commit record per transaction.
// Internal to the store: written by the writer (writer.cpp), read back here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mailsuspend::store_file {

struct JournalEntryHeader {
    uint32_t magic;
    uint32_t length;  // blob bytes that follow
    uint64_t seq;
};
struct JournalCommit {
    uint32_t magic;
    uint32_t crc;     // over the transaction's entries
    uint64_t last_seq;
};

struct JournalEntry {
    uint64_t seq;
    std::string blob;
};

// Reads every committed transaction; a torn tail (a writer killed before its
// commit record reached the disk) is cut off: it was never acknowledged.
bool read_journal(int fd, std::vector<JournalEntry>& entries, std::string& error_r);

}  // namespace mailsuspend::store_file
