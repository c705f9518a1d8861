// Fixed-size shared table files (the rate counters, the login pairs):
// created whole and published at once.  Internal to the store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mailsuspend {

// Creates path (mode 0660) of size bytes starting with header, every page
// allocated (a sparse file on a full filesystem would raise SIGBUS at the
// first write into a new page).  Several processes may create it at once:
// each builds its own temporary file and publishes it with link(), which
// fails if one is there already; the losers then use the winner's (rename
// would replace a file others already write in).  false with error_r.
bool publish_table_file(const std::string& path, const void* header, std::size_t header_size, uint64_t size,
                        std::string& error_r);

}  // namespace mailsuspend
