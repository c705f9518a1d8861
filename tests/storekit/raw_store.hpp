// The store file mapped read-write, to put it into the exact state a writer
// killed at some instruction leaves (white-box: store_layout.hpp).
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "store_layout.hpp"

namespace stress {

namespace layout = mailsuspend::layout;

class RawStore {
public:
    explicit RawStore(const std::string& path) {
        fd_ = ::open(path.c_str(), O_RDWR);
        struct stat st {};
        if (fd_ < 0 || ::fstat(fd_, &st) != 0) return;
        size_ = static_cast<size_t>(st.st_size);
        void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
        if (p != MAP_FAILED) base_ = static_cast<unsigned char*>(p);
    }
    ~RawStore() {
        if (base_) ::munmap(base_, size_);
        if (fd_ >= 0) ::close(fd_);
    }
    bool ok() const { return base_ != nullptr; }
    layout::Header& header() { return *reinterpret_cast<layout::Header*>(base_); }
    unsigned char* arena() { return base_ + header().arena_offset; }
    layout::Slot& slot(uint64_t i) {
        return reinterpret_cast<layout::Slot*>(base_ + header().slots_offset)[i];
    }
    // Slot i's tag byte (layout 2: the readers' probe chain).
    unsigned char& tag(uint64_t i) { return base_[header().tags_offset + i]; }
    // Empties slot i as a writer killed before it wrote the slot leaves it
    // (the record is in the journal only).
    void clear_slot(uint64_t i) {
        slot(i).fingerprint.store(0);
        slot(i).blob.store(0);
        slot(i).expiry.store(0);
        slot(i).word0.store(0);
        header().used_slots.fetch_sub(1);
    }
    // Index of the slot holding key, or -1.
    int64_t slot_of(const std::string& key) {
        const unsigned char* arena = base_ + header().arena_offset;
        for (uint64_t i = 0; i < header().slot_count; ++i) {
            const uint64_t w = slot(i).word0.load();
            if (layout::w0_state(w) != layout::kUsed) continue;
            const uint64_t off = slot(i).blob.load() >> 32;
            const unsigned char* blob = arena + off;
            if (blob[sizeof(layout::BlobHeader)] == key.size() &&
                std::memcmp(blob + layout::kBlobKeyOffset, key.data(), key.size()) == 0)
                return static_cast<int64_t>(i);
        }
        return -1;
    }

private:
    int fd_ = -1;
    size_t size_ = 0;
    unsigned char* base_ = nullptr;
};

}  // namespace stress
