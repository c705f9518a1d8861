// The outbox's file names and the host's check for a pending suspension:
// apart from outbox.cpp so the modules that only check (Dovecot's core
// module) link neither the policies nor libcrypto through it.
#include <sys/stat.h>

#include <cinttypes>
#include <cstdio>

#include "config.hpp"
#include "outbox.hpp"
#include "store_layout.hpp"

namespace mailsuspend {

bool outbox_entry_path(const std::string& store, const char* prefix, std::string_view key, char* buf,
                       std::size_t size) noexcept {
    const uint64_t h = layout::hash_key(key.data(), key.size());
    const int n = std::snprintf(buf, size, "%s/outbox/%s%016" PRIx64, store.c_str(), prefix, h);
    return n > 0 && static_cast<std::size_t>(n) < size;
}

bool outbox_holds_suspension(const Config& cfg, std::string_view key) noexcept {
    char path[4096];
    if (!outbox_entry_path(cfg.store_path, kSuspendPrefix, key, path, sizeof path)) return false;
    struct stat st {};
    return ::stat(path, &st) == 0;
}

}  // namespace mailsuspend
