#include "journal.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "codec.hpp"
#include "mapping.hpp"

namespace mailsuspend::store_file {

bool read_journal(int fd, std::vector<JournalEntry>& entries, std::string& error_r) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        error_r = errno_text("cannot stat the journal");
        return false;
    }
    std::string data(static_cast<std::size_t>(st.st_size), '\0');
    if (!data.empty() && ::pread(fd, data.data(), data.size(), 0) != static_cast<ssize_t>(data.size())) {
        error_r = errno_text("cannot read the journal");
        return false;
    }
    std::size_t pos = 0, committed_end = 0, tx_start = 0;
    std::vector<JournalEntry> pending;
    while (pos + sizeof(JournalEntryHeader) <= data.size()) {
        uint32_t magic;
        std::memcpy(&magic, data.data() + pos, 4);
        if (magic == kJournalEntryMagic) {
            JournalEntryHeader h;
            std::memcpy(&h, data.data() + pos, sizeof h);
            const std::size_t body = pos + sizeof h;
            if (h.length > data.size() - body) break;
            const auto* p = reinterpret_cast<const unsigned char*>(data.data() + body);
            if (blob_length(p, h.length) != h.length) break;
            pending.push_back({h.seq, data.substr(body, h.length)});
            pos = body + h.length;
        } else if (magic == kJournalCommitMagic) {
            JournalCommit c;
            std::memcpy(&c, data.data() + pos, sizeof c);
            if (crc32(data.data() + tx_start, pos - tx_start) != c.crc) break;
            pos += sizeof c;
            for (auto& e : pending) entries.push_back(std::move(e));
            pending.clear();
            committed_end = tx_start = pos;
        } else {
            break;
        }
    }
    if (committed_end != data.size() && ::ftruncate(fd, static_cast<off_t>(committed_end)) != 0) {
        error_r = errno_text("cannot cut the torn end of the journal");
        return false;
    }
    return true;
}

}  // namespace mailsuspend::store_file
